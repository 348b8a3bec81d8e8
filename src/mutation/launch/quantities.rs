//! A launch's resources as Kubernetes quantities: Docker-style cores and sizes, and every
//! generic resource as an extended resource.

use serde_json::Value;

use crate::launch::LaunchResources;
use crate::names::is_extended_resource_name;
use crate::policy::{ResourceSet, UserOptionsPolicy};
use crate::quantity::{Amount, Quantity};
use crate::warning::Warnings;

pub(super) fn quantities(
    r: &LaunchResources,
    policy: &UserOptionsPolicy,
    env: &mut Vec<(String, String)>,
    warnings: &mut Warnings,
) -> ResourceSet {
    let mut set = ResourceSet::default();
    let fields = [
        (
            "cpu_limit",
            &r.cpu_limit,
            cpu as fn(&Value) -> Option<String>,
            "cpu",
            true,
        ),
        ("cpu_reservation", &r.cpu_reservation, cpu, "cpu", false),
        ("mem_limit", &r.mem_limit, memory, "memory", true),
        (
            "mem_reservation",
            &r.mem_reservation,
            memory,
            "memory",
            false,
        ),
    ];
    for (name, value, convert, resource, is_limit) in fields {
        let Some(v) = value else { continue };
        match convert(v).and_then(|s| Quantity::parse(&s).ok()) {
            // Zero would mean "no limit" to Kubernetes, the opposite of what was asked for.
            Some(q) if q.value() == Amount::ZERO => warnings.push(format_args!(
                "launch resource {name} = {v} is zero (or rounds to it); left unset"
            )),
            Some(q) if is_limit => {
                env.push(spawner_env(name, &q, v));
                set.limits.insert(resource.to_owned(), q);
            }
            Some(q) => {
                env.push(spawner_env(name, &q, v));
                set.requests.insert(resource.to_owned(), q);
            }
            None => warnings.push(format_args!(
                "launch resource {name} = {v} not understood; ignored"
            )),
        }
    }
    for (name, count) in &r.generic_resources {
        let resource = if name == "gpu" {
            policy.gpu_resource.as_str()
        } else if is_extended_resource_name(name) && !is_kubernetes_domain(name) {
            name.as_str()
        } else {
            warnings.push(format_args!(
                "launch resource {name:?} is not an extended resource name (domain/name); ignored"
            ));
            continue;
        };
        let n = match count {
            Value::Null => continue,
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n.map(|n| (n, Quantity::parse(&n.to_string()))) {
            Some((0, _)) => {}
            Some((n, Ok(q))) if n <= 1024 => {
                set.limits.insert(resource.to_owned(), q);
            }
            _ => warnings.push(format_args!(
                "launch resource {name} = {count} is not a whole count; ignored"
            )),
        }
    }
    set
}

/// The env JupyterHub's `Spawner.get_env()` writes for a cpu or memory value the spawner was
/// given (`CPU_LIMIT=2.0`, `MEM_LIMIT` in bytes), as the chart's hook leaves it.
fn spawner_env(field: &str, q: &Quantity, stored: &Value) -> (String, String) {
    let name = match field {
        "cpu_limit" => "CPU_LIMIT",
        "cpu_reservation" => "CPU_GUARANTEE",
        "mem_limit" => "MEM_LIMIT",
        _ => "MEM_GUARANTEE",
    };
    let value = if field.starts_with("cpu") {
        // Python's str() of the float the hook passes on.
        let cores = stored
            .as_f64()
            .or_else(|| stored.as_str()?.trim().parse().ok())
            .unwrap_or_default();
        format!("{cores:?}")
    } else {
        q.value()
            .as_integer()
            .map_or_else(|| q.as_str().to_owned(), |b| b.to_string())
    };
    (name.to_owned(), value)
}

/// Extended resources may not be in Kubernetes' own domains.
fn is_kubernetes_domain(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(domain, _)| domain == "kubernetes.io" || domain.ends_with(".kubernetes.io"))
}

/// Cores as a number (`2.0`, `0.5`) or a string → `2`, `500m`.
pub(super) fn cpu(v: &Value) -> Option<String> {
    let cores = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if !(0.0..=1024.0).contains(&cores) {
        return None;
    }
    let millis = (cores * 1000.0).round() as u64;
    Some(if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    })
}

/// Docker-style sizes (`8G`, `512m`, `1024`, `2GB`) are binary units; Kubernetes forms (`8Gi`)
/// pass through.
pub(super) fn memory(v: &Value) -> Option<String> {
    let s = match v {
        Value::Number(n) => return n.as_u64().map(|b| b.to_string()),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    if s.ends_with('i') {
        return Some(s.to_owned());
    }
    let s = s.strip_suffix(['b', 'B']).unwrap_or(s);
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let suffix = match unit.to_ascii_lowercase().as_str() {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        "t" => "Ti",
        _ => return None,
    };
    Some(format!("{num}{suffix}"))
}
