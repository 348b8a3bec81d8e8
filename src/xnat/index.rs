//! The access index (`xnat.index`): every project membership of the site, read in the
//! background as a site Administrator — the project list (`GET /data/projects?format=json`),
//! then each project's members (`GET /data/projects/{ID}/users?format=json`) a few at a time —
//! so a spawn storm is answered from memory with no XNAT call on its critical path.
//!
//! - A user the index lists is answered from it while it is younger than `maxAge`; a user it
//!   does not list (a new account, or one in no project) is looked up per user, as without it.
//! - XNAT has no change marker for memberships, so each refresh reads every project's members
//!   again; what is incremental is the result: a user whose groups did not change keeps the
//!   same answer, and a project that fails to read keeps its last list (younger than `maxAge`)
//!   instead of failing the whole refresh.
//! - Revocation takes effect within one `refreshInterval` plus the time a refresh takes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{XnatClient, XnatError};
use crate::access::UserAccess;
use crate::archive::ArchiveSpec;
use crate::policy::IndexSettings;

/// What the index says of one user.
pub enum Indexed {
    /// Listed, and the index is younger than `maxAge`.
    Fresh(Arc<UserAccess>),
    /// Listed, but the index is older than `maxAge`: only a stand-in when XNAT cannot be asked.
    TooOld {
        access: Arc<UserAccess>,
        age: Duration,
    },
    /// Not listed, or no index yet.
    Unlisted,
}

/// One project's members as last read, and when.
#[derive(Clone)]
struct ProjectMembers {
    /// `(login, group id)`, sorted.
    members: Arc<[(String, String)]>,
    read_at: Instant,
}

/// One reading of the site.
struct Snapshot {
    users: HashMap<String, Arc<UserAccess>>,
    projects: HashMap<String, ProjectMembers>,
    archive: HashMap<String, Arc<ArchiveSpec>>,
    read_at: Instant,
}

/// The index in use, and how its refreshes go.
pub struct AccessIndex {
    settings: IndexSettings,
    ask_archive: bool,
    current: ArcSwapOption<Snapshot>,
    last_error: Mutex<Option<(Instant, String)>>,
}

