//! The project list as real XNAT serves it, over real TLS against the stand-in. Each answer's shape
//! is XNAT's own (see `xnat-standin` and `../shared/docs/xnat-api.md`):
//! - the admin access list lists site groups with `ID` null (`RoleHolder.QUERY_USER_PROJECT_ROLES`,
//!   a LEFT JOIN on the group's project) and is `200 []` for an unknown user (`DataAccessApi`);
//! - another user's groups are 404 for an unknown user and `403` with an empty body for an
//!   account that is not a site Administrator (`UsersApi`, `XapiRequestMappingAspect`);
//! - usernames follow `[a-zA-Z][A-Za-z0-9-_'.]{0,63}` (`Patterns`), so `dave_o'neil` exists.

use crate::common::*;
use serde_json::Value;
use xnat_standin::Fault;

/// The xnat-data mounts (mountPath, subPath) of the patched pod.
fn mounts(review: &Value, response: &Value) -> Vec<(String, String)> {
    mounts_of(&patched_pod(review, response), "xnat-data")
        .into_iter()
        .map(|(m, s, _)| (m, s))
        .collect()
}

#[tokio::test]
async fn an_all_data_admin_gets_their_projects_from_the_access_list() {
    let h = Harness::start("xnat:\n  projectSource: access\n").await;
    // XNAT's default `admin` is in ALL_DATA_ADMIN: its row has no project (ID null).
    h.xnat.set_user("root", &["ALL_DATA_ADMIN", "ALPHA_owner"]);
    let review = review_for("root");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
    assert!(warnings(&response).is_empty(), "{:?}", warnings(&response));
}

#[tokio::test]
async fn the_access_list_tells_an_unknown_user_from_one_without_projects() {
    let h = Harness::start("xnat:\n  projectSource: access\n").await;
    h.xnat.set_user("newbie", &[]);
    // Both get `200 []` from /access; one group-list call (404 for the unknown) tells them apart.
    for (user, unknown) in [("newbie", false), ("nobody", true)] {
        let review = review_for(user);
        let response = h.review(&review).await;
        assert_eq!(
            project_paths(&review, &response),
            ["/data/xnat/workspace"],
            "{user}"
        );
        let w = warnings(&response);
        assert_eq!(
            w.iter().any(|w| w.contains("XNAT has no user")),
            unknown,
            "{user}: {w:?}"
        );
        assert_eq!(h.xnat.lookups_for(user), 2, "{user}: access + groups");
    }
    // A user with projects costs the one access call.
    let review = review_for("carol");
    h.review(&review).await;
    assert_eq!(h.xnat.lookups_for("carol"), 1);
}

#[tokio::test]
async fn a_missing_role_is_named_in_the_warning_readyz_and_metrics() {
    for (source, path) in [
        ("groups", "/xapi/users/{user}/groups"),
        ("access", "/xapi/access/{user}/projects"),
    ] {
        let h = Harness::builder()
            .policy(&format!("xnat:\n  projectSource: {source}\n"))
            .alone_with_metrics()
            .start()
            .await;
        let series = format!(
            "xnat_webhook_xnat_failures_total{{endpoint=\"{source}\",reason=\"missing_role\"}}"
        );
        // Counters are process-wide: this test reads what its own spawn added.
        let before = metric(&h.metrics().await, &series);
        h.xnat.set_service_admin(false);
        let review = review_for("alice");
        let response = h.review(&review).await;
        assert_eq!(response["response"]["allowed"], true);
        let w = warnings(&response).join("\n");
        assert!(
            w.contains(&format!(
                "XNAT answered 403 to {path}: the service account lacks the Administrator role"
            )),
            "{w}"
        );
        assert!(!w.contains("password"), "{w}");
        let ready = h.readyz().await;
        let problem = &ready["xnat"]["problems"][0];
        assert_eq!(ready["xnat"]["ok"], false, "{ready}");
        assert_eq!(problem["endpoint"], source);
        assert_eq!(problem["reason"], "missing_role");
        assert_eq!(problem["role"], "Administrator");
        let m = h.metrics().await;
        assert_eq!(metric(&m, &series) - before, 1.0, "{m}");

        // The role given: the next spawn has its data and /readyz is clean again.
        h.xnat.set_service_admin(true);
        let response = h.review(&review).await;
        assert_eq!(project_paths(&review, &response).len(), 3);
        assert_eq!(h.readyz().await["xnat"], serde_json::json!({"ok": true}));
    }
}

