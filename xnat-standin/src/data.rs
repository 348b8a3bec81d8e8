//! `/data/...` item resources, as XNAT's Restlet 1.1 resources answer them: each offers the
//! media types its constructor adds, a status the constructor sets (404 for a project the
//! account cannot see) is answered before negotiation, and `format=` only matters afterwards.
//!
//! - `GET /data/projects/{id}/archive_spec` (`ProjectArchive`): `text/xml` only; the project is
//!   looked up by id *or alias* (`XnatProjectdata.getProjectByIDorAlias`), 404 from the
//!   constructor when there is none the account may read; the answer is the project's
//!   `arc:project` (`ArcProjectBean`: `id`, `current_arc` and the codes as attributes,
//!   `arc:paths/arc:archivePath`), whatever `format=` says.
//! - `GET /data/projects/{id}/accessibility` (`ProjectAccessibilityResource`): `text/plain` only,
//!   `public`, `protected` or `private` (`text/plain; charset=ISO-8859-1`), 404 from the
//!   constructor.
//! - `GET /data/experiments/{id}` (`ExperimentResource`): `text/html` then `text/xml`; the 404
//!   for an experiment it does not show comes from `represent`, *after* negotiation;
//!   `format=json` writes the item JSON (`ItemJSONBuilder`: `items[0].data_fields`
//!   `ID`/`project`/`label`, shares as items of the `sharing/share` child).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::negotiate::{HTML, JSON, TEXT, XML, not_acceptable, requested_format, restlet};
use crate::{ADMINISTRATOR, Standin, lock};

/// `ProjectArchive`'s and `ProjectAccessibilityResource`'s constructor: the project the id or
/// alias names, when the account may read it (only Administrators are modelled as reading
/// every project; anyone reads a public one).
fn readable_project(s: &Standin, caller: &str, id: &str) -> Option<String> {
    let project = s.resolve_project(id)?;
    let public = lock(&s.accessibility).get(&project).map(String::as_str) == Some("public");
    (public || s.has_role(caller, ADMINISTRATOR)).then_some(project)
}

/// The constructor's 404, answered before any negotiation.
fn no_project(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, HTML)],
        format!("Unable to find project '{id}'"),
    )
        .into_response()
}

/// A project resource as Restlet runs it: authentication and faults, the constructor (the
/// project the id or alias names, or its 404), then negotiation among `variants`; the project
/// and the call's in-flight guard, or the answer to give instead.
async fn project_resource(
    s: &Arc<Standin>,
    headers: &HeaderMap,
    (endpoint, id): (&str, &str),
    variants: &[&'static str],
) -> Result<(crate::InFlight, String), Response> {
    let (guard, caller) = s.api_call(headers).await?;
    if let Some(r) = s.endpoint_fault(endpoint, id) {
        return Err(r);
    }
    let Some(project) = readable_project(s, &caller, id) else {
        return Err(no_project(id));
    };
    if restlet(headers, variants).is_none() {
        return Err(not_acceptable());
    }
    Ok((guard, project))
}

pub(crate) async fn archive_spec(
    State(s): State<Arc<Standin>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.archive_specs.fetch_add(1, Ordering::SeqCst);
    let (_guard, project) =
        match project_resource(&s, &headers, ("archive_spec", &id), &[XML]).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let path = lock(&s.archive_paths)
        .get(&project)
        .cloned()
        .unwrap_or_else(|| Some(format!("/data/xnat/archive/{project}/")));
    let arc = lock(&s.current_arcs)
        .get(&project)
        .cloned()
        .unwrap_or_else(|| "arc001".into());
    let paths = path.map_or_else(String::new, |p| {
        format!(
            "<arc:paths>\n<arc:archivePath>{p}</arc:archivePath>\n\
             <arc:prearchivePath>/data/xnat/prearchive/{project}/</arc:prearchivePath>\n\
             <arc:cachePath>/data/xnat/cache/{project}/</arc:cachePath>\n\
             <arc:buildPath>/data/xnat/build/{project}/</arc:buildPath>\n</arc:paths>\n"
        )
    });
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<arc:project id=\"{project}\" \
         current_arc=\"{arc}\" quarantine_code=\"0\" prearchive_code=\"4\" \
         xmlns:arc=\"http://nrg.wustl.edu/arc\" xmlns:xnat=\"http://nrg.wustl.edu/xnat\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n{paths}</arc:project>\n"
    );
    ([(header::CONTENT_TYPE, XML)], xml).into_response()
}

pub(crate) async fn accessibility(
    State(s): State<Arc<Standin>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.counters.accessibility.fetch_add(1, Ordering::SeqCst);
    let (_guard, project) =
        match project_resource(&s, &headers, ("accessibility", &id), &[TEXT]).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let a = lock(&s.accessibility)
        .get(&project)
        .cloned()
        .unwrap_or_else(|| "private".into());
    (
        [(header::CONTENT_TYPE, "text/plain; charset=ISO-8859-1")],
        a,
    )
        .into_response()
}

pub(crate) async fn experiment(
    State(s): State<Arc<Standin>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    s.counters.experiments.fetch_add(1, Ordering::SeqCst);
    let (_guard, _) = match s.api_call(&headers).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(r) = s.endpoint_fault("experiment", &id) {
        return r;
    }
    let Some(variant) = restlet(&headers, &[HTML, XML]) else {
        return not_acceptable();
    };
    let Some(item) = lock(&s.experiments).get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, HTML)],
            "Unable to find the specified experiment.",
        )
            .into_response();
    };
    match requested_format(query.as_deref()).unwrap_or(variant) {
        JSON => ([(header::CONTENT_TYPE, JSON)], axum::Json(item)).into_response(),
        XML => {
            let f = &item["items"][0]["data_fields"];
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xnat:MRSession ID=\"{}\" \
                 project=\"{}\" label=\"{}\" xmlns:xnat=\"http://nrg.wustl.edu/xnat\"/>\n",
                f["ID"].as_str().unwrap_or_default(),
                f["project"].as_str().unwrap_or_default(),
                f["label"].as_str().unwrap_or_default()
            );
            ([(header::CONTENT_TYPE, XML)], xml).into_response()
        }
        _ => (
            [(header::CONTENT_TYPE, HTML)],
            "<!DOCTYPE html><html><body>experiment</body></html>",
        )
            .into_response(),
    }
}
