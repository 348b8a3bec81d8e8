//! The policy: one YAML document (the ConfigMap key, mounted as a file) parsed once into typed,
//! validated structs, one file per section. Every error names the field it is about.

mod env;
mod events;
mod identity;
mod pods;
mod resources;
mod rules;
mod storage;
pub(crate) mod template;
mod user_options;
mod writable;
mod xnat;

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use env::{EnvFile, EnvVar};
pub use events::{EventsFile, EventsPolicy};
pub use identity::{IdentityFile, MappingStepFile};
pub use pods::{PodSelector, PodsFile};
pub use resources::{QuantityText, ResourceMode, ResourcePolicy, ResourceSet, ResourcesFile};
pub use rules::{Rule, RuleFile, RuleMount};
pub use storage::{MountFile, MountTemplate, ProjectMount, Storage, StorageFile, Volume};
pub use template::{Piece, Template, Values, Var};
pub use user_options::{
    MountScope, PathMapping, SecretsPolicy, SourcePath, UserOptionsFile, UserOptionsPolicy,
};
pub use writable::WritableDirs;
pub use xnat::{
    CacheShape, ClientSettings, Endpoint, IndexFile, IndexSettings, LiveSettings, OnError,
    ProjectSource, XnatChange, XnatFile, XnatPolicy,
};

use crate::identity::UsernameMapping;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

// The policy document as written in the ConfigMap: plain serde structs with the documented
// defaults, one per section; `Policy::from_file` validates it. (A doc comment here would become
// the published schema's description.)
#[derive(Debug, Clone, Deserialize, Serialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyFile {
    /// `enforce` (mutate) or `audit` (dry run: say what would change, change nothing).
    pub mode: Mode,
    pub pods: PodsFile,
    pub identity: IdentityFile,
    pub xnat: XnatFile,
    pub storage: StorageFile,
    /// Env vars added to the notebook container; the map replaces the defaults when given.
    pub env: EnvFile,
    pub resources: ResourcesFile,
    /// Launch context stored by XNAT's JupyterHub plugin ("user options").
    pub user_options: UserOptionsFile,
    /// Per-project and per-role extras, applied in order; later rules win.
    pub rules: Vec<RuleFile>,
    /// Kubernetes Events about notebook pods, shown on KubeSpawner's spawn page.
    pub events: EventsFile,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Mutate pods.
    #[default]
    Enforce,
    /// Compute and log the patch, say what it would do (warning, audit annotations), change nothing.
    Audit,
}

/// Values the command line sets over the document's, at start and on every reload alike.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `xnat.url` (local runs against a stand-in).
    pub xnat_url: Option<String>,
    /// Replaces `pods.requesters`: the Deployment names the hub's service account, from the
    /// hub's namespace, where the policy document cannot. Validated as the document's list is.
    pub pods_requesters: Option<Vec<String>>,
}

impl Overrides {
    /// A comma-separated flag's entries as a `pods.requesters` override: none given is none;
    /// spaces around an entry are dropped, and an entry left empty is refused by validation.
    pub fn requesters(given: &[String]) -> Option<Vec<String>> {
        (!given.is_empty()).then(|| given.iter().map(|r| r.trim().to_owned()).collect())
    }
}

/// The validated policy the webhook decides with.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub pods: PodSelector,
    pub identity: UsernameMapping,
    pub xnat: XnatPolicy,
    pub storage: Storage,
    pub env: Vec<EnvVar>,
    pub resources: ResourcePolicy,
    pub user_options: UserOptionsPolicy,
    pub rules: Vec<Rule>,
    /// Where notebooks can write, so that nothing is mounted from below it.
    pub writable: WritableDirs,
    pub events: EventsPolicy,
    /// A short hash of the document, shown in `/readyz`, the `policy_info` metric and every
    /// pod's status annotation, so one can tell which policy decided a pod.
    pub version: String,
}

/// The largest policy document read: real ones are a few kilobytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// The deepest `[`/`{` nesting read. The YAML scanner's time grows with the square of it (50,000
/// brackets, 100 KB, took 8 s); a policy needs three.
const MAX_FLOW_DEPTH: usize = 32;

/// Whether `bytes` hold no policy at all: nothing, whitespace, comments, a bare `---` or `null`,
/// which [`PolicyFile::parse`] reads as the default policy. What a truncated or emptied file
/// reads as, so a reload refuses it rather than drop every rule.
pub fn is_empty_document(bytes: &[u8]) -> bool {
    let Ok(yaml) = std::str::from_utf8(bytes) else {
        return false;
    };
    yaml.len() <= MAX_POLICY_BYTES
        && flow_depth(yaml) <= MAX_FLOW_DEPTH
        && serde_yaml_ng::from_str::<serde_yaml_ng::Value>(yaml).is_ok_and(|v| v.is_null())
}

impl PolicyFile {
    /// Parses a policy document; an empty document is the default policy.
    pub fn parse(yaml: &str) -> Result<Self, PolicyError> {
        if yaml.len() > MAX_POLICY_BYTES {
            return Err(invalid(
                "(document)",
                format!(
                    "is {} bytes; at most {MAX_POLICY_BYTES} are read",
                    yaml.len()
                ),
            ));
        }
        if flow_depth(yaml) > MAX_FLOW_DEPTH {
            return Err(invalid(
                "(document)",
                format!("nests `[` or `{{` more than {MAX_FLOW_DEPTH} deep"),
            ));
        }
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
            .map_err(|e| invalid("(document)", format!("not valid YAML: {e}")))?;
        if value.is_null() {
            return Ok(Self::default());
        }
        // From the text, not the Value: only the text deserializer reads `- regex: {…}` as an enum.
        let de = serde_yaml_ng::Deserializer::from_str(yaml);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." {
                "(document)".into()
            } else {
                field
            };
            // serde_yaml puts the path in its message too; say it once.
            let message = e.into_inner().to_string();
            let message = message
                .strip_prefix(&format!("{field}: "))
                .map(str::to_owned)
                .unwrap_or(message);
            invalid(field, message)
        })
    }
}

