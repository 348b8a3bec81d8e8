//! A small XNAT stand-in that speaks the endpoints the webhook uses as XNAT does: the same JSON
//! and XML shapes, media types negotiated as Restlet and Spring MVC negotiate them (a 406 for
//! what a resource does not offer), the same roles and 403s, 404 for what the account cannot
//! see, logins matched case-sensitively. `make run` serves it with demo users; the integration
//! tests use it as the XNAT test double, with latency and fault injection and call counting.
//!
//! Endpoints (under the context path, e.g. `/xnat`), each module naming the XNAT classes behind
//! its answers:
//! - `POST /data/JSESSION` (basic auth) → session id as text, `DELETE /data/JSESSION`;
//! - [`xapi`]: `/xapi/users/{u}/groups`, `/xapi/users/{u}/roles`, `/xapi/users`,
//!   `/xapi/access/{u}/projects`, the plugin's `…/user-options`;
//! - [`data`]: `/data/projects/{id}/archive_spec`, `…/accessibility`, `/data/experiments/{id}`;
//! - [`site`]: `/data/projects` and `/data/projects/{id}/users`;
//! - [`negotiate`]: how each framework picks a media type or refuses.
//!
//! Every API call accepts the `JSESSIONID` cookie of a live session or HTTP basic credentials.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