#[tokio::test]
async fn wrong_credentials_are_named_as_such() {
    let h = Harness::builder()
        .alone_with_metrics()
        .credentials("webhook-svc:wrong\n")
        .start()
        .await;
    let series = "xnat_webhook_xnat_failures_total{endpoint=\"groups\",reason=\"bad_credentials\"}";
    let before = metric(&h.metrics().await, series);
    let response = h.review(&review_for("alice")).await;
    let w = warnings(&response).join("\n");
    assert!(w.contains("check the username and password"), "{w}");
    assert!(!w.contains("role"), "{w}");
    let ready = h.readyz().await;
    assert_eq!(ready["xnat"]["problems"][0]["reason"], "bad_credentials");
    let m = h.metrics().await;
    assert_eq!(metric(&m, series) - before, 1.0, "{m}");
}

#[tokio::test]
async fn a_username_with_an_apostrophe_gets_its_data_and_workspace() {
    for source in ["groups", "access"] {
        let h = Harness::start(&format!("xnat:\n  projectSource: {source}\n")).await;
        h.xnat.set_user("dave_o'neil", &["ALPHA_member"]);
        let review = review_for("dave_o'neil");
        let response = h.review(&review).await;
        assert_eq!(
            mounts(&review, &response),
            [
                ("/data/projects/ALPHA".into(), "archive/ALPHA".into()),
                (
                    "/data/xnat/workspace".into(),
                    "workspaces/users/dave_o'neil".into()
                ),
            ],
            "{source}"
        );
        // The stand-in decoded the same name from the URL: the lookup was about dave_o'neil.
        assert_eq!(h.xnat.lookups_for("dave_o'neil"), 1, "{source}");
        let pod = patched_pod(&review, &response);
        assert_eq!(env_of(&pod, "XNAT_USER").as_deref(), Some("dave_o'neil"));
    }
}

#[tokio::test]
async fn a_user_in_300_projects_gets_all_of_them_unless_the_policy_caps() {
    let groups: Vec<String> = (0..300).map(|i| format!("P{i:03}_member")).collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let h = Harness::start("").await;
    h.xnat.set_user("busy", &groups);
    let review = review_for("busy");
    let response = h.review(&review).await;
    let paths = project_paths(&review, &response);
    assert_eq!(paths.len(), 301, "300 projects and the workspace");
    assert!(warnings(&response).is_empty());

    let h = Harness::start("storage:\n  maxProjectMounts: 298\n").await;
    h.xnat.set_user("busy", &groups);
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 299);
    let w = warnings(&response);
    assert!(
        w.iter()
            .any(|w| w.contains("storage.maxProjectMounts") && w.contains("left out: P298, P299")),
        "{w:?}"
    );
}

/// XNAT's own notebook layout for hub-started servers, as a project launch mounts it
/// (`DefaultUserOptionsService.getProjectPaths`): arc001 at `experiments`, `resources`,
/// `subjects`, and the workspace at `/workspace/{user}`.
const XNAT_LAYOUT: &str = r#"
storage:
  projects:
    - subPath: "archive/{project}/{arc}"
      mountPath: /data/projects/{project}/experiments
    - subPath: "archive/{project}/resources"
      mountPath: /data/projects/{project}/resources
    - subPath: "archive/{project}/subjects"
      mountPath: /data/projects/{project}/subjects
  workspace:
    subPath: "workspaces/users/{jupyter_user}"
    mountPath: /workspace/{jupyter_user}
env:
  XNAT_DATA: /data
"#;

#[tokio::test]
async fn the_xnat_layout_mounts_each_project_as_a_launch_does() {
    let h = Harness::start(XNAT_LAYOUT).await;
    let review = review_for("erin");
    let response = h.review(&review).await;
    assert_eq!(
        mounts(&review, &response),
        [
            (
                "/data/projects/BETA/experiments".into(),
                "archive/BETA/arc001".into()
            ),
            (
                "/data/projects/BETA/resources".into(),
                "archive/BETA/resources".into()
            ),
            (
                "/data/projects/BETA/subjects".into(),
                "archive/BETA/subjects".into()
            ),
            ("/workspace/erin".into(), "workspaces/users/erin".into()),
        ]
    );
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "XNAT_DATA").as_deref(), Some("/data"));
    assert!(
        mounts_of(&pod, "xnat-data")
            .iter()
            .filter(|m| m.0.starts_with("/data/projects/"))
            .all(|m| m.2),
        "project mounts are read-only"
    );
}

