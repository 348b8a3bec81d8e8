//! The selection rule, once: which projects a pod gets, worked out before XNAT is asked more
//! than the user's project list. [`prepare`] works out the grant (readable, then mountable:
//! less `storage.neverMount`), translates a launch context (each mount accepted, pending
//! XNAT's word, or refused with its reason) or chooses the project list's projects (at most
//! `storage.maxProjectMounts`). [`Prepared::questions`] is what XNAT must then confirm,
//! [`Prepared::place`] renders the chosen projects' mounts from where XNAT keeps each and says
//! which optional directories to look at, and [`super::decide`] finishes with the answers:
//! nothing XNAT was not asked about can be mounted, because nothing else was chosen.

use super::Context;
use super::grant::Grant;
use super::launch::{self, LaunchGrant, Translated};
use super::plan::workspace_path;
use super::planned::{PlannedMount, render_mount, same_path};
use crate::access::AccessOutcome;
use crate::archive::{ProjectRoots, Seen};
use crate::launch::Launch;
use crate::policy::{Policy, Values};
use crate::sharing::{Asks, Confirmed};
use crate::warning::Warnings;

/// The decision's first half, for one review.
pub struct Prepared<'a> {
    pub(super) cx: Context<'a>,
    /// The grant, or the denial XNAT's failure mode calls for (`onError: deny`).
    pub(super) grant: Result<Grant<'a>, String>,
    /// What working out the grant said (an unknown user, a stale answer, never-mount).
    pub(super) warnings: Warnings,
    pub(super) selection: Selection<'a>,
}

/// Where the pod's data comes from.
pub(super) enum Selection<'a> {
    /// A launch context from XNAT's UI, translated.
    Launch(Box<Translated>),
    /// The user's project list.
    Projects(ProjectList<'a>),
}

pub(super) struct ProjectList<'a> {
    /// Why a stored launch context could not be used, when there was one.
    unreadable_launch: Option<&'a str>,
    /// The mountable projects mounted: at most `storage.maxProjectMounts`, in order.
    mounted: Vec<&'a str>,
    /// The mountable projects past the cap.
    left_out: Vec<&'a str>,
    /// Their mounts, rendered by [`Prepared::place`].
    placed: Option<Placed>,
}

/// The project list's mounts, rendered from where XNAT keeps each project.
struct Placed {
    /// Each mount, and whether the policy calls it optional.
    mounts: Vec<(PlannedMount, bool)>,
    /// What rendering said (a project whose files are elsewhere, a bad path).
    warnings: Warnings,
}

/// What XNAT must confirm before the decision, beyond the user's project list.
#[derive(Debug, Default, PartialEq)]
pub struct Questions<'p> {
    /// A launch's: the projects its pending mounts name, and the launched experiment.
    pub launch: Asks,
    /// The project list's projects whose archive path to ask (when the policy asks at all).
    pub archive_paths: &'p [&'p str],
}

/// Works out everything the decision can know before XNAT is asked more.
pub fn prepare<'a>(cx: &Context<'a>, policy: &'a Policy) -> Prepared<'a> {
    let mut warnings = Warnings::new();
    let grant = Grant::work_out(cx.access, cx.who.xnat_user, policy, &mut warnings);
    let mountable = grant.as_ref().map_or(&[][..], |g| &g.mountable[..]);
    let stored = match cx.launch {
        Launch::Stored(opts) if policy.user_options.enabled => Some(opts),
        _ => None,
    };
    let selection = match (stored, &grant) {
        (Some(opts), Ok(g)) => {
            let never_mounted = |p: &str| policy.storage.is_never_mounted(p);
            let launch_grant = LaunchGrant {
                readable: &g.readable,
                xnat_user: cx.who.xnat_user,
                server_name: cx.who.server_name,
                caller_verified: cx.caller_verified,
                workspace_path: workspace_path(policy, &cx.values("")),
                never_mounted: &never_mounted,
            };
            let translated = launch::translate(opts, &policy.user_options, &launch_grant);
            Selection::Launch(Box::new(translated))
        }
        _ => {
            let cap = policy.storage.max_project_mounts.unwrap_or(usize::MAX);
            let (mounted, left_out) = mountable.split_at(mountable.len().min(cap));
            Selection::Projects(ProjectList {
                unreadable_launch: match cx.launch {
                    Launch::Unreadable(why) if policy.user_options.enabled => Some(why),
                    _ => None,
                },
                mounted: mounted.to_vec(),
                left_out: left_out.to_vec(),
                placed: None,
            })
        }
    };
    Prepared {
        cx: *cx,
        grant,
        warnings,
        selection,
    }
}

