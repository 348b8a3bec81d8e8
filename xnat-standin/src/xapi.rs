//! `/xapi/...`, as XNAT's Spring MVC controllers answer it. Every handler here `produces`
//! `application/json`: any other `Accept` is a 406 before the handler or its authorization
//! aspect runs. Then `XapiRequestMappingAspect` refuses a caller the endpoint is not for with a
//! 403 and an empty body, before the lookup: even for a user XNAT does not have.
//!
//! - `GET /xapi/users/{user}/groups` (`UsersApi`, `restrictTo = User`): the group ids,
//!   `["ALPHA_owner", …]`; 404 (text/plain, `UserNotFoundException`) for an unknown user.
//! - `GET /xapi/users/{user}/roles` (`User`): the site roles; 200 with no body for an unknown
//!   user (`getUserRoles` returns null).
//! - `GET /xapi/users` (`UsersApi.usersGet`, `restrictUserListAccessToAdmins`, on by default):
//!   every login of the site, disabled accounts included, as a JSON array.
//! - `GET /xapi/access/{user}/projects` (`DataAccessApi`, `restrictTo = Admin`): a row per group
//!   of the user, site groups with a null `ID`; `200 []` for an unknown user.
//! - `GET /xapi/jupyterhub/users/{user}/server[/{name}]/user-options` (the plugin's
//!   `JupyterHubApi`, `@AuthorizedRoles({"JupyterHub", "Administrator"})`): the stored launch,
//!   404 when none is.
//!
//! Logins are matched exactly, as XNAT does (`XDATUser`, `RoleHolder`): `JSmith` is not
//! `jsmith`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::negotiate::{JSON, spring_refusal};
use crate::{ADMINISTRATOR, JUPYTERHUB, Standin, lock};

/// The common prologue of an XAPI call after its counter: authentication and faults, then
/// Spring's `produces`; the calling account.
async fn xapi_call(
    s: &Arc<Standin>,
    headers: &HeaderMap,
    endpoint: &str,
    item: &str,
) -> Result<(crate::InFlight, String), Response> {
    let (guard, caller) = s.api_call(headers).await?;
    if let Some(r) = s.endpoint_fault(endpoint, item) {
        return Err(r);
    }
    if let Some(r) = spring_refusal(headers, JSON) {
        return Err(r);
    }
    Ok((guard, caller))
}

fn json(v: impl Into<Value>) -> Response {
    ([(header::CONTENT_TYPE, JSON)], axum::Json(v.into())).into_response()
}

/// One row of the admin access list for group `g`, as `RoleHolder.QUERY_USER_PROJECT_ROLES`
/// builds it: a project group has its project's fields and the group's display name as `role`;
/// a site group (`ALL_DATA_ACCESS`, `ALL_DATA_ADMIN`) has no project, so those fields are null.
fn access_row(s: &Standin, g: &str) -> Value {
    match s.project_of(g) {
        Some(project) => {
            let display = display_name(&g[project.len() + 1..]);
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

/// A group's display name: the standard groups' own, a custom group's name.
pub(crate) fn display_name(role: &str) -> String {
    match role {
        "owner" => "Owners".into(),
        "member" => "Members".into(),
        "collaborator" => "Collaborators".into(),
        custom => custom.into(),
    }
}

pub(crate) async fn groups(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.groups.fetch_add(1, Ordering::SeqCst);
    s.count_user(&user);
    let (_guard, caller) = match xapi_call(&s, &headers, "groups", &user).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(refused) = s.refuse_other_user(&caller, &user) {
        return refused;
    }
    let groups = lock(&s.users).get(&user).cloned();
    match groups {
        Some(groups) => json(groups),
        None if s.knows(&user) => json(Vec::<String>::new()),
        None => no_such_user(),
    }
}

pub(crate) async fn access_projects(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.access.fetch_add(1, Ordering::SeqCst);
    s.count_user(&user);
    let (_guard, caller) = match xapi_call(&s, &headers, "access", &user).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    // `restrictTo = Admin`, even for the caller's own list.
    if let Some(refused) = s.refuse_non_admin(&caller) {
        return refused;
    }
    // An unknown user is `200 []` here (the query simply finds no groups), not 404.
    let groups = lock(&s.users).get(&user).cloned().unwrap_or_default();
    let list: Vec<Value> = groups.iter().map(|g| access_row(&s, g)).collect();
    json(list)
}

pub(crate) async fn roles(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.roles.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match xapi_call(&s, &headers, "roles", &user).await {
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
    json(roles)
}

/// `GET /xapi/users`: every login, to a site Administrator (`UserResourceXapiAuthorization`
/// with `restrictUserListAccessToAdmins`).
pub(crate) async fn users(State(s): State<Arc<Standin>>, headers: HeaderMap) -> Response {
    s.counters.users.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match xapi_call(&s, &headers, "users", "").await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(refused) = s.refuse_non_admin(&caller) {
        return refused;
    }
    let mut logins: Vec<String> = lock(&s.users).keys().cloned().collect();
    logins.extend(lock(&s.roles).keys().cloned());
    logins.sort();
    logins.dedup();
    json(logins)
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

pub(crate) async fn default_user_options(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    user_options(s, user, String::new(), headers).await
}

pub(crate) async fn named_user_options(
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
    let (_guard, caller) = match xapi_call(&s, &headers, "user_options", &user).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !(s.has_role(&caller, JUPYTERHUB) || s.has_role(&caller, ADMINISTRATOR)) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if !s.knows(&user) {
        return no_such_user();
    }
    // The plugin's two 404 texts (`JupyterHubApi`): the default server's, then a named one's.
    let missing = if server.is_empty() {
        "Jupyter server configuration not found."
    } else {
        "User options not found."
    };
    match lock(&s.user_options).get(&(user, server)) {
        Some(v) => json(v.clone()),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            missing,
        )
            .into_response(),
    }
}
