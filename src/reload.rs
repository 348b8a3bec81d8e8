//! Live reload of mounted files (the policy ConfigMap, the serving certificate): re-read on a
//! change signal and hand a changed content to the input's own `apply`; a version `apply`
//! rejects leaves the current one serving, and the failure is visible in the log, in `/readyz`
//! and in the metrics. Nothing here knows what the files mean.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::echo::without_url_credentials;
use crate::watch::Changes;

/// What `/readyz` reports about one reloadable input.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputStatus {
    /// A short hash of the content in use.
    pub version: String,
    /// Seconds since the Unix epoch when it was loaded.
    pub loaded_at: u64,
    pub reloads: u64,
    pub failed_reloads: u64,
    /// The last rejected version's error, cleared by the next good one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The reload state of the policy, the serving certificate and the client CA.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    policy: Mutex<InputStatus>,
    certificate: Mutex<InputStatus>,
    client_ca: Mutex<InputStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Policy,
    Certificate,
    /// `--client-ca`, when set.
    ClientCa,
}

impl Input {
    pub fn as_str(self) -> &'static str {
        match self {
            Input::Policy => "policy",
            Input::Certificate => "certificate",
            Input::ClientCa => "client_ca",
        }
    }
}

impl ReloadStatus {
    fn slot(&self, input: Input) -> std::sync::MutexGuard<'_, InputStatus> {
        let m = match input {
            Input::Policy => &self.policy,
            Input::Certificate => &self.certificate,
            Input::ClientCa => &self.client_ca,
        };
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the version loaded at start.
    pub fn loaded(&self, input: Input, version: String) {
        let mut s = self.slot(input);
        s.version = version;
        s.loaded_at = now();
    }

    pub fn reloaded(&self, input: Input, version: String) {
        let mut s = self.slot(input);
        s.version = version;
        s.loaded_at = now();
        s.reloads += 1;
        s.last_error = None;
        crate::metrics::reload(input.as_str(), true);
    }

    /// Records a rejected version. The error is shown by `/readyz`, which needs no credentials,
    /// so URL credentials in it are redacted.
    pub fn rejected(&self, input: Input, error: String) {
        let mut s = self.slot(input);
        s.failed_reloads += 1;
        s.last_error = Some(without_url_credentials(&error));
        crate::metrics::reload(input.as_str(), false);
    }

