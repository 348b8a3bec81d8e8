//! What XNAT confirms beyond a user's project list, from the cache or from XNAT: a launch's
//! public projects and shared experiment, and where each mounted project keeps its files. Every
//! answer is shared by all users (cached per project or experiment for `cacheTtl`), and a failed
//! one is remembered ([`super::memory`]) so a refusing XNAT is not asked by every spawn.

use std::future::Future;
use std::sync::Arc;

use moka::future::Cache;
use tokio::time::Instant;

use super::{AccessCache, XnatCall, XnatError};
use crate::archive::{ProjectPlace, ProjectRoot, ProjectRoots, hidden};
use crate::sharing::{Asks, Confirmed, is_public};

impl AccessCache {
    /// What XNAT confirms of `asks`, before `deadline`, all asked at once. A question XNAT did
    /// not answer confirms nothing (and is not cached): the mount it was for is refused, never
    /// mounted on a guess, and the refusal says why.
    pub async fn confirm(&self, asks: &Asks, deadline: Instant) -> Confirmed {
        let client = self.client();
        let inner = &self.inner;
        let live = inner.live.load_full();
        let projects = asks.projects.iter().map(|p| {
            let (client, live) = (client.clone(), live.clone());
            async move {
                let ask = async {
                    let a = client.project_accessibility(p, deadline).await?;
                    Ok::<_, XnatError>(a.map(Arc::from))
                };
                let ask = inner.failures.ask(XnatCall::Accessibility, p, &live, ask);
                let answer = shared_answer(&inner.accessibility, p, ask).await;
                (p, answer)
            }
        });
        let experiment = async {
            let id = asks.experiment.as_ref()?;
            let ask = async {
                let e = client.experiment(id, deadline).await?;
                Ok::<_, XnatError>(e.map(Arc::new))
            };
            let ask = inner.failures.ask(XnatCall::Experiment, id, &live, ask);
            let answer = shared_answer(&inner.experiments, id, ask).await;
            Some(match answer {
                Ok(Some(e)) => Ok((*e).clone()),
                Ok(None) => Err(hidden("experiment", id)),
                Err(e) => {
                    tracing::warn!(experiment = %id, error = %e, "cannot ask XNAT about an experiment");
                    Err(format!(
                        "XNAT could not say where experiment {id} lives: {e}"
                    ))
                }
            })
        };
        let (projects, experiment) =
            tokio::join!(futures_util::future::join_all(projects), experiment);
        let mut confirmed = Confirmed::NONE;
        for (p, answer) in projects {
            match answer {
                Ok(Some(a)) if is_public(&a) => confirmed.public.push(p.clone()),
                Ok(Some(a)) => confirmed.unconfirmed.push((
                    p.clone(),
                    format!("XNAT calls project {p} {}", crate::echo::echo(&a)),
                )),
                Ok(None) => confirmed
                    .unconfirmed
                    .push((p.clone(), hidden("project", p))),
                Err(e) => {
                    tracing::warn!(project = %p, error = %e, "cannot ask XNAT whether a project is public");
                    confirmed.unconfirmed.push((
                        p.clone(),
                        format!("XNAT could not say whether project {p} is public: {e}"),
                    ));
                }
            }
        }
        match experiment {
            Some(Ok(e)) => confirmed.experiment = Some(e),
            Some(Err(why)) => confirmed.experiment_unconfirmed = Some(why),
            None => {}
        }
        confirmed
    }

