//! The site-wide lists an access index reads as a site Administrator:
//! - `GET /data/projects?format=json` (`ProjectListResource.DefaultProjectHandler`): XNAT's table
//!   envelope `{"ResultSet": {"Result": [...], "totalRecords": N}}`, one row per project with the
//!   default fields `ID`, `secondary_ID`, `name`, `description`, `pi_firstname`, `pi_lastname`
//!   (null without a PI) and `URI`. Only the projects the caller may read — its own groups'
//!   here — unless the caller is a site Administrator asking `allDataOverride=true`: then every
//!   project (the Administrator role alone does not put an account in `ALL_DATA_ADMIN`);
//! - `GET /data/projects/{id}/users?format=json` (`ProjectUserListResource`): `SELECT g.id AS
//!   "GROUP_ID", displayname, login, firstname, lastname, email` over the groups tagged with the
//!   project, enabled accounts only; 404 for a project XNAT does not have; 403 for a caller that
//!   is neither a site Administrator nor an owner of the project
//!   (`restrictUserListAccessToAdmins`, on by default).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{ADMINISTRATOR, Standin, lock};

fn table(rows: Vec<Value>) -> Response {
    let total = rows.len();
    axum::Json(json!({"ResultSet": {"Result": rows, "totalRecords": total}})).into_response()
}

pub(crate) async fn projects(
    State(s): State<Arc<Standin>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    s.counters.projects.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let admin = s.has_role(&caller, ADMINISTRATOR)
        && query.get("allDataOverride").is_some_and(|v| v == "true");
    let own = lock(&s.users).get(&caller).cloned().unwrap_or_default();
    let rows = s
        .project_ids()
        .into_iter()
        .filter(|id| admin || own.iter().any(|g| g.starts_with(&format!("{id}_"))))
        .map(|id| {
            json!({
                "ID": id, "secondary_ID": id, "name": format!("Project {id}"),
                "description": "", "pi_firstname": null, "pi_lastname": null,
                "URI": format!("/data/projects/{id}"),
            })
        })
        .collect();
    table(rows)
}

pub(crate) async fn project_users(
    State(s): State<Arc<Standin>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.project_users.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !s.project_ids().contains(&project) {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let owner = format!("{project}_owner");
    let is_owner = lock(&s.users)
        .get(&caller)
        .is_some_and(|g| g.contains(&owner));
    if !s.has_role(&caller, ADMINISTRATOR) && !is_owner {
        return StatusCode::FORBIDDEN.into_response();
    }
    let prefix = format!("{project}_");
    let mut rows = Vec::new();
    for (login, groups) in lock(&s.users).iter() {
        for g in groups.iter().filter(|g| g.starts_with(&prefix)) {
            let display = match &g[prefix.len()..] {
                "owner" => "Owners".to_owned(),
                "member" => "Members".to_owned(),
                "collaborator" => "Collaborators".to_owned(),
                other => other.to_owned(),
            };
            rows.push(json!({
                "GROUP_ID": g, "displayname": display, "login": login,
                "firstname": login, "lastname": "", "email": format!("{login}@example.org"),
            }));
        }
    }
    table(rows)
}
