//! A small XNAT stand-in that speaks the endpoints the webhook uses, with XNAT's JSON shapes, its
//! session login and HTTP-basic checks. `make run` serves it with demo users; the integration
//! tests use it as the XNAT test double, with latency and fault injection and call counting.
//!
//! Endpoints (under the context path, e.g. `/xnat`):
//! - `POST /data/JSESSION` (basic auth) → session id as text, `DELETE /data/JSESSION`;
//! - `GET /xapi/users/{user}/groups` → `["ALPHA_owner", …]`, 404 for an unknown user;
//! - `GET /xapi/access/{user}/projects` → `[{"ID", "secondary_ID", "name", "description", "role",
//!   "group_id", "URI"}]` for every group (site groups with `ID` null), `200 []` for an unknown
//!   user;
//! - `GET /xapi/users/{user}/roles` → the user's site roles (`["Administrator"]`), 200 with no
//!   body for an unknown user (`getUserRoles` returns null);
//! - `403` with an empty body (`XapiRequestMappingAspect`) when the caller lacks what the
//!   endpoint is restricted to: `/groups` and `/roles` the user themself or an Administrator,
//!   `/access` an Administrator;
//! - `GET /xapi/jupyterhub/users/{user}/server/user-options` and
//!   `…/server/{servername}/user-options` → the plugin's stored launch context, 404 when none;
//!   role `JupyterHub` or `Administrator` (`@AuthorizedRoles`), else 403 with an empty body;
//! - `GET /data/projects/{id}/accessibility` → `public`, `protected` or `private` as plain text
//!   (`ProjectAccessibilityResource`), 404 for a project it was not told about;
//! - `GET /data/projects/{id}/archive_spec` → the project's `arc:project` as XML whatever was
//!   asked for (`ProjectArchive`), its `arc:paths/arc:archivePath` the site default
//!   `/data/xnat/archive/{id}/` that XNAT writes into every new project unless told otherwise;
//!   404 for an account that cannot see the project (only Administrators are modelled);
//! - `GET /data/experiments/{id}?format=json` → the item JSON of an experiment
//!   (`ItemJSONBuilder`: `items[0].data_fields` `ID`/`project`/`label`, shares as items of the
//!   `sharing/share` child), 404 "Unable to find the specified experiment.".
//!
//! Every API call accepts the `JSESSIONID` cookie of a live session or HTTP basic credentials.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

mod site;

/// The demo site's users and their groups: the users of the KubeSpawner fixtures and a few
/// projects.
pub const DEMO_USERS: &[(&str, &[&str])] = &[
    ("alice", &["ALPHA_owner", "BETA_member", "ALL_DATA_ACCESS"]),
    ("Bob.Smith@uni.edu.au", &["GAMMA_collaborator"]),
    ("carol", &["GPU_LAB_member", "ALPHA_collaborator"]),
    ("erin", &["BETA_owner"]),
];

/// XNAT's site-administrator role (`UserRole`).
pub const ADMINISTRATOR: &str = "Administrator";
/// The JupyterHub plugin's service-account role (`jupyterhub-role-definition.properties`): what
/// the plugin's own `jupyterhub` account has.
pub const JUPYTERHUB: &str = "JupyterHub";

/// A fault the stand-in answers API calls with instead of the real answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Answer with this HTTP status (500, 503, 401…).
    Status(u16),
    /// A login page with status 200, as XNAT behind some proxies answers a rejected session.
    HtmlLogin,
    /// A 200 whose body is not JSON.
    BadJson,
    /// A 200 with a JSON body larger than any client should read.
    Oversized,
}

/// How the stand-in refuses a session it does not know (expired).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionRejection {
    /// 401, as XNAT itself answers.
    #[default]
    Unauthorized,
    /// A login page with status 200, as XNAT behind some proxies answers.
    HtmlLogin,
}