impl<'a> Prepared<'a> {
    /// What XNAT must confirm before [`super::decide`].
    pub fn questions(&self, policy: &Policy) -> Questions<'_> {
        // XNAT could not say what the user may read: it is not asked more for this review.
        if matches!(self.cx.access, AccessOutcome::Unavailable(_)) {
            return Questions::default();
        }
        match &self.selection {
            Selection::Launch(t) => Questions {
                launch: t.questions(),
                ..Questions::default()
            },
            Selection::Projects(list) if policy.xnat.ask_project_archive_paths => Questions {
                archive_paths: &list.mounted,
                ..Questions::default()
            },
            Selection::Projects(_) => Questions::default(),
        }
    }

    /// Renders the project list's mounts from where XNAT keeps each project (`roots`, as asked
    /// for [`Questions::archive_paths`]); returns the (volume, subPath) of every optional one,
    /// which the webhook must look at before deciding.
    pub fn place(&mut self, roots: &ProjectRoots, policy: &Policy) -> Vec<(String, String)> {
        let Selection::Projects(list) = &mut self.selection else {
            return Vec::new();
        };
        let placed = render_projects(&list.mounted, roots, &self.cx.values(""), policy);
        let optional = placed
            .mounts
            .iter()
            .filter(|(_, optional)| *optional)
            .map(|(m, _)| (m.volume.clone(), m.sub_path.clone()))
            .collect();
        list.placed = Some(placed);
        optional
    }
}

impl Selection<'_> {
    /// The mounts of the selection, XNAT's answers in: a launch's (less what XNAT did not
    /// confirm), or the project list's; then the workspace. Also the launch's other changes.
    /// Consumed: the mounts rendered once move into the plan.
    pub(super) fn select(
        self,
        cx: &Context<'_>,
        mountable: &[&str],
        confirmed: &Confirmed,
        policy: &Policy,
        warnings: &mut Warnings,
    ) -> (Vec<PlannedMount>, Option<launch::LaunchPlan>) {
        let base = cx.values("");
        match self {
            Selection::Launch(t) => {
                let mounts = t.resolve(confirmed, mountable, warnings);
                let Translated {
                    plan,
                    warnings: said,
                    ..
                } = *t;
                warnings.append(&said);
                let mounts = launch_mounts(mounts, &base, policy, warnings);
                (mounts, Some(plan))
            }
            Selection::Projects(list) => {
                if let Some(why) = list.unreadable_launch {
                    warnings.push(format_args!(
                        "the launch context XNAT stored for this server could not be read \
                         ({why}); the projects you may read are mounted instead"
                    ));
                }
                (list.mounts(confirmed, &base, policy, warnings), None)
            }
        }
    }
}

/// Every mount of `projects`, from where XNAT keeps each.
fn render_projects(
    projects: &[&str],
    roots: &ProjectRoots,
    base: &Values<'_>,
    policy: &Policy,
) -> Placed {
    let mut warnings = Warnings::new();
    let mut mounts = Vec::with_capacity(projects.len() * policy.storage.projects.len());
    for project in projects {
        let values = Values {
            project: Some(project),
            arc: roots.arc(project),
            ..*base
        };
        let root = roots.get(project);
        mounts.extend(super::roots::project_mounts(
            root,
            &values,
            policy,
            &mut warnings,
        ));
    }
    Placed { mounts, warnings }
}