/// A second claim for archives kept outside the site archive, mapped like a launch's sources.
const OWN_ARCHIVES: &str = r#"
storage:
  volumes:
    - {name: xnat-data, claimName: xnat-gpfs}
    - {name: big, claimName: big-archive, readOnly: true}
userOptions:
  pathMappings:
    - {xnatPath: /data/xnat/archive, volume: xnat-data, subPath: archive, scope: project}
    - {xnatPath: /mnt/big, volume: big, subPath: "", scope: project}
"#;

#[tokio::test]
async fn a_project_with_its_own_archive_path_is_mounted_from_there_or_not_at_all() {
    let h = Harness::start(OWN_ARCHIVES).await;
    // What `archive_spec` answers for each (`arc:paths/arc:archivePath`).
    h.xnat
        .set_archive_path("ALPHA", Some("/mnt/big/alpha_data/"));
    h.xnat
        .set_archive_path("BETA", Some("/srv/elsewhere/BETA/"));
    h.xnat
        .set_user("frank", &["ALPHA_owner", "BETA_member", "GAMMA_member"]);
    let review = review_for("frank");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "big"),
        [("/data/projects/ALPHA".into(), "alpha_data".into(), true)]
    );
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [
            ("/data/projects/GAMMA".into(), "archive/GAMMA".into(), true),
            (
                "/data/xnat/workspace".into(),
                "workspaces/users/frank".into(),
                false
            ),
        ]
    );
    let w = warnings(&response).join("\n");
    assert!(
        w.contains(
            "project BETA not mounted: its archive path /srv/elsewhere/BETA is not the site's"
        ),
        "{w}"
    );
    assert_eq!(
        env_of(&pod, "XNAT_PROJECTS").as_deref(),
        Some("ALPHA,GAMMA")
    );
    assert_eq!(h.xnat.counts().archive_specs, 3);

    // Cached per project: another user of ALPHA costs no archive_spec call.
    h.xnat.set_user("gina", &["ALPHA_member"]);
    let review = review_for("gina");
    let response = h.review(&review).await;
    assert_eq!(mounts_of(&patched_pod(&review, &response), "big").len(), 1);
    assert_eq!(h.xnat.counts().archive_specs, 3);
}

#[tokio::test]
async fn an_own_archive_path_keeps_the_layout_below_the_project() {
    let layout = format!(
        "{OWN_ARCHIVES}  # and the layout\n"
    )
    .replace(
        "storage:\n",
        "storage:\n  projects:\n    - {subPath: \"archive/{project}/arc001\", mountPath: \"/data/projects/{project}/experiments\"}\n    - {subPath: \"archive/{project}/resources\", mountPath: \"/data/projects/{project}/resources\"}\n",
    );
    let h = Harness::start(&layout).await;
    h.xnat
        .set_archive_path("ALPHA", Some("/mnt/big/alpha_data"));
    h.xnat.set_user("frank", &["ALPHA_owner"]);
    let review = review_for("frank");
    let response = h.review(&review).await;
    assert_eq!(
        mounts_of(&patched_pod(&review, &response), "big"),
        [
            (
                "/data/projects/ALPHA/experiments".into(),
                "alpha_data/arc001".into(),
                true
            ),
            (
                "/data/projects/ALPHA/resources".into(),
                "alpha_data/resources".into(),
                true
            ),
        ]
    );
}

#[tokio::test]
async fn a_project_whose_archive_path_xnat_cannot_say_is_left_out_by_name() {
    let h = Harness::start("").await;
    // Not XML: XNAT cannot be read.
    h.xnat.set_archive_path("BETA", Some("</broken"));
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
    let w = warnings(&response).join("\n");
    assert!(
        w.contains("project BETA not mounted: where XNAT keeps its files is unknown"),
        "{w}"
    );
    // A project without a stored path is at the site default.
    h.xnat.set_archive_path("GAMMA", None);
    let review = review_for("Bob.Smith@uni.edu.au");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response)[0], "/data/projects/GAMMA");

    // Not asked at all when the policy says no project has its own path.
    let h = Harness::start("xnat:\n  askProjectArchivePaths: false\n").await;
    h.review(&review_for("alice")).await;
    assert_eq!(h.xnat.counts().archive_specs, 0);
}

