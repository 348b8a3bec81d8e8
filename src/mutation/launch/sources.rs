//! Where a launch's mounts come from: each stored source translated through the policy's path
//! mappings into a volume and subPath, and checked against what the user may read — or what XNAT
//! confirmed beyond that (a public project, the launched experiment shared into a readable
//! project, the launch's own shared-data directory).

use serde_json::Value;

use super::LaunchGrant;
use crate::echo::echo;
use crate::launch::{LaunchMount, UserOptions};
use crate::mutation::planned::{PlannedMount, same_path};
use crate::names::{check_abs_path, is_safe_segment, is_valid_project_id};
use crate::policy::{MountScope, SourcePath, UserOptionsPolicy};
use crate::sharing::{Asks, Confirmed};
use crate::warning::Warnings;

/// Most stored mounts read (a real launch has a handful; a stored search one per project).
pub const MAX_LAUNCH_MOUNTS: usize = 1024;

/// The plugin's directory of a project's shared-in data: `{archive}/` this, then
/// `jupyter-notebooks/{eventTrackingId}` (hard links or copies XNAT makes of what the user may
/// read, removed when the server stops).
pub const SHARED_DATA_DIR: &str = "SHARED.PROJECT.DATA.STORAGE.DIRECTORY";

/// Most projects asked about for one launch: a stored search names every readable project, so
/// the ones the user cannot read are the public ones, and few.
pub const MAX_ASKED_PROJECTS: usize = 16;

/// One stored mount, translated before XNAT is asked anything beyond the user's projects.
#[derive(Debug, Clone, PartialEq)]
pub enum MountOutcome {
    /// Mounted as it is (the user may read it, or it is their own space).
    Accepted(PlannedMount),
    /// Mounted once XNAT confirms its project: public, or (for the launched experiment's own
    /// directory) the experiment shared into a project the user may read.
    Pending(Pending),
    /// Refused, or a note on the stored list: the warning that says so.
    Refused(String),
}

/// A mount of a project the user may not read, waiting for XNAT's word.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    mount: PlannedMount,
    project: String,
    /// Below an arc directory (`{project}/arc001/…`): the experiment's word may count.
    in_arc: bool,
    /// The directory in the arc (an experiment's label), when there is one.
    entry: Option<String>,
    source: String,
    target: String,
}

/// Translates every stored mount (the first [`MAX_LAUNCH_MOUNTS`]) once: accepted, pending a
/// question to XNAT, or refused with its reason.
pub(super) fn translate_all(
    stored: &[Value],
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
) -> Vec<MountOutcome> {
    let mut out = Vec::new();
    if stored.len() > MAX_LAUNCH_MOUNTS {
        out.push(MountOutcome::Refused(format!(
            "the launch context has {} mounts; only the first {MAX_LAUNCH_MOUNTS} are read",
            stored.len()
        )));
    }
    for v in stored.iter().take(MAX_LAUNCH_MOUNTS) {
        let m = match LaunchMount::read(v) {
            Ok(m) => m,
            Err(why) => {
                let shown = v.to_string();
                let why = format!("launch mount {} refused: {why}", echo(&shown));
                out.push(MountOutcome::Refused(why));
                continue;
            }
        };
        if let Some(ws) = &grant.workspace_path
            && same_path(ws, &m.target)
        {
            continue;
        }
        out.push(match translate(&m, opts, policy, grant) {
            Ok(outcome) => outcome,
            Err(why) => MountOutcome::Refused(refusal(&m.source, &m.target, &why)),
        });
    }
    out
}

fn refusal(source: &str, target: &str, why: &str) -> String {
    format!("launch mount {source:?} → {target:?} refused: {why}")
}

