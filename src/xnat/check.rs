//! `check-xnat`: every call the policy will make, made once with real ids before the first spawn
//! instead of found out from the first failures. Each line names the call, and what the webhook
//! will see because of it; the account's roles are read too. It says XNAT answers everything only
//! when every call the policy needs was made and answered in the media type it asks for.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::{CredentialSource, XnatCall, XnatClient, XnatError};
use crate::archive::ProjectRoot;
use crate::policy::{Policy, ProjectSource, Var};

/// The roles the webhook needs (`UserXapiAuthorization`, `DataAccessApi`, the plugin's
/// `@AuthorizedRoles`).
const ADMINISTRATOR: &str = "Administrator";
const JUPYTERHUB: &str = "JupyterHub";

/// Each step gets this long: a check is not a spawn, but it must not hang either.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Most projects whose member lists are read to find a user to look up.
const MAX_PROJECTS_SEARCHED: usize = 10;

/// An experiment id no XNAT has: `ExperimentResource` negotiates before it looks, so its 404
/// proves the media type is right where a real id is not at hand.
const PROBE_EXPERIMENT: &str = "XNAT_E_CHECK_NONE";

/// What to ask about, where the admin names it (else `check-xnat` finds one).
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckTargets<'a> {
    /// The user whose projects are looked up.
    pub user: Option<&'a str>,
    /// The project whose archive spec and accessibility are asked.
    pub project: Option<&'a str>,
    /// The experiment asked about (launches of experiments).
    pub experiment: Option<&'a str>,
}

/// What the check found: the report to print, and whether anything is missing.
pub struct CheckReport {
    pub text: String,
    pub problems: usize,
}

struct Report {
    text: String,
    problems: usize,
}

impl Report {
    fn ok(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.text, "ok       {line}");
    }
    fn problem(&mut self, line: impl std::fmt::Display) {
        self.problems += 1;
        let _ = writeln!(self.text, "PROBLEM  {line}");
    }
    fn note(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.text, "         {line}");
    }

    /// One call's outcome: `ok` with what it said, or the problem naming the call.
    fn call<T>(
        &mut self,
        call: XnatCall,
        what: &str,
        result: Result<T, XnatError>,
        said: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(v) => {
                self.ok(format_args!("{} {what}: {}", call.path(), said(&v)));
                Some(v)
            }
            Err(e) => {
                self.problem(format_args!("{} {what}: {e}", call.path()));
                None
            }
        }
    }
}

/// Logs in as the service account, reads its own roles, then makes each call the policy will
/// make on a spawn — the project source for a user, archive specs, accessibility, an
/// experiment, user options, the site's logins, the index's lists — with real ids.
pub async fn check_xnat(
    policy: &Policy,
    credentials: CredentialSource,
    targets: CheckTargets<'_>,
) -> Result<CheckReport, XnatError> {
    let x = &policy.xnat;
    let account = credentials.current().await?.username().to_owned();
    let client = XnatClient::new(
        x.endpoint.clone(),
        credentials,
        x.client.clone(),
        std::sync::Arc::default(),
    )?;
    let mut r = Report {
        text: String::new(),
        problems: 0,
    };
    let url = crate::echo::without_url_credentials(x.endpoint.url.as_str());
    if let Err(e) = client.login(deadline()).await {
        r.problem(format_args!("log in to {url} as {account}: {e}"));
        return Ok(r.done());
    }
    r.ok(format_args!("logged in to {url} as {account}"));
    let roles = own_roles(&client, &account, &mut r).await;
    missing_roles(policy, &account, &roles, &mut r);
    let user = match targets.user {
        Some(u) => u.to_owned(),
        None => find_user(&client, targets.project, &mut r).await,
    };
    if x.cache.index.is_some() && targets.user.is_some() {
        site_lists(&client, targets.project, &mut r).await;
    }
    let readable = lookup(policy, &client, &user, &mut r).await;
    second_source(policy, &client, &user, &mut r).await;
    let project = targets
        .project
        .map(str::to_owned)
        .or_else(|| readable.first().cloned());
    project_calls(policy, &client, project.as_deref(), &mut r).await;
    launch_calls(policy, &client, &user, targets.experiment, &mut r).await;
    if x.endpoint.resolve_login_case {
        let logins = client.logins(deadline()).await;
        r.call(
            XnatCall::Users,
            "(for names XNAT has only in another case)",
            logins,
            |l| format!("{} logins", l.len()),
        );
    }
    client.close().await;
    Ok(r.done())
}

