//! What XNAT says a user may read, reduced to `(project, role)` pairs once per XNAT answer so the
//! admission path only filters by the policy's roles.
//!
//! Only XNAT's standard project groups count (`{ID}_owner`, `{ID}_member`,
//! `{ID}_collaborator`): a custom group's permissions are the site's own, and its id
//! (`{ID}_{name}`, `ProjectGroupResource`) can read as another project's standard group. The
//! project is taken from what XNAT names explicitly wherever it does (the access list's `ID`, the
//! project a member list belongs to); a bare group id is split at its last `_` only when that
//! cannot be read two ways.

use std::sync::Arc;

use serde::Deserialize;

use crate::names::is_valid_project_id;

/// The groups XNAT makes for every project, by the role after `{ID}_`: the only ones that grant
/// a mount.
pub const PROJECT_ROLES: [&str; 3] = ["owner", "member", "collaborator"];

/// One `{project}_{role}` group membership.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProjectGroup {
    pub project: String,
    pub role: String,
}

/// A user's project memberships as XNAT reported them, sorted; groups that are not standard
/// project groups, or whose project id is not mountable, are already dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserAccess {
    pub groups: Vec<ProjectGroup>,
    /// XNAT does not know the user (404): no projects, and worth a warning.
    pub unknown_user: bool,
    /// Group ids that looked like project groups but named an unmountable project id.
    pub rejected: Vec<String>,
    /// The XNAT login these answers are for, when XNAT has none equal to the name asked about
    /// and exactly one that differs from it only in case (JupyterHub lowercases names).
    pub login: Option<String>,
    /// XNAT logins that differ from the name asked about only in case, when there are several:
    /// none is used (`unknown_user` is set).
    pub ambiguous_logins: Vec<String>,
}

impl UserAccess {
    /// Reads the group ids of `GET /xapi/users/{user}/groups` (`["ALPHA_owner", "ALL_DATA_ACCESS"]`).
    ///
    /// A standard project group is `{projectId}_{role}`; project ids may contain `_`, so the
    /// role is what follows the last one, and the caller first asks [`is_ambiguous`] whether
    /// that split can be trusted. A group whose project part is not XNAT's id form (`..`, `/`,
    /// spaces) is never mounted, whatever XNAT says.
    pub fn from_group_ids<S: AsRef<str>>(ids: &[S]) -> Self {
        Self::from_pairs(ids.iter().filter_map(|id| {
            let (project, _) = id.as_ref().rsplit_once('_')?;
            Some((project, id.as_ref()))
        }))
    }

    /// Reads memberships whose project XNAT names: `(project, group id)` pairs. A group counts
    /// only when it is exactly `{project}_{role}` with a standard role.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut access = Self::default();
        for (project, id) in pairs {
            let role = id
                .strip_prefix(project)
                .and_then(|r| r.strip_prefix('_'))
                .and_then(|r| PROJECT_ROLES.into_iter().find(|s| *s == r));
            let Some(role) = role else {
                continue; // a site group, a custom group, another project's group
            };
            if !is_valid_project_id(project) {
                access.rejected.push(id.to_owned());
                continue;
            }
            access.groups.push(ProjectGroup {
                project: project.to_owned(),
                role: role.to_owned(),
            });
        }
        access.groups.sort();
        access.groups.dedup();
        access
    }

    /// Reads the admin access list (`GET /xapi/access/{user}/projects`): each row names its
    /// project (`ID`).
    pub fn from_access_list(entries: &[AccessEntry]) -> Self {
        let ids: Vec<(&str, String)> = entries.iter().filter_map(AccessEntry::group).collect();
        Self::from_pairs(ids.iter().map(|(p, g)| (*p, g.as_str())))
    }

    pub fn unknown() -> Self {
        Self {
            unknown_user: true,
            ..Self::default()
        }
    }

    /// The distinct projects in which the user holds one of `roles`, in sorted order.
    pub fn readable_projects<'a>(&'a self, roles: &[String]) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            if roles.contains(&g.role) && out.last() != Some(&g.project.as_str()) {
                out.push(&g.project);
            }
        }
        out
    }
}

/// Whether a group list holds an id that reads two ways: `ALPHA_PET_member` is project
/// `ALPHA_PET`'s members, or project `ALPHA`'s custom group `PET_member`. Only XNAT's access
/// list, which names each group's project, can say which.
pub fn is_ambiguous<S: AsRef<str>>(ids: &[S]) -> bool {
    ids.iter().any(|id| {
        id.as_ref()
            .rsplit_once('_')
            .is_some_and(|(project, role)| PROJECT_ROLES.contains(&role) && project.contains('_'))
    })
}

/// One entry of `GET /xapi/access/{user}/projects`. XNAT lists *every* group of the user (a
/// LEFT JOIN on the group's project): site groups such as `ALL_DATA_ACCESS` and `ALL_DATA_ADMIN`
/// come with `ID` null and are skipped — they grant no project mount.
#[derive(Debug, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    group_id: Option<String>,
}