/// What XNAT must confirm before the pending mounts could be mounted: their projects (at most
/// [`MAX_ASKED_PROJECTS`]), and the launched experiment when a mount is in an arc directory of
/// one of them.
pub(super) fn questions(outcomes: &[MountOutcome], experiment: Option<&str>) -> Asks {
    let mut asks = Asks::default();
    let mut experiment_dir = false;
    for p in outcomes.iter().filter_map(|o| match o {
        MountOutcome::Pending(p) => Some(p),
        _ => None,
    }) {
        experiment_dir |= p.in_arc && p.entry.is_some();
        if !asks.projects.contains(&p.project) && asks.projects.len() < MAX_ASKED_PROJECTS {
            asks.projects.push(p.project.clone());
        }
    }
    if experiment_dir {
        asks.experiment = experiment.map(str::to_owned);
    }
    asks
}

/// The launched experiment, when the launch is of one and its id can be asked about.
pub(super) fn launched_experiment(opts: &UserOptions) -> Option<String> {
    let item = opts.item_id.as_deref().unwrap_or_default();
    (is_experiment_launch(opts) && is_valid_project_id(item)).then(|| item.to_owned())
}

/// The mounts to make once XNAT has answered, each pending one by what XNAT confirmed; every
/// refusal (and a mount path listed twice) said, in the stored order.
pub(super) fn resolve(
    outcomes: &[MountOutcome],
    confirmed: &Confirmed,
    readable: &[&str],
    warnings: &mut Warnings,
) -> Vec<PlannedMount> {
    let mut out: Vec<PlannedMount> = Vec::new();
    for o in outcomes {
        let m = match o {
            MountOutcome::Refused(why) => {
                warnings.push(why);
                continue;
            }
            MountOutcome::Accepted(m) => m,
            MountOutcome::Pending(p) => match confirmed_elsewhere(p, confirmed, readable) {
                Ok(()) => &p.mount,
                Err(why) => {
                    warnings.push(refusal(&p.source, &p.target, &why));
                    continue;
                }
            },
        };
        if out.iter().any(|o| o.mount_path == m.mount_path) {
            warnings.push(format_args!("launch mount {} listed twice", m.mount_path));
        } else {
            out.push(m.clone());
        }
    }
    out
}

/// The plugin stores every experiment type as `xnat:experimentData` (dashboards may send the
/// specific type, e.g. `xnat:mrSessionData`).
fn is_experiment_launch(opts: &UserOptions) -> bool {
    let t = opts.xsi_type.as_deref().unwrap_or_default();
    t == "xnat:experimentData" || t.ends_with("SessionData")
}

fn translate(
    m: &LaunchMount,
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
) -> Result<MountOutcome, String> {
    let target = m.target.trim_end_matches('/');
    if check_abs_path(target).is_err() {
        return Err("target is not an absolute path without `.`/`..` segments".into());
    }
    let source = SourcePath::parse(&m.source);
    if let Some(bad) = source.segments.iter().find(|s| !is_safe_segment(s)) {
        return Err(format!("path segment {bad:?} is not safe"));
    }
    let (mapping, rest) = policy
        .mapping_for(&source)
        .ok_or("source is outside every userOptions.pathMappings prefix")?;
    let first = *rest
        .first()
        .ok_or("source is a mapping's root, not a project's or user's directory")?;
    let mut pending = None;
    let (read_only, project) = match mapping.scope {
        MountScope::Project if first == SHARED_DATA_DIR => {
            let project = shared_data(&rest, opts, grant, policy.trust_plugin)?;
            if (grant.never_mounted)(&project) {
                return Err(NEVER_MOUNTED.into());
            }
            (true, Some(project))
        }
        MountScope::Project => {
            if !is_valid_project_id(first) {
                return Err(format!("{first:?} is not a project id"));
            }
            // The site's word comes first: the user's project list leaves such projects out,
            // so asking it would blame XNAT.
            if (grant.never_mounted)(first) {
                return Err(NEVER_MOUNTED.into());
            }
            if !policy.trust_plugin && !grant.readable.contains(&first) {
                pending = Some((rest.get(1).is_some_and(|d| is_arc_dir(d)), rest.get(2)));
            }
            (true, Some(first.to_owned()))
        }
        MountScope::User => {
            if !policy.trust_plugin && first != grant.xnat_user {
                return Err(format!("{first:?} is not this user's own directory"));
            }
            (m.is_read_only(), None)
        }
    };
    let sub_path = match mapping.sub_path.as_str() {
        "" => rest.join("/"),
        prefix => format!("{prefix}/{}", rest.join("/")),
    };
    let mount = PlannedMount {
        volume: mapping.volume.clone(),
        sub_path,
        mount_path: target.to_owned(),
        read_only,
        project,
    };
    Ok(match pending {
        None => MountOutcome::Accepted(mount),
        Some((in_arc, entry)) => MountOutcome::Pending(Pending {
            project: first.to_owned(),
            in_arc,
            entry: entry.map(|e| (*e).to_owned()),
            mount,
            source: m.source.clone(),
            target: m.target.clone(),
        }),
    })
}