/// The account's own site roles (none when XNAT will not say).
async fn own_roles(client: &XnatClient, account: &str, r: &mut Report) -> Vec<String> {
    match client.roles(account, deadline()).await {
        Ok(roles) => {
            let roles = roles.unwrap_or_default();
            r.ok(format_args!(
                "{account}'s site roles: {}",
                if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.join(", ")
                }
            ));
            roles
        }
        Err(e) => {
            r.problem(format_args!("read {account}'s own roles: {e}"));
            Vec::new()
        }
    }
}

/// What the roles mean for the lookups spawns make.
fn missing_roles(policy: &Policy, account: &str, roles: &[String], r: &mut Report) {
    let has = |role: &str| roles.iter().any(|r| r == role);
    let path = match policy.xnat.endpoint.project_source {
        ProjectSource::Groups => "/xapi/users/{u}/groups",
        ProjectSource::Access => "/xapi/access/{u}/projects",
    };
    if !has(ADMINISTRATOR) {
        r.problem(format_args!(
            "{account} is not a site Administrator: {path} of other users will answer 403, \
             so every notebook starts without project data"
        ));
        r.note("give the account the Administrator role in XNAT (Administer > Users)");
    }
    if policy.user_options.enabled && !has(ADMINISTRATOR) && !has(JUPYTERHUB) {
        r.problem(format_args!(
            "{account} has neither the JupyterHub nor the Administrator role: user-options \
             reads will answer 403, so servers started from XNAT's UI get no launch context"
        ));
    }
}

/// A user to look up: a member of `project` or of one of the first projects XNAT lists (the
/// index's calls, made once); `admin` when none has members.
async fn find_user(client: &XnatClient, project: Option<&str>, r: &mut Report) -> String {
    let fallback = || "admin".to_owned();
    let listed = client.project_ids(deadline()).await;
    let all = r.call(XnatCall::Projects, "(every project)", listed, |ids| {
        format!("{} projects", ids.len())
    });
    let projects = match (project, all) {
        (Some(p), _) => vec![p.to_owned()],
        (None, Some(ids)) => ids,
        (None, None) => return fallback(),
    };
    for p in projects.iter().take(MAX_PROJECTS_SEARCHED) {
        let members = client.project_members(p, deadline()).await;
        let what = format!("of {p}");
        let rows = r.call(XnatCall::ProjectUsers, &what, members, |rows| match rows {
            Some(rows) => format!("{} members", rows.len()),
            None => "no such project (404)".into(),
        });
        let Some(rows) = rows.flatten() else {
            return fallback();
        };
        if let Some(login) = rows.into_iter().find_map(|m| m.login) {
            return login;
        }
    }
    fallback()
}

/// The index's two lists, when a user was given (else [`find_user`] read them).
async fn site_lists(client: &XnatClient, project: Option<&str>, r: &mut Report) {
    let listed = client.project_ids(deadline()).await;
    let ids = r.call(XnatCall::Projects, "(every project)", listed, |ids| {
        format!("{} projects", ids.len())
    });
    let Some(p) = project
        .map(str::to_owned)
        .or_else(|| ids.and_then(|ids| ids.into_iter().next()))
    else {
        r.problem("/data/projects/{id}/users not checked: XNAT lists no project; give --project");
        return;
    };
    let members = client.project_members(&p, deadline()).await;
    r.call(
        XnatCall::ProjectUsers,
        &format!("of {p}"),
        members,
        |rows| match rows {
            Some(rows) => format!("{} members", rows.len()),
            None => "no such project (404)".into(),
        },
    );
}

/// One project lookup the way spawns make it; the projects `user` may read.
async fn lookup(policy: &Policy, client: &XnatClient, user: &str, r: &mut Report) -> Vec<String> {
    let endpoint = match policy.xnat.endpoint.project_source {
        ProjectSource::Groups => "groups",
        ProjectSource::Access => "access",
    };
    match client.user_access(user, deadline()).await {
        Ok(a) if a.unknown_user => {
            r.ok(format_args!(
                "{endpoint} lookup of another user ({user}) works (XNAT has no such user)"
            ));
            Vec::new()
        }
        Ok(a) => {
            let readable = a.readable_projects(&policy.xnat.roles);
            r.ok(format_args!(
                "{endpoint} lookup of another user ({user}) works: {} project(s) readable",
                readable.len()
            ));
            readable.into_iter().map(str::to_owned).collect()
        }
        Err(e) => {
            r.problem(format_args!("{endpoint} lookup of {user}: {e}"));
            Vec::new()
        }
    }
}

