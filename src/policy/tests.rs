//! Policy parsing and validation: defaults, field-named errors, mapping steps, quantities.

use std::path::Path;

use super::*;

fn field_of(yaml: &str) -> String {
    match Policy::parse(yaml).unwrap_err() {
        PolicyError::Invalid { field, .. } => field,
        other => panic!("unexpected {other}"),
    }
}

/// What a reload refuses as an emptied file: every form of "no document", and nothing else.
#[test]
fn an_empty_document_is_told_from_a_short_one() {
    for empty in ["", "\n  \n", "# all gone\n", "---\n# c\n", "~\n", "null"] {
        assert!(is_empty_document(empty.as_bytes()), "{empty:?}");
    }
    for policy in ["mode: audit\n", "env: {}\n", "xnat:\n", "[", "{}", "\u{ff}"] {
        assert!(!is_empty_document(policy.as_bytes()), "{policy:?}");
    }
}

#[test]
fn empty_document_is_the_default_policy() {
    let p = Policy::parse("").unwrap();
    assert_eq!(p.pods.name_prefix, "jupyter-");
    assert_eq!(p.pods.requesters, ["system:serviceaccount:jupyter:hub"]);
    assert_eq!(p.storage.volumes[0].claim_name, "xnat-gpfs");
    assert_eq!(p.xnat.roles, ["owner", "member", "collaborator"]);
    assert_eq!(p.resources.mode, ResourceMode::FillUnset);
    assert_eq!(p.resources.set.limits["memory"].as_str(), "8Gi");
    let names: Vec<_> = p.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["XNAT_HOST", "XNAT_PROJECTS", "XNAT_USER"]);
}

#[test]
fn the_sample_policy_in_deploy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/policy.yaml");
    Policy::load(&path, &Overrides::default()).unwrap();
}

