//! `resources`: cpu, memory and extended-resource requests and limits, and whether the policy or
//! the hub wins.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyError, invalid};
use crate::names::{is_resource_name, requests_equal_limits};
use crate::quantity::Quantity;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResourceMode {
    /// Fill in only what the pod does not set: the hub's own settings win.
    FillUnset,
    /// The policy's values replace the pod's.
    Override,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourcesFile {
    pub mode: ResourceMode,
    /// Resource name (`cpu`, `memory`, …) → quantity. A given map replaces the defaults.
    pub requests: BTreeMap<String, QuantityText>,
    /// Resource name (`cpu`, `memory`, `nvidia.com/gpu`, …) → quantity.
    pub limits: BTreeMap<String, QuantityText>,
}

impl Default for ResourcesFile {
    fn default() -> Self {
        Self {
            mode: ResourceMode::FillUnset,
            requests: BTreeMap::from([
                ("cpu".into(), QuantityText("500m".into())),
                ("memory".into(), QuantityText("1Gi".into())),
            ]),
            limits: BTreeMap::from([
                ("cpu".into(), QuantityText("4".into())),
                ("memory".into(), QuantityText("8Gi".into())),
            ]),
        }
    }
}

/// A quantity as written; `cpu: 4` is accepted as well as `cpu: "4"` (YAML makes a number of it).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(transparent)]
pub struct QuantityText(pub String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(QuantityText(match Text::deserialize(d)? {
            Text::S(s) => s,
            Text::I(i) => i.to_string(),
            Text::F(f) => f.to_string(),
        }))
    }
}

impl JsonSchema for QuantityText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes quantity: 500m, 2, 1Gi, 512Mi, 1e3",
            "anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}]
        })
    }
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
    /// `other`'s values replace this set's, key by key, and each request stays at or below its
    /// limit: the side `other` set wins and the other side follows it (a launch profile's
    /// `cpu_limit: 0.5` lowers the policy's request of `0.7` to `0.5`, or the API server would
    /// reject the pod). Where `other` sets both the wrong way round, its limit wins.
    pub fn overlay(&mut self, other: &ResourceSet) {
        for (k, v) in &other.requests {
            self.requests.insert(k.clone(), v.clone());
        }
        for (k, v) in &other.limits {
            self.limits.insert(k.clone(), v.clone());
        }
        for (k, limit) in &mut self.limits {
            let Some(request) = self.requests.get_mut(k) else {
                continue;
            };
            if request.value() > limit.value() {
                if other.requests.contains_key(k) && !other.limits.contains_key(k) {
                    *limit = request.clone();
                } else {
                    *request = limit.clone();
                }
            }
        }
    }
}

impl ResourcesFile {
    pub(super) fn validate(self) -> Result<ResourcePolicy, PolicyError> {
        Ok(ResourcePolicy {
            mode: self.mode,
            set: resource_set("resources", self.requests, self.limits)?,
        })
    }
}

/// Parses requests and limits found at `field`; names must be resources, quantities
/// non-negative, each request at most its limit, and extended resources limits only.
pub(super) fn resource_set(
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
        if requests_equal_limits(name) {
            return Err(invalid(
                format!("{field}.requests.{name}"),
                "extended resources and hugepages take limits only (Kubernetes sets the request equal)",
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
