//! Whether a directory exists on a claim the webhook's own pod mounts read-only
//! (`storage.volumes[].seenAt`), for `optional` project mounts: XNAT's plugin mounts a project's
//! `arc001`, `resources` and `subjects` only when they exist, and kubelet would otherwise create
//! a missing one in XNAT's archive or, on a read-only volume, fail the pod.
//!
//! A `stat` on NFS can hang, so each runs on the blocking pool, at most [`MAX_LOOKS`] at once,
//! within the review's deadline. A directory that could not be looked at in time, or below a
//! `seenAt` that is not a directory (the claim is not mounted there), is [`Seen::Unseen`]: left
//! out with a warning, since mounting a missing one could fail the pod. Answers are kept for
//! [`FRESH_FOR`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::archive::{AbsentDirs, Seen};
use crate::policy::Storage;

/// How long an answer is reused: a directory XNAT creates (the first session of a project)
/// shows within this.
pub const FRESH_FOR: Duration = Duration::from_secs(60);
/// Most `stat`s in flight: a hung file system holds this many blocking threads, no more.
const MAX_LOOKS: usize = 16;

/// What one look found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Dir,
    /// Not there, or not a directory.
    Missing,
}

/// One blocking look: (the `seenAt` root, the path below it) → what is there.
pub type Look = dyn Fn(&Path, &Path) -> Found + Send + Sync;

/// Cached looks at the claims the webhook sees; cheap to clone.
#[derive(Clone)]
pub struct DirProbe {
    exists: Cache<PathBuf, bool>,
    looks: Arc<Semaphore>,
    look: Arc<Look>,
}

impl Default for DirProbe {
    fn default() -> Self {
        Self::with_look(on_disk)
    }
}

/// The product's look: a `stat` of the path.
fn on_disk(_root: &Path, path: &Path) -> Found {
    if path.is_dir() {
        Found::Dir
    } else {
        Found::Missing
    }
}

impl DirProbe {
    /// Looks made by `look` instead of the file system: how the tests make a path hang.
    pub fn with_look(look: impl Fn(&Path, &Path) -> Found + Send + Sync + 'static) -> Self {
        Self {
            exists: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FRESH_FOR)
                .build(),
            looks: Arc::new(Semaphore::new(MAX_LOOKS)),
            look: Arc::new(look),
        }
    }

    /// Which of `dirs` (volume, subPath) are known not to exist, looked at all at once.
    pub async fn absent(
        &self,
        dirs: Vec<(String, String)>,
        storage: &Storage,
        deadline: Instant,
    ) -> AbsentDirs {
        let looks = dirs.into_iter().filter_map(|(volume, sub_path)| {
            let seen_at = storage.volume(&volume)?.seen_at.as_ref()?;
            let path = seen_at.join(&sub_path);
            Some(async move {
                // A claim the webhook does not see at all (not mounted: a misconfigured pod, or
                // `review` on an admin's machine) cannot say which directories exist.
                let seen = if self.exists(seen_at, seen_at.clone(), deadline).await != Some(true) {
                    Some(Seen::Unseen)
                } else {
                    match self.exists(seen_at, path, deadline).await {
                        Some(true) => None,
                        Some(false) => Some(Seen::Missing),
                        None => Some(Seen::Unseen),
                    }
                };
                seen.map(|s| (volume, sub_path, s))
            })
        });
        let absent = futures_util::future::join_all(looks).await;
        AbsentDirs::new(absent.into_iter().flatten().collect())
    }

    /// Whether `path` is a directory; `None` when that could not be told in time.
    async fn exists(&self, root: &Path, path: PathBuf, deadline: Instant) -> Option<bool> {
        if let Some(known) = self.exists.get(&path).await {
            return Some(known);
        }
        let permit = tokio::time::timeout_at(deadline, self.looks.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let key = path.clone();
        let (look, root) = (self.look.clone(), root.to_owned());
        let look = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            look(&root, &path) == Found::Dir
        });
        match tokio::time::timeout_at(deadline, look).await {
            Ok(Ok(exists)) => {
                self.exists.insert(key, exists).await;
                Some(exists)
            }
            _ => {
                tracing::warn!(path = %key.display(), "could not tell in time whether a directory exists");
                None
            }
        }
    }
}