    pub fn get(&self, input: Input) -> InputStatus {
        self.slot(input).clone()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub use crate::version::version_of;

/// Re-reads `files` on every change signal and hands a changed content (all files, concatenated)
/// to `apply` once it has settled ([`Input::settle`]); records the result for `input`. Runs until
/// the task is dropped. `current` is the content loaded at start. A rejected version is not
/// retried until the files change again.
pub async fn reload_on_change(
    files: Vec<PathBuf>,
    mut changes: Changes,
    current: Vec<u8>,
    input: Input,
    status: Arc<ReloadStatus>,
    apply: impl Fn(&[u8]) -> Result<(), String> + Send + Sync + 'static,
) {
    let apply: Arc<Apply> = Arc::new(apply);
    let mut reloader = Reloader {
        files,
        input,
        status,
        current,
        rejected: None,
        read_error: None,
        changing_since: None,
    };
    loop {
        changes.next().await;
        if let Some(bytes) = reloader.read().await {
            reloader.apply(&apply, bytes).await;
        }
    }
}

type Apply = dyn Fn(&[u8]) -> Result<(), String> + Send + Sync;

/// One input's reload state between change signals.
struct Reloader {
    files: Vec<PathBuf>,
    input: Input,
    status: Arc<ReloadStatus>,
    /// The content in use.
    current: Vec<u8>,
    /// The last rejected version and when: not retried on every signal, but once a minute, in
    /// case what it needs (a CA file, say) appears.
    rejected: Option<(Vec<u8>, Instant)>,
    read_error: Option<String>,
    /// Since when the files have kept changing without settling.
    changing_since: Option<Instant>,
}

impl Reloader {
    /// The settled content when it is new and worth applying; `None` otherwise.
    async fn read(&mut self) -> Option<Vec<u8>> {
        let input = self.input.as_str();
        let looked_at = Instant::now();
        let bytes = match read_stable(&self.files, &self.current, self.input.settle()).await {
            Ok(Some(b)) => b,
            // Still being written: nothing new applies; the next signal or tick looks again.
            Ok(None) => {
                let since = *self.changing_since.get_or_insert(looked_at);
                if since.elapsed() >= KEEPS_CHANGING {
                    tracing::warn!(input, changing_for = ?since.elapsed(),
                        "the file keeps changing and never stays the same for long enough; \
                         the version in force stays until it does");
                }
                return None;
            }
            Err(e) => {
                // Gone or unreadable: keep serving, and say so once per distinct error.
                let e = format!("cannot read: {e}");
                if self.read_error.as_ref() != Some(&e) {
                    tracing::error!(input, error = %e, "keeping the current version");
                    self.status.rejected(self.input, e.clone());
                    self.read_error = Some(e);
                }
                return None;
            }
        };
        self.changing_since = None;
        self.read_error = None;
        let retry_later = self
            .rejected
            .as_ref()
            .is_some_and(|(b, at)| *b == bytes && at.elapsed() < RETRY_REJECTED);
        (bytes != self.current && !retry_later).then_some(bytes)
    }

    /// Hands `bytes` to `apply` and records what became of them.
    async fn apply(&mut self, apply: &Arc<Apply>, bytes: Vec<u8>) {
        let (input, version) = (self.input, version_of(&bytes));
        // Parsing and validating is CPU work: off the async workers. A bug must not end
        // reloading for good: a panic counts as a rejection.
        let result = {
            let (apply, bytes) = (apply.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || apply(&bytes))
                .await
                .unwrap_or_else(|_| Err("internal error while applying it".into()))
        };
        match result {
            Ok(()) => {
                tracing::info!(input = input.as_str(), version, "reloaded");
                self.status.reloaded(input, version);
                self.current = bytes;
                self.rejected = None;
            }
            Err(e) => {
                tracing::error!(input = input.as_str(), version, error = %e,
                    "new version rejected; the current one keeps serving");
                self.status.rejected(input, e);
                self.rejected = Some((bytes, Instant::now()));
            }
        }
    }
}

/// How often a rejected version is tried again while it stays on disk.
const RETRY_REJECTED: Duration = Duration::from_secs(60);

/// How long a changed policy must stay the same before it is applied. A file written in place
/// can pause mid-write (an editor saving, `cat > file` from a slow pipe, a copy over NFS), and
/// the part written so far may be a valid policy without its last rules: pauses of over a second
/// have applied one. Two seconds is twice that, and costs nothing that matters: kubelet's
/// ConfigMap updates are atomic symlink swaps that settle at once and only wait this once, after
/// a sync delay of up to a minute.
const POLICY_SETTLE: Duration = Duration::from_secs(2);
/// The certificate and client CA settle faster: a half-written PEM does not parse, and a pair
/// that does not match or that the configured CA did not issue is refused anyway.
const FILE_SETTLE: Duration = Duration::from_secs(1);
/// How long one change signal waits for a file to settle before leaving it to the next.
const STABLE_WITHIN: Duration = Duration::from_secs(10);
/// A file still changing after this long is warned about at every look.
const KEEPS_CHANGING: Duration = Duration::from_secs(30);

const _: () = assert!(POLICY_SETTLE.as_millis() < STABLE_WITHIN.as_millis());

impl Input {
    /// How long a changed content must stay the same before it is applied.
    pub fn settle(self) -> Duration {
        match self {
            Input::Policy => POLICY_SETTLE,
            Input::Certificate | Input::ClientCa => FILE_SETTLE,
        }
    }
}

/// The files' content once it has stayed the same for `settle`; `None` while it keeps changing
/// (for up to [`STABLE_WITHIN`]). Content equal to `current` needs no wait: the periodic check
/// stays one read.
async fn read_stable(
    files: &[PathBuf],
    current: &[u8],
    settle: Duration,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut seen = read_all(files).await?;
    if seen == current {
        return Ok(Some(seen));
    }
    let started = Instant::now();
    let mut since = started;
    while since.elapsed() < settle {
        if started.elapsed() > STABLE_WITHIN {
            return Ok(None);
        }
        tokio::time::sleep(settle / 8).await;
        let now = read_all(files).await?;
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
    }
    Ok(Some(seen))
}

/// The content of `files`, concatenated.
pub async fn read_all(files: &[PathBuf]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(tokio::fs::read(f).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_never_shows_url_credentials() {
        let status = ReloadStatus::default();
        status.rejected(
            Input::Policy,
            "xnat.url \"https://svc:hunter2@x y\": invalid".into(),
        );
        let shown = status.get(Input::Policy).last_error.unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
