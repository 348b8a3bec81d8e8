//! The XNAT HTTP client. It logs in once (`POST /data/JSESSION`) and reuses the `JSESSIONID`
//! cookie, because every HTTP-basic call opens a new Tomcat session and a spawn storm of them can
//! overwhelm XNAT ([`session`]). Requests wait for one of a bounded number of slots, GETs are
//! retried with jittered backoff after transient failures, and everything stays inside the
//! admission's deadline ([`request`]). Errors never carry the credentials.

mod answer;
mod limit;
mod request;
mod session;
mod site;

pub use limit::{as_other_caller, is_other_caller};
pub use site::MemberRow;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::health::Health;
use super::{CredentialSource, XnatCall, XnatError};
use crate::access::{AccessEntry, UserAccess, is_ambiguous};
use crate::archive::ArchiveSpec;
use crate::names::is_safe_segment;
use crate::policy::{ClientSettings, Endpoint, ProjectSource};
use crate::sharing::SharedExperiment;
use session::{RefusedLogin, Session};

/// Everything but RFC 3986's unreserved characters is percent-encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A client for the XNAT endpoints the webhook uses, logged in as the service account.
pub struct XnatClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: CredentialSource,
    settings: ClientSettings,
    /// The adaptive limit on calls XNAT is working on ([`limit`]).
    limiter: Arc<limit::Limiter>,
    /// What is failing, for `/readyz` and the log; shared with the clients a reload builds.
    health: Arc<Health>,
    session: Arc<ArcSwapOption<Session>>,
    /// One login at a time; held by the login's own task, so it outlives a review that stops
    /// waiting for it.
    login: Arc<Mutex<()>>,
    /// The last refused login, so a storm (or a rotation in progress) does not hammer XNAT with
    /// bad credentials until its account lockout trips.
    refused_login: Arc<std::sync::Mutex<Option<RefusedLogin>>>,
}