/// Why a launch mount of a project in `storage.neverMount` is refused.
const NEVER_MOUNTED: &str = "not mounted by site policy";

/// A project the user may not read may still be mounted from when XNAT says it is public, or
/// the mount is the launched experiment's own directory (`{project}/{arc}/{label}…`) in its
/// primary project and XNAT says it is shared into a project the user may read.
fn confirmed_elsewhere(
    p: &Pending,
    confirmed: &Confirmed,
    readable: &[&str],
) -> Result<(), String> {
    let project = p.project.as_str();
    if confirmed.public.iter().any(|c| c == project) {
        return Ok(());
    }
    if let Some(e) = &confirmed.experiment
        && e.project == project
        && p.in_arc
        && p.entry.as_deref() == Some(e.label.as_str())
        && e.shared_into.iter().any(|s| readable.contains(&s.as_str()))
    {
        return Ok(());
    }
    // What XNAT said when asked, so the refusal reads as what it is: not public, not shown to
    // the service account (404), or not answered.
    let asked = [
        confirmed.why_not(project),
        confirmed
            .experiment_unconfirmed
            .as_deref()
            .filter(|_| p.in_arc),
    ];
    let why: Vec<&str> = asked.into_iter().flatten().collect();
    match why.is_empty() {
        true => Err(format!(
            "XNAT does not list project {project} for this user"
        )),
        false => Err(format!(
            "XNAT does not list project {project} for this user ({})",
            why.join("; ")
        )),
    }
}

/// An archive directory of a project (`arc001`, XNAT's current arc and older ones).
fn is_arc_dir(d: &str) -> bool {
    d.strip_prefix("arc")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `SHARED.PROJECT.DATA.STORAGE.DIRECTORY/jupyter-notebooks/{eventTrackingId}`: the launch's
/// own shared-data directory, for a project the user may read. Returns that project.
fn shared_data(
    rest: &[&str],
    opts: &UserOptions,
    grant: &LaunchGrant<'_>,
    trusted: bool,
) -> Result<String, String> {
    let event = opts.event_tracking_id.as_deref().unwrap_or_default();
    let [_, "jupyter-notebooks", dir] = rest else {
        return Err("not a launch's shared-data directory".into());
    };
    if event.is_empty() || *dir != event {
        return Err(format!(
            "shared data of another launch than this one ({event:?})"
        ));
    }
    // XNAT's UI starts a named server named by the launch's eventTrackingId; a launch through
    // XNAT's API may start the default server, and carries an eventTrackingId too. Stored
    // options of another named server never name this directory.
    if !grant.server_name.is_empty() && grant.server_name != event {
        return Err(format!(
            "shared data of launch {event:?}, but this server is {:?}",
            grant.server_name
        ));
    }
    let project = opts.project_id.as_deref().unwrap_or_default();
    if !is_valid_project_id(project) {
        return Err(format!(
            "the launch's project {project:?} is not a project id"
        ));
    }
    if !trusted && !grant.readable.contains(&project) {
        return Err(format!(
            "XNAT does not list project {project} for this user"
        ));
    }
    Ok(project.to_owned())
}