/// `--pods-requesters` (the Deployment's `PODS_REQUESTERS`) replaces the document's list, and
/// the list it gives is validated as the document's is.
#[test]
fn the_pods_requesters_override_replaces_the_documents_list() {
    let yaml = b"pods:\n  requesters: [system:serviceaccount:jupyter:hub]\n";
    let given = |list: &[&str]| Overrides {
        pods_requesters: Overrides::requesters(
            &list.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        ),
        ..Overrides::default()
    };
    let p = Policy::from_yaml(yaml, &given(&["system:serviceaccount:xnat:hub", " b "])).unwrap();
    assert_eq!(p.pods.requesters, ["system:serviceaccount:xnat:hub", "b"]);
    let p = Policy::from_yaml(yaml, &given(&[])).unwrap();
    assert_eq!(p.pods.requesters, ["system:serviceaccount:jupyter:hub"]);
    let p = Policy::from_yaml(b"", &given(&["system:serviceaccount:xnat:hub"])).unwrap();
    assert_eq!(p.pods.requesters, ["system:serviceaccount:xnat:hub"]);
    for (list, at) in [(&[""][..], 0), (&[" "], 0), (&["a", ""], 1)] {
        match Policy::from_yaml(yaml, &given(list)).unwrap_err() {
            PolicyError::Invalid { field, message } => {
                assert_eq!(field, format!("pods.requesters[{at}]"));
                assert!(message.contains("PODS_REQUESTERS"), "{message}");
            }
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn volume_and_launch_errors_name_the_field() {
    for (yaml, field) in [
        (
            "userOptions:\n  allowedImages: [registry.example.org]\n",
            "userOptions.allowedImages[0]",
        ),
        (
            "storage:\n  volumes:\n    - {name: a, claimName: c, readOnly: true}\n",
            "storage.workspace.volume",
        ),
        (
            "storage:\n  volumeName: v\n  volumes: [{name: a, claimName: c}]\n",
            "storage.volumes",
        ),
        (
            "storage:\n  projects: {volume: nope, subPath: '{project}', mountPath: '/p/{project}'}\n",
            "storage.projects.volume",
        ),
        (
            "userOptions:\n  pathMappings: [{xnatPath: /, subPath: a, scope: project}]\n",
            "userOptions.pathMappings[0].xnatPath",
        ),
    ] {
        assert_eq!(field_of(yaml), field, "{yaml}");
    }
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
    // A custom group's name is not a role that grants a mount.
    assert_eq!(
        field_of("xnat:\n  roles: [owner, Analysts]\n"),
        "xnat.roles[1]"
    );
    assert_eq!(field_of("xnat:\n  onError: explode\n"), "xnat.onError");
    assert_eq!(
        field_of("storage:\n  projects: {subPath: 'archive/{proj}', mountPath: '/p/{project}'}\n"),
        "storage.projects.subPath"
    );
    assert_eq!(
        field_of("storage:\n  projects: {subPath: '../{project}', mountPath: '/p/{project}'}\n"),
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
            "userOptions:\n  pathMappings:\n    - {xnatPath: ../rel, subPath: a, scope: project}\n"
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
    Policy::parse("identity:\n  mapping:\n    - regex: {pattern: '(a)', replacement: 'x$$1$1'}\n")
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

#[test]
fn what_a_reload_rebuilds_is_derived_from_which_settings_changed() {
    let base = Policy::parse("").unwrap().xnat;
    let change = |yaml: &str| base.change_to(&Policy::parse(yaml).unwrap().xnat);
    assert_eq!(change(""), XnatChange::InPlace);
    assert_eq!(
        change("xnat:\n  cacheTtl: 2m\n  budget: 5s\n  refreshAhead: 30s\n"),
        XnatChange::InPlace
    );
    assert_eq!(
        change("xnat:\n  roles: [owner]\n  onError: deny\n"),
        XnatChange::InPlace
    );
    assert_eq!(change("xnat:\n  timeout: 3s\n"), XnatChange::NewClient);
    assert_eq!(
        change("xnat:\n  maxConcurrentRequests: 4\n"),
        XnatChange::NewClient
    );
    assert_eq!(
        change("xnat:\n  projectSource: access\n"),
        XnatChange::NewCache
    );
    assert_eq!(
        change("xnat:\n  url: http://other.example/xnat\n"),
        XnatChange::NewCache
    );
    assert_eq!(change("xnat:\n  cacheCapacity: 5\n"), XnatChange::NewCache);
    assert_eq!(change("xnat:\n  staleIfError: 0s\n"), XnatChange::NewCache);
}

#[test]
fn several_xnat_mistakes_are_reported_in_the_documented_order() {
    assert_eq!(
        field_of("xnat:\n  caFile: rel\n  timeout: 30s\n"),
        "xnat.timeout"
    );
    assert_eq!(
        field_of("xnat:\n  budget: 1s\n  retries: 20\n"),
        "xnat.budget"
    );
    assert_eq!(
        field_of("xnat:\n  refreshAhead: 2m\n  staleIfError: 8d\n"),
        "xnat.staleIfError"
    );
    assert_eq!(
        field_of("xnat:\n  cacheCapacity: 0\n  roles: ['a b']\n  caFile: rel\n"),
        "xnat.cacheCapacity"
    );
}

#[test]
fn requests_and_limits_compare_exactly() {
    // 700m is 0.7 exactly: not "above" it.
    Policy::parse("resources:\n  requests: {cpu: 700m}\n  limits: {cpu: '0.7'}\n").unwrap();
    assert_eq!(
        field_of("resources:\n  requests: {cpu: 701m}\n  limits: {cpu: '0.7'}\n"),
        "resources.requests.cpu"
    );
}

#[test]
fn hugepages_take_limits_only_like_extended_resources() {
    // Kubernetes requires hugepages requests to equal limits; a different request would make
    // every patched pod invalid.
    assert_eq!(
        field_of("resources:\n  requests: {hugepages-2Mi: 1Gi}\n  limits: {hugepages-2Mi: 2Gi}\n"),
        "resources.requests.hugepages-2Mi"
    );
    Policy::parse("resources:\n  limits: {hugepages-2Mi: 2Gi}\n").unwrap();
}

#[test]
fn env_names_must_be_valid_before_kubernetes_1_32_too() {
    assert_eq!(field_of("env:\n  '..x': y\n"), "env...x");
    assert_eq!(field_of("env:\n  '..': y\n"), "env...");
}

#[test]
fn no_mount_may_lie_below_a_directory_notebooks_can_write() {
    // The user owns workspaces/users/{xnat_user}: a symlink they put there would redirect a
    // mount below it anywhere in the claim, read-write.
    let below = "rules:\n  - name: r\n    match: {projects: ['*']}\n    mounts:\n      - {subPath: 'workspaces/users/{xnat_user}/datasets', mountPath: /d}\n";
    assert_eq!(field_of(below), "rules[0].mounts[0].subPath");
    // A writable directory itself is safe from that: its name lives where nobody writes.
    Policy::parse("rules:\n  - name: r\n    match: {projects: ['*']}\n    mounts:\n      - {subPath: workspaces/users/shared, mountPath: /d}\n").unwrap();
    let projects = "storage:\n  projects: {subPath: 'workspaces/users/alice/{project}', mountPath: '/p/{project}'}\n";
    assert_eq!(field_of(projects), "storage.projects.subPath");
    // Beside the workspaces is fine, and so is a read-write rule mount's own area.
    Policy::parse("rules:\n  - name: r\n    match: {projects: ['*']}\n    mounts:\n      - {subPath: datasets/imagenet, mountPath: /d}\n").unwrap();
    let scratch = "rules:\n  - name: r\n    match: {projects: ['*']}\n    mounts:\n      - {subPath: scratch, mountPath: /s, readOnly: false}\n      - {subPath: scratch/ro, mountPath: /r}\n";
    assert_eq!(field_of(scratch), "rules[0].mounts[1].subPath");
}

#[test]
fn an_xnat_url_error_never_shows_the_credentials_in_it() {
    for url in [
        "http://svc:hunter2@xnat example/xnat",
        "https://svc:hun/ter2@xnat/xnat",
        "https://svc:hun#ter2@xnat",
        "https://svc:hun?ter2@xnat",
        "//svc:hunter2@xnat/xnat",
    ] {
        let e = Policy::parse(&format!("xnat:\n  url: '{url}'\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("xnat.url") && !e.contains("ter2"), "{e}");
    }
    let shown = crate::echo::without_url_credentials("GET https://svc:p/ss@xnat/x failed");
    assert_eq!(shown, "GET https://<redacted>@xnat/x failed");
}

#[test]
fn huge_or_deeply_nested_documents_are_refused_before_parsing() {
    // The YAML scanner takes seconds on tens of thousands of nested brackets.
    let deep = format!("pods: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let e = Policy::parse(&deep).unwrap_err().to_string();
    assert!(e.contains("(document)") && e.contains("deep"), "{e}");
    let huge = format!("# {}\n", "x".repeat(MAX_POLICY_BYTES));
    let e = Policy::parse(&huge).unwrap_err().to_string();
    assert!(e.contains("bytes"), "{e}");
    // Brackets in quotes and comments do not count; real policies pass.
    Policy::parse(&format!(
        "# {}\nidentity:\n  mapping:\n    - regex: {{pattern: '{}', replacement: x}}\n",
        "[".repeat(100),
        "[a]".repeat(40)
    ))
    .unwrap();
    assert_eq!(
        flow_depth("a: [b, {c: [d]}] # [[[[\nb: '[[[' \"[[\\\"[\""),
        3
    );
}