impl XnatClient {
    /// A client for `endpoint` (whose URL includes any context path: `http://xnat/xnat`).
    pub fn new(
        endpoint: Endpoint,
        credentials: CredentialSource,
        settings: ClientSettings,
        health: Arc<Health>,
    ) -> Result<Self, XnatError> {
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &endpoint.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| XnatError::Request(format!("xnat.caFile {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| XnatError::Request(format!("xnat.caFile {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(XnatError::Request(format!(
                    "xnat.caFile {}: no certificate in it",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jupyter-xnat-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| XnatError::Request(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            credentials,
            limiter: limit::Limiter::new(
                settings.min_concurrent_requests,
                settings.max_concurrent_requests,
                settings.timeout,
            ),
            settings,
            health,
            session: Arc::default(),
            login: Arc::default(),
            refused_login: Arc::default(),
        })
    }

    /// What is failing at XNAT, as this client (and those before it) saw it.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Counts the calls `old` still has at XNAT against this client's limit until they end: a
    /// reload that changes timeouts or concurrency must not double what XNAT is asked at once.
    pub fn take_over_calls(&self, old: &XnatClient) {
        self.limiter.take_over(&old.limiter);
    }

    /// The user's project memberships, from the policy's project source. 404 means XNAT has no
    /// such user, which is an answer (no projects), not an outage.
    pub async fn user_access(
        &self,
        xnat_user: &str,
        deadline: Instant,
    ) -> Result<UserAccess, XnatError> {
        check_username(xnat_user)?;
        match self.endpoint.project_source {
            ProjectSource::Groups => {
                let path = ["xapi", "users", xnat_user, "groups"];
                let ids: Option<Vec<String>> =
                    self.get_json(XnatCall::Groups, &path, deadline).await?;
                match ids {
                    None => Ok(UserAccess::unknown()),
                    // `ALPHA_PET_member` reads two ways; the access list names the project.
                    Some(ids) if is_ambiguous(&ids) => {
                        let entries = self.access_list(xnat_user, deadline).await?;
                        Ok(UserAccess::from_access_list(&entries))
                    }
                    Some(ids) => Ok(UserAccess::from_group_ids(&ids)),
                }
            }
            ProjectSource::Access => {
                let entries = self.access_list(xnat_user, deadline).await?;
                // XNAT answers `200 []` both for an unknown user and for one in no group; only
                // then is XNAT asked which (one more call, for users with no projects alone),
                // so an unknown user gets `negativeCacheTtl` and the warning that says so.
                if entries.is_empty() && !self.user_exists(xnat_user, deadline).await? {
                    return Ok(UserAccess::unknown());
                }
                Ok(UserAccess::from_access_list(&entries))
            }
        }
    }

    /// `GET /xapi/access/{u}/projects`: every group of the user with the project it belongs to.
    pub(in crate::xnat) async fn access_list(
        &self,
        xnat_user: &str,
        deadline: Instant,
    ) -> Result<Vec<AccessEntry>, XnatError> {
        let path = ["xapi", "access", xnat_user, "projects"];
        let entries = self.get_json(XnatCall::Access, &path, deadline).await?;
        Ok(entries.unwrap_or_default())
    }

    /// Every login of the site (`GET /xapi/users`, a site Administrator's: disabled accounts
    /// included), to find the one a hub name stands for when they differ in case.
    pub async fn logins(&self, deadline: Instant) -> Result<Vec<String>, XnatError> {
        let url = self.url(&["xapi", "users"]);
        let body = self
            .get_body(XnatCall::Users, url, deadline)
            .await?
            .ok_or(XnatError::Status(404))?;
        self.parse_json_blocking(XnatCall::Users, body).await
    }

    /// Whether a name XNAT does not have is looked for in another case.
    pub fn resolves_login_case(&self) -> bool {
        self.endpoint.resolve_login_case
    }

    /// Logs in when there is no session yet: the first step of `check-xnat`.
    pub async fn login(&self, deadline: Instant) -> Result<(), XnatError> {
        self.session(deadline, &mut None).await.map(|_| ())
    }

    /// A user's site roles (`GET /xapi/users/{u}/roles`: the user themself or an Administrator
    /// may ask), e.g. `["Administrator", "JupyterHub"]`; `None` for an unknown user.
    pub async fn roles(
        &self,
        xnat_user: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<String>>, XnatError> {
        check_username(xnat_user)?;
        let url = self.url(&["xapi", "users", xnat_user, "roles"]);
        // XNAT answers an unknown user with 200 and no body (`getUserRoles` returns null).
        match self.get_body(XnatCall::Roles, url, deadline).await? {
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Some(b) => self.parse_json(XnatCall::Roles, &b).map(Some),
            None => Ok(None),
        }
    }

    /// Whether XNAT has this user: its group list, which is 404 for an unknown user
    /// (`UsersApi.usersIdGroupsGet`; `GET /xapi/users/{u}` itself answers 500 for one, as
    /// `InitializationException`, indistinguishable from an outage).
    pub async fn user_exists(&self, xnat_user: &str, deadline: Instant) -> Result<bool, XnatError> {
        check_username(xnat_user)?;
        let url = self.url(&["xapi", "users", xnat_user, "groups"]);
        Ok(self
            .get_body(XnatCall::Groups, url, deadline)
            .await?
            .is_some())
    }

    /// The JupyterHub plugin's stored launch context for a user's server (`""` for the default
    /// server); `None` when none is stored (404).
    pub async fn user_options<T: DeserializeOwned>(
        &self,
        xnat_user: &str,
        server_name: &str,
        deadline: Instant,
    ) -> Result<Option<T>, XnatError> {
        check_username(xnat_user)?;
        // The default server has no name segment: `…/server/user-options`.
        let mut path = vec!["xapi", "jupyterhub", "users", xnat_user, "server"];
        if !server_name.is_empty() {
            if !is_safe_segment(server_name) {
                return Err(XnatError::Request(format!(
                    "refusing to ask XNAT about server name {server_name:?}"
                )));
            }
            path.push(server_name);
        }
        path.push("user-options");
        self.get_json(XnatCall::UserOptions, &path, deadline).await
    }

    /// What XNAT says of `project`'s accessibility (`GET /data/projects/{id}/accessibility`,
    /// plain text: `public`, `protected` or `private`); `None` when XNAT does not show the
    /// service account the project (404).
    pub async fn project_accessibility(
        &self,
        project: &str,
        deadline: Instant,
    ) -> Result<Option<String>, XnatError> {
        check_id(project)?;
        let url = self.url(&["data", "projects", project, "accessibility"]);
        let body = self
            .get_body(XnatCall::Accessibility, url, deadline)
            .await?;
        Ok(body.map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
    }

    /// Where XNAT keeps a project's files and which arc is current
    /// (`GET /data/projects/{id}/archive_spec`, XML), read on the blocking pool: a document
    /// that is not `project`'s own `arc:project` is refused.
    pub async fn archive_spec(
        &self,
        project: &str,
        deadline: Instant,
    ) -> Result<ArchiveSpec, XnatError> {
        check_id(project)?;
        let url = self.url(&["data", "projects", project, "archive_spec"]);
        let Some(body) = self.get_body(XnatCall::ArchiveSpec, url, deadline).await? else {
            return Ok(ArchiveSpec::NoProject);
        };
        let asked = project.to_owned();
        let read = tokio::task::spawn_blocking(move || match std::str::from_utf8(&body) {
            Ok(text) => crate::archive::archive_spec_of(text, &asked),
            Err(_) => Err("it is not UTF-8".to_owned()),
        })
        .await
        .unwrap_or_else(|_| Err("reading it failed".to_owned()));
        read.map_err(|why| {
            let e = XnatError::WrongAnswer {
                path: XnatCall::ArchiveSpec.path(),
                why,
            };
            self.health.failed(XnatCall::ArchiveSpec.name(), &e);
            e
        })
    }

    /// Where an experiment lives and which projects it is shared into
    /// (`GET /data/experiments/{id}?format=json`, asked for as the XML `ExperimentResource`
    /// offers); `None` when XNAT does not show it to the service account (404).
    pub async fn experiment(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<Option<SharedExperiment>, XnatError> {
        check_id(id)?;
        let mut url = self.url(&["data", "experiments", id]);
        url.set_query(Some("format=json"));
        let Some(body) = self.get_body(XnatCall::Experiment, url, deadline).await? else {
            return Ok(None);
        };
        let v: serde_json::Value = self.parse_json(XnatCall::Experiment, &body)?;
        SharedExperiment::from_item_json(&v)
            .map(Some)
            .ok_or_else(|| XnatError::BadJson("not an experiment's item JSON".into()))
    }

    /// Joins path segments onto the base URL, keeping its context path and percent-encoding
    /// every byte of a segment but `A-Z a-z 0-9 - . _ ~`: a username can add neither a segment
    /// (`/`) nor a path parameter (`;`, which Tomcat strips before routing).
    fn url(&self, segments: &[&str]) -> Url {
        let mut path = self.endpoint.url.path().trim_end_matches('/').to_owned();
        for s in segments {
            path.push('/');
            path.extend(utf8_percent_encode(s, SEGMENT));
        }
        let mut url = self.endpoint.url.clone();
        url.set_path(&path);
        url
    }
}

/// Project and experiment ids are XNAT ids: letters, digits, `_` and `-`.
fn check_id(id: &str) -> Result<(), XnatError> {
    if crate::names::is_valid_project_id(id) {
        Ok(())
    } else {
        Err(XnatError::Request(format!(
            "refusing to ask XNAT about id {id:?}"
        )))
    }
}

fn check_username(xnat_user: &str) -> Result<(), XnatError> {
    if is_safe_segment(xnat_user) {
        Ok(())
    } else {
        // `..` would be resolved away in the URL and `;` read as a path parameter: either could
        // ask about somebody else. The admission path never gets here with such a name.
        Err(XnatError::Request(format!(
            "refusing to ask XNAT about username {xnat_user:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::xnat::Credentials;

    #[test]
    fn segments_are_encoded_and_the_context_path_kept() {
        let client = XnatClient::new(
            Endpoint {
                url: Url::parse("http://xnat.example/xnat/").unwrap(),
                ca_file: None,
                project_source: ProjectSource::Groups,
                resolve_login_case: true,
            },
            CredentialSource::Fixed(Credentials::new("u", "p")),
            ClientSettings {
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_backoff: Duration::ZERO,
                max_concurrent_requests: 1,
                min_concurrent_requests: 1,
            },
            Arc::default(),
        )
        .unwrap();
        let url = client.url(&["xapi", "users", "Bob.Smith@uni.edu.au", "groups"]);
        assert_eq!(
            url.as_str(),
            "http://xnat.example/xnat/xapi/users/Bob.Smith%40uni.edu.au/groups"
        );
        let url = client.url(&["xapi", "users", "alice;x/..", "groups"]);
        assert_eq!(url.path(), "/xnat/xapi/users/alice%3Bx%2F../groups");
        // XNAT's rule admits an apostrophe; it is encoded, never a quote in the URL.
        let url = client.url(&["xapi", "users", "dave_o'neil", "groups"]);
        assert_eq!(url.path(), "/xnat/xapi/users/dave_o%27neil/groups");
    }
}