/// XNAT's layout with each directory optional, as the plugin mounts a project (each only when
/// it exists): the webhook looks at the claim where its own pod sees it (`seenAt`).
#[tokio::test]
async fn optional_layout_mounts_only_the_directories_that_exist() {
    let claim = tempfile::tempdir().unwrap();
    for dir in [
        "archive/BETA/arc001",
        "archive/BETA/resources",
        "archive/ALPHA/subjects",
    ] {
        std::fs::create_dir_all(claim.path().join(dir)).unwrap();
    }
    let policy = format!(
        r#"
storage:
  volumes:
    - {{name: xnat-data, claimName: xnat-gpfs, seenAt: "{}"}}
  projects:
    - {{subPath: "archive/{{project}}/arc001", mountPath: "/data/projects/{{project}}/experiments", optional: true}}
    - {{subPath: "archive/{{project}}/resources", mountPath: "/data/projects/{{project}}/resources", optional: true}}
    - {{subPath: "archive/{{project}}/subjects", mountPath: "/data/projects/{{project}}/subjects", optional: true}}
"#,
        claim.path().display()
    );
    let h = Harness::start(&policy).await;
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        mounts(&review, &response),
        [
            (
                "/data/projects/ALPHA/subjects".into(),
                "archive/ALPHA/subjects".into()
            ),
            (
                "/data/projects/BETA/experiments".into(),
                "archive/BETA/arc001".into()
            ),
            (
                "/data/projects/BETA/resources".into(),
                "archive/BETA/resources".into()
            ),
            (
                "/data/xnat/workspace".into(),
                "workspaces/users/alice".into()
            ),
        ]
    );
    // Both projects are still the user's: a missing directory is not a refusal.
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "XNAT_PROJECTS").as_deref(), Some("ALPHA,BETA"));
    assert!(warnings(&response).is_empty(), "{:?}", warnings(&response));

    // A claim the webhook does not see (not mounted at seenAt): nothing optional is mounted,
    // and the warning says why.
    let h = Harness::start(&policy.replace(
        &claim.path().display().to_string(),
        "/nonexistent/archive-view",
    ))
    .await;
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    let w = warnings(&response).join("\n");
    assert!(
        w.contains("could not see whether 6 optional project directories exist"),
        "{w}"
    );

    // `optional` needs a volume the webhook sees.
    let unseen = policy.replace(&format!(", seenAt: \"{}\"", claim.path().display()), "");
    let err = jupyter_xnat_webhook::tools::check_policy(&unseen).unwrap_err();
    assert!(
        err.to_string().contains("storage.projects[0].optional"),
        "{err}"
    );
}

/// A directory reached through a symbolic link out of the claim is not mounted: kubelet resolves
/// a subPath's links and refuses one that leaves the volume (the pod would not start), so it
/// counts as not there, with a warning. A link that stays inside the claim is followed, as
/// kubelet does.
#[tokio::test]
async fn an_optional_directory_through_a_link_out_of_the_claim_is_not_mounted() {
    let claim = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(elsewhere.path().join("subjects")).unwrap();
    std::fs::create_dir_all(claim.path().join("archive/BETA/arc001")).unwrap();
    let link = |target: &std::path::Path, at: &str| {
        std::os::unix::fs::symlink(target, claim.path().join(at)).unwrap();
    };
    // A link at the directory itself, one at a component above it, one inside the claim.
    link(elsewhere.path(), "archive/BETA/resources");
    link(elsewhere.path(), "archive/ALPHA");
    link(std::path::Path::new("arc001"), "archive/BETA/subjects");
    let policy = format!(
        r#"
storage:
  volumes:
    - {{name: xnat-data, claimName: xnat-gpfs, seenAt: "{}"}}
  projects:
    - {{subPath: "archive/{{project}}/arc001", mountPath: "/data/projects/{{project}}/experiments", optional: true}}
    - {{subPath: "archive/{{project}}/resources", mountPath: "/data/projects/{{project}}/resources", optional: true}}
    - {{subPath: "archive/{{project}}/subjects", mountPath: "/data/projects/{{project}}/subjects", optional: true}}
"#,
        claim.path().display()
    );
    let h = Harness::start(&policy).await;
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/BETA/experiments",
            "/data/projects/BETA/subjects",
            "/data/xnat/workspace"
        ]
    );
    let w = warnings(&response).join("\n");
    assert!(w.contains("out of the claim"), "{w}");
    assert!(
        w.contains("/data/projects/ALPHA/subjects") && w.contains("/data/projects/BETA/resources"),
        "{w}"
    );
}

