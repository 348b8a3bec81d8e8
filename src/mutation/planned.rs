//! A mount as the decision plans it, and how one is rendered from a policy template: the
//! vocabulary the plan, the project roots and the launch translation share (a leaf, so none of
//! them imports another for it).

use crate::names::{check_abs_path, check_sub_path, is_safe_segment};
use crate::policy::{MountTemplate, Template, Values};
use crate::warning::Warnings;

/// A mount of one of the policy's volumes, already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMount {
    /// The policy volume's name.
    pub volume: String,
    pub sub_path: String,
    pub mount_path: String,
    pub read_only: bool,
    /// The project it shows, for `XNAT_PROJECTS` and the mount cap; `None` for the workspace and
    /// other mounts.
    pub project: Option<String>,
}

/// Renders a mount (read-write, of no project: callers say otherwise), or explains why it
/// cannot be mounted: every value a path template uses must be a safe single path segment.
pub fn render_mount(
    t: &MountTemplate,
    values: &Values<'_>,
    warnings: &mut Warnings,
) -> Option<PlannedMount> {
    let sub_path = render_path(&t.sub_path, values, warnings)?;
    let mount_path = render_path(&t.mount_path, values, warnings)?;
    // Defence in depth: the template was checked at load and the values just now.
    if check_sub_path(&sub_path).is_err() || check_abs_path(&mount_path).is_err() {
        warnings.push(format_args!("rendered path {sub_path:?} refused"));
        return None;
    }
    Some(PlannedMount {
        volume: t.volume.clone(),
        sub_path,
        mount_path,
        read_only: false,
        project: None,
    })
}

/// Renders a path template whose every value is a safe single path segment.
pub fn render_path(t: &Template, values: &Values<'_>, warnings: &mut Warnings) -> Option<String> {
    for var in t.vars() {
        // Path templates only admit path placeholders (checked at load).
        let value = values.get(var);
        if !is_safe_segment(value) {
            warnings.push(format_args!(
                "{{{}}} = {value:?} is not a safe path segment; {} skipped",
                var.name(),
                t.source()
            ));
            return None;
        }
    }
    Some(t.render(values))
}

/// Whether two mount paths name the same directory (`/a//b/./c/` = `/a/b/c`): the kubelet
/// refuses two mounts at one place.
pub fn same_path(a: &str, b: &str) -> bool {
    fn parts(p: &str) -> impl Iterator<Item = &str> {
        p.split('/').filter(|s| !s.is_empty() && *s != ".")
    }
    a == b || parts(a).eq(parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_compare_as_directories() {
        assert!(same_path("/data/projects/ALPHA/", "/data/projects/ALPHA"));
        assert!(same_path("/data//projects/./ALPHA", "/data/projects/ALPHA"));
        assert!(!same_path("/data/projects/ALPHA2", "/data/projects/ALPHA"));
    }
}