    /// Where each of `projects` keeps its files and which arc is current, from the index, the
    /// cache or XNAT before `deadline`, all asked at once. A project XNAT cannot say for stands
    /// on its last good answer (younger than `staleIfError`), or is [`ProjectRoot::Unknown`]:
    /// never mounted on a guess.
    pub async fn project_roots(
        &self,
        projects: &[&str],
        site_archive: &str,
        deadline: Instant,
    ) -> ProjectRoots {
        let inner = &self.inner;
        // The warm path: cached specs, and only places that are not the site's kept (the
        // common case allocates nothing).
        let mut places = Vec::new();
        let mut misses = Vec::new();
        for &p in projects {
            let indexed = inner
                .index
                .as_ref()
                .and_then(|i| i.archive_spec(p, i.settings().max_age));
            let cached = match indexed {
                Some(spec) => Some(spec),
                None => inner.archive.get(p).await,
            };
            match cached {
                Some(spec) => {
                    places.extend(spec.place(p, site_archive).map(|at| (p.to_owned(), at)))
                }
                None => misses.push(p),
            }
        }
        if misses.is_empty() {
            return ProjectRoots::new(places);
        }
        let client = self.client();
        let live = inner.live.load_full();
        let asked = misses.into_iter().map(|p| {
            let (client, live) = (client.clone(), live.clone());
            async move {
                let ask = async {
                    let spec = Arc::new(client.archive_spec(p, deadline).await?);
                    if let Some(last) = &inner.last_archive {
                        last.insert(p.to_owned(), spec.clone()).await;
                    }
                    Ok::<_, XnatError>(spec)
                };
                let ask = inner.failures.ask(XnatCall::ArchiveSpec, p, &live, ask);
                let answer = shared_answer(&inner.archive, p, ask).await;
                let place = match answer {
                    Ok(spec) => spec.place(p, site_archive),
                    Err(e) => match self.last_archive_spec(p).await {
                        Some(spec) => spec.place(p, site_archive),
                        None => Some(ProjectPlace {
                            root: ProjectRoot::Unknown(format!("XNAT could not say: {e}")),
                            arc: None,
                        }),
                    },
                };
                place.map(|at| (p.to_owned(), at))
            }
        });
        places.extend(
            futures_util::future::join_all(asked)
                .await
                .into_iter()
                .flatten(),
        );
        ProjectRoots::new(places)
    }

    /// A project's last good archive spec: the cache's, or the index's while it may stand in.
    async fn last_archive_spec(&self, p: &str) -> Option<Arc<crate::archive::ArchiveSpec>> {
        let inner = &self.inner;
        if let Some(last) = &inner.last_archive
            && let Some(spec) = last.get(p).await
        {
            return Some(spec);
        }
        let index = inner.index.as_ref()?;
        index.archive_spec(p, index.settings().max_age + inner.stale_if_error)
    }
}

/// `key`'s answer from `cache`, else from `fetch`, cached. The API server's reviews share one
/// fetch per key (moka's coalescing). Another caller's review ([`super::client::is_other_caller`])
/// fetches on its own and only stores what it got: a fetch runs at the rank of the review that
/// started it, so a forged review must never start the one the API server's then waits for.
pub(super) async fn shared_answer<V, F>(
    cache: &Cache<String, V>,
    key: &str,
    fetch: F,
) -> Result<V, Arc<XnatError>>
where
    V: Clone + Send + Sync + 'static,
    F: Future<Output = Result<V, XnatError>>,
{
    if !super::client::is_other_caller() {
        return cache.try_get_with_by_ref(key, fetch).await;
    }
    if let Some(known) = cache.get(key).await {
        return Ok(known);
    }
    let answer = fetch.await.map_err(Arc::new)?;
    cache.insert(key.to_owned(), answer.clone()).await;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn another_callers_fetch_is_never_the_one_the_api_server_waits_for() {
        let cache: Cache<String, u32> = Cache::new(16);
        let (started, release) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
        // Another caller's fetch, slow…
        let other = super::super::client::as_other_caller(shared_answer(&cache, "P", async {
            started.notify_one();
            release.notified().await;
            Ok(1)
        }));
        // …and the API server's, for the same key, at once: it runs its own.
        let first = async {
            started.notified().await;
            let mine = shared_answer(&cache, "P", async { Ok(2) }).await;
            release.notify_one();
            mine
        };
        let (other, first) = tokio::join!(other, first);
        assert_eq!(first.unwrap(), 2, "not joined to the other caller's fetch");
        assert_eq!(other.unwrap(), 1);
    }
}
