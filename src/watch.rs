//! "Something may have changed" signals for mounted ConfigMaps and Secrets. Kubelet updates them
//! by swapping the directory's `..data` symlink, so the directory is watched (inotify through
//! `notify`), and a periodic tick covers what events miss (some volume types, lost events).
//! Consumers compare contents themselves; a signal is only a reason to look.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A stream of change signals for some directories.
pub struct Changes {
    events: mpsc::Receiver<()>,
    tick: tokio::time::Interval,
    // Dropping the watcher stops the events.
    _watcher: Option<RecommendedWatcher>,
}

impl Changes {
    /// Watches the directories holding `files`, and ticks every `every` regardless.
    pub fn new(files: &[&Path], every: Duration) -> Self {
        let (tx, events) = mpsc::channel(16);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Our own reads raise open/close events; only changes are worth a look.
            if let Ok(e) = &event
                && matches!(e.kind, notify::EventKind::Access(_))
            {
                return;
            }
            // Full means a signal is already pending; that is all a consumer needs.
            let _ = tx.try_send(());
        });
        let watcher = match watcher {
            Ok(mut w) => {
                for dir in dirs_of(files) {
                    if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), error = %e,
                            "cannot watch; relying on the periodic check");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no file watching; relying on the periodic check");
                None
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        Self {
            events,
            tick,
            _watcher: watcher,
        }
    }

    /// Waits for the next signal. Events arriving together (a symlink swap is several) are
    /// merged after a short pause.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.events.recv() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                while self.events.try_recv().is_ok() {}
            }
            _ = self.tick.tick() => {}
        }
    }
}

fn dirs_of(files: &[&Path]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}
