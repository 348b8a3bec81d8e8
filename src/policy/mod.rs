//! The policy: one YAML document (the ConfigMap key, mounted as a file) parsed once into typed,
//! validated structs. Every error names the field it is about.

pub mod file;
pub mod template;

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use reqwest::Url;

use file::{MappingStepFile, MountFile, QuantityText};
pub use file::{Mode, MountScope, OnError, PolicyFile, ProjectSource, ResourceMode};

use std::collections::BTreeMap;
pub use template::{Template, Values, Var};

use crate::identity::{MappingStep, UsernameMapping};
use crate::names::{
    check_sub_path, is_dns_label, is_dns_subdomain, is_env_name, is_extended_resource,
    is_extended_resource_name, is_group_role, is_qualified_name, is_resource_name,
    is_valid_project_id,
};
use crate::quantity::Quantity;

/// The longest XNAT request timeout accepted.
pub const MAX_XNAT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest XNAT budget per admission: the API server's webhook timeout (deploy/ sets 10s,
/// the Kubernetes default) must leave room for the rest of the review.
pub const MAX_XNAT_BUDGET: Duration = Duration::from_secs(8);

/// Placeholders a project mount may use.
const PROJECT_VARS: &[Var] = &[
    Var::Project,
    Var::XnatUser,
    Var::JupyterUser,
    Var::ServerName,
];
/// Placeholders the workspace mount may use.
const WORKSPACE_VARS: &[Var] = &[Var::XnatUser, Var::JupyterUser, Var::ServerName];
/// Placeholders env values may use.
const ENV_VARS: &[Var] = &[
    Var::XnatUser,
    Var::JupyterUser,
    Var::ServerName,
    Var::Projects,
    Var::XnatUrl,
];

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
}

/// Extras for users who hold one of `roles` in one of `projects`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `None` for any project (`*`).
    pub projects: Option<Vec<String>>,
    /// Empty for any of `xnat.roles`.
    pub roles: Vec<String>,
    pub env: Vec<EnvVar>,
    pub mounts: Vec<RuleMount>,
    pub resources: ResourceSet,
}

