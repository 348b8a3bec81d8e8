//! `userOptions`: whether and how the launch context XNAT's JupyterHub plugin stores is used.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::env::{EnvVar, env_at};
use super::storage::{Volume, WORKSPACE_VARS, volume_of};
use super::template::Template;
use super::{PolicyError, invalid};
use crate::names::{check_abs_path, check_sub_path, is_extended_resource_name, is_safe_segment};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UserOptionsFile {
    /// Read the plugin's stored launch context and, when there is one, mount what it says.
    pub enabled: bool,
    /// Mount what the plugin says even outside the projects the user can read.
    pub trust_plugin: bool,
    /// Extended resource a `generic_resources.gpu` request becomes.
    pub gpu_resource: String,
    /// Stored mount sources (after the plugin's path translation: absolute, or relative such
    /// as `./ALPHA/arc001`) and the volume and subPath each prefix lives at.
    pub path_mappings: Vec<PathMappingFile>,
    /// Launch-context env vars whose names may say they hold secrets (XNAT_PASS, *TOKEN*, …):
    /// passed on always, only to reviews from a caller whose client certificate was verified
    /// (`--client-ca`), or never.
    pub secrets: SecretsPolicy,
    /// Image prefixes a launch's compute environment may name (`registry.example.org/xnat/`);
    /// `*` for any (the default: XNAT's admins define the compute environments).
    pub allowed_images: Vec<String>,
    /// Use the compute environment's `image` in place of the pod's. `false` keeps the hub's (or
    /// a `profile_list` profile's) image, as the chart's hook does when a profile sets one:
    /// KubeSpawner applies a profile's `kubespawner_override` after the hook.
    pub image: bool,
    /// Run the compute environment's `command` (as KubeSpawner runs its `cmd`: the container's
    /// args, followed by the hub's own arguments).
    pub command: bool,
    /// The notebook's working directory when a launch context is used (a template: `{xnat_user}`,
    /// `{jupyter_user}`, `{server_name}`); `null` to leave the pod's.
    pub working_dir: Option<String>,
    /// Env a launch context adds after the plugin's (templates, as in `env`): what the chart's
    /// hook sets itself, such as `NB_USER` or `JUPYTERHUB_SINGLEUSER_EXTENSION`.
    pub env: BTreeMap<String, String>,
    /// Add the compute environment's `labels` as pod labels. Off by default: labels select pods
    /// for NetworkPolicies and Services (z2jh's `hub.jupyter.org/network-access-hub`), so a
    /// label from XNAT could open a notebook's network; the chart's hook ignores them too.
    pub labels: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SecretsPolicy {
    /// Always pass them on, as the plugin's own hub hook does.
    Pass,
    /// Only when the review came with a client certificate the webhook verified: a forged
    /// review can then never read a user's token back.
    VerifiedCaller,
    /// Never pass them on.
    Drop,
}

impl Default for UserOptionsFile {
    fn default() -> Self {
        Self {
            enabled: false,
            trust_plugin: false,
            gpu_resource: "nvidia.com/gpu".into(),
            path_mappings: vec![
                PathMappingFile {
                    xnat_path: "/data/xnat/archive".into(),
                    volume: None,
                    sub_path: "archive".into(),
                    scope: MountScope::Project,
                },
                PathMappingFile {
                    xnat_path: "/data/xnat/workspaces/users".into(),
                    volume: None,
                    sub_path: "workspaces/users".into(),
                    scope: MountScope::User,
                },
            ],
            secrets: SecretsPolicy::VerifiedCaller,
            allowed_images: vec!["*".into()],
            image: true,
            command: true,
            working_dir: None,
            env: BTreeMap::new(),
            labels: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMappingFile {
    /// A stored source's prefix: absolute (`/data/xnat/archive`, a Swarm-style translation) or
    /// relative (`.` for every relative source, as NrgXnat's Kubernetes instructions translate
    /// the archive; `archive`). `./` and repeated `/` are normalised away.
    pub xnat_path: String,
    /// The volume (of `storage.volumes`) the prefix lives in; default the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Where the prefix lives in that volume; empty for its root.
    pub sub_path: String,
    /// What the first path segment below the prefix must be.
    pub scope: MountScope,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MountScope {
    /// A project id the user can read (or a shared-data directory of one); always mounted
    /// read-only.
    Project,
    /// The user's own XNAT username.
    User,
}

#[derive(Debug, Clone)]
pub struct UserOptionsPolicy {
    pub enabled: bool,
    pub trust_plugin: bool,
    pub gpu_resource: String,
    pub path_mappings: Vec<PathMapping>,
    pub secrets: SecretsPolicy,
    /// Empty for any image.
    pub allowed_images: Vec<String>,
    pub image: bool,
    pub command: bool,
    pub working_dir: Option<Template>,
    pub env: Vec<EnvVar>,
    pub labels: bool,
}

impl UserOptionsPolicy {
    /// The longest path mapping `source` lies below, and the rest of the source below it.
    pub fn mapping_for<'s>(&self, source: &SourcePath<'s>) -> Option<(&PathMapping, Vec<&'s str>)> {
        self.path_mappings
            .iter()
            .filter_map(|p| Some((p, p.strip(source)?)))
            .max_by_key(|(p, _)| p.segments.len())
    }

    /// Whether a launch may run `image`.
    pub fn allows_image(&self, image: &str) -> bool {
        self.allowed_images.is_empty() || self.allowed_images.iter().any(|p| image.starts_with(p))
    }
}

#[derive(Debug, Clone)]
pub struct PathMapping {
    /// The prefix as written, for messages.
    pub xnat_path: String,
    /// Whether it (and the sources it matches) is absolute.
    pub absolute: bool,
    /// Its segments, normalised (none for `.`).
    pub segments: Vec<String>,
    pub volume: String,
    /// Empty for the volume's root.
    pub sub_path: String,
    pub scope: MountScope,
}

impl PathMapping {
    /// The rest of `source` below this prefix, if the source lies there (same absoluteness,
    /// whole segments).
    pub fn strip<'s>(&self, source: &SourcePath<'s>) -> Option<Vec<&'s str>> {
        if source.absolute != self.absolute || source.segments.len() < self.segments.len() {
            return None;
        }
        let (head, rest) = source.segments.split_at(self.segments.len());
        head.iter()
            .zip(&self.segments)
            .all(|(a, b)| a == b)
            .then(|| rest.to_vec())
    }
}

/// A stored mount source, normalised: `./a//b/` → relative `a`, `b`; `/x/./y` → absolute `x`,
/// `y`. `..` is kept, for the caller to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePath<'s> {
    pub absolute: bool,
    pub segments: Vec<&'s str>,
}

impl<'s> SourcePath<'s> {
    pub fn parse(path: &'s str) -> Self {
        Self {
            absolute: path.starts_with('/'),
            segments: path
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .collect(),
        }
    }
}

impl UserOptionsFile {
    pub(super) fn validate(self, volumes: &[Volume]) -> Result<UserOptionsPolicy, PolicyError> {
        let path_mappings = self
            .path_mappings
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.validate(&format!("userOptions.pathMappings[{i}]"), volumes))
            .collect::<Result<_, _>>()?;
        if !is_extended_resource_name(&self.gpu_resource) {
            return Err(invalid(
                "userOptions.gpuResource",
                format!(
                    "{:?} is not an extended resource name (e.g. nvidia.com/gpu)",
                    self.gpu_resource
                ),
            ));
        }
        for (i, p) in self.allowed_images.iter().enumerate() {
            // A prefix ends at a boundary of the name: `registry.example.org` would also admit
            // `registry.example.org.evil.io/x`, and `…/xnat` would admit `…/xnat-evil`.
            let bounded = p == "*" || p.ends_with(['/', ':', '@']);
            if !bounded || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    format!("userOptions.allowedImages[{i}]"),
                    format!(
                        "{p:?} is not an image prefix ending in `/`, `:` or `@` (or `*`): e.g. \
                         `registry.example.org/xnat/`"
                    ),
                ));
            }
        }
        let allowed_images = if self.allowed_images.iter().any(|p| p == "*") {
            Vec::new()
        } else if self.allowed_images.is_empty() {
            return Err(invalid(
                "userOptions.allowedImages",
                "must name at least one prefix (`*` for any image)",
            ));
        } else {
            self.allowed_images
        };
        let working_dir = self
            .working_dir
            .map(|w| {
                let t = Template::parse(&w, WORKSPACE_VARS)
                    .map_err(|m| invalid("userOptions.workingDir", m))?;
                check_abs_path(&t.render_with("x"))
                    .map_err(|m| invalid("userOptions.workingDir", m))?;
                Ok(t)
            })
            .transpose()?;
        Ok(UserOptionsPolicy {
            enabled: self.enabled,
            trust_plugin: self.trust_plugin,
            gpu_resource: self.gpu_resource,
            path_mappings,
            secrets: self.secrets,
            allowed_images,
            image: self.image,
            command: self.command,
            working_dir,
            env: env_at("userOptions.env", self.env)?,
            labels: self.labels,
        })
    }
}