impl AccessIndex {
    pub fn new(settings: IndexSettings, ask_archive: bool) -> Self {
        Self {
            settings,
            ask_archive,
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    pub fn user(&self, login: &str) -> Indexed {
        let guard = self.current.load();
        let Some(snap) = guard.as_ref() else {
            return Indexed::Unlisted;
        };
        let Some(access) = snap.users.get(login) else {
            return Indexed::Unlisted;
        };
        let age = snap.read_at.elapsed();
        if age <= self.settings.max_age {
            Indexed::Fresh(access.clone())
        } else {
            Indexed::TooOld {
                access: access.clone(),
                age,
            }
        }
    }

    /// A project's archive spec as the last refresh read it, while the index is younger than
    /// `max_age` (`maxAge` to answer, `maxAge` + `staleIfError` to stand in for XNAT).
    pub fn archive_spec(&self, project: &str, max_age: Duration) -> Option<Arc<ArchiveSpec>> {
        let guard = self.current.load();
        let snap = guard.as_ref()?;
        if snap.read_at.elapsed() > max_age {
            return None;
        }
        snap.archive.get(project).cloned()
    }

    /// Reads the site again and puts the result in use; on failure the index in use stays.
    pub async fn refresh(&self, client: &XnatClient) -> Result<(), XnatError> {
        let started = Instant::now();
        let result = self.read(client).await;
        match &result {
            Ok(snap) => {
                tracing::info!(
                    users = snap.users.len(),
                    projects = snap.projects.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "access index refreshed"
                );
                crate::metrics::index_in_use(
                    snap.users.len(),
                    snap.projects.len(),
                    SystemTime::now(),
                );
                *lock(&self.last_error) = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "access index refresh failed; the one in use stays");
                *lock(&self.last_error) = Some((Instant::now(), e.to_string()));
            }
        }
        crate::metrics::index_refresh(result.is_ok());
        result.map(|snap| self.current.store(Some(Arc::new(snap))))
    }

    async fn read(&self, client: &XnatClient) -> Result<Snapshot, XnatError> {
        let call = || Instant::now() + crate::timeouts::MAX_XNAT_BUDGET;
        let ids = client.project_ids(call()).await?;
        let prev = self.current.load_full();
        let reads = futures_util::stream::iter(ids)
            .map(|id| async move {
                let members = client.project_members(&id, call()).await;
                let spec = match self.ask_archive {
                    true => Some(client.archive_spec(&id, call()).await),
                    false => None,
                };
                (id, members, spec)
            })
            .buffer_unordered(self.settings.concurrency);
        let reads: Vec<_> = reads.collect().await;
        let now = Instant::now();
        let mut projects = HashMap::with_capacity(reads.len());
        let mut archive = HashMap::new();
        for (id, members, spec) in reads {
            let members = match members {
                Ok(Some(rows)) => ProjectMembers {
                    members: member_pairs(&id, rows).into(),
                    read_at: now,
                },
                Ok(None) => continue, // deleted since it was listed
                Err(e) => match prev.as_ref().and_then(|p| p.projects.get(&id)) {
                    Some(last) if last.read_at.elapsed() <= self.settings.max_age => last.clone(),
                    _ => return Err(e),
                },
            };
            match spec {
                Some(Ok(spec)) => {
                    archive.insert(id.clone(), Arc::new(spec));
                }
                Some(Err(_)) => {
                    if let Some(last) = prev.as_ref().and_then(|p| p.archive.get(&id)) {
                        archive.insert(id.clone(), last.clone());
                    }
                }
                None => {}
            }
            projects.insert(id, members);
        }
        let users = users_of(&projects, prev.as_deref());
        Ok(Snapshot {
            users,
            projects,
            archive,
            read_at: now,
        })
    }

    /// For `/readyz`: whether the index is on, its age and size, and the last refresh error.
    pub fn status(&self) -> Value {
        let guard = self.current.load();
        let mut v = match guard.as_ref() {
            Some(s) => json!({
                "ageSeconds": s.read_at.elapsed().as_secs(),
                "users": s.users.len(),
                "projects": s.projects.len(),
                "fresh": s.read_at.elapsed() <= self.settings.max_age,
            }),
            None => json!({"ageSeconds": null, "users": 0, "projects": 0, "fresh": false}),
        };
        if let Some((at, e)) = lock(&self.last_error).as_ref() {
            v["error"] = json!({"message": e, "secondsAgo": at.elapsed().as_secs()});
        }
        v
    }
}

/// A project's member rows as `(login, group id)`, sorted; a row without a login, or whose
/// group is not this project's, is skipped (XNAT lists only the project's own groups).
fn member_pairs(project: &str, rows: Vec<super::client::MemberRow>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = rows
        .into_iter()
        .filter_map(|r| {
            let (login, group) = (r.login?, r.group_id?);
            let own = group
                .strip_prefix(project)
                .is_some_and(|rest| rest.starts_with('_'));
            (own && crate::names::is_safe_segment(&login)).then_some((login, group))
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// Every listed user's access, through the same group-id rules as a per-user lookup; a user
/// whose groups did not change keeps the answer of the previous reading.
fn users_of(
    projects: &HashMap<String, ProjectMembers>,
    prev: Option<&Snapshot>,
) -> HashMap<String, Arc<UserAccess>> {
    let mut groups: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in projects.values() {
        for (login, group) in p.members.iter() {
            groups.entry(login).or_default().push(group);
        }
    }
    groups
        .into_iter()
        .map(|(login, ids)| {
            let access = UserAccess::from_group_ids(&ids);
            let kept = prev
                .and_then(|p| p.users.get(login))
                .filter(|old| ***old == access)
                .cloned();
            (login.to_owned(), kept.unwrap_or_else(|| Arc::new(access)))
        })
        .collect()
}

/// The index of the cache in use, for `/readyz` (process-wide, like [`super::health`]: the
/// cache is rebuilt when the policy changes XNAT, and `/readyz` has no handle on it).
static IN_USE: Mutex<std::sync::Weak<AccessIndex>> = Mutex::new(std::sync::Weak::new());

/// Marks `index` as the one `/readyz` reports.
pub fn in_use(index: &Arc<AccessIndex>) {
    *lock(&IN_USE) = Arc::downgrade(index);
}

/// The index in use for `/readyz`: `null` when it is off.
pub fn snapshot() -> Value {
    lock(&IN_USE).upgrade().map_or(Value::Null, |i| i.status())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xnat::client::MemberRow;

    fn rows(v: Value) -> Vec<MemberRow> {
        serde_json::from_value(v).unwrap()
    }

    /// Rows as `ProjectUserListResource` writes them; `login` null for a row XNAT could not
    /// join to a user.
    #[test]
    fn member_rows_keep_the_projects_own_groups() {
        let pairs = member_pairs(
            "ALPHA",
            rows(json!([
                {"GROUP_ID": "ALPHA_owner", "displayname": "Owners", "login": "alice",
                 "firstname": "Alice", "lastname": "A", "email": "a@x"},
                {"GROUP_ID": "ALPHA_member", "displayname": "Members", "login": "dave_o'neil"},
                {"GROUP_ID": "ALPHABET_owner", "login": "mallory"},
                {"GROUP_ID": "ALPHA_member", "login": null},
                {"GROUP_ID": "ALPHA_member", "login": "../x"},
                {"login": "bob"}
            ])),
        );
        assert_eq!(
            pairs,
            [
                ("alice".into(), "ALPHA_owner".into()),
                ("dave_o'neil".into(), "ALPHA_member".into())
            ]
        );
    }

    #[test]
    fn users_get_every_project_and_unchanged_ones_keep_their_answer() {
        let at = Instant::now();
        let project = |pairs: &[(&str, &str)]| ProjectMembers {
            members: pairs
                .iter()
                .map(|(l, g)| (l.to_string(), g.to_string()))
                .collect(),
            read_at: at,
        };
        let projects = HashMap::from([
            (
                "ALPHA".to_owned(),
                project(&[("alice", "ALPHA_owner"), ("bob", "ALPHA_member")]),
            ),
            ("BETA".to_owned(), project(&[("alice", "BETA_member")])),
        ]);
        let users = users_of(&projects, None);
        let roles: Vec<String> = vec!["owner".into(), "member".into()];
        assert_eq!(users["alice"].readable_projects(&roles), ["ALPHA", "BETA"]);
        assert_eq!(users["bob"].readable_projects(&roles), ["ALPHA"]);
        let prev = Snapshot {
            users,
            projects: HashMap::new(),
            archive: HashMap::new(),
            read_at: at,
        };
        let mut projects = projects;
        projects.insert("BETA".into(), project(&[]));
        let users = users_of(&projects, Some(&prev));
        assert!(Arc::ptr_eq(&users["bob"], &prev.users["bob"]));
        assert!(!Arc::ptr_eq(&users["alice"], &prev.users["alice"]));
        assert_eq!(users["alice"].readable_projects(&roles), ["ALPHA"]);
    }
}