impl Policy {
    /// The policy in a file's bytes, with the command line's overrides: what startup and every
    /// reload use.
    pub fn from_yaml(bytes: &[u8], overrides: &Overrides) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| invalid("(document)", format!("not UTF-8: {e}")))?;
        let mut file = PolicyFile::parse(text)?;
        if let Some(url) = &overrides.xnat_url {
            file.xnat.url = url.clone();
        }
        if let Some(requesters) = &overrides.pods_requesters {
            let written = &file.pods.requesters;
            if written != requesters && *written != pods::PodsFile::default().requesters {
                // Never silent: the document names a hub the webhook will not act for.
                tracing::warn!(policy = %written.join(","), given = %requesters.join(","),
                    "the policy's pods.requesters is replaced by --pods-requesters / \
                    PODS_REQUESTERS (the hub setting of the chart or of deploy/components/hub)");
            }
            file.pods.requesters = requesters.clone();
        }
        let mut policy = Self::from_file(file).map_err(|e| match e {
            // Named as the document's field, and said where the list came from.
            PolicyError::Invalid { field, message }
                if overrides.pods_requesters.is_some() && field.starts_with("pods.requesters") =>
            {
                let message =
                    format!("{message} (given by --pods-requesters or env PODS_REQUESTERS)");
                PolicyError::Invalid { field, message }
            }
            e => e,
        })?;
        policy.version = crate::version::version_of(bytes);
        Ok(policy)
    }

    /// Reads a policy file and validates it with `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&bytes, overrides)
    }

    /// Parses and validates a policy document, with no overrides.
    pub fn parse(yaml: &str) -> Result<Self, PolicyError> {
        let mut policy = Self::from_file(PolicyFile::parse(yaml)?)?;
        policy.version = crate::version::version_of(yaml.as_bytes());
        Ok(policy)
    }

    /// Validates a parsed document into the typed policy.
    /// Validates a document; its version is the hash of its JSON form (the callers that have
    /// the file's bytes use theirs).
    pub fn from_file(f: PolicyFile) -> Result<Self, PolicyError> {
        let version = crate::version::version_of(&serde_json::to_vec(&f).unwrap_or_default());
        let mut xnat = f.xnat.validate()?;
        xnat.endpoint.resolve_login_case = f.identity.resolve_login_case;
        let storage = f.storage.validate()?;
        let rules: Vec<Rule> = f
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.validate(i, &xnat.roles, &storage.volumes))
            .collect::<Result<_, _>>()?;
        let user_options = f.user_options.validate(&storage.volumes)?;
        let writable = writable_dirs(&storage, &rules, &user_options)?;
        if let Some(i) = storage
            .projects
            .iter()
            .position(|m| m.template.sub_path.uses(Var::Arc))
            && !xnat.ask_project_archive_paths
        {
            let field = match storage.projects.len() {
                1 => "storage.projects.subPath".to_owned(),
                _ => format!("storage.projects[{i}].subPath"),
            };
            return Err(invalid(
                field,
                "uses {arc}, which only XNAT's archive_spec says: set \
                 xnat.askProjectArchivePaths: true",
            ));
        }
        Ok(Self {
            mode: f.mode,
            pods: f.pods.validate()?,
            identity: f.identity.validate()?,
            xnat,
            storage,
            env: env::env_at("env", f.env.0)?,
            resources: f.resources.validate()?,
            user_options,
            rules,
            writable,
            events: f.events.validate(),
            version,
        })
    }
}

/// The deepest nesting of YAML flow collections, outside quoted scalars and comments (an
/// over-estimate elsewhere is harmless: real policies stay far below the limit).
fn flow_depth(yaml: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    let mut chars = yaml.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            _ if comment => comment = c != '\n',
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    deepest
}

/// The read-write mounts' directories, with every other mount template checked against them.
fn writable_dirs(
    storage: &Storage,
    rules: &[Rule],
    user_options: &UserOptionsPolicy,
) -> Result<WritableDirs, PolicyError> {
    let rule_mounts = || {
        rules.iter().enumerate().flat_map(|(i, r)| {
            r.mounts
                .iter()
                .enumerate()
                .map(move |(j, m)| (format!("rules[{i}].mounts[{j}]"), m))
        })
    };
    let read_write = storage
        .workspace
        .iter()
        .map(|w| ("storage.workspace".to_owned(), w))
        .chain(
            rule_mounts()
                .filter(|(_, m)| !m.read_only)
                .map(|(f, m)| (f, &m.template)),
        );
    let mut dirs = WritableDirs::of(&storage.volumes, read_write)?;
    for (i, m) in user_options.path_mappings.iter().enumerate() {
        if m.scope == MountScope::User {
            let field = format!("userOptions.pathMappings[{i}]");
            dirs = dirs.with_user_dirs(field, &m.volume, &m.sub_path)?;
        }
    }
    for (i, t) in storage.projects.iter().enumerate() {
        let field = match storage.projects.len() {
            1 => "storage.projects".to_owned(),
            _ => format!("storage.projects[{i}]"),
        };
        dirs.check(&field, &t.template)?;
    }
    for (field, m) in rule_mounts() {
        dirs.check(&field, &m.template)?;
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests;
