//! What XNAT says a user may read, reduced to `(project, role)` pairs once per XNAT answer so the
//! admission path only filters by the policy's roles.

use std::sync::Arc;

use serde::Deserialize;

use crate::names::{is_group_role, is_valid_project_id};

/// One `{project}_{role}` group membership.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProjectGroup {
    pub project: String,
    pub role: String,
}

/// A user's project memberships as XNAT reported them, sorted; group ids that are not project
/// groups, or whose project id is not mountable, are already dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserAccess {
    pub groups: Vec<ProjectGroup>,
    /// XNAT does not know the user (404): no projects, and worth a warning.
    pub unknown_user: bool,
    /// Group ids that looked like project groups but named an unmountable project id.
    pub rejected: Vec<String>,
}

impl UserAccess {
    /// Reads the group ids of `GET /xapi/users/{user}/groups` (`["ALPHA_owner", "ALL_DATA_ACCESS"]`).
    ///
    /// A project group is `{projectId}_{role}`; project ids may contain `_`, so the role is what
    /// follows the last one. A group whose project part is not XNAT's id form (`..`, `/`, spaces)
    /// is never mounted, whatever XNAT says.
    pub fn from_group_ids<S: AsRef<str>>(ids: &[S]) -> Self {
        let mut access = Self::default();
        for id in ids {
            let id = id.as_ref();
            let Some((project, role)) = id.rsplit_once('_') else {
                continue; // a site role or custom group, not a project group
            };
            if !is_group_role(role) {
                continue;
            }
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

    /// Reads the admin access list (`GET /xapi/access/{user}/projects`), through the same
    /// group-id rules as a group list.
    pub fn from_access_list(entries: &[AccessEntry]) -> Self {
        Self::from_group_ids(&group_ids_of(entries))
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

/// Group ids from the admin access list: `group_id` when it names the entry's project, else the
/// project id with the role's display name (`Owners` → `owner`).
fn group_ids_of(entries: &[AccessEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            let id = e.id.as_deref()?;
            // The group id counts only when it is exactly `{ID}_{role}` with no `_` in the role:
            // `ALPHA_BETA_owner` for project ALPHA is a custom group, not BETA's owners.
            if let Some(g) = &e.group_id
                && let Some(role) = g.strip_prefix(id).and_then(|r| r.strip_prefix('_'))
                && !role.is_empty()
                && !role.contains('_')
            {
                return Some(g.clone());
            }
            let role = match e.role.as_deref()?.to_ascii_lowercase().as_str() {
                "owners" | "owner" => "owner",
                "members" | "member" => "member",
                "collaborators" | "collaborator" => "collaborator",
                _ => return None,
            };
            Some(format!("{id}_{role}"))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_project_groups_and_drops_the_rest() {
        let a = UserAccess::from_group_ids(&[
            "BETA_member",
            "ALPHA_owner",
            "ALL_DATA_ACCESS",
            "ALPHA_member",
            "MY_PROJ_collaborator",
            "admin",
            "GAMMA_owner",
        ]);
        let all = roles(&["owner", "member", "collaborator"]);
        assert_eq!(
            a.readable_projects(&all),
            ["ALPHA", "BETA", "GAMMA", "MY_PROJ"]
        );
        // ALL_DATA_ACCESS only looks like a group: its "role" is ACCESS, which no policy grants.
        assert_eq!(a.readable_projects(&roles(&["owner"])), ["ALPHA", "GAMMA"]);
        assert_eq!(a.readable_projects(&roles(&["collaborator"])), ["MY_PROJ"]);
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
    fn access_entries_become_group_ids() {
        let ids = group_ids_of(&[
            entry("ALPHA", Some("Owners"), Some("ALPHA_owner")),
            entry("BETA", Some("Members"), None),
            // A group id that names another project is not trusted; the role still counts.
            entry("GAMMA", Some("Collaborators"), Some("DELTA_owner")),
            entry("EPS", Some("Custom"), None),
            // A custom group of ALPHA named like another project's owners is not that.
            entry("ALPHA", Some("Custom"), Some("ALPHA_BETA_owner")),
        ]);
        assert_eq!(ids, ["ALPHA_owner", "BETA_member", "GAMMA_collaborator"]);
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
        assert_eq!(group_ids_of(&entries), ["ALPHA_owner"]);
    }
}
