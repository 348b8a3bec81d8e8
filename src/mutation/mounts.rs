//! Applier for the data volume and the notebook's mounts of it. Conflicts go the pod's way: a
//! volume of our name that is not our claim means no data mounts at all (they would land in
//! somebody else's volume); a mount already at one of our paths stays and ours is left out.

use serde_json::{Map, Value, json};

use super::patch::{At, PodPatch};
use super::plan::{PlannedMount, same_path};
use crate::pod::{MountView, Notebook, PodView, VolumeView};
use crate::policy::Storage;
use crate::warning::Warnings;

/// The pod's volume named like the policy's data volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataVolume {
    /// None yet: added with the first mount.
    Absent,
    /// Already there, the policy's claim, writable at the volume level.
    Ours,
    /// Something else under our name: nothing is mounted from it.
    Foreign,
    /// Our name is a raw block device of the container: it cannot be mounted too.
    Device,
}

impl DataVolume {
    fn of(pod: &PodView<'_>, notebook: Notebook<'_, '_>, storage: &Storage) -> Self {
        let devices = notebook.container.volume_devices.iter().flatten();
        if devices.into_iter().any(|d| d.name == storage.volume_name) {
            return DataVolume::Device;
        }
        match pod
            .spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == storage.volume_name)
        {
            None => DataVolume::Absent,
            Some(v) if is_our_claim(v, &storage.claim_name) => DataVolume::Ours,
            Some(_) => DataVolume::Foreign,
        }
    }

    /// Why nothing can be mounted from the pod's volume of our name, if so.
    fn unusable(self, storage: &Storage) -> Option<String> {
        match self {
            DataVolume::Foreign => Some(format!(
                "pod already has a volume {:?} that is not claim {:?}",
                storage.volume_name, storage.claim_name
            )),
            DataVolume::Device => Some(format!(
                "the pod uses volume {:?} as a raw block device",
                storage.volume_name
            )),
            DataVolume::Absent | DataVolume::Ours => None,
        }
    }
}

/// Adds the planned mounts the pod does not have yet (and the volume when needed); returns the
/// projects the pod ends up with, mounted now or already there, each once.
pub fn apply(
    planned: Vec<PlannedMount>,
    pod: &PodView<'_>,
    notebook: Notebook<'_, '_>,
    storage: &Storage,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) -> Vec<String> {
    let volume = DataVolume::of(pod, notebook, storage);
    if let Some(why) = volume.unusable(storage) {
        warnings.push(format_args!("{why}; no XNAT data mounts added"));
        return Vec::new();
    }
    let container = notebook.container;
    let existing = container.volume_mounts.as_deref().unwrap_or_default();
    let devices = container.volume_devices.as_deref().unwrap_or_default();
    let mut projects = Vec::new();
    let mut to_add = Vec::new();
    for w in planned {
        match existing
            .iter()
            .find(|m| same_path(&m.mount_path, &w.mount_path))
        {
            Some(m) if is_same_mount(m, &w, &storage.volume_name) => {
                add_project(&mut projects, w.project);
            }
            Some(_) => warnings.push(format_args!(
                "{} is already mounted by the pod; left as it is",
                w.mount_path
            )),
            None if devices
                .iter()
                .any(|d| same_path(&d.device_path, &w.mount_path)) =>
            {
                warnings.push(format_args!(
                    "{} is a block device of the pod; left as it is",
                    w.mount_path
                ));
            }
            None => {
                add_project(&mut projects, w.project);
                to_add.push(Value::Object(Map::from_iter([
                    ("name".into(), Value::String(storage.volume_name.clone())),
                    ("mountPath".into(), Value::String(w.mount_path)),
                    ("subPath".into(), Value::String(w.sub_path)),
                    ("readOnly".into(), Value::Bool(w.read_only)),
                ])));
            }
        }
    }
    if !to_add.is_empty() && volume == DataVolume::Absent {
        patch.append(
            At::spec().join("volumes"),
            pod.spec.volumes.is_some(),
            vec![json!({
                "name": storage.volume_name,
                "persistentVolumeClaim": { "claimName": storage.claim_name },
            })],
        );
    }
    patch.append(
        At::container(notebook.index).join("volumeMounts"),
        notebook.container.volume_mounts.is_some(),
        to_add,
    );
    projects
}

/// A launch context may mount several directories of one project.
fn add_project(projects: &mut Vec<String>, project: Option<String>) {
    if let Some(p) = project
        && !projects.contains(&p)
    {
        projects.push(p);
    }
}

fn is_our_claim(v: &VolumeView<'_>, claim: &str) -> bool {
    v.persistent_volume_claim
        .as_ref()
        .is_some_and(|p| p.claim_name == claim && p.read_only != Some(true))
}

fn is_same_mount(m: &MountView<'_>, w: &PlannedMount, volume: &str) -> bool {
    m.name == volume
        && m.sub_path.as_deref() == Some(w.sub_path.as_str())
        && m.read_only.unwrap_or(false) == w.read_only
}
