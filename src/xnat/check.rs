//! `check-xnat`: what the service account can do, asked of XNAT itself before the first spawn
//! instead of guessed from the first failures. Each step says what works or what is missing and
//! what the webhook will see because of it.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::{CredentialSource, XnatClient, XnatError};
use crate::policy::{Policy, ProjectSource};

/// The roles the webhook needs (`UserXapiAuthorization`, `DataAccessApi`, the plugin's
/// `@AuthorizedRoles`).
const ADMINISTRATOR: &str = "Administrator";
const JUPYTERHUB: &str = "JupyterHub";

/// Each step gets this long: a check is not a spawn, but it must not hang either.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

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
}

/// Logs in as the service account, reads its own roles, looks up `other_user`'s projects the
/// way spawns will (the policy's project source) and, when `userOptions.enabled`, reads that
/// user's stored launch context.
pub async fn check_xnat(
    policy: &Policy,
    credentials: CredentialSource,
    other_user: Option<&str>,
) -> Result<CheckReport, XnatError> {
    let x = &policy.xnat;
    let account = credentials.current().await?.username().to_owned();
    let client = XnatClient::new(x.endpoint.clone(), credentials, x.client.clone())?;
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
    let other = other_user.map_or_else(|| default_other(&account), str::to_owned);
    lookups(policy, &client, &other, &mut r).await;
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

/// One project lookup of another user, and one launch-context read when launches are used.
async fn lookups(policy: &Policy, client: &XnatClient, other: &str, r: &mut Report) {
    let endpoint = match policy.xnat.endpoint.project_source {
        ProjectSource::Groups => "groups",
        ProjectSource::Access => "access",
    };
    match client.user_access(other, deadline()).await {
        Ok(a) if a.unknown_user => r.ok(format_args!(
            "{endpoint} lookup of another user ({other}) works (XNAT has no such user)"
        )),
        Ok(a) => r.ok(format_args!(
            "{endpoint} lookup of another user ({other}) works: {} project(s) readable",
            a.readable_projects(&policy.xnat.roles).len()
        )),
        Err(e) => r.problem(format_args!("{endpoint} lookup of {other}: {e}")),
    }
    if policy.user_options.enabled {
        let read = client
            .user_options::<serde_json::Value>(other, "", deadline())
            .await;
        match read {
            Ok(Some(_)) => r.ok(format_args!(
                "user-options read for {other} works (a launch context is stored)"
            )),
            Ok(None) => r.ok(format_args!(
                "user-options read for {other} works (none stored: 404)"
            )),
            Err(e) => r.problem(format_args!("user-options read for {other}: {e}")),
        }
    }
}

fn deadline() -> Instant {
    Instant::now() + STEP_TIMEOUT
}

/// Another user to look up: `admin` (XNAT's first account), or `guest` when the service
/// account is `admin` itself.
fn default_other(account: &str) -> String {
    if account == "admin" { "guest" } else { "admin" }.to_owned()
}

impl Report {
    fn done(mut self) -> CheckReport {
        match self.problems {
            0 => self.note("XNAT answers everything the webhook asks"),
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