/// Calls counted per endpoint, as the stand-in keeps them.
#[derive(Debug, Default)]
struct Counters {
    logins: AtomicUsize,
    logouts: AtomicUsize,
    groups: AtomicUsize,
    access: AtomicUsize,
    user_options: AtomicUsize,
    accessibility: AtomicUsize,
    experiments: AtomicUsize,
    basic_api_calls: AtomicUsize,
    auth_failures: AtomicUsize,
    roles: AtomicUsize,
    archive_specs: AtomicUsize,
    max_in_flight: AtomicUsize,
    in_flight: AtomicUsize,
    projects: AtomicUsize,
    project_users: AtomicUsize,
}

/// What the stand-in has received so far: the one way tests read its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `POST /data/JSESSION`, accepted or not.
    pub logins: usize,
    /// `DELETE /data/JSESSION`.
    pub logouts: usize,
    /// `GET …/groups`, authenticated or not.
    pub groups: usize,
    /// `GET /xapi/access/{user}/projects`.
    pub access: usize,
    /// `GET …/user-options`.
    pub user_options: usize,
    /// `GET /data/projects/{id}/accessibility`.
    pub accessibility: usize,
    /// `GET /data/experiments/{id}`.
    pub experiments: usize,
    /// `GET /xapi/users/{user}/roles`.
    pub roles: usize,
    /// `GET /data/projects/{id}/archive_spec`.
    pub archive_specs: usize,
    /// API calls authenticated with basic credentials instead of a session.
    pub basic_api_calls: usize,
    /// Requests refused for missing or wrong credentials or an unknown session.
    pub auth_failures: usize,
    /// Most API calls being answered at the same time.
    pub max_in_flight: usize,
    /// `GET /data/projects`.
    pub projects: usize,
    /// `GET /data/projects/{id}/users`.
    pub project_users: usize,
}

impl Counts {
    /// Every API call and login, whatever the endpoint.
    pub fn total(&self) -> usize {
        self.logins
            + self.groups
            + self.access
            + self.user_options
            + self.accessibility
            + self.experiments
            + self.roles
            + self.archive_specs
            + self.projects
            + self.project_users
    }
}

/// The stand-in's users, credentials, sessions, faults and counters.
pub struct Standin {
    credentials: Mutex<HashSet<(String, String)>>,
    users: Mutex<HashMap<String, Vec<String>>>,
    user_options: Mutex<HashMap<(String, String), Value>>,
    accessibility: Mutex<HashMap<String, String>>,
    experiments: Mutex<HashMap<String, Value>>,
    /// Projects' own archive paths (`None`: none stored); others have the site default.
    archive_paths: Mutex<HashMap<String, Option<String>>>,
    /// Site roles by username; the service account starts as an Administrator.
    roles: Mutex<HashMap<String, Vec<String>>>,
    /// Live sessions: id → the account that logged in.
    sessions: Mutex<HashMap<String, String>>,
    session_rejection: Mutex<SessionRejection>,
    fault: Mutex<Fault>,
    /// How many more API calls get the fault; `None` for all of them.
    fault_budget: Mutex<Option<usize>>,
    latency: Mutex<Duration>,
    calls_by_user: Mutex<HashMap<String, usize>>,
    /// Projects without members (`add_project`).
    extra_projects: Mutex<std::collections::BTreeSet<String>>,
    next_session: AtomicUsize,
    counters: Counters,
}

impl Standin {
    pub fn new(username: &str, password: &str) -> Arc<Self> {
        Arc::new(Self {
            credentials: Mutex::new(HashSet::from([(username.to_owned(), password.to_owned())])),
            users: Mutex::default(),
            user_options: Mutex::default(),
            accessibility: Mutex::default(),
            experiments: Mutex::default(),
            archive_paths: Mutex::default(),
            roles: Mutex::new(HashMap::from([(
                username.to_owned(),
                vec![ADMINISTRATOR.to_owned()],
            )])),
            sessions: Mutex::default(),
            session_rejection: Mutex::default(),
            fault: Mutex::default(),
            fault_budget: Mutex::default(),
            latency: Mutex::default(),
            calls_by_user: Mutex::default(),
            extra_projects: Mutex::default(),
            next_session: AtomicUsize::new(1),
            counters: Counters::default(),
        })
    }

