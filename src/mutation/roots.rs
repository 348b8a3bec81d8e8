//! A project whose own archive path is not `{site archive}/{ID}`: its mounts follow that path
//! through `userOptions.pathMappings` (as a launch's sources do), keeping the part of each
//! project template below its `{project}` segment (`arc001`, `resources`), or are refused with a
//! reason. Never mounted from `{archive}/{ID}`, where its files are not.

use super::plan::PlannedMount;
use crate::names::{check_sub_path, is_safe_segment};
use crate::policy::{MountScope, MountTemplate, Policy, SourcePath};

/// Mount `m` (rendered from template `t`, checked) moved to a project whose files are at
/// `own` (absolute, as XNAT sees it), or why it cannot be.
pub(super) fn follow_own_root(
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
