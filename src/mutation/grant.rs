//! What the user is granted, before any pod is looked at: the projects XNAT says they may read
//! and, of those, the ones the site mounts (not in its never-mount list), their memberships for
//! rule matching, and the rules that
//! match. XNAT's failure modes are decided here too: a stale answer or none at all, or a denial.

use crate::access::{AccessOutcome, ProjectGroup};
use crate::policy::{OnError, Policy, Rule};
use crate::warning::Warnings;

/// The user's grant for one review.
pub struct Grant<'a> {
    /// Project ids XNAT says the user may read (in one of `xnat.roles`), sorted.
    pub readable: Vec<&'a str>,
    /// Of those, the ones the site mounts (not in `storage.neverMount`).
    pub mountable: Vec<&'a str>,
    /// The policy's rules that match, in file order.
    pub rules: Vec<&'a Rule>,
}

impl<'a> Grant<'a> {
    /// Works out the grant, or `Err(message)` when the policy refuses pods XNAT could not vouch
    /// for (`onError: deny`).
    pub fn work_out(
        access: &'a AccessOutcome,
        xnat_user: &str,
        policy: &'a Policy,
        warnings: &mut Warnings,
    ) -> Result<Self, String> {
        let roles = &policy.xnat.roles;
        let (readable, groups): (Vec<&str>, &[ProjectGroup]) = match access {
            AccessOutcome::Known(a) => {
                if a.unknown_user && a.ambiguous_logins.is_empty() {
                    warnings.push(format_args!(
                        "XNAT has no user {xnat_user:?}; no project data attached"
                    ));
                } else if a.unknown_user {
                    warnings.push(format_args!(
                        "XNAT has no user {xnat_user:?}, and {} logins differ from it only in \
                         case ({}): none is used; no project data attached",
                        a.ambiguous_logins.len(),
                        a.ambiguous_logins.join(", ")
                    ));
                }
                (a.readable_projects(roles), &a.groups)
            }
            AccessOutcome::Stale { access, age, error } => {
                warnings.push(format_args!(
                    "XNAT could not be asked ({error}); using its answer from {}s ago",
                    age.as_secs()
                ));
                (access.readable_projects(roles), &access.groups)
            }
            AccessOutcome::Unavailable(why) => {
                if policy.xnat.on_error == OnError::Deny {
                    return Err(policy.xnat.deny_message.clone());
                }
                warnings.push(format_args!(
                    "XNAT could not be asked ({why}); started without project data"
                ));
                (Vec::new(), &[])
            }
        };
        let storage = &policy.storage;
        let denied: Vec<&str> = readable
            .iter()
            .copied()
            .filter(|p| storage.is_never_mounted(p))
            .collect();
        let mut mountable = readable.clone();
        if !denied.is_empty() {
            mountable.retain(|p| !storage.is_never_mounted(p));
            warnings.push(format_args!(
                "not mounted by site policy: {}",
                denied.join(", ")
            ));
        }
        let rules = policy
            .rules
            .iter()
            .filter(|r| rule_matches(r, groups, policy))
            .collect();
        Ok(Self {
            readable,
            mountable,
            rules,
        })
    }

    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }
}

/// A rule matches when the user holds one of its roles (default: any of `xnat.roles`) in one of
/// its projects (`*`: any), never counting projects the site never mounts.
fn rule_matches(rule: &Rule, groups: &[ProjectGroup], policy: &Policy) -> bool {
    groups.iter().any(|g| {
        let role_ok = if rule.roles.is_empty() {
            policy.xnat.roles.contains(&g.role)
        } else {
            rule.roles.contains(&g.role)
        };
        let project_ok = rule
            .projects
            .as_ref()
            .is_none_or(|ps| ps.contains(&g.project));
        role_ok && project_ok && !policy.storage.is_never_mounted(&g.project)
    })
}