    /// The demo site `make run` serves: [`DEMO_USERS`].
    pub fn demo(username: &str, password: &str) -> Arc<Self> {
        let s = Self::new(username, password);
        for (user, groups) in DEMO_USERS {
            s.set_user(user, groups);
        }
        s
    }

    pub fn set_user(&self, user: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        lock(&self.users).insert(user.to_owned(), groups);
    }

    /// Replaces the accepted credentials (a rotation on the XNAT side); live sessions end.
    /// New accounts act as the old one (with its roles), as an alias token acts as the user
    /// that issued it.
    pub fn set_credentials(&self, pairs: &[(&str, &str)]) {
        let inherited = {
            let roles = lock(&self.roles);
            lock(&self.credentials)
                .iter()
                .find_map(|(u, _)| roles.get(u).cloned())
                .unwrap_or_default()
        };
        {
            let mut roles = lock(&self.roles);
            for (u, _) in pairs {
                roles
                    .entry(u.to_string())
                    .or_insert_with(|| inherited.clone());
            }
        }
        *lock(&self.credentials) = pairs
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        self.expire_sessions();
    }

    /// A project's accessibility: `public`, `protected` or `private`.
    pub fn set_accessibility(&self, project: &str, accessibility: &str) {
        lock(&self.accessibility).insert(project.to_owned(), accessibility.to_owned());
    }

    /// An experiment `id` of `project` labelled `label`, shared into `shares` (project, label).
    pub fn set_experiment(&self, id: &str, project: &str, label: &str, shares: &[(&str, &str)]) {
        let share_items: Vec<Value> = shares
            .iter()
            .map(|(p, l)| {
                json!({"meta": {"xsi:type": "xnat:experimentData_share", "isHistory": false},
                       "data_fields": {"project": p, "label": l}, "children": []})
            })
            .collect();
        let item = json!({"items": [{
            "meta": {"xsi:type": "xnat:mrSessionData", "isHistory": false},
            "data_fields": {"ID": id, "project": project, "label": label},
            "children": [{"field": "sharing/share", "items": share_items}]
        }]});
        lock(&self.experiments).insert(id.to_owned(), item);
    }