/// The sample policy (`deploy/base/policy.yaml`) against an XNAT that negotiates as XNAT does:
/// `archive_spec` offers only `text/xml` and answers 406 to `Accept: application/json`, so a
/// client asking for JSON everywhere leaves every project out.
#[tokio::test]
async fn the_sample_policy_mounts_alices_projects_from_an_xnat_that_negotiates() {
    let sample = std::fs::read_to_string("deploy/base/policy.yaml").unwrap();
    let h = Harness::start(&sample).await;
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/BETA",
            "/data/xnat/workspace"
        ]
    );
    assert!(warnings(&response).is_empty(), "{:?}", warnings(&response));
    assert_eq!(
        h.xnat.counts().archive_specs,
        2,
        "both projects' archive paths asked"
    );
    assert_eq!(h.readyz().await["xnat"], serde_json::json!({"ok": true}));
}

/// XNAT logins are case-sensitive; JupyterHub lowercases hub names by default. Hub user
/// `jsmith` is XNAT's `JSmith` everywhere the XNAT user appears.
#[tokio::test]
async fn a_hub_name_that_xnat_has_only_in_another_case_gets_that_logins_data() {
    for source in ["groups", "access"] {
        let h = Harness::start(&format!("xnat:\n  projectSource: {source}\n")).await;
        h.xnat.set_user("JSmith", &["GAMMA_member"]);
        let review = review_for("jsmith");
        let response = h.review(&review).await;
        assert_eq!(
            mounts(&review, &response),
            [
                ("/data/projects/GAMMA".into(), "archive/GAMMA".into()),
                (
                    "/data/xnat/workspace".into(),
                    "workspaces/users/JSmith".into()
                ),
            ],
            "{source}"
        );
        assert!(warnings(&response).is_empty(), "{:?}", warnings(&response));
        let pod = patched_pod(&review, &response);
        assert_eq!(env_of(&pod, "XNAT_USER").as_deref(), Some("JSmith"));
        let status: Value = serde_json::from_str(
            pod["metadata"]["annotations"]["jupyter-xnat-webhook/status"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(status["xnat"]["user"], "JSmith");
        // The name was asked about as it is, then the login's access; the site's logins once.
        assert_eq!(h.xnat.counts().users, 1, "{source}");
        assert!(h.xnat.lookups_for("JSmith") >= 1, "{source}");
        // Cached under the hub name: the next spawn asks XNAT nothing.
        let before = h.xnat.counts().total();
        let response = h.review(&review).await;
        assert_eq!(project_paths(&review, &response).len(), 2);
        assert_eq!(h.xnat.counts().total(), before, "{source}");
    }

    // An exact login always wins; with the switch off, only exact logins count.
    let h = Harness::start("").await;
    h.xnat.set_user("JSmith", &["GAMMA_member"]);
    h.xnat.set_user("jsmith", &["BETA_member"]);
    let review = review_for("jsmith");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response)[0], "/data/projects/BETA");
    assert_eq!(h.xnat.counts().users, 0);
    let h = Harness::start("identity:\n  resolveLoginCase: false\n").await;
    h.xnat.set_user("JSmith", &["GAMMA_member"]);
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    assert!(warnings(&response)[0].contains("XNAT has no user \"jsmith\""));
    assert_eq!(h.xnat.counts().users, 0);
}

#[tokio::test]
async fn two_logins_that_differ_only_in_case_give_neither() {
    let h = Harness::start("").await;
    h.xnat.set_user("JSmith", &["GAMMA_member"]);
    h.xnat.set_user("JSMITH", &["BETA_member"]);
    let review = review_for("jsmith");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    let w = warnings(&response).join("\n");
    assert!(
        w.contains("XNAT has no user \"jsmith\", and 2 logins differ from it only in case (JSMITH, JSmith): none is used"),
        "{w}"
    );
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "XNAT_USER").as_deref(), Some("jsmith"));
}