mod data;
pub mod negotiate;
mod site;
mod xapi;

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
    users: AtomicUsize,
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
    /// `GET /xapi/users`.
    pub users: usize,
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
            + self.users
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
    /// How long a login takes (Tomcat's authentication and session set-up); 0 by default.
    login_latency: Mutex<Duration>,
    calls_by_user: Mutex<HashMap<String, usize>>,
    /// Projects without members (`add_project`).
    extra_projects: Mutex<std::collections::BTreeSet<String>>,
    /// Custom project groups: group id → its project (`ProjectGroupResource`).
    custom_groups: Mutex<HashMap<String, String>>,
    /// Project aliases → the project (`ProjectArchive` resolves either).
    aliases: Mutex<HashMap<String, String>>,
    /// Projects' current arcs; `arc001` for the rest.
    current_arcs: Mutex<HashMap<String, String>>,
    /// Faults of one endpoint (`archive_spec`) or one item of it (`archive_spec/ALPHA`).
    endpoint_faults: Mutex<HashMap<String, Fault>>,
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
            login_latency: Mutex::default(),
            calls_by_user: Mutex::default(),
            extra_projects: Mutex::default(),
            custom_groups: Mutex::default(),
            aliases: Mutex::default(),
            current_arcs: Mutex::default(),
            endpoint_faults: Mutex::default(),
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

    /// Stores the plugin's user options for a user's server (`""` for the default server); the
    /// user exists from then on.
    pub fn set_user_options(&self, user: &str, server: &str, options: Value) {
        lock(&self.users).entry(user.to_owned()).or_default();
        lock(&self.user_options).insert((user.to_owned(), server.to_owned()), options);
    }

    /// A custom group of `project` (`ProjectGroupResource`: its id is `{project}_{name}`, or
    /// any id the request gave): members are added with [`Self::set_user`].
    pub fn add_custom_group(&self, project: &str, group_id: &str) {
        lock(&self.custom_groups).insert(group_id.to_owned(), project.to_owned());
    }

    /// `alias` names `project` too (a project's secondary ids).
    pub fn set_alias(&self, alias: &str, project: &str) {
        lock(&self.aliases).insert(alias.to_owned(), project.to_owned());
    }

    /// A project's current arc (`PUT /data/projects/{id}/current_arc/{arc}`).
    pub fn set_current_arc(&self, project: &str, arc: &str) {
        lock(&self.current_arcs).insert(project.to_owned(), arc.to_owned());
    }

    /// Answers `endpoint` (a [`Counts`] field name: `archive_spec`, `project_users`…) with
    /// `fault`, or only its item when the key is `endpoint/item`; `Fault::None` clears it.
    pub fn set_endpoint_fault(&self, key: &str, fault: Fault) {
        let mut faults = lock(&self.endpoint_faults);
        if fault == Fault::None {
            faults.remove(key);
        } else {
            faults.insert(key.to_owned(), fault);
        }
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

    /// Makes every login take `latency`: work that, as Tomcat's, goes on when the client stops
    /// listening, and counts in `max_in_flight` until it is done.
    pub fn set_login_latency(&self, latency: Duration) {
        *lock(&self.login_latency) = latency;
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
            users: n(&c.users),
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
            .route("/xapi/users", get(xapi::users))
            .route("/xapi/users/{user}/groups", get(xapi::groups))
            .route("/xapi/users/{user}/roles", get(xapi::roles))
            .route("/xapi/access/{user}/projects", get(xapi::access_projects))
            .route(
                "/xapi/jupyterhub/users/{user}/server/user-options",
                get(xapi::default_user_options),
            )
            .route(
                "/xapi/jupyterhub/users/{user}/server/{server}/user-options",
                get(xapi::named_user_options),
            )
            .route(
                "/data/projects/{project}/accessibility",
                get(data::accessibility),
            )
            .route("/data/experiments/{id}", get(data::experiment))
            .route(
                "/data/projects/{project}/archive_spec",
                get(data::archive_spec),
            )
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

    /// Every project the stand-in has: those of its users' groups and those added empty or
    /// given settings.
    fn project_ids(&self) -> std::collections::BTreeSet<String> {
        let mut ids: std::collections::BTreeSet<String> = lock(&self.extra_projects).clone();
        ids.extend(lock(&self.accessibility).keys().cloned());
        ids.extend(lock(&self.archive_paths).keys().cloned());
        ids.extend(lock(&self.current_arcs).keys().cloned());
        ids.extend(lock(&self.custom_groups).values().cloned());
        let groups: Vec<String> = lock(&self.users).values().flatten().cloned().collect();
        ids.extend(groups.iter().filter_map(|g| self.project_of(g)));
        ids
    }

    /// The project a group belongs to: a custom group's own, a site group's none, else the id
    /// before the last `_` (`ALPHA_owner`).
    fn project_of(&self, group: &str) -> Option<String> {
        if let Some(p) = lock(&self.custom_groups).get(group) {
            return Some(p.clone());
        }
        if group.starts_with("ALL_DATA_") {
            return None;
        }
        group.rsplit_once('_').map(|(p, _)| p.to_owned())
    }

    /// The project an id or alias names; an alias set with [`Self::set_alias`] wins, so a test
    /// can have XNAT resolve a name some group implies to another project.
    fn resolve_project(&self, id: &str) -> Option<String> {
        if let Some(p) = lock(&self.aliases).get(id) {
            return Some(p.clone());
        }
        self.project_ids().contains(id).then(|| id.to_owned())
    }

    /// The fault set for `endpoint` or for its `item`, as a response.
    fn endpoint_fault(&self, endpoint: &str, item: &str) -> Option<Response> {
        let faults = lock(&self.endpoint_faults);
        let fault = faults
            .get(&format!("{endpoint}/{item}"))
            .or_else(|| faults.get(endpoint))
            .copied()?;
        drop(faults);
        fault_response(fault)
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
        match fault_response(fault) {
            None => Ok((guard, caller)),
            Some(r) => Err(r),
        }
    }

    fn count_user(&self, user: &str) {
        *lock(&self.calls_by_user)
            .entry(user.to_owned())
            .or_default() += 1;
    }
}

/// What a fault answers instead of the real answer.
fn fault_response(fault: Fault) -> Option<Response> {
    Some(match fault {
        Fault::None => return None,
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "stand-in fault").into_response()
        }
        Fault::HtmlLogin => login_page(),
        Fault::BadJson => (
            [(header::CONTENT_TYPE, "application/json")],
            "[\"ALPHA_owner\",",
        )
            .into_response(),
        Fault::Oversized => {
            // Built once: a fault must not be slow to produce, or it turns into a timeout.
            static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let body = BODY.get_or_init(|| {
                let many: Vec<String> = (0..200_000).map(|i| format!("P{i:08}_member")).collect();
                serde_json::to_string(&many).unwrap_or_default()
            });
            ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
        }
    })
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
    let guard = InFlight::enter(s.clone());
    let latency = *lock(&s.login_latency);
    if !latency.is_zero() {
        // Done in a task of its own: a client that gives up does not stop XNAT's work.
        let work = tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            guard
        });
        let _ = work.await;
    } else {
        drop(guard);
    }
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

    /// A GET as `svc` asking for `accept` (none: no header): status, `Content-Type`, body.
    async fn get(s: &Arc<Standin>, path: &str, accept: Option<&str>) -> (u16, String, String) {
        let mut req =
            Request::get(format!("/xnat{path}")).header(header::AUTHORIZATION, basic("svc", "pw"));
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let response = s
            .router("/xnat")
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let ct = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    /// What a client asking for JSON everywhere gets, against what XNAT's resource classes
    /// offer: each of these would have passed against a stand-in that answers anything.
    #[tokio::test]
    async fn a_client_that_asks_for_json_everywhere_is_refused_where_xnat_refuses_it() {
        let s = Standin::demo("svc", "pw");
        s.set_experiment("XNAT_E00007", "GAMMA", "G01_MR1", &[]);
        let json = Some("application/json");
        for path in [
            "/data/projects/ALPHA/archive_spec",
            "/data/projects/ALPHA/accessibility",
            "/data/experiments/XNAT_E00007?format=json",
            // ExperimentResource negotiates before it looks: a 406 even for none.
            "/data/experiments/NOPE?format=json",
        ] {
            assert_eq!(get(&s, path, json).await.0, 406, "{path}");
        }
        // What each offers is answered, in its own media type.
        let (status, ct, body) =
            get(&s, "/data/projects/ALPHA/archive_spec", Some("text/xml")).await;
        assert_eq!((status, ct.as_str()), (200, "text/xml"));
        assert!(
            body.contains("<arc:project id=\"ALPHA\" current_arc=\"arc001\""),
            "{body}"
        );
        let (status, ct, body) =
            get(&s, "/data/projects/ALPHA/accessibility", Some("text/plain")).await;
        assert_eq!(
            (status, ct.as_str(), body.as_str()),
            (200, "text/plain; charset=ISO-8859-1", "private")
        );
        let (status, ct, body) = get(
            &s,
            "/data/experiments/XNAT_E00007?format=json",
            Some("text/xml"),
        )
        .await;
        assert_eq!((status, ct.as_str()), (200, "application/json"), "{body}");
        assert!(body.contains("\"data_fields\""), "{body}");
        // No Accept is `*/*`: an experiment is then HTML, whatever `format=` says.
        let (_, ct, _) = get(&s, "/data/experiments/XNAT_E00007", None).await;
        assert_eq!(ct, "text/html");
        assert_eq!(
            get(&s, "/data/experiments/NOPE?format=json", Some("text/xml"))
                .await
                .0,
            404
        );
        // A project the account cannot see is a 404 before any negotiation.
        assert_eq!(
            get(&s, "/data/projects/NOPE/archive_spec", json).await.0,
            404
        );
        // Spring MVC: `produces` JSON, so XML is a 406, before authorization.
        for path in [
            "/xapi/users/alice/groups",
            "/xapi/users",
            "/xapi/access/alice/projects",
        ] {
            assert_eq!(get(&s, path, Some("text/xml")).await.0, 406, "{path}");
            assert_eq!(get(&s, path, json).await.0, 200, "{path}");
        }
        // Tables offer JSON, HTML and XML; `format=json` picks JSON once one is allowed.
        let (status, ct, _) = get(&s, "/data/projects?format=json", Some("text/xml")).await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        assert_eq!(
            get(&s, "/data/projects?format=json", Some("image/png"))
                .await
                .0,
            406
        );
    }

    /// Logins are matched exactly, as `XDATUser` does.
    #[tokio::test]
    async fn logins_are_case_sensitive() {
        let s = Standin::demo("svc", "pw");
        s.set_user("JSmith", &["GAMMA_member"]);
        let json = Some("application/json");
        assert_eq!(get(&s, "/xapi/users/JSmith/groups", json).await.0, 200);
        assert_eq!(get(&s, "/xapi/users/jsmith/groups", json).await.0, 404);
        let (_, _, logins) = get(&s, "/xapi/users", json).await;
        assert!(
            logins.contains("\"JSmith\"") && !logins.contains("\"jsmith\""),
            "{logins}"
        );
    }
}