impl ProjectList<'_> {
    /// The read-only mounts of the projects mounted, less optional directories found missing
    /// or not seen, then the workspace.
    fn mounts(
        self,
        confirmed: &Confirmed,
        base: &Values<'_>,
        policy: &Policy,
        warnings: &mut Warnings,
    ) -> Vec<PlannedMount> {
        let storage = &policy.storage;
        if let Some(cap) = storage.max_project_mounts
            && !self.left_out.is_empty()
        {
            warnings.push(format_args!(
                "at most {cap} projects are mounted (storage.maxProjectMounts); left out: {}",
                self.left_out.join(", ")
            ));
        }
        let placed = match self.placed {
            Some(p) => p,
            None => render_projects(&self.mounted, &ProjectRoots::SITE, base, policy),
        };
        warnings.append(&placed.warnings);
        let mut out = Vec::with_capacity(placed.mounts.len() + 1);
        let (mut unseen, mut out_of_claim) = (Vec::new(), Vec::new());
        for (m, optional) in placed.mounts {
            let seen = confirmed.absent.get(&m.volume, &m.sub_path);
            match seen.filter(|_| optional) {
                // As XNAT's plugin: a directory that does not exist is not mounted.
                Some(Seen::Missing) => {}
                Some(Seen::Unseen) => unseen.push(m.mount_path),
                Some(Seen::OutOfClaim) => out_of_claim.push(m.mount_path),
                None => out.push(m),
            }
        }
        warn_left_out(&unseen, &out_of_claim, warnings);
        if let Some(ws) = &storage.workspace
            && let Some(w) = render_mount(ws, base, warnings)
        {
            if out.iter().any(|m| m.mount_path == w.mount_path) {
                warnings.push(format_args!(
                    "workspace mount path {} is taken by a project; workspace not mounted",
                    w.mount_path
                ));
            } else {
                out.push(w);
            }
        }
        out
    }
}

/// Says which optional directories were left out though they may exist.
fn warn_left_out(unseen: &[String], out_of_claim: &[String], warnings: &mut Warnings) {
    if !unseen.is_empty() {
        warnings.push(format_args!(
            "could not see whether {} optional project directories exist (storage.volumes[].seenAt); \
             left out: {}",
            unseen.len(),
            unseen.join(", ")
        ));
    }
    if !out_of_claim.is_empty() {
        warnings.push(format_args!(
            "{} optional project directories are reached through a symbolic link out of the claim \
             (kubelet would refuse the subPath); left out: {}",
            out_of_claim.len(),
            out_of_claim.join(", ")
        ));
    }
}

/// A launch's mounts, XNAT's answers in, capped like the project list (counting project
/// mounts), then the policy's workspace.
fn launch_mounts(
    mut mounts: Vec<PlannedMount>,
    base: &Values<'_>,
    policy: &Policy,
    warnings: &mut Warnings,
) -> Vec<PlannedMount> {
    let storage = &policy.storage;
    // The policy's workspace stays, as the chart's does (z2jh mounts it); a plugin mount at
    // its path gave way to it already.
    let workspace = storage
        .workspace
        .as_ref()
        .and_then(|ws| render_mount(ws, base, warnings));
    let mut kept = 0;
    let mut left_out = Vec::new();
    mounts.retain(|m| {
        if m.project.is_none() {
            return true;
        }
        kept += 1;
        if storage.max_project_mounts.is_some_and(|cap| kept > cap) {
            left_out.push(m.mount_path.clone());
            return false;
        }
        true
    });
    if let Some(cap) = storage.max_project_mounts
        && !left_out.is_empty()
    {
        warnings.push(format_args!(
            "at most {cap} project mounts (storage.maxProjectMounts); left out: {}",
            left_out.join(", ")
        ));
    }
    // Unless a launch mount already shows the same directory (a Swarm-style user mapping).
    if let Some(w) = workspace {
        let shown = mounts
            .iter()
            .any(|m| m.volume == w.volume && m.sub_path == w.sub_path);
        let taken = mounts
            .iter()
            .any(|m| same_path(&m.mount_path, &w.mount_path));
        if !shown && !taken {
            mounts.push(w);
        }
    }
    mounts
}
