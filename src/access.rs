//! What XNAT says a user may read, reduced to `(project, role)` pairs once per XNAT answer so the
//! admission path only filters by the policy's roles.

use std::sync::Arc;

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
}