    /// Stores the plugin's user options for a user's server (`""` for the default server).
    pub fn set_user_options(&self, user: &str, server: &str, options: Value) {
        lock(&self.user_options).insert((user.to_owned(), server.to_owned()), options);
    }

    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
        *lock(&self.fault_budget) = None;
    }

    /// The fault for the next `n` API calls only.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        *lock(&self.fault) = fault;
        *lock(&self.fault_budget) = Some(n);
    }

    /// Starts counting `max_in_flight` afresh (from the calls in flight now).
    pub fn reset_max_in_flight(&self) {
        let c = &self.counters;
        c.max_in_flight
            .store(c.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// A project with no members yet.
    pub fn add_project(&self, id: &str) {
        lock(&self.extra_projects).insert(id.to_owned());
    }

    /// Removes a user and all their groups.
    pub fn remove_user(&self, user: &str) {
        lock(&self.users).remove(user);
    }

    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// Ends every session, as a Tomcat restart or session timeout would.
    pub fn expire_sessions(&self) {
        lock(&self.sessions).clear();
    }

    pub fn set_session_rejection(&self, r: SessionRejection) {
        *lock(&self.session_rejection) = r;
    }

    pub fn live_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Every counter, read at once.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        let n = |a: &AtomicUsize| a.load(Ordering::SeqCst);
        Counts {
            logins: n(&c.logins),
            logouts: n(&c.logouts),
            groups: n(&c.groups),
            access: n(&c.access),
            user_options: n(&c.user_options),
            accessibility: n(&c.accessibility),
            experiments: n(&c.experiments),
            roles: n(&c.roles),
            archive_specs: n(&c.archive_specs),
            basic_api_calls: n(&c.basic_api_calls),
            auth_failures: n(&c.auth_failures),
            max_in_flight: n(&c.max_in_flight),
            projects: n(&c.projects),
            project_users: n(&c.project_users),
        }
    }

    /// Project-list lookups (group list or access list, not user options) received for one
    /// user.
    pub fn lookups_for(&self, user: &str) -> usize {
        lock(&self.calls_by_user).get(user).copied().unwrap_or(0)
    }

    /// The stand-in's routes under XNAT's context path (`/xnat`, or `""` for none).
    pub fn router(self: &Arc<Self>, context_path: &str) -> Router {
        let api = Router::new()
            .route("/data/JSESSION", post(login).delete(logout))
            .route("/xapi/users/{user}/groups", get(groups))
            .route("/xapi/users/{user}/roles", get(roles))
            .route("/xapi/access/{user}/projects", get(access_projects))
            .route(
                "/xapi/jupyterhub/users/{user}/server/user-options",
                get(default_user_options),
            )
            .route(
                "/xapi/jupyterhub/users/{user}/server/{server}/user-options",
                get(named_user_options),
            )
            .route("/data/projects/{project}/accessibility", get(accessibility))
            .route("/data/experiments/{id}", get(experiment))
            .route("/data/projects/{project}/archive_spec", get(archive_spec))
            .route("/data/projects", get(site::projects))
            .route("/data/projects/{project}/users", get(site::project_users))
            .with_state(self.clone());
        if context_path.is_empty() || context_path == "/" {
            api
        } else {
            Router::new().nest(context_path, api)
        }
    }

    /// Serves the stand-in on `addr`; returns its base URL (context path included).
    pub async fn spawn(
        self: &Arc<Self>,
        addr: SocketAddr,
        context_path: &str,
    ) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base = format!("http://{}{}", listener.local_addr()?, context_path);
        let app = self.router(context_path);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((base, task))
    }

    /// Whether every account the stand-in accepts is a site Administrator (default yes) or,
    /// like the plugin's `jupyterhub` account, has the JupyterHub role only. Without
    /// Administrator, another user's groups and any access list are `403` with an empty body
    /// (`UsersApi`, `DataAccessApi`): a missing role, not bad credentials.
    pub fn set_service_admin(&self, admin: bool) {
        let role = if admin { ADMINISTRATOR } else { JUPYTERHUB };
        let accounts: Vec<String> = lock(&self.credentials)
            .iter()
            .map(|(u, _)| u.clone())
            .collect();
        for account in accounts {
            self.set_roles(&account, &[role]);
        }
    }

    /// A project's own archive path (`None`: none stored, as in a project made before XNAT
    /// stored them); without it a project has `/data/xnat/archive/{id}/`.
    pub fn set_archive_path(&self, project: &str, path: Option<&str>) {
        lock(&self.archive_paths).insert(project.to_owned(), path.map(str::to_owned));
    }

    /// A user's site roles.
    pub fn set_roles(&self, user: &str, roles: &[&str]) {
        let roles = roles.iter().map(|r| r.to_string()).collect();
        lock(&self.roles).insert(user.to_owned(), roles);
    }

    fn has_role(&self, user: &str, role: &str) -> bool {
        lock(&self.roles)
            .get(user)
            .is_some_and(|rs| rs.iter().any(|r| r == role))
    }

    /// `restrictTo = User`: the user themself or an Administrator; else 403, no body.
    fn refuse_other_user(&self, caller: &str, user: &str) -> Option<Response> {
        (caller != user && !self.has_role(caller, ADMINISTRATOR))
            .then(|| StatusCode::FORBIDDEN.into_response())
    }

    /// `restrictTo = Admin`.
    fn refuse_non_admin(&self, caller: &str) -> Option<Response> {
        (!self.has_role(caller, ADMINISTRATOR)).then(|| StatusCode::FORBIDDEN.into_response())
    }

    /// Whether XNAT has this account: a user with groups, or one with roles.
    fn knows(&self, user: &str) -> bool {
        lock(&self.users).contains_key(user) || lock(&self.roles).contains_key(user)
    }

    /// The account of good basic credentials.
    fn basic_user(&self, headers: &HeaderMap) -> Option<String> {
        let encoded = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        lock(&self.credentials)
            .contains(&(u.to_owned(), p.to_owned()))
            .then(|| u.to_owned())
    }

    fn session_of(headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("JSESSIONID=").map(str::to_owned))
    }

    /// Every project the stand-in has: those of its users' groups and those added empty.
    fn project_ids(&self) -> std::collections::BTreeSet<String> {
        let mut ids: std::collections::BTreeSet<String> = lock(&self.extra_projects).clone();
        for groups in lock(&self.users).values() {
            for g in groups {
                if let Some((p, _)) = g.rsplit_once('_')
                    && !g.starts_with("ALL_DATA_")
                {
                    ids.insert(p.to_owned());
                }
            }
        }
        ids
    }

    /// The common prologue of an API call: count, delay, authenticate, inject faults. Returns
    /// the calling account.
    ///
    /// The delay is XNAT's work on the call, and like Tomcat's it goes on when the client stops
    /// listening: the call counts as in flight until it is done, even if the client has gone.
    async fn api_call(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<(InFlight, String), Response> {
        let mut guard = InFlight::enter(self.clone());
        let latency = *lock(&self.latency);
        if !latency.is_zero() {
            let work = tokio::spawn(async move {
                tokio::time::sleep(latency).await;
                guard
            });
            guard = work
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        }
        let session_user =
            Self::session_of(headers).and_then(|s| lock(&self.sessions).get(&s).cloned());
        let caller = match session_user {
            Some(user) => user,
            None => {
                if headers.contains_key(header::COOKIE)
                    && !headers.contains_key(header::AUTHORIZATION)
                {
                    self.counters.auth_failures.fetch_add(1, Ordering::SeqCst);
                    return Err(match *lock(&self.session_rejection) {
                        SessionRejection::Unauthorized => unauthorized(),
                        SessionRejection::HtmlLogin => login_page(),
                    });
                }
                let Some(user) = self.basic_user(headers) else {
                    self.counters.auth_failures.fetch_add(1, Ordering::SeqCst);
                    return Err(unauthorized());
                };
                self.counters.basic_api_calls.fetch_add(1, Ordering::SeqCst);
                user
            }
        };
        let fault = {
            let mut budget = lock(&self.fault_budget);
            match *budget {
                Some(0) => Fault::None,
                Some(ref mut n) => {
                    *n -= 1;
                    *lock(&self.fault)
                }
                None => *lock(&self.fault),
            }
        };
        match fault {
            Fault::None => Ok((guard, caller)),
            Fault::Status(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err((status, "stand-in fault").into_response())
            }
            Fault::HtmlLogin => Err(login_page()),
            Fault::BadJson => Err((
                [(header::CONTENT_TYPE, "application/json")],
                "[\"ALPHA_owner\",",
            )
                .into_response()),
            Fault::Oversized => {
                // Built once: a fault must not be slow to produce, or it turns into a timeout.
                static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let body = BODY.get_or_init(|| {
                    let many: Vec<String> =
                        (0..200_000).map(|i| format!("P{i:08}_member")).collect();
                    serde_json::to_string(&many).unwrap_or_default()
                });
                Err(([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response())
            }
        }
    }

    fn count_user(&self, user: &str) {
        *lock(&self.calls_by_user)
            .entry(user.to_owned())
            .or_default() += 1;
    }
}

/// Tracks concurrent API calls for `max_in_flight`.
struct InFlight(Arc<Standin>);

impl InFlight {
    fn enter(s: Arc<Standin>) -> Self {
        let c = &s.counters;
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(s)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"XNAT\"")],
        "Unauthorized",
    )
        .into_response()
}

