//! The JSON Patch being built for one pod. It owns JSON-Pointer building (the pointer type
//! escapes `~` and `/` in keys such as `nvidia.com/gpu`), and knows the one rule every applier
//! follows: add to an array or object that exists key by key, create one that does not whole.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// A place in the pod, as unescaped path tokens.
#[derive(Debug, Clone)]
pub struct At(PointerBuf);

impl At {
    pub fn spec() -> Self {
        Self(PointerBuf::from_tokens(["spec"]))
    }

    pub fn metadata() -> Self {
        Self(PointerBuf::from_tokens(["metadata"]))
    }

    /// `spec.containers[index]`.
    pub fn container(index: usize) -> Self {
        Self(PointerBuf::from_tokens([
            "spec",
            "containers",
            &index.to_string(),
        ]))
    }

    /// This place's child `token` (an object key or an array index, unescaped). Consumes the
    /// place: clone it to name two children.
    pub fn join(mut self, token: &str) -> Self {
        self.0.push_back(token);
        self
    }
}

/// The operations for one pod, in the order the appliers add them.
#[derive(Debug, Default)]
pub struct PodPatch(Vec<PatchOperation>);

impl PodPatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, at: At, value: Value) {
        self.0
            .push(PatchOperation::Add(AddOperation { path: at.0, value }));
    }

    /// Sets the value at `at`: replaced when it `exists`, else added.
    pub fn set(&mut self, at: At, exists: bool, value: Value) {
        if exists {
            self.replace(at, value);
        } else {
            self.add(at, value);
        }
    }

    pub fn replace(&mut self, at: At, value: Value) {
        self.0.push(PatchOperation::Replace(ReplaceOperation {
            path: at.0,
            value,
        }));
    }

    /// Adds `items` to the array at `at`: appended one by one when it `exists`, else as a new
    /// array. Nothing for no items.
    pub fn append(&mut self, at: At, exists: bool, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if exists {
            for item in items {
                self.add(at.clone().join("-"), item);
            }
        } else {
            self.add(at, Value::Array(items));
        }
    }

    /// Adds `entries` to the object at `at`: key by key when it `exists`, else as a new object.
    /// Nothing for no entries.
    pub fn insert(&mut self, at: At, exists: bool, entries: Map<String, Value>) {
        if entries.is_empty() {
            return;
        }
        if exists {
            for (key, value) in entries {
                self.add(at.clone().join(&key), value);
            }
        } else {
            self.add(at, Value::Object(entries));
        }
    }

    pub fn into_ops(self) -> Vec<PatchOperation> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_escaped_and_containers_indexed() {
        let mut p = PodPatch::new();
        let limits = At::container(1).join("resources").join("limits");
        p.insert(
            limits,
            true,
            Map::from_iter([("nvidia.com/gpu".to_owned(), json!("1"))]),
        );
        p.append(
            At::spec().join("volumes"),
            false,
            vec![json!({"name": "v"})],
        );
        p.append(At::spec().join("volumes"), true, vec![]);
        let ops = serde_json::to_value(p.into_ops()).unwrap();
        assert_eq!(
            ops,
            json!([
                {"op": "add", "path": "/spec/containers/1/resources/limits/nvidia.com~1gpu", "value": "1"},
                {"op": "add", "path": "/spec/volumes", "value": [{"name": "v"}]},
            ])
        );
    }
}