#[derive(Debug, Clone)]
pub struct RuleMount {
    pub template: MountTemplate,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct UserOptionsPolicy {
    pub enabled: bool,
    pub trust_plugin: bool,
    pub gpu_resource: String,
    pub path_mappings: Vec<PathMapping>,
}

#[derive(Debug, Clone)]
pub struct PathMapping {
    /// Normalised, without a trailing `/`.
    pub xnat_path: String,
    pub sub_path: String,
    pub scope: MountScope,
}

#[derive(Debug, Clone)]
pub struct PodSelector {
    pub labels: Vec<(String, String)>,
    pub name_prefix: String,
    pub requesters: Vec<String>,
    pub container: String,
    /// Empty for any namespace.
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct XnatPolicy {
    pub url: Url,
    pub ca_file: Option<std::path::PathBuf>,
    pub project_source: ProjectSource,
    pub timeout: Duration,
    pub budget: Duration,
    pub max_concurrent_requests: usize,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    pub stale_if_error: Duration,
    pub refresh_ahead: Option<Duration>,
    pub cache_capacity: u64,
    pub roles: Vec<String>,
    pub on_error: OnError,
    pub deny_message: String,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub volume_name: String,
    pub claim_name: String,
    pub projects: MountTemplate,
    pub workspace: Option<MountTemplate>,
    /// Exact ids, or prefixes written `ABC*`.
    pub never_mount: Vec<String>,
    pub max_project_mounts: usize,
}

impl Storage {
    /// Whether the site's deny list rules this project out.
    pub fn is_never_mounted(&self, project: &str) -> bool {
        self.never_mount.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => project.starts_with(prefix),
            None => p == project,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MountTemplate {
    pub sub_path: Template,
    pub mount_path: Template,
}

#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: Template,
}

#[derive(Debug, Clone)]
pub struct ResourcePolicy {
    pub mode: ResourceMode,
    pub set: ResourceSet,
}

/// Requests and limits by resource name (`cpu`, `memory`, `nvidia.com/gpu`, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
}

impl ResourceSet {
    /// `other`'s values replace this set's, key by key.
    pub fn overlay(&mut self, other: &ResourceSet) {
        for (k, v) in &other.requests {
            self.requests.insert(k.clone(), v.clone());
        }
        for (k, v) in &other.limits {
            self.limits.insert(k.clone(), v.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

impl PolicyFile {
    /// Reads a policy document from disk.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses a policy document; an empty document is the default policy.
    pub fn parse(yaml: &str) -> Result<Self, PolicyError> {
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
    /// Reads, parses and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Self::from_file(PolicyFile::load(path)?)
    }

    /// Parses and validates a policy document.
    pub fn parse(yaml: &str) -> Result<Self, PolicyError> {
        Self::from_file(PolicyFile::parse(yaml)?)
    }

    /// Validates a parsed document into the typed policy.
    pub fn from_file(f: PolicyFile) -> Result<Self, PolicyError> {
        let xnat = xnat(f.xnat)?;
        let rules = f
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| rule(i, r, &xnat.roles))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mode: f.mode,
            pods: pods(f.pods)?,
            identity: identity(f.identity)?,
            xnat,
            storage: storage(f.storage)?,
            env: env(f.env.0)?,
            resources: ResourcePolicy {
                mode: f.resources.mode,
                set: resource_set("resources", f.resources.requests, f.resources.limits)?,
            },
            user_options: user_options(f.user_options)?,
            rules,
        })
    }
}

fn user_options(f: file::UserOptionsFile) -> Result<UserOptionsPolicy, PolicyError> {
    let mut path_mappings = Vec::with_capacity(f.path_mappings.len());
    for (i, m) in f.path_mappings.into_iter().enumerate() {
        let field = format!("userOptions.pathMappings[{i}]");
        let xnat_path = m.xnat_path.trim_end_matches('/');
        let below_root = xnat_path.strip_prefix('/').unwrap_or("");
        if !m.xnat_path.starts_with('/') || check_sub_path(below_root).is_err() {
            return Err(invalid(
                format!("{field}.xnatPath"),
                format!(
                    "{:?} is not an absolute path without `.`/`..` segments",
                    m.xnat_path
                ),
            ));
        }
        if let Err(e) = check_sub_path(&m.sub_path) {
            return Err(invalid(format!("{field}.subPath"), e));
        }
        path_mappings.push(PathMapping {
            xnat_path: xnat_path.to_owned(),
            sub_path: m.sub_path,
            scope: m.scope,
        });
    }
    if !is_extended_resource_name(&f.gpu_resource) {
        return Err(invalid(
            "userOptions.gpuResource",
            format!(
                "{:?} is not an extended resource name (e.g. nvidia.com/gpu)",
                f.gpu_resource
            ),
        ));
    }
    Ok(UserOptionsPolicy {
        enabled: f.enabled,
        trust_plugin: f.trust_plugin,
        gpu_resource: f.gpu_resource,
        path_mappings,
    })
}

fn pods(f: file::PodsFile) -> Result<PodSelector, PolicyError> {
    if f.labels.keys().any(|k| k.is_empty()) {
        return Err(invalid("pods.labels", "label keys must not be empty"));
    }
    if f.requesters.is_empty() {
        return Err(invalid(
            "pods.requesters",
            "must list who creates notebook pods (the hub's service account)",
        ));
    }
    if let Some(i) = f.requesters.iter().position(|r| r.trim().is_empty()) {
        return Err(invalid(
            format!("pods.requesters[{i}]"),
            "must not be empty",
        ));
    }
    if !is_dns_label(&f.container) {
        return Err(invalid(
            "pods.container",
            format!("{:?} is not a container name", f.container),
        ));
    }
    if let Some((i, n)) = f
        .namespaces
        .iter()
        .enumerate()
        .find(|(_, n)| !is_dns_label(n))
    {
        return Err(invalid(
            format!("pods.namespaces[{i}]"),
            format!("{n:?} is not a namespace name"),
        ));
    }
    Ok(PodSelector {
        labels: f.labels.into_iter().collect(),
        name_prefix: f.name_prefix,
        requesters: f.requesters,
        container: f.container,
        namespaces: f.namespaces,
    })
}

fn identity(f: file::IdentityFile) -> Result<UsernameMapping, PolicyError> {
    if let Some(a) = &f.xnat_username_annotation
        && !is_qualified_name(a)
    {
        return Err(invalid(
            "identity.xnatUsernameAnnotation",
            format!("{a:?} is not an annotation key"),
        ));
    }
    let steps = f
        .mapping
        .into_iter()
        .enumerate()
        .map(|(i, step)| match step {
            MappingStepFile::Lowercase => Ok(MappingStep::Lowercase),
            MappingStepFile::StripDomain { domains } => {
                if let Some(d) = domains.iter().find(|d| d.is_empty() || d.contains('@')) {
                    return Err(invalid(
                        format!("identity.mapping[{i}].stripDomain.domains"),
                        format!("{d:?} is not a domain"),
                    ));
                }
                Ok(MappingStep::StripDomain { domains })
            }
            MappingStepFile::Regex {
                pattern,
                replacement,
            } => {
                // Anchored: the pattern must match the whole name, or `x@aaf.edu.au.evil.org`
                // would map like `x@aaf.edu.au`.
                let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    invalid(
                        format!("identity.mapping[{i}].regex.pattern"),
                        e.to_string(),
                    )
                })?;
                if let Err(m) = check_replacement(&regex, &replacement) {
                    return Err(invalid(
                        format!("identity.mapping[{i}].regex.replacement"),
                        m,
                    ));
                }
                Ok(MappingStep::Regex { regex, replacement })
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(UsernameMapping {
        annotation: f.xnat_username_annotation,
        steps,
    })
}

/// Every `$1`, `$name` or `${name}` in a replacement must name a group of the pattern; the regex
/// crate would quietly expand an unknown one to nothing.
fn check_replacement(regex: &Regex, replacement: &str) -> Result<(), String> {
    let mut rest = replacement;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            continue;
        }
        let (name, tail) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed `${` in the replacement")?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|n| n == name),
        };
        if name.is_empty() || !known {
            return Err(format!(
                "`${name}` is not a group of the pattern (write `$$` for a literal `$`)"
            ));
        }
        rest = tail;
    }
    Ok(())
}

fn xnat(f: file::XnatFile) -> Result<XnatPolicy, PolicyError> {
    let url = Url::parse(&f.url).map_err(|e| invalid("xnat.url", format!("{:?}: {e}", f.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("xnat.url", "must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "xnat.url",
            "must not contain credentials; they come from the mounted credentials file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid(
            "xnat.url",
            "must be a plain base URL (no query or fragment)",
        ));
    }
    if f.timeout < Duration::from_millis(50) || f.timeout > MAX_XNAT_TIMEOUT {
        return Err(invalid(
            "xnat.timeout",
            format!(
                "must be between 50ms and {}",
                humantime::format_duration(MAX_XNAT_TIMEOUT)
            ),
        ));
    }
    if f.budget < f.timeout || f.budget > MAX_XNAT_BUDGET {
        return Err(invalid(
            "xnat.budget",
            format!(
                "must be at least xnat.timeout and at most {}",
                humantime::format_duration(MAX_XNAT_BUDGET)
            ),
        ));
    }
    if f.max_concurrent_requests == 0 || f.max_concurrent_requests > 1024 {
        return Err(invalid(
            "xnat.maxConcurrentRequests",
            "must be between 1 and 1024",
        ));
    }
    if f.retries > 10 {
        return Err(invalid("xnat.retries", "must be at most 10"));
    }
    if f.retry_backoff > Duration::from_secs(2) {
        return Err(invalid("xnat.retryBackoff", "must be at most 2s"));
    }
    if f.cache_ttl < Duration::from_secs(1) || f.cache_ttl > Duration::from_secs(24 * 3600) {
        return Err(invalid("xnat.cacheTtl", "must be between 1s and 24h"));
    }
    if f.negative_cache_ttl.is_zero() || f.negative_cache_ttl > f.cache_ttl {
        return Err(invalid(
            "xnat.negativeCacheTtl",
            "must be more than 0 and at most xnat.cacheTtl",
        ));
    }
    if f.stale_if_error > Duration::from_secs(7 * 24 * 3600) {
        return Err(invalid("xnat.staleIfError", "must be at most 7 days"));
    }
    if f.on_error == OnError::StaleThenAllow && f.stale_if_error <= f.cache_ttl {
        return Err(invalid(
            "xnat.staleIfError",
            "must be longer than xnat.cacheTtl for onError: staleThenAllow to use anything",
        ));
    }
    if let Some(r) = f.refresh_ahead
        && (r.is_zero() || r >= f.cache_ttl)
    {
        return Err(invalid(
            "xnat.refreshAhead",
            "must be more than 0 and less than xnat.cacheTtl",
        ));
    }
    if f.cache_capacity == 0 {
        return Err(invalid("xnat.cacheCapacity", "must be at least 1"));
    }
    if let Some((i, r)) = f.roles.iter().enumerate().find(|(_, r)| !is_group_role(r)) {
        return Err(invalid(
            format!("xnat.roles[{i}]"),
            format!("{r:?} is not a group role (e.g. owner, member, collaborator)"),
        ));
    }
    if f.deny_message.trim().is_empty() {
        return Err(invalid("xnat.denyMessage", "must not be empty"));
    }
    if f.ca_file.as_deref().is_some_and(|p| !p.starts_with('/')) {
        return Err(invalid("xnat.caFile", "must be an absolute path"));
    }
    Ok(XnatPolicy {
        url,
        ca_file: f.ca_file.map(Into::into),
        project_source: f.project_source,
        timeout: f.timeout,
        budget: f.budget,
        max_concurrent_requests: f.max_concurrent_requests,
        retries: f.retries,
        retry_backoff: f.retry_backoff,
        cache_ttl: f.cache_ttl,
        negative_cache_ttl: f.negative_cache_ttl,
        stale_if_error: f.stale_if_error,
        refresh_ahead: f.refresh_ahead,
        cache_capacity: f.cache_capacity,
        roles: f.roles,
        on_error: f.on_error,
        deny_message: f.deny_message,
    })
}

fn storage(f: file::StorageFile) -> Result<Storage, PolicyError> {
    if !is_dns_label(&f.volume_name) {
        return Err(invalid(
            "storage.volumeName",
            format!("{:?} is not a DNS-1123 label", f.volume_name),
        ));
    }
    if !is_dns_subdomain(&f.claim_name) {
        return Err(invalid(
            "storage.claimName",
            format!("{:?} is not a PVC name", f.claim_name),
        ));
    }
    let projects = mount("storage.projects", f.projects, PROJECT_VARS)?;
    for (field, t) in [
        ("storage.projects.subPath", &projects.sub_path),
        ("storage.projects.mountPath", &projects.mount_path),
    ] {
        if !t.uses(Var::Project) {
            return Err(invalid(
                field,
                "must contain {project}: each project needs its own",
            ));
        }
    }
    let workspace = f
        .workspace
        .map(|w| mount("storage.workspace", w, WORKSPACE_VARS))
        .transpose()?;
    if let Some(w) = &workspace
        && !(w.sub_path.uses(Var::XnatUser) || w.sub_path.uses(Var::JupyterUser))
    {
        return Err(invalid(
            "storage.workspace.subPath",
            "must contain {xnat_user} or {jupyter_user}, or users would share one workspace",
        ));
    }
    for (i, p) in f.never_mount.iter().enumerate() {
        if !is_valid_project_id(p.strip_suffix('*').unwrap_or(p)) {
            return Err(invalid(
                format!("storage.neverMount[{i}]"),
                format!("{p:?} is not a project id (or a prefix ending in *)"),
            ));
        }
    }
    if f.max_project_mounts == 0 {
        return Err(invalid(
            "storage.maxProjectMounts",
            "must be at least 1 (use xnat.roles or neverMount to mount none)",
        ));
    }
    Ok(Storage {
        volume_name: f.volume_name,
        claim_name: f.claim_name,
        projects,
        workspace,
        never_mount: f.never_mount,
        max_project_mounts: f.max_project_mounts,
    })
}

fn mount(field: &str, f: MountFile, vars: &[Var]) -> Result<MountTemplate, PolicyError> {
    let sub_field = format!("{field}.subPath");
    let sub_path = Template::parse(&f.sub_path, vars).map_err(|m| invalid(&sub_field, m))?;
    if let Err(m) = check_sub_path(&sub_path.render_with("x")) {
        return Err(invalid(sub_field, m));
    }
    let mount_field = format!("{field}.mountPath");
    let mount_path = Template::parse(&f.mount_path, vars).map_err(|m| invalid(&mount_field, m))?;
    let shape = mount_path.render_with("x");
    if !shape.starts_with('/') {
        return Err(invalid(mount_field, "must be an absolute path"));
    }
    if let Err(m) = check_sub_path(&shape[1..]) {
        return Err(invalid(mount_field, m));
    }
    Ok(MountTemplate {
        sub_path,
        mount_path,
    })
}

fn env(f: BTreeMap<String, String>) -> Result<Vec<EnvVar>, PolicyError> {
    env_at("env", f)
}

fn env_at(field: &str, f: BTreeMap<String, String>) -> Result<Vec<EnvVar>, PolicyError> {
    f.into_iter()
        .map(|(name, value)| {
            let field = format!("{field}.{name}");
            if !is_env_name(&name) {
                return Err(invalid(field, "is not a valid environment variable name"));
            }
            let value = Template::parse(&value, ENV_VARS).map_err(|m| invalid(&field, m))?;
            Ok(EnvVar { name, value })
        })
        .collect()
}

fn rule(i: usize, f: file::RuleFile, policy_roles: &[String]) -> Result<Rule, PolicyError> {
    let field = format!("rules[{i}]");
    if f.name.trim().is_empty() {
        return Err(invalid(format!("{field}.name"), "must not be empty"));
    }
    let m = f.matches;
    if m.projects.is_empty() {
        return Err(invalid(
            format!("{field}.match.projects"),
            "must list project ids, or * for any project",
        ));
    }
    let projects = if m.projects.iter().any(|p| p == "*") {
        None
    } else {
        if let Some((j, p)) = m
            .projects
            .iter()
            .enumerate()
            .find(|(_, p)| !is_valid_project_id(p))
        {
            return Err(invalid(
                format!("{field}.match.projects[{j}]"),
                format!("{p:?} is not a project id"),
            ));
        }
        Some(m.projects)
    };
    if let Some((j, r)) = m
        .roles
        .iter()
        .enumerate()
        .find(|(_, r)| !policy_roles.contains(r))
    {
        return Err(invalid(
            format!("{field}.match.roles[{j}]"),
            format!("{r:?} is not one of xnat.roles, so it never grants access"),
        ));
    }
    let mounts = f
        .mounts
        .into_iter()
        .enumerate()
        .map(|(j, mf)| {
            let template = mount(
                &format!("{field}.mounts[{j}]"),
                MountFile {
                    sub_path: mf.sub_path,
                    mount_path: mf.mount_path,
                },
                WORKSPACE_VARS,
            )?;
            Ok(RuleMount {
                template,
                read_only: mf.read_only,
            })
        })
        .collect::<Result<_, PolicyError>>()?;
    Ok(Rule {
        name: f.name,
        projects,
        roles: m.roles,
        env: env_at(&format!("{field}.env"), f.env)?,
        mounts,
        resources: resource_set(
            &format!("{field}.resources"),
            f.resources.requests,
            f.resources.limits,
        )?,
    })
}

/// Parses requests and limits; names must be resources, quantities non-negative, each request at
/// most its limit, and extended resources limits only.
fn resource_set(
    field: &str,
    requests: BTreeMap<String, QuantityText>,
    limits: BTreeMap<String, QuantityText>,
) -> Result<ResourceSet, PolicyError> {
    let parse = |kind: &str, m: BTreeMap<String, QuantityText>| {
        m.into_iter()
            .map(|(name, q)| {
                let f = format!("{field}.{kind}.{name}");
                if !is_resource_name(&name) {
                    return Err(invalid(
                        f,
                        "is not a resource name (cpu, memory, ephemeral-storage, vendor/name)",
                    ));
                }
                let q = Quantity::parse(&q.0).map_err(|e| invalid(&f, e.to_string()))?;
                Ok((name, q))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
    };
    let set = ResourceSet {
        requests: parse("requests", requests)?,
        limits: parse("limits", limits)?,
    };
    for (name, r) in &set.requests {
        if is_extended_resource(name) {
            return Err(invalid(
                format!("{field}.requests.{name}"),
                "extended resources take limits only (Kubernetes sets the request equal)",
            ));
        }
        if let Some(l) = set.limits.get(name)
            && r.value() > l.value()
        {
            return Err(invalid(
                format!("{field}.requests.{name}"),
                format!("{r} is above {field}.limits.{name} ({l})"),
            ));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(yaml: &str) -> String {
        match Policy::parse(yaml).unwrap_err() {
            PolicyError::Invalid { field, .. } => field,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn empty_document_is_the_default_policy() {
        let p = Policy::parse("").unwrap();
        assert_eq!(p.pods.name_prefix, "jupyter-");
        assert_eq!(p.pods.requesters, ["system:serviceaccount:jupyter:hub"]);
        assert_eq!(p.storage.claim_name, "xnat-gpfs");
        assert_eq!(p.xnat.roles, ["owner", "member", "collaborator"]);
        assert_eq!(p.resources.mode, ResourceMode::FillUnset);
        assert_eq!(p.resources.set.limits["memory"].as_str(), "8Gi");
        let names: Vec<_> = p.env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["XNAT_HOST", "XNAT_PROJECTS", "XNAT_USER"]);
    }

    #[test]
    fn the_sample_policy_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy.yaml");
        Policy::load(&path).unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of("xnat:\n  timeout: 30s\n"), "xnat.timeout");
        assert_eq!(field_of("xnat:\n  timeout: soon\n"), "xnat.timeout");
        assert_eq!(field_of("xnat:\n  tmeout: 1s\n"), "xnat.tmeout");
        assert_eq!(field_of("xnat:\n  url: ftp://x\n"), "xnat.url");
        assert_eq!(field_of("xnat:\n  url: http://u:p@x/\n"), "xnat.url");
        assert_eq!(
            field_of("xnat:\n  roles: [owner, 'a b']\n"),
            "xnat.roles[1]"
        );
        assert_eq!(field_of("xnat:\n  onError: explode\n"), "xnat.onError");
        assert_eq!(
            field_of(
                "storage:\n  projects: {subPath: 'archive/{proj}', mountPath: '/p/{project}'}\n"
            ),
            "storage.projects.subPath"
        );
        assert_eq!(
            field_of(
                "storage:\n  projects: {subPath: '../{project}', mountPath: '/p/{project}'}\n"
            ),
            "storage.projects.subPath"
        );
        assert_eq!(
            field_of("storage:\n  projects: {subPath: 'a/{project}', mountPath: /p/all}\n"),
            "storage.projects.mountPath"
        );
        assert_eq!(
            field_of("storage:\n  workspace: {subPath: shared, mountPath: /w}\n"),
            "storage.workspace.subPath"
        );
        assert_eq!(
            field_of("storage:\n  volumeName: Bad_Name\n"),
            "storage.volumeName"
        );
        assert_eq!(field_of("env:\n  '1BAD': x\n"), "env.1BAD");
        assert_eq!(field_of("env:\n  X: '{project}'\n"), "env.X");
        assert_eq!(
            field_of("resources:\n  limits: {cpu: lots}\n"),
            "resources.limits.cpu"
        );
        assert_eq!(
            field_of("resources:\n  requests: {memory: 16Gi}\n"),
            "resources.requests.memory"
        );
        assert_eq!(
            field_of("identity:\n  mapping:\n    - regex: {pattern: '(', replacement: x}\n"),
            "identity.mapping[0].regex.pattern"
        );
        assert_eq!(field_of("pods: [1]\n"), "pods");
        assert_eq!(field_of("pods:\n  requesters: []\n"), "pods.requesters");
        assert_eq!(
            field_of("xnat:\n  budget: 1s\n  timeout: 2s\n"),
            "xnat.budget"
        );
        assert_eq!(
            field_of("xnat:\n  negativeCacheTtl: 2m\n"),
            "xnat.negativeCacheTtl"
        );
        assert_eq!(field_of("xnat:\n  refreshAhead: 2m\n"), "xnat.refreshAhead");
        assert_eq!(
            field_of("xnat:\n  onError: staleThenAllow\n  staleIfError: 30s\n"),
            "xnat.staleIfError"
        );
        assert_eq!(
            field_of("xnat:\n  projectSource: rest\n"),
            "xnat.projectSource"
        );
        assert_eq!(
            field_of(
                "userOptions:\n  pathMappings:\n    - {xnatPath: rel, subPath: a, scope: project}\n"
            ),
            "userOptions.pathMappings[0].xnatPath"
        );
        assert_eq!(
            field_of(
                "userOptions:\n  pathMappings:\n    - {xnatPath: /a, subPath: ../b, scope: user}\n"
            ),
            "userOptions.pathMappings[0].subPath"
        );
        assert_eq!(
            field_of("userOptions:\n  gpuResource: gpu\n"),
            "userOptions.gpuResource"
        );
        for root in ["/", "//", ""] {
            let yaml = format!(
                "userOptions:\n  pathMappings:\n    - {{xnatPath: '{root}', subPath: a, scope: project}}\n"
            );
            assert_eq!(
                field_of(&yaml),
                "userOptions.pathMappings[0].xnatPath",
                "{root:?}"
            );
        }
        assert_eq!(field_of("a: [\n"), "(document)");
    }

    #[test]
    fn regex_mappings_match_whole_names_and_name_real_groups() {
        let p = Policy::parse(
            "identity:\n  mapping:\n    - regex: {pattern: '(?P<sub>[0-9a-f]+)@aaf\\.edu\\.au', replacement: 'aaf_${sub}'}\n",
        )
        .unwrap();
        assert_eq!(p.identity.apply("9f8e@aaf.edu.au"), "aaf_9f8e");
        assert_eq!(
            p.identity.apply("x+9f8e@aaf.edu.au.evil.org"),
            "x+9f8e@aaf.edu.au.evil.org"
        );
        for bad in ["'$2'", "'$nope'", "'${sub'", "'$'"] {
            let yaml = format!(
                "identity:\n  mapping:\n    - regex: {{pattern: '(?P<sub>a)', replacement: {bad}}}\n"
            );
            assert_eq!(
                field_of(&yaml),
                "identity.mapping[0].regex.replacement",
                "{bad}"
            );
        }
        Policy::parse(
            "identity:\n  mapping:\n    - regex: {pattern: '(a)', replacement: 'x$$1$1'}\n",
        )
        .unwrap();
    }

    #[test]
    fn mapping_steps_read_naturally_in_yaml() {
        let p = Policy::parse(
            "identity:\n  mapping:\n    - lowercase\n    - stripDomain: {domains: [uni.edu.au]}\n    - regex: {pattern: '^(.*)$', replacement: 'x_$1'}\n",
        )
        .unwrap();
        assert_eq!(p.identity.apply("Bob@UNI.edu.au"), "x_bob");
    }

    #[test]
    fn numbers_are_quantities_and_workspace_can_be_off() {
        let p = Policy::parse(
            "resources:\n  mode: override\n  limits: {cpu: 4, memory: 8Gi}\n  requests: {cpu: 0.5}\nstorage:\n  workspace: null\n",
        )
        .unwrap();
        assert_eq!(p.resources.set.limits["cpu"].as_str(), "4");
        assert_eq!(p.resources.set.requests["cpu"].as_str(), "0.5");
        assert!(!p.resources.set.requests.contains_key("memory"));
        assert!(p.storage.workspace.is_none());
    }
}