fn login_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
        "<!DOCTYPE html><html><head><title>XNAT Login</title></head><body><form action=\"/login\"></form></body></html>",
    )
        .into_response()
}

/// `POST /data/JSESSION`: basic credentials → a new session id as plain text.
async fn login(State(s): State<Arc<Standin>>, headers: HeaderMap) -> Response {
    s.counters.logins.fetch_add(1, Ordering::SeqCst);
    let Some(user) = s.basic_user(&headers) else {
        s.counters.auth_failures.fetch_add(1, Ordering::SeqCst);
        // `XnatBasicAuthenticationFilter`: 401 with the container's error page, and no
        // `WWW-Authenticate` on this path.
        return (
            StatusCode::UNAUTHORIZED,
            "Login attempt failed. Please try again.",
        )
            .into_response();
    };
    let id = format!(
        "{:032X}",
        s.next_session.fetch_add(1, Ordering::SeqCst) * 7919
    );
    lock(&s.sessions).insert(id.clone(), user);
    (
        [
            (header::CONTENT_TYPE, "text/plain".to_owned()),
            (
                header::SET_COOKIE,
                format!("JSESSIONID={id}; Path=/; HttpOnly"),
            ),
        ],
        id,
    )
        .into_response()
}

/// `DELETE /data/JSESSION`: ends the caller's session.
async fn logout(State(s): State<Arc<Standin>>, headers: HeaderMap) -> Response {
    s.counters.logouts.fetch_add(1, Ordering::SeqCst);
    if let Some(id) = Standin::session_of(&headers) {
        lock(&s.sessions).remove(&id);
    }
    StatusCode::OK.into_response()
}