/// The call each project source makes for some users only, made here for `user`: with the
/// group list, the access list (for group ids that read two ways, `ALPHA_PET_member`); with the
/// access list, the group list (to tell an unknown user from one in no group).
async fn second_source(policy: &Policy, client: &XnatClient, user: &str, r: &mut Report) {
    match policy.xnat.endpoint.project_source {
        ProjectSource::Groups => {
            let rows = client.access_list(user, deadline()).await;
            let what = format!("of {user} (for group ids that read two ways)");
            r.call(XnatCall::Access, &what, rows, |rows| {
                format!("{} rows", rows.len())
            });
        }
        ProjectSource::Access => {
            let known = client.user_exists(user, deadline()).await;
            let what = format!("of {user} (to tell an unknown user from one in no group)");
            r.call(XnatCall::Groups, &what, known, |known| match known {
                true => "XNAT has the user".into(),
                false => "XNAT has no such user (404)".into(),
            });
        }
    }
}

/// Where a project's files are (when the policy asks) and, with launches, its accessibility.
async fn project_calls(
    policy: &Policy,
    client: &XnatClient,
    project: Option<&str>,
    r: &mut Report,
) {
    let x = &policy.xnat;
    let asks_spec = x.ask_project_archive_paths;
    let launches = policy.user_options.enabled;
    if !asks_spec && !launches {
        return;
    }
    let Some(p) = project else {
        r.problem(
            "/data/projects/{id}/archive_spec and accessibility not checked: the user looked up \
             reads no project; give --project or --user",
        );
        return;
    };
    if asks_spec {
        let spec = client.archive_spec(p, deadline()).await;
        r.call(XnatCall::ArchiveSpec, &format!("of {p}"), spec, |spec| {
            let place = spec
                .place(p, &x.archive_path)
                .unwrap_or(crate::archive::ProjectPlace::SITE);
            let uses_arc = policy
                .storage
                .projects
                .iter()
                .any(|m| m.template.sub_path.uses(Var::Arc));
            let arc = if uses_arc {
                format!(", current arc {}", place.arc())
            } else {
                String::new()
            };
            match &place.root {
                ProjectRoot::Site => format!("files at the site archive{arc}"),
                ProjectRoot::Own(own) => format!("files at its own path {own}{arc}"),
                ProjectRoot::Unknown(why) | ProjectRoot::Refused(why) => {
                    format!("{why} (spawns leave it out)")
                }
            }
        });
    }
    if launches {
        let a = client.project_accessibility(p, deadline()).await;
        r.call(
            XnatCall::Accessibility,
            &format!("of {p}"),
            a,
            |a| match a {
                Some(a) => a.clone(),
                None => "XNAT does not show it to the service account (404)".into(),
            },
        );
    }
}

/// With launches: an experiment (a real one, or a probe only XNAT's negotiation answers) and
/// the user's stored launch context.
async fn launch_calls(
    policy: &Policy,
    client: &XnatClient,
    user: &str,
    experiment: Option<&str>,
    r: &mut Report,
) {
    if !policy.user_options.enabled {
        return;
    }
    let id = experiment.unwrap_or(PROBE_EXPERIMENT);
    let e = client.experiment(id, deadline()).await;
    r.call(XnatCall::Experiment, &format!("of {id}"), e, |e| match e {
        Some(e) => format!(
            "in project {}, shared into {}",
            e.project,
            e.shared_into.len()
        ),
        None => "none such (404, after the media type was accepted)".into(),
    });
    let read = client
        .user_options::<serde_json::Value>(user, "", deadline())
        .await;
    match read {
        Ok(Some(_)) => r.ok(format_args!(
            "user-options read for {user} works (a launch context is stored)"
        )),
        Ok(None) => r.ok(format_args!(
            "user-options read for {user} works (none stored: 404)"
        )),
        Err(e) => r.problem(format_args!("user-options read for {user}: {e}")),
    }
}

fn deadline() -> Instant {
    Instant::now() + STEP_TIMEOUT
}

impl Report {
    fn done(mut self) -> CheckReport {
        match self.problems {
            0 => self.note("XNAT answers every call this policy makes"),
            n => self.note(format_args!(
                "{n} problem(s): spawns will not get what they should"
            )),
        }
        CheckReport {
            text: self.text,
            problems: self.problems,
        }
    }
}
