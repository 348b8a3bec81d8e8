//! What XNAT confirms beyond the user's own projects, for a launch's mounts: that a project is
//! public, and which project an experiment lives in and which projects it is shared into. XNAT's
//! JupyterHub plugin mounts an experiment shared into the user's project from its *primary*
//! project's archive, and a stored-search launch mounts public projects too; neither is in the
//! user's project list, so each is mounted only once XNAT has said so. Pure: the asking is
//! [`crate::xnat`]'s.

use serde_json::Value;

use crate::archive::AbsentDirs;

/// What XNAT confirmed for one review beyond the user's project list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Confirmed {
    /// Projects `GET /data/projects/{id}/accessibility` calls `public` (a launch's).
    pub public: Vec<String>,
    /// Why each other project asked about is not confirmed: what XNAT calls it, that XNAT does
    /// not show it, or that XNAT could not be asked.
    pub unconfirmed: Vec<(String, String)>,
    /// The launched experiment, as `GET /data/experiments/{id}` describes it.
    pub experiment: Option<SharedExperiment>,
    /// Why the launched experiment, when asked about, is not confirmed.
    pub experiment_unconfirmed: Option<String>,
    /// Optional project mounts' directories found missing.
    pub absent: AbsentDirs,
}

impl Confirmed {
    /// Nothing confirmed (no launch, or nothing to ask; no directory looked at).
    pub const NONE: Confirmed = Confirmed {
        public: Vec::new(),
        unconfirmed: Vec::new(),
        experiment: None,
        experiment_unconfirmed: None,
        absent: AbsentDirs::NONE,
    };
}

impl Confirmed {
    /// Why `project` is not confirmed, when it was asked about.
    pub fn why_not(&self, project: &str) -> Option<&str> {
        self.unconfirmed
            .iter()
            .find(|(p, _)| p == project)
            .map(|(_, why)| why.as_str())
    }
}

/// What to ask XNAT before deciding a launch: projects its mounts name that the user may not
/// read (public ones may still be mounted), and the launched experiment when one of those may be
/// its primary project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asks {
    pub projects: Vec<String>,
    pub experiment: Option<String>,
}

impl Asks {
    pub fn is_empty(&self) -> bool {
        self.projects.is_empty() && self.experiment.is_none()
    }
}

/// Where an experiment lives and which projects it is shared into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedExperiment {
    pub id: String,
    /// Its primary project, whose archive holds it.
    pub project: String,
    /// Its label in the primary project (its directory there).
    pub label: String,
    /// Projects it is shared into.
    pub shared_into: Vec<String>,
}

impl SharedExperiment {
    /// Reads XNAT's item JSON (`ItemJSONBuilder`): `items[0].data_fields` has `ID`, `project`
    /// and `label`; each share is an item of the child whose `field` is `sharing/share`, with
    /// `data_fields.project`.
    pub fn from_item_json(v: &Value) -> Option<Self> {
        let item = v.get("items")?.get(0)?;
        let fields = item.get("data_fields")?;
        let text = |f: &Value, k: &str| f.get(k)?.as_str().map(str::to_owned);
        let shared_into = item
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("field").and_then(Value::as_str) == Some("sharing/share"))
            .filter_map(|c| c.get("items")?.as_array())
            .flatten()
            .filter_map(|share| text(share.get("data_fields")?, "project"))
            .collect();
        Some(Self {
            id: text(fields, "ID")?,
            project: text(fields, "project")?,
            label: text(fields, "label")?,
            shared_into,
        })
    }
}

/// `GET /data/projects/{id}/accessibility` answers `public`, `protected` or `private` as plain
/// text (`ProjectAccessibilityResource`).
pub fn is_public(body: &str) -> bool {
    body.trim() == "public"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_experiment_and_its_shares_as_xnat_writes_them() {
        let v = json!({"items": [{
            "meta": {"xsi:type": "xnat:mrSessionData", "isHistory": false},
            "data_fields": {"ID": "XNAT_E00007", "project": "GAMMA", "label": "G01_MR1"},
            "children": [
                {"field": "scans/scan", "items": [{"data_fields": {"ID": "1"}}]},
                {"field": "sharing/share", "items": [
                    {"meta": {}, "data_fields": {"project": "ALPHA", "label": "A_MR1"}, "children": []},
                    {"meta": {}, "data_fields": {"label": "no project"}, "children": []}
                ]}
            ]
        }]});
        assert_eq!(
            SharedExperiment::from_item_json(&v),
            Some(SharedExperiment {
                id: "XNAT_E00007".into(),
                project: "GAMMA".into(),
                label: "G01_MR1".into(),
                shared_into: vec!["ALPHA".into()],
            })
        );
        assert_eq!(
            SharedExperiment::from_item_json(&json!({"items": []})),
            None
        );
        assert!(is_public("public\n") && !is_public("protected") && !is_public(""));
    }
}