/// One row of the admin access list for group `g`, as `RoleHolder.QUERY_USER_PROJECT_ROLES`
/// builds it: a project group has its project's fields and the group's display name as `role`;
/// a site group (`ALL_DATA_ACCESS`, `ALL_DATA_ADMIN`) has no project, so those fields are null.
fn access_row(g: &str) -> Value {
    let site_group = matches!(g, "ALL_DATA_ACCESS" | "ALL_DATA_ADMIN");
    match g.rsplit_once('_').filter(|_| !site_group) {
        Some((project, role)) => {
            let display = match role {
                "owner" => "Owners",
                "member" => "Members",
                "collaborator" => "Collaborators",
                custom => custom,
            };
            json!({
                "ID": project, "secondary_ID": project, "name": format!("Project {project}"),
                "description": "", "role": display, "group_id": g,
                "URI": format!("/data/projects/{project}"),
            })
        }
        None => json!({
            "ID": null, "secondary_ID": null, "name": null, "description": null,
            "role": g, "group_id": g, "URI": null,
        }),
    }
}

async fn groups(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.groups.fetch_add(1, Ordering::SeqCst);
    s.count_user(&user);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    // Authorization runs before the lookup: 403 even for a user XNAT does not have.
    if let Some(refused) = s.refuse_other_user(&caller, &user) {
        return refused;
    }
    let groups = lock(&s.users).get(&user).cloned();
    match groups {
        Some(groups) => axum::Json(groups).into_response(),
        None if s.knows(&user) => axum::Json(Vec::<String>::new()).into_response(),
        None => no_such_user(),
    }
}

/// `GET /xapi/access/{user}/projects`: the admin view of a user's project memberships.
async fn access_projects(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.access.fetch_add(1, Ordering::SeqCst);
    s.count_user(&user);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    // `restrictTo = Admin`, even for the caller's own list.
    if let Some(refused) = s.refuse_non_admin(&caller) {
        return refused;
    }
    // An unknown user is `200 []` here (the query simply finds no groups), not 404.
    let groups = lock(&s.users).get(&user).cloned().unwrap_or_default();
    let list: Vec<Value> = groups.iter().map(|g| access_row(g)).collect();
    axum::Json(list).into_response()
}

/// `GET /xapi/users/{user}/roles` (`restrictTo = User`): a JSON array of role names; an
/// unknown user is 200 with no body (`getUserRoles` catches `UserNotFoundException` and returns
/// null).
async fn roles(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.roles.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(refused) = s.refuse_other_user(&caller, &user) {
        return refused;
    }
    if !s.knows(&user) {
        return StatusCode::OK.into_response();
    }
    let roles = lock(&s.roles).get(&user).cloned().unwrap_or_default();
    axum::Json(roles).into_response()
}