impl AccessEntry {
    /// The row's project and group id; without a `group_id` (XNAT always writes one), the
    /// standard group its role's display name stands for (`Owners` → `{ID}_owner`).
    fn group(&self) -> Option<(&str, String)> {
        let id = self.id.as_deref()?;
        if let Some(g) = &self.group_id {
            return Some((id, g.clone()));
        }
        let role = match self.role.as_deref()? {
            "Owners" => "owner",
            "Members" => "member",
            "Collaborators" => "collaborator",
            _ => return None,
        };
        Some((id, format!("{id}_{role}")))
    }
}

/// What the admission path knows about a user's access for one review.
#[derive(Debug, Clone)]
pub enum AccessOutcome {
    /// XNAT answered (now or from the cache).
    Known(Arc<UserAccess>),
    /// XNAT could not be asked; an earlier answer `age` old stands in for it.
    Stale {
        access: Arc<UserAccess>,
        age: std::time::Duration,
        error: String,
    },
    /// XNAT could not be asked; the message says why (no credentials in it).
    Unavailable(String),
}

/// Where one review's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the cache, or from a request another review had already started.
    Hit,
    /// This review asked XNAT.
    Miss,
    /// XNAT failed; an older answer stood in.
    Stale,
    /// XNAT failed and nothing stood in.
    Error,
    /// From the access index: no XNAT call.
    Indexed,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Error => "error",
            CacheStatus::Indexed => "index",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_standard_project_groups_and_drops_the_rest() {
        let ids = [
            "BETA_member",
            "ALPHA_owner",
            "ALL_DATA_ACCESS",
            "ALPHA_member",
            "MY_PROJ_collaborator",
            "admin",
            "GAMMA_owner",
            "ALPHA_Analysts",
        ];
        let a = UserAccess::from_group_ids(&ids);
        let all = roles(&PROJECT_ROLES);
        assert_eq!(
            a.readable_projects(&all),
            ["ALPHA", "BETA", "GAMMA", "MY_PROJ"]
        );
        // ALL_DATA_ACCESS only looks like a group: its "role" is ACCESS, which is no role.
        assert_eq!(a.readable_projects(&roles(&["owner"])), ["ALPHA", "GAMMA"]);
        assert_eq!(a.readable_projects(&roles(&["collaborator"])), ["MY_PROJ"]);
        // A project id with `_` before a standard role reads two ways.
        assert!(is_ambiguous(&ids));
        assert!(!is_ambiguous(&[
            "ALPHA_owner",
            "ALL_DATA_ACCESS",
            "ALPHA_Analysts"
        ]));
    }

    #[test]
    fn never_keeps_an_unmountable_project_id() {
        let a = UserAccess::from_group_ids(&[
            "../etc_owner",
            "a/b_owner",
            "a b_member",
            "_owner",
            "A^B_owner",
            "OK_owner",
        ]);
        assert_eq!(a.readable_projects(&roles(&["owner", "member"])), ["OK"]);
        assert_eq!(a.rejected.len(), 5);
    }

    fn entry(id: &str, role: Option<&str>, group: Option<&str>) -> AccessEntry {
        AccessEntry {
            id: Some(id.into()),
            role: role.map(Into::into),
            group_id: group.map(Into::into),
        }
    }

    #[test]
    fn access_entries_name_their_project() {
        let a = UserAccess::from_access_list(&[
            entry("ALPHA", Some("Owners"), Some("ALPHA_owner")),
            entry("BETA", Some("Members"), None),
            // A group id that names another project is not trusted.
            entry("GAMMA", Some("Collaborators"), Some("DELTA_owner")),
            entry("EPS", Some("Custom"), None),
            // ALPHA's custom group `PET_member` is not project ALPHA_PET's members, nor ALPHA's.
            entry("ALPHA", Some("PET_member"), Some("ALPHA_PET_member")),
            // A custom group whose name is a standard display name is still a custom group.
            entry("ZETA", Some("Owners"), Some("ZETA_Owners")),
        ]);
        let all = roles(&PROJECT_ROLES);
        assert_eq!(a.readable_projects(&all), ["ALPHA", "BETA"]);
        assert_eq!(a.readable_projects(&roles(&["owner"])), ["ALPHA"]);
    }

    /// As XNAT writes the access list of an all-data user: site groups with `ID` null.
    #[test]
    fn site_groups_without_a_project_are_skipped() {
        let entries: Vec<AccessEntry> = serde_json::from_value(serde_json::json!([
            {"ID": null, "secondary_ID": null, "name": null, "description": null,
             "role": "ALL_DATA_ADMIN", "group_id": "ALL_DATA_ADMIN", "URI": null},
            {"ID": "ALPHA", "secondary_ID": "ALPHA", "name": "Alpha", "description": "",
             "role": "Owners", "group_id": "ALPHA_owner", "URI": "/data/projects/ALPHA"},
            {"role": "ALL_DATA_ACCESS", "group_id": "ALL_DATA_ACCESS"}
        ]))
        .unwrap();
        let a = UserAccess::from_access_list(&entries);
        assert_eq!(a.readable_projects(&roles(&PROJECT_ROLES)), ["ALPHA"]);
    }
}