impl PathMappingFile {
    fn validate(self, field: &str, volumes: &[Volume]) -> Result<PathMapping, PolicyError> {
        let source = SourcePath::parse(&self.xnat_path);
        if self.xnat_path.trim().is_empty() {
            return Err(invalid(
                format!("{field}.xnatPath"),
                "must not be empty (`.` for every relative source)",
            ));
        }
        if let Some(bad) = source.segments.iter().find(|s| !is_safe_segment(s)) {
            return Err(invalid(
                format!("{field}.xnatPath"),
                format!("{:?}: segment {bad:?} is not safe", self.xnat_path),
            ));
        }
        if source.absolute && source.segments.is_empty() {
            return Err(invalid(
                format!("{field}.xnatPath"),
                "`/` would take every absolute source; name the archive's directory",
            ));
        }
        if !self.sub_path.is_empty() {
            check_sub_path(&self.sub_path).map_err(|e| invalid(format!("{field}.subPath"), e))?;
        }
        Ok(PathMapping {
            absolute: source.absolute,
            segments: source.segments.iter().map(|s| (*s).to_owned()).collect(),
            xnat_path: self.xnat_path,
            volume: volume_of(self.volume, field, volumes)?,
            sub_path: self.sub_path,
            scope: self.scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_match_prefixes_of_their_own_kind() {
        let volumes = [Volume {
            name: "archive".into(),
            claim_name: "c".into(),
            read_only: false,
            seen_at: None,
        }];
        let mapping = |xnat_path: &str| {
            PathMappingFile {
                xnat_path: xnat_path.into(),
                volume: None,
                sub_path: String::new(),
                scope: MountScope::Project,
            }
            .validate("m", &volumes)
            .unwrap()
        };
        let dot = mapping(".");
        fn rest<'s>(m: &PathMapping, s: &'s str) -> Option<Vec<&'s str>> {
            m.strip(&SourcePath::parse(s))
        }
        assert_eq!(rest(&dot, "./ALPHA/arc001"), Some(vec!["ALPHA", "arc001"]));
        assert_eq!(
            rest(&dot, ".//ALPHA/./arc001/"),
            Some(vec!["ALPHA", "arc001"])
        );
        assert_eq!(rest(&dot, "ALPHA"), Some(vec!["ALPHA"]));
        assert_eq!(rest(&dot, "/data/xnat/archive/ALPHA"), None);
        let swarm = mapping("/data/xnat/archive/");
        assert_eq!(
            rest(&swarm, "/data/xnat/archive//ALPHA"),
            Some(vec!["ALPHA"])
        );
        assert_eq!(rest(&swarm, "/data/xnat/archive2/ALPHA"), None);
        assert_eq!(rest(&swarm, "./ALPHA"), None);
        assert_eq!(
            rest(&mapping("./archive"), "archive/ALPHA"),
            Some(vec!["ALPHA"])
        );
        for bad in ["", "/", "../x", "a/../b"] {
            let e = PathMappingFile {
                xnat_path: bad.into(),
                volume: None,
                sub_path: String::new(),
                scope: MountScope::Project,
            }
            .validate("m", &volumes);
            assert!(e.is_err(), "{bad:?}");
        }
    }
}
