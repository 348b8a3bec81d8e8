//! Applier for the policy's volumes and the notebook's mounts of them. Conflicts go the pod's
//! way: a volume of one of our names that is not our claim means no mounts from that volume (they
//! would land in somebody else's); a mount already at one of our paths stays and ours is left
//! out — unless it is the same directory of the same claim (z2jh may mount the workspace itself).

use serde_json::{Map, Value, json};

use super::patch::{At, PodPatch};
use super::planned::{PlannedMount, same_path};
use crate::pod::{MountView, Notebook, PodView, VolumeView};
use crate::policy::{Storage, Volume};
use crate::warning::Warnings;

/// The pod's volume named like one of the policy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataVolume {
    /// None yet: added with the first mount.
    Absent,
    /// Already there: the policy's claim, read-only or not as the policy says.
    Ours,
    /// Something else under our name: nothing is mounted from it.
    Foreign,
    /// Our name is a raw block device of the container: it cannot be mounted too.
    Device,
}

impl DataVolume {
    fn of(pod: &PodView<'_>, notebook: Notebook<'_, '_>, volume: &Volume) -> Self {
        let devices = notebook.container.volume_devices.iter().flatten();
        if devices.into_iter().any(|d| d.name == volume.name) {
            return DataVolume::Device;
        }
        match pod
            .spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume.name)
        {
            None => DataVolume::Absent,
            Some(v) if is_our_claim(v, volume) => DataVolume::Ours,
            Some(_) => DataVolume::Foreign,
        }
    }

    /// Why nothing can be mounted from the pod's volume of our name, if so.
    fn unusable(self, volume: &Volume) -> Option<String> {
        match self {
            DataVolume::Foreign => Some(format!(
                "pod already has a volume {:?} that is not claim {:?}{}",
                volume.name,
                volume.claim_name,
                if volume.read_only { " (read-only)" } else { "" }
            )),
            DataVolume::Device => Some(format!(
                "the pod uses volume {:?} as a raw block device",
                volume.name
            )),
            DataVolume::Absent | DataVolume::Ours => None,
        }
    }
}

/// Adds the planned mounts the pod does not have yet (and their volumes when needed); returns
/// the projects the pod ends up with, mounted now or already there, each once.
pub fn apply(
    planned: Vec<PlannedMount>,
    pod: &PodView<'_>,
    notebook: Notebook<'_, '_>,
    storage: &Storage,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) -> Vec<String> {
    // Each volume's state, worked out once: (volume, state, used by a new mount).
    let mut volumes: Vec<(&Volume, DataVolume, bool)> = storage
        .volumes
        .iter()
        .map(|v| (v, DataVolume::of(pod, notebook, v), false))
        .collect();
    warn_unusable(&volumes, &planned, warnings);
    let container = notebook.container;
    let existing = container.volume_mounts.as_deref().unwrap_or_default();
    let devices = container.volume_devices.as_deref().unwrap_or_default();
    let mut projects = Vec::new();
    let mut to_add = Vec::new();
    for w in planned {
        let Some((volume, state, used)) = volumes.iter_mut().find(|(v, ..)| v.name == w.volume)
        else {
            continue; // validated at load: every planned volume is the policy's
        };
        if state.unusable(volume).is_some() {
            continue;
        }
        let read_only = w.read_only || volume.read_only;
        match existing
            .iter()
            .find(|m| same_path(&m.mount_path, &w.mount_path))
        {
            Some(m) if is_same_mount(m, pod, volume, &w.sub_path, read_only) => {
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
                *used = true;
                to_add.push(Value::Object(Map::from_iter([
                    ("name".into(), Value::String(volume.name.clone())),
                    ("mountPath".into(), Value::String(w.mount_path)),
                    ("subPath".into(), Value::String(w.sub_path)),
                    ("readOnly".into(), Value::Bool(read_only)),
                ])));
            }
        }
    }
    let new_volumes = volumes
        .iter()
        .filter(|(_, state, used)| *used && *state == DataVolume::Absent)
        .map(|(v, ..)| volume_entry(v))
        .collect();
    patch.append(
        At::spec().join("volumes"),
        pod.spec.volumes.is_some(),
        new_volumes,
    );
    patch.append(
        At::container(notebook.index).join("volumeMounts"),
        notebook.container.volume_mounts.is_some(),
        to_add,
    );
    projects
}

/// Says which wanted volumes cannot be used, and why.
fn warn_unusable(
    volumes: &[(&Volume, DataVolume, bool)],
    planned: &[PlannedMount],
    warnings: &mut Warnings,
) {
    for (v, state, _) in volumes {
        if let Some(why) = state.unusable(v)
            && planned.iter().any(|m| m.volume == v.name)
        {
            warnings.push(format_args!("{why}; no mounts of it added"));
        }
    }
}

/// The pod volume of one of the policy's claims.
fn volume_entry(v: &Volume) -> Value {
    let mut claim = json!({ "claimName": v.claim_name });
    if v.read_only {
        claim["readOnly"] = Value::Bool(true);
    }
    json!({ "name": v.name, "persistentVolumeClaim": claim })
}

/// A launch context may mount several directories of one project.
fn add_project(projects: &mut Vec<String>, project: Option<String>) {
    if let Some(p) = project
        && !projects.contains(&p)
    {
        projects.push(p);
    }
}

fn is_our_claim(v: &VolumeView<'_>, volume: &Volume) -> bool {
    v.persistent_volume_claim.as_ref().is_some_and(|p| {
        p.claim_name == volume.claim_name && p.read_only.unwrap_or(false) == volume.read_only
    })
}

/// The pod's mount shows the same directory: the same subPath of a volume of the same claim
/// (ours, or one the hub added, such as z2jh's `home`), equally read-only.
fn is_same_mount(
    m: &MountView<'_>,
    pod: &PodView<'_>,
    volume: &Volume,
    sub_path: &str,
    read_only: bool,
) -> bool {
    let claim = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == m.name)
        .and_then(|v| v.persistent_volume_claim.as_ref());
    let same_claim =
        m.name == volume.name || claim.is_some_and(|c| c.claim_name == volume.claim_name);
    same_claim
        && m.sub_path.as_deref() == Some(sub_path)
        && m.read_only.unwrap_or(false) == read_only
}
