//! Any bytes as what XNAT answers, read by the parsers the client uses (the first byte picks
//! one): the group list (`GET /xapi/users/{u}/groups`), the admin access list
//! (`GET /xapi/access/{u}/projects`), an experiment's item JSON (`GET /data/experiments/{id}`),
//! a project's `archive_spec` XML (a first byte of 0xA0 or more), and the quantities the
//! plugin's launch resources and the policy become. Whatever XNAT says, access holds only
//! mountable project ids and standard project roles, sorted and distinct; an archive spec is
//! only ever the project's own, with a current arc that is a directory name; a quantity's
//! canonical spelling reads back as the same value.

use jupyter_xnat_webhook::SharedExperiment;
use jupyter_xnat_webhook::{AccessEntry, PROJECT_ROLES, UserAccess};
use jupyter_xnat_webhook::{Amount, Quantity};
use jupyter_xnat_webhook::{ArchiveSpec, ProjectRoot, archive_spec_of};
use jupyter_xnat_webhook::{is_safe_segment, is_valid_project_id};

fn access(access: &UserAccess) {
    for pair in access.groups.windows(2) {
        assert!(
            pair[0] < pair[1],
            "groups not sorted and distinct: {:?}",
            access.groups
        );
    }
    for g in &access.groups {
        assert!(
            is_valid_project_id(&g.project) && is_safe_segment(&g.project),
            "{g:?}"
        );
        assert!(PROJECT_ROLES.contains(&g.role.as_str()), "{g:?}");
    }
    let roles = ["owner".to_owned(), "member".to_owned()];
    let readable = access.readable_projects(&roles);
    for pair in readable.windows(2) {
        assert!(pair[0] < pair[1], "readable projects repeat: {readable:?}");
    }
    for p in &readable {
        assert!(
            access
                .groups
                .iter()
                .any(|g| g.project == *p && roles.contains(&g.role))
        );
    }
}

fn quantity(text: &str) {
    let Some(amount) = Amount::parse(text) else {
        assert!(
            Quantity::parse(text).is_err(),
            "{text:?}: Quantity reads what Amount does not"
        );
        return;
    };
    let canonical = amount.canonical();
    assert_eq!(
        Amount::parse(&canonical),
        Some(amount),
        "{text:?} → {canonical:?} reads back differently"
    );
    assert_eq!(
        Amount::parse(&canonical).map(|a| a.canonical()),
        Some(canonical)
    );
}

/// `GET /data/projects/ALPHA/archive_spec`: read as ALPHA's or refused, never another's, and
/// its current arc is a directory name or the project is refused.
fn archive_spec(text: &str) {
    let Ok(spec) = archive_spec_of(text, "ALPHA") else {
        return;
    };
    assert!(matches!(spec, ArchiveSpec::Found { .. }));
    let Some(place) = spec.place("ALPHA", "/data/xnat/archive") else {
        return; // the site default
    };
    match &place.root {
        ProjectRoot::Refused(_) => {}
        root => {
            assert!(is_safe_segment(place.arc()), "{place:?}");
            if let ProjectRoot::Own(path) = root {
                assert!(
                    !path.starts_with("/data/xnat/archive/")
                        || path.starts_with("/data/xnat/archive/ALPHA/"),
                    "{place:?}"
                );
            }
        }
    }
}

/// Panics when the input breaks a promise.
pub fn check(bytes: &[u8]) {
    let Some((&pick, body)) = bytes.split_first() else {
        return;
    };
    if pick >= 0xA0 {
        if let Ok(text) = std::str::from_utf8(body) {
            archive_spec(text);
        }
        return;
    }
    match pick % 4 {
        0 => {
            if let Ok(ids) = serde_json::from_slice::<Vec<String>>(body) {
                access(&UserAccess::from_group_ids(&ids));
            }
        }
        1 => {
            if let Ok(entries) = serde_json::from_slice::<Vec<AccessEntry>>(body) {
                access(&UserAccess::from_access_list(&entries));
            }
        }
        3 => {
            // `GET /data/experiments/{id}?format=json`: whatever it says, reading it never
            // panics, and what is read is the first item's own fields.
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
                && let Some(e) = SharedExperiment::from_item_json(&v)
            {
                let fields = &v["items"][0]["data_fields"];
                assert_eq!(fields["project"].as_str(), Some(e.project.as_str()));
                assert_eq!(fields["label"].as_str(), Some(e.label.as_str()));
                assert_eq!(fields["ID"].as_str(), Some(e.id.as_str()));
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                quantity(text);
            }
        }
    }
}
