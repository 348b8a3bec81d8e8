//! The access index (`xnat.index`): every project membership of the site, read in the
//! background as a site Administrator — the project list (`GET /data/projects?format=json`),
//! then each project's members (`GET /data/projects/{ID}/users?format=json`) a few at a time —
//! so a spawn storm is answered from memory with no XNAT call on its critical path.
//!
//! - A user the index lists is answered from it while it is younger than `maxAge`; a user it
//!   does not list (a new account, or one in no project) is looked up per user, as without it.
//! - XNAT has no change marker for memberships, so each refresh reads every project's members
//!   again; what is incremental is the result: a user whose groups did not change keeps the
//!   same answer, and a project whose member list fails to read keeps its last one instead of
//!   failing the whole refresh — but that list is not trusted: its members are looked up per
//!   user (it only stands in when XNAT cannot be asked), so a membership removed meanwhile is
//!   not mounted.
//! - Revocation takes effect within one `refreshInterval` plus the time a refresh takes.
//! - Each membership is read with the project it is listed under: a custom group
//!   `ALPHA_PET_member` of project ALPHA is never project `ALPHA_PET`'s.

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
    /// This refresh could not read the list: it is the last one read, and not trusted.
    kept: bool,
}

/// One reading of the site.
struct Snapshot {
    users: HashMap<String, Arc<UserAccess>>,
    /// Users in a project whose member list this reading could not read, with when the oldest
    /// such list was read: they are looked up per user.
    unconfirmed: HashMap<String, Instant>,
    projects: HashMap<String, ProjectMembers>,
    /// Each project's archive spec and when it was read (a spec that failed to read keeps the
    /// last one, and its age).
    archive: HashMap<String, (Arc<ArchiveSpec>, Instant)>,
    read_at: Instant,
    /// Projects whose member lists this reading could not read, and why (the first).
    failed: Option<(usize, String)>,
    /// A project's members were never read (its list failed, and no earlier reading has it):
    /// nobody's answer can be complete, so every user is looked up per user.
    incomplete: bool,
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
        if let Some(read_at) = snap.unconfirmed.get(login) {
            return Indexed::TooOld {
                access: access.clone(),
                age: read_at.elapsed(),
            };
        }
        if snap.incomplete {
            return Indexed::TooOld {
                access: access.clone(),
                age: snap.read_at.elapsed(),
            };
        }
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

