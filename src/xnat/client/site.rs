//! The site-wide lists the access index is read from, as a site Administrator: every project
//! (`GET /data/projects?format=json&allDataOverride=true`) and each project's members
//! (`GET /data/projects/{ID}/users?format=json`).
//!
//! From XNAT's `ProjectListResource` (`DefaultProjectHandler`): without `allDataOverride=true` the
//! list holds only the projects the caller may read (unless it is in `ALL_DATA_ADMIN`), and an
//! Administrator role alone does not put an account there; with it, a site Administrator gets
//! every project. `ProjectUserListResource` lists the members of the groups tagged with the
//! project (`GROUP_ID`, `displayname`, `login`, `firstname`, `lastname`, `email`), enabled
//! accounts only, to site Administrators and project owners (403 otherwise, 404 for a project it
//! does not have).

use serde::Deserialize;
use tokio::time::Instant;

use super::{XnatClient, check_id};
use crate::xnat::{XnatCall, XnatError};

/// XNAT's restlet table envelope: `{"ResultSet": {"Result": [...], "totalRecords": "N"}}`.
#[derive(Deserialize)]
struct Table<R> {
    #[serde(rename = "ResultSet")]
    result_set: ResultSet<R>,
}

#[derive(Deserialize)]
struct ResultSet<R> {
    #[serde(rename = "Result", default = "Vec::new")]
    result: Vec<R>,
}

/// One row of the project list; every other column is ignored.
#[derive(Deserialize)]
struct ProjectRow {
    #[serde(rename = "ID", default)]
    id: Option<String>,
}

/// One row of a project's member list (`ProjectUserListResource`); every other column
/// (`displayname`, names, email) is ignored. A row without a login or group is skipped.
#[derive(Deserialize)]
pub struct MemberRow {
    #[serde(default)]
    pub login: Option<String>,
    #[serde(rename = "GROUP_ID", default)]
    pub group_id: Option<String>,
}

impl XnatClient {
    /// The ids of every project on the site, as XNAT lists them; ids that are not XNAT's id
    /// form are left out (they could never be mounted).
    pub async fn project_ids(&self, deadline: Instant) -> Result<Vec<String>, XnatError> {
        let mut url = self.url(&["data", "projects"]);
        url.set_query(Some("format=json&allDataOverride=true"));
        let body = self
            .get_body(XnatCall::Projects, url, deadline)
            .await?
            .ok_or(XnatError::Status(404))?;
        let table: Table<ProjectRow> = self.parse_json_blocking(XnatCall::Projects, body).await?;
        Ok(table
            .result_set
            .result
            .into_iter()
            .filter_map(|r| r.id)
            .filter(|id| crate::names::is_valid_project_id(id))
            .collect())
    }

    /// The members of one project with their group ids (`ALPHA_owner`); `None` when XNAT no
    /// longer has the project (404: deleted since it was listed).
    pub async fn project_members(
        &self,
        project: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<MemberRow>>, XnatError> {
        check_id(project)?;
        let mut url = self.url(&["data", "projects", project, "users"]);
        url.set_query(Some("format=json"));
        let Some(body) = self.get_body(XnatCall::ProjectUsers, url, deadline).await? else {
            return Ok(None);
        };
        let table: Table<MemberRow> = self
            .parse_json_blocking(XnatCall::ProjectUsers, body)
            .await?;
        Ok(Some(table.result_set.result))
    }
}