/// A refused `archive_spec` is remembered per project: 20 spawns of a user in 4 projects ask
/// it once per project within `negativeCacheTtl`, not 80 times.
#[tokio::test]
async fn a_refused_archive_spec_is_named_and_not_asked_again_by_every_spawn() {
    let h = Harness::builder()
        .policy("")
        .alone_with_metrics()
        .start()
        .await;
    h.xnat.set_user(
        "dora",
        &[
            "ALPHA_member",
            "BETA_member",
            "GAMMA_member",
            "DELTA_member",
        ],
    );
    h.xnat
        .set_endpoint_fault("archive_spec", Fault::Status(406));
    let series =
        "xnat_webhook_xnat_failures_total{endpoint=\"archive_spec\",reason=\"not_acceptable\"}";
    let before = metric(&h.metrics().await, series);
    let review = review_for("dora");
    for i in 0..20 {
        let response = h.review(&review).await;
        assert_eq!(
            project_paths(&review, &response),
            ["/data/xnat/workspace"],
            "{i}"
        );
        let w = warnings(&response).join("\n");
        assert!(
            w.contains("project ALPHA not mounted: where XNAT keeps its files is unknown")
                && w.contains("(406 Not Acceptable)"),
            "{w}"
        );
    }
    assert_eq!(h.xnat.counts().archive_specs, 4);
    let m = h.metrics().await;
    assert_eq!(metric(&m, series) - before, 4.0, "{m}");
}

/// Project ALPHA's custom group `PET_member` has the id `ALPHA_PET_member`
/// (`ProjectGroupResource`): read at its last `_` it would be project ALPHA_PET's members. Only
/// the access list says which project a group belongs to.
#[tokio::test]
async fn a_custom_group_is_never_another_projects_membership() {
    for source in ["groups", "access"] {
        let h = Harness::start(&format!("xnat:\n  projectSource: {source}\n")).await;
        h.xnat.add_custom_group("ALPHA", "ALPHA_PET_member");
        h.xnat.set_alias("ALPHA_PET", "GAMMA");
        h.xnat
            .set_user("mallory", &["ALPHA_PET_member", "BETA_member"]);
        let review = review_for("mallory");
        let response = h.review(&review).await;
        assert_eq!(
            project_paths(&review, &response),
            ["/data/projects/BETA", "/data/xnat/workspace"],
            "{source}"
        );
        assert_eq!(h.xnat.counts().archive_specs, 1, "{source}: BETA's only");
    }
}

/// `ProjectArchive` resolves an id *or an alias*: asked about ALPHA_PET, an alias of GAMMA, it
/// answers GAMMA's `arc:project`. That is never ALPHA_PET's place.
#[tokio::test]
async fn an_archive_spec_of_another_project_is_refused() {
    let h = Harness::start(OWN_ARCHIVES).await;
    // A project group the stand-in reads as ALPHA_PET's (no custom group registered)…
    h.xnat.set_user("mallory", &["ALPHA_PET_member"]);
    // …and an alias XNAT resolves to GAMMA's spec, whose path maps through pathMappings.
    h.xnat.set_alias("ALPHA_PET", "GAMMA");
    h.xnat.set_archive_path("GAMMA", Some("/mnt/big/gamma/"));
    let review = review_for("mallory");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    assert!(mounts_of(&patched_pod(&review, &response), "big").is_empty());
    let w = warnings(&response).join("\n");
    assert!(
        w.contains("project ALPHA_PET not mounted") && w.contains("describes project \"GAMMA\""),
        "{w}"
    );
}

/// An own archive path that is a path mapping's prefix itself, or that holds the site archive,
/// would mount other projects' directories: refused, by name.
#[tokio::test]
async fn an_own_archive_path_that_holds_other_projects_is_refused() {
    let h = Harness::start(OWN_ARCHIVES).await;
    h.xnat.set_archive_path("ALPHA", Some("/mnt/big/"));
    h.xnat.set_archive_path("BETA", Some("/data/xnat"));
    h.xnat.set_user("frank", &["ALPHA_owner", "BETA_member"]);
    let review = review_for("frank");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    assert!(mounts_of(&patched_pod(&review, &response), "big").is_empty());
    let w = warnings(&response).join("\n");
    assert!(
        w.contains("project ALPHA not mounted: its archive path /mnt/big is not the site's (it is the userOptions.pathMappings prefix \"/mnt/big\" itself)"),
        "{w}"
    );
    assert!(
        w.contains("project BETA not mounted: its archive path /data/xnat holds the site archive"),
        "{w}"
    );
}
