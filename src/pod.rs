//! The parts of a pod the webhook reads, borrowed from the request's JSON. Only these fields are
//! parsed, so fields this build does not know never stand in the way; everything else in the pod
//! reaches the API server untouched because the patch only names what it changes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A map of strings as the API server writes labels, annotations, selectors and quantities.
pub type StrMap<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// `metadata`: what classification and identity read.
#[derive(Deserialize)]
pub struct PodMeta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub labels: Option<StrMap<'a>>,
    #[serde(borrow, default)]
    pub annotations: Option<StrMap<'a>>,
}

impl PodMeta<'_> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(|v| v.as_ref())
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(|v| v.as_ref())
    }
}

/// `spec`: what the appliers compare the plan with.
#[derive(Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    #[serde(borrow, default)]
    pub volumes: Option<Vec<VolumeView<'a>>>,
    #[serde(borrow, default)]
    pub containers: Vec<ContainerView<'a>>,
    #[serde(borrow, default)]
    pub node_selector: Option<StrMap<'a>>,
    /// Kept raw: read only when a launch asks for node affinity.
    #[serde(borrow, default)]
    pub affinity: Option<&'a RawValue>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub persistent_volume_claim: Option<PvcView<'a>>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PvcView<'a> {
    #[serde(borrow)]
    pub claim_name: Cow<'a, str>,
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub volume_mounts: Option<Vec<MountView<'a>>>,
    #[serde(borrow, default)]
    pub env: Option<Vec<EnvView<'a>>>,
    #[serde(borrow, default)]
    pub env_from: Option<Vec<EnvFromView<'a>>>,
    #[serde(borrow, default)]
    pub resources: Option<ResourcesView<'a>>,
    #[serde(borrow, default)]
    pub volume_devices: Option<Vec<DeviceView<'a>>>,
    #[serde(borrow, default)]
    pub image: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub image_pull_policy: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub command: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub args: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub working_dir: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ports: Option<Vec<PortView<'a>>>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub container_port: Option<i64>,
}

/// An `envFrom` source: every key of a ConfigMap or Secret, each name with `prefix` before it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromView<'a> {
    #[serde(borrow, default)]
    pub prefix: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub config_map_ref: Option<NameRef<'a>>,
    #[serde(borrow, default)]
    pub secret_ref: Option<NameRef<'a>>,
}

impl EnvFromView<'_> {
    /// Whether this source could set `name` (its keys are not in the pod).
    pub fn may_set(&self, name: &str) -> bool {
        name.starts_with(self.prefix.as_deref().unwrap_or_default())
    }

    /// `configMap "x"` or `secret "y"`, for warnings.
    pub fn describe(&self) -> String {
        match (&self.config_map_ref, &self.secret_ref) {
            (Some(c), _) => format!("configMap {:?}", crate::echo::echo(&c.name)),
            (_, Some(s)) => format!("secret {:?}", crate::echo::echo(&s.name)),
            _ => "an envFrom source".into(),
        }
    }
}

#[derive(Clone, Deserialize)]
pub struct NameRef<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

/// A raw block device the container uses: a volume name and where it appears.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub device_path: Cow<'a, str>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountView<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub mount_path: Cow<'a, str>,
    #[serde(borrow, default)]
    pub sub_path: Option<Cow<'a, str>>,
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvView<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub value: Option<Cow<'a, str>>,
}

#[derive(Clone, Deserialize, Default)]
pub struct ResourcesView<'a> {
    #[serde(borrow, default)]
    pub limits: Option<StrMap<'a>>,
    #[serde(borrow, default)]
    pub requests: Option<StrMap<'a>>,
}

/// A notebook pod as the decision sees it: its metadata and the parts of its spec it reads.
pub struct PodView<'a> {
    pub meta: &'a PodMeta<'a>,
    /// Borrowed when the review's parse read it, owned when read from raw JSON here.
    pub spec: Cow<'a, SpecView<'a>>,
}

/// The container that gets the data, and its index in `spec.containers`.
#[derive(Clone, Copy)]
pub struct Notebook<'v, 'a> {
    pub index: usize,
    pub container: &'v ContainerView<'a>,
}

impl<'a> PodView<'a> {
    /// Reads the spec (raw JSON from the review) next to the already parsed metadata.
    pub fn new(meta: &'a PodMeta<'a>, spec: Option<&'a RawValue>) -> serde_json::Result<Self> {
        let spec = match spec {
            Some(raw) => serde_json::from_str(raw.get())?,
            None => SpecView::default(),
        };
        Ok(Self {
            meta,
            spec: Cow::Owned(spec),
        })
    }

    /// The spec the review's parse already read, next to the metadata.
    pub fn read(meta: &'a PodMeta<'a>, spec: &'a SpecView<'a>) -> Self {
        Self {
            meta,
            spec: Cow::Borrowed(spec),
        }
    }

    /// The container named `name`, else the first one; `None` when there are none.
    pub fn notebook(&self, name: &str) -> Option<Notebook<'_, 'a>> {
        let containers = &self.spec.containers;
        let index = containers
            .iter()
            .position(|c| c.name == name)
            .or((!containers.is_empty()).then_some(0))?;
        Some(Notebook {
            index,
            container: &containers[index],
        })
    }
}
