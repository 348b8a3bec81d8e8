//! One project's mounts, from where XNAT keeps its files. A project whose own archive path is
//! not `{site archive}/{ID}` has its mounts follow that path through `userOptions.pathMappings`
//! (as a launch's sources do), keeping the part of each project template below its `{project}`
//! segment (`arc001`, `resources`), or none at all, with a warning naming it. Never mounted from
//! `{archive}/{ID}`, where its files are not.

use super::planned::{PlannedMount, render_mount};
use crate::archive::ProjectRoot;
use crate::names::{check_sub_path, is_safe_segment};
use crate::policy::{MountScope, MountTemplate, Policy, SourcePath, Values};
use crate::warning::Warnings;

/// Every mount of the project `values.project` with whether it is optional: all from one place,
/// or none.
pub(super) fn project_mounts(
    root: &ProjectRoot,
    values: &Values<'_>,
    policy: &Policy,
    warnings: &mut Warnings,
) -> Vec<(PlannedMount, bool)> {
    let project = values.project.unwrap_or_default();
    match root {
        ProjectRoot::Unknown(why) => {
            warnings.push(format_args!(
                "project {project} not mounted: where XNAT keeps its files is unknown ({why})"
            ));
            return Vec::new();
        }
        ProjectRoot::Refused(why) => {
            warnings.push(format_args!("project {project} not mounted: {why}"));
            return Vec::new();
        }
        ProjectRoot::Site | ProjectRoot::Own(_) => {}
    }
    let mut mounts = Vec::with_capacity(policy.storage.projects.len());
    for pm in &policy.storage.projects {
        let Some(mut m) = render_mount(&pm.template, values, warnings) else {
            continue;
        };
        m.read_only = true;
        m.project = Some(project.to_owned());
        if let ProjectRoot::Own(own) = root {
            match follow_own_root(m, &pm.template, own, policy) {
                Ok(moved) => m = moved,
                Err(why) => {
                    warnings.push(format_args!(
                        "project {project} not mounted: its archive path {own} is not the \
                         site's ({why})"
                    ));
                    return Vec::new();
                }
            }
        }
        mounts.push((m, pm.optional));
    }
    mounts
}

/// Mount `m` (rendered from template `t`, checked) moved to a project whose files are at
/// `own` (absolute, as XNAT sees it), or why it cannot be.
fn follow_own_root(
    mut m: PlannedMount,
    t: &MountTemplate,
    own: &str,
    policy: &Policy,
) -> Result<PlannedMount, String> {
    // The template's segments after `{project}`, rendered: what lies inside the project's root.
    let at = t
        .sub_path
        .source()
        .split('/')
        .position(|s| s == "{project}")
        .ok_or("the storage.projects subPath has no {project} segment to replace")?;
    let inside: Vec<&str> = m.sub_path.split('/').skip(at + 1).collect();
    let source = SourcePath::parse(own);
    if let Some(bad) = source.segments.iter().find(|s| !is_safe_segment(s)) {
        return Err(format!("its path segment {bad:?} is not safe"));
    }
    let (mapping, rest) = policy
        .user_options
        .mapping_for(&source)
        .filter(|(m, _)| m.scope == MountScope::Project)
        .ok_or("no project-scope userOptions.pathMappings prefix covers it")?;
    if rest.is_empty() {
        // The prefix itself holds other projects' directories too.
        return Err(format!(
            "it is the userOptions.pathMappings prefix {:?} itself",
            mapping.xnat_path
        ));
    }
    let sub_path: Vec<&str> = std::iter::once(mapping.sub_path.as_str())
        .filter(|p| !p.is_empty())
        .chain(rest)
        .chain(inside)
        .collect();
    let sub_path = sub_path.join("/");
    check_sub_path(&sub_path).map_err(|e| format!("subPath {sub_path:?} {e}"))?;
    m.volume = mapping.volume.clone();
    m.sub_path = sub_path;
    Ok(m)
}