    /// Every login the index lists.
    pub fn logins(&self) -> Vec<String> {
        let guard = self.current.load();
        guard
            .as_ref()
            .map(|s| s.users.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A project's archive spec as a refresh read it, while that was no longer than `max_age`
    /// ago (`maxAge` to answer, `maxAge` + `staleIfError` to stand in for XNAT).
    pub fn archive_spec(&self, project: &str, max_age: Duration) -> Option<Arc<ArchiveSpec>> {
        let guard = self.current.load();
        let (spec, read_at) = guard.as_ref()?.archive.get(project)?;
        (read_at.elapsed() <= max_age).then(|| spec.clone())
    }

    /// Reads the site again and puts the result in use (`true`: every member list was read);
    /// on failure the index in use stays.
    pub async fn refresh(&self, client: &XnatClient) -> Result<bool, XnatError> {
        let started = Instant::now();
        let result = self.read(client).await;
        match &result {
            Ok(snap) => {
                tracing::info!(
                    users = snap.users.len(),
                    projects = snap.projects.len(),
                    unread = snap.failed.as_ref().map_or(0, |f| f.0),
                    took_ms = started.elapsed().as_millis() as u64,
                    "access index refreshed"
                );
                crate::metrics::index_in_use(
                    snap.users.len(),
                    snap.projects.len(),
                    SystemTime::now(),
                );
                *lock(&self.last_error) = snap.failed.as_ref().map(|(n, first)| {
                    let e = format!(
                        "{n} member list(s) could not be read; their members are looked up per \
                         user ({first})"
                    );
                    tracing::warn!(error = %e, "access index refreshed in part");
                    (Instant::now(), e)
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "access index refresh failed; the one in use stays");
                *lock(&self.last_error) = Some((Instant::now(), e.to_string()));
            }
        }
        crate::metrics::index_refresh(match &result {
            Ok(snap) if snap.failed.is_some() => "partial",
            Ok(_) => "success",
            Err(_) => "failure",
        });
        result.map(|snap| {
            let whole = snap.failed.is_none();
            self.current.store(Some(Arc::new(snap)));
            whole
        })
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
        let mut failed: Option<(usize, String)> = None;
        let mut incomplete = false;
        for (id, members, spec) in reads {
            let members = match members {
                Ok(Some(rows)) => ProjectMembers {
                    members: member_pairs(&id, rows).into(),
                    read_at: now,
                    kept: false,
                },
                Ok(None) => continue, // deleted since it was listed
                Err(e) => {
                    let f = failed.get_or_insert_with(|| (0, format!("project {id}: {e}")));
                    f.0 += 1;
                    match prev.as_ref().and_then(|p| p.projects.get(&id)) {
                        Some(last) => ProjectMembers {
                            kept: true,
                            ..last.clone()
                        },
                        // Never read: its members are unknown, so no user's answer is complete
                        // (a listed user may be one of them). The reading still applies what
                        // it did read (revocations), for per-user lookups to fall back on.
                        None if prev.is_some() => {
                            incomplete = true;
                            continue;
                        }
                        None => return Err(e),
                    }
                }
            };
            match spec {
                Some(Ok(spec)) => {
                    archive.insert(id.clone(), (Arc::new(spec), now));
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
        let (users, unconfirmed) = users_of(&projects, prev.as_deref());
        Ok(Snapshot {
            users,
            unconfirmed,
            projects,
            archive,
            read_at: now,
            failed,
            incomplete,
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

/// Every listed user's access, each membership read with the project it is listed under; a
/// user whose groups did not change keeps the answer of the previous reading. Users in a kept
/// (unread) list come back apart, with when that list was read.
fn users_of(
    projects: &HashMap<String, ProjectMembers>,
    prev: Option<&Snapshot>,
) -> (HashMap<String, Arc<UserAccess>>, HashMap<String, Instant>) {
    let mut groups: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    let mut unconfirmed: HashMap<String, Instant> = HashMap::new();
    for (project, p) in projects {
        for (login, group) in p.members.iter() {
            groups.entry(login).or_default().push((project, group));
            if p.kept {
                let at = unconfirmed.entry(login.clone()).or_insert(p.read_at);
                *at = (*at).min(p.read_at);
            }
        }
    }
    let users = groups
        .into_iter()
        .map(|(login, pairs)| {
            let access = UserAccess::from_pairs(pairs);
            let kept = prev
                .and_then(|p| p.users.get(login))
                .filter(|old| ***old == access)
                .cloned();
            (login.to_owned(), kept.unwrap_or_else(|| Arc::new(access)))
        })
        .collect();
    (users, unconfirmed)
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
            kept: false,
        };
        let projects = HashMap::from([
            (
                "ALPHA".to_owned(),
                project(&[("alice", "ALPHA_owner"), ("bob", "ALPHA_member")]),
            ),
            ("BETA".to_owned(), project(&[("alice", "BETA_member")])),
        ]);
        let (users, unconfirmed) = users_of(&projects, None);
        let roles: Vec<String> = vec!["owner".into(), "member".into()];
        assert_eq!(users["alice"].readable_projects(&roles), ["ALPHA", "BETA"]);
        assert_eq!(users["bob"].readable_projects(&roles), ["ALPHA"]);
        assert!(unconfirmed.is_empty());
        let prev = Snapshot {
            users,
            unconfirmed,
            projects: HashMap::new(),
            archive: HashMap::new(),
            read_at: at,
            failed: None,
            incomplete: false,
        };
        let mut projects = projects;
        projects.insert("BETA".into(), project(&[]));
        let (users, _) = users_of(&projects, Some(&prev));
        assert!(Arc::ptr_eq(&users["bob"], &prev.users["bob"]));
        assert!(!Arc::ptr_eq(&users["alice"], &prev.users["alice"]));
        assert_eq!(users["alice"].readable_projects(&roles), ["ALPHA"]);
    }

    /// Project ALPHA's custom group `PET_member` (`ALPHA_PET_member`) is listed under ALPHA:
    /// it is neither project ALPHA_PET's members nor a role in ALPHA.
    #[test]
    fn a_membership_is_read_with_the_project_it_is_listed_under() {
        let rows = rows(json!([
            {"GROUP_ID": "ALPHA_PET_member", "displayname": "PET_member", "login": "mallory"},
            {"GROUP_ID": "ALPHA_member", "displayname": "Members", "login": "bob"},
        ]));
        let projects = HashMap::from([(
            "ALPHA".to_owned(),
            ProjectMembers {
                members: member_pairs("ALPHA", rows).into(),
                read_at: Instant::now(),
                kept: true,
            },
        )]);
        let (users, unconfirmed) = users_of(&projects, None);
        let roles: Vec<String> = crate::access::PROJECT_ROLES.map(String::from).to_vec();
        assert!(users["mallory"].readable_projects(&roles).is_empty());
        assert_eq!(users["bob"].readable_projects(&roles), ["ALPHA"]);
        // The list was kept from an earlier reading: its members are not answered from it.
        assert!(unconfirmed.contains_key("bob") && unconfirmed.contains_key("mallory"));
    }
}