/// `GET /data/projects/{id}/archive_spec`: XML, whatever the `Accept` header says.
async fn archive_spec(
    State(s): State<Arc<Standin>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.archive_specs.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !s.has_role(&caller, ADMINISTRATOR) {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let path = lock(&s.archive_paths)
        .get(&project)
        .cloned()
        .unwrap_or_else(|| Some(format!("/data/xnat/archive/{project}/")));
    let paths = path.map_or_else(String::new, |p| {
        format!("<arc:paths>\n<arc:archivePath>{p}</arc:archivePath>\n<arc:prearchivePath>/data/xnat/prearchive/{project}/</arc:prearchivePath>\n</arc:paths>\n")
    });
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<arc:project ID=\"{project}\" current_arc=\"arc001\" \
         xmlns:arc=\"http://nrg.wustl.edu/arc\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n{paths}</arc:project>\n"
    );
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

/// XNAT's answer for a user it does not have (`UserNotFoundException`, 404, text/plain).
fn no_such_user() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "There was an error in the request : Invalid username and/or password",
    )
        .into_response()
}

async fn default_user_options(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    user_options(s, user, String::new(), headers).await
}

async fn named_user_options(
    State(s): State<Arc<Standin>>,
    Path((user, server)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    user_options(s, user, server, headers).await
}

async fn user_options(
    s: Arc<Standin>,
    user: String,
    server: String,
    headers: HeaderMap,
) -> Response {
    s.counters.user_options.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !(s.has_role(&caller, JUPYTERHUB) || s.has_role(&caller, ADMINISTRATOR)) {
        return StatusCode::FORBIDDEN.into_response();
    }
    // The plugin's two 404 texts (`JupyterHubApi`): the default server's, then a named one's.
    let missing = if server.is_empty() {
        "Jupyter server configuration not found."
    } else {
        "User options not found."
    };
    match lock(&s.user_options).get(&(user, server)) {
        Some(v) => axum::Json(v.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, missing).into_response(),
    }
}

async fn accessibility(
    State(s): State<Arc<Standin>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.accessibility.fetch_add(1, Ordering::SeqCst);
    let _guard = match s.api_call(&headers).await {
        Ok((g, _)) => g,
        Err(r) => return r,
    };
    match lock(&s.accessibility).get(&project) {
        Some(a) => ([(header::CONTENT_TYPE, "text/plain")], a.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("Could not find the project with ID '{project}'"),
        )
            .into_response(),
    }
}

async fn experiment(
    State(s): State<Arc<Standin>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.experiments.fetch_add(1, Ordering::SeqCst);
    let _guard = match s.api_call(&headers).await {
        Ok((g, _)) => g,
        Err(r) => return r,
    };
    match lock(&s.experiments).get(&id) {
        Some(v) => axum::Json(v.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "Unable to find the specified experiment.",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn call(s: &Arc<Standin>, req: Request<Body>) -> (StatusCode, String) {
        let response = s.router("/xnat").oneshot(req).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn basic(user: &str, password: &str) -> String {
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[tokio::test]
    async fn a_session_from_a_login_reads_the_demo_users_groups() {
        let s = Standin::demo("svc", "pw");
        let login = |password: &str| {
            Request::post("/xnat/data/JSESSION")
                .header(header::AUTHORIZATION, basic("svc", password))
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(call(&s, login("wrong")).await.0, StatusCode::UNAUTHORIZED);
        let (status, session) = call(&s, login("pw")).await;
        assert_eq!(status, StatusCode::OK);
        let groups = |user: &str| {
            Request::get(format!("/xnat/xapi/users/{user}/groups"))
                .header(header::COOKIE, format!("JSESSIONID={session}"))
                .body(Body::empty())
                .unwrap()
        };
        let (status, body) = call(&s, groups("erin")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "[\"BETA_owner\"]")
        );
        assert_eq!(call(&s, groups("nobody")).await.0, StatusCode::NOT_FOUND);
        let c = s.counts();
        assert_eq!((c.logins, c.groups, c.auth_failures), (2, 2, 1));
        assert_eq!(s.lookups_for("erin"), 1);
    }
}
