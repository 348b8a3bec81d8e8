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
//!   (`restrictUserListAccessToAdmins`, on by default); a custom group's rows have its id
//!   (`ALPHA_PET_member`) and its name as `displayname`.
//!
//! Both offer `SecureResource.STANDARD_VARIANTS` (JSON, HTML, XML): an `Accept` that allows none
//! of them is a 406 (after the member list's 404 and 403, which its constructor sets);
//! `format=json` picks JSON once one is allowed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::collections::HashMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::negotiate::{JSON, STANDARD_VARIANTS, XML, not_acceptable, requested_format, restlet};
use crate::{ADMINISTRATOR, Standin, lock};

/// XNAT's table in the negotiated media type (`format=` overriding it); `None`: a 406.
fn table(headers: &HeaderMap, query: Option<&str>, rows: Vec<Value>) -> Response {
    let Some(variant) = restlet(headers, STANDARD_VARIANTS) else {
        return not_acceptable();
    };
    let total = rows.len();
    match requested_format(query).unwrap_or(variant) {
        JSON => (
            [(header::CONTENT_TYPE, JSON)],
            axum::Json(json!({"ResultSet": {"Result": rows, "totalRecords": total}})),
        )
            .into_response(),
        XML => (
            [(header::CONTENT_TYPE, XML)],
            format!("<?xml version=\"1.0\"?><ResultSet totalRecords=\"{total}\"/>"),
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><table></table></body></html>",
        )
            .into_response(),
    }
}

pub(crate) async fn projects(
    State(s): State<Arc<Standin>>,
    Query(query): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    s.counters.projects.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(r) = s.endpoint_fault("projects", "") {
        return r;
    }
    let admin = s.has_role(&caller, ADMINISTRATOR)
        && query.get("allDataOverride").is_some_and(|v| v == "true");
    let own = lock(&s.users).get(&caller).cloned().unwrap_or_default();
    let rows = s
        .project_ids()
        .into_iter()
        .filter(|id| admin || own.iter().any(|g| s.project_of(g).as_ref() == Some(id)))
        .map(|id| {
            json!({
                "ID": id, "secondary_ID": id, "name": format!("Project {id}"),
                "description": "", "pi_firstname": null, "pi_lastname": null,
                "URI": format!("/data/projects/{id}"),
            })
        })
        .collect();
    table(&headers, raw.as_deref(), rows)
}

pub(crate) async fn project_users(
    State(s): State<Arc<Standin>>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    s.counters.project_users.fetch_add(1, Ordering::SeqCst);
    let (_guard, caller) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(r) = s.endpoint_fault("project_users", &project) {
        return r;
    }
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
    let mut rows = Vec::new();
    let users = lock(&s.users).clone();
    for (login, groups) in &users {
        for g in groups {
            if s.project_of(g).as_ref() != Some(&project) {
                continue;
            }
            let display = crate::xapi::display_name(&g[project.len() + 1..]);
            rows.push(json!({
                "GROUP_ID": g, "displayname": display, "login": login,
                "firstname": login, "lastname": "", "email": format!("{login}@example.org"),
            }));
        }
    }
    // `ORDER BY g.id DESC`, then by login for a stable answer.
    rows.sort_by(|a, b| {
        (&b["GROUP_ID"].as_str(), &a["login"].as_str())
            .cmp(&(&a["GROUP_ID"].as_str(), &b["login"].as_str()))
    });
    table(&headers, raw.as_deref(), rows)
}
