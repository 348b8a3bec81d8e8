//! Whether a directory exists on a claim the webhook's own pod mounts read-only
//! (`storage.volumes[].seenAt`), for `optional` project mounts: XNAT's plugin mounts a project's
//! `arc001`, `resources` and `subjects` only when they exist, and kubelet would otherwise create
//! a missing one in XNAT's archive or, on a read-only volume, fail the pod.
//!
//! A `stat` on NFS can hang, so each runs on the blocking pool, waited for at most
//! [`LOOK_LIMIT`] and within the review's deadline, in the slots of `slots.rs`: a hung subtree
//! neither holds them past that limit nor strands more than a few threads. A directory that could
//! not be looked at in time, or below a `seenAt` that is not a directory (the claim is not
//! mounted there), is [`Seen::Unseen`]: left out with a warning, since mounting a missing one
//! could fail the pod. Answers are kept for [`FRESH_FOR`]; a path whose look was given up is not
//! looked at again for as long, unless the stuck look returns first.

mod slots;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use tokio::time::Instant;

use crate::archive::{AbsentDirs, Seen};
use crate::policy::Storage;
use slots::Slots;

/// How long an answer is reused: a directory XNAT creates (the first session of a project)
/// shows within this. A path whose look hung is remembered as long.
pub const FRESH_FOR: Duration = Duration::from_secs(60);
/// How long one look is waited for. A `stat` on a healthy NFS mount answers in milliseconds, a
/// loaded one in a few hundred; past a second the server is not answering. A review makes two
/// looks in a row (the claim, then the directory), so at most 2 s of its XNAT budget (8 s at
/// most) go to a hung claim.
pub const LOOK_LIMIT: Duration = Duration::from_secs(1);

/// What one look found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Dir,
    /// Not there, or not a directory.
    Missing,
    /// Reached through a symbolic link whose target is outside the claim (at any component).
    OutOfClaim,
}

/// One blocking look: (the `seenAt` root, the path below it) → what is there.
pub type Look = dyn Fn(&Path, &Path) -> Found + Send + Sync;

/// Cached looks at the claims the webhook sees; cheap to clone.
#[derive(Clone)]
pub struct DirProbe {
    found: Cache<PathBuf, Found>,
    /// Paths whose look was given up: not looked at again while they stay here.
    hung: Cache<PathBuf, ()>,
    slots: Arc<Slots>,
    look: Arc<Look>,
}

impl Default for DirProbe {
    fn default() -> Self {
        Self::with_look(on_disk)
    }
}

fn cache<V: Clone + Send + Sync + 'static>() -> Cache<PathBuf, V> {
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(FRESH_FOR)
        .build()
}

/// The product's look: where the path really is, and whether it is a directory. Kubelet resolves
/// a subPath's symbolic links and refuses (fails the pod) one whose real place is outside the
/// volume, so a path that resolves outside the claim's real root is [`Found::OutOfClaim`].
fn on_disk(root: &Path, path: &Path) -> Found {
    let (Ok(root), Ok(real)) = (root.canonicalize(), path.canonicalize()) else {
        return Found::Missing;
    };
    if !real.starts_with(&root) {
        Found::OutOfClaim
    } else if real.is_dir() {
        Found::Dir
    } else {
        Found::Missing
    }
}

impl DirProbe {
    /// Looks made by `look` instead of the file system: how the tests make a path hang.
    pub fn with_look(look: impl Fn(&Path, &Path) -> Found + Send + Sync + 'static) -> Self {
        Self {
            found: cache(),
            hung: cache(),
            slots: Arc::new(Slots::default()),
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
                let seen = match self.found(seen_at, seen_at.clone(), deadline).await {
                    Some(Found::Dir) => match self.found(seen_at, path, deadline).await {
                        Some(Found::Dir) => None,
                        Some(Found::Missing) => Some(Seen::Missing),
                        Some(Found::OutOfClaim) => Some(Seen::OutOfClaim),
                        None => Some(Seen::Unseen),
                    },
                    _ => Some(Seen::Unseen),
                };
                seen.map(|s| (volume, sub_path, s))
            })
        });
        let absent = futures_util::future::join_all(looks).await;
        AbsentDirs::new(absent.into_iter().flatten().collect())
    }

    /// What is at `path` (below the claim seen at `root`); `None` when that could not be told in
    /// time. Reviews asking about the same path at once share one look.
    async fn found(&self, root: &Path, path: PathBuf, deadline: Instant) -> Option<Found> {
        if let Some(known) = self.found.get(&path).await {
            return Some(known);
        }
        if self.hung.contains_key(&path) {
            return None;
        }
        let look = self.look_now(root, path.clone(), deadline);
        tokio::time::timeout_at(deadline, self.found.optionally_get_with(path, look))
            .await
            .ok()
            .flatten()
    }

    /// One look, on the blocking pool, in its own task: a look given up is remembered, and its
    /// late answer kept, even when the review that asked is gone.
    async fn look_now(&self, root: &Path, path: PathBuf, deadline: Instant) -> Option<Found> {
        let (slot, thread) = self.slots.acquire(root, deadline).await?;
        let limit = deadline.min(Instant::now() + LOOK_LIMIT);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (look, hung, found) = (self.look.clone(), self.hung.clone(), self.found.clone());
        let root = root.to_owned();
        tokio::spawn(async move {
            let mut task = tokio::task::spawn_blocking({
                let path = path.clone();
                move || {
                    let _thread = thread;
                    look(&root, &path)
                }
            });
            if let Ok(result) = tokio::time::timeout_at(limit, &mut task).await {
                let _ = answer.send(result.ok());
                return;
            }
            drop(slot);
            tracing::warn!(path = %path.display(), "could not tell in time whether a directory exists");
            hung.insert(path.clone(), ()).await;
            let _ = answer.send(None);
            // Whatever it finds when the file system answers is the freshest answer there is.
            if let Ok(late) = task.await {
                found.insert(path.clone(), late).await;
            }
            hung.invalidate(&path).await;
        });
        answered.await.ok().flatten()
    }
}
