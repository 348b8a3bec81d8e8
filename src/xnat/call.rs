//! The XNAT calls the webhook makes, each as XNAT serves it: the path an admin finds in XNAT's API
//! docs, the media type to ask for, what the answer is read as, how large it may be, and which
//! site role a 403 says the service account lacks.
//!
//! XNAT negotiates before it answers. Under `/data` (Restlet 1.1.10) a resource lists the media
//! types it offers in its constructor, and `Resource.handleGet` answers **406** when none matches
//! the request's `Accept`, before the resource runs; `format=` is applied only afterwards, inside
//! `represent`. Under `/xapi` (Spring MVC) an `Accept` outside a handler's `produces` is a 406 too.
//! So each call asks for exactly what its resource class offers.

/// One kind of call to XNAT; its [`name`](Self::name) labels metrics, `/readyz` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XnatCall {
    /// `POST /data/JSESSION` (`UserSession`): the session id as plain text.
    Login,
    /// `DELETE /data/JSESSION`.
    Logout,
    /// `GET /xapi/users/{u}/groups` (`UsersApi`, `produces` JSON).
    Groups,
    /// `GET /xapi/users/{u}/roles` (`UsersApi`, JSON).
    Roles,
    /// `GET /xapi/access/{u}/projects` (`DataAccessApi`, JSON).
    Access,
    /// `GET /xapi/users` (`UsersApi.usersGet`, JSON): every login of the site.
    Users,
    /// `GET /xapi/jupyterhub/users/{u}/server[/{name}]/user-options` (the plugin's
    /// `JupyterHubApi`, JSON).
    UserOptions,
    /// `GET /data/projects/{id}/accessibility` (`ProjectAccessibilityResource`: `text/plain`
    /// only).
    Accessibility,
    /// `GET /data/projects/{id}/archive_spec` (`ProjectArchive`: `text/xml` only).
    ArchiveSpec,
    /// `GET /data/experiments/{id}?format=json` (`ExperimentResource`: `text/html` and `text/xml`
    /// only; `format=json` then writes item JSON).
    Experiment,
    /// `GET /data/projects?format=json&allDataOverride=true` (`ProjectListResource`: JSON, HTML,
    /// XML).
    Projects,
    /// `GET /data/projects/{id}/users?format=json` (`ProjectUserListResource`: JSON, HTML, XML).
    ProjectUsers,
}

/// What an answer's body is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Json,
    Xml,
    Text,
}

/// The largest answer read of most calls: a group list is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

impl XnatCall {
    /// Every call, for docs and tests.
    pub const ALL: [XnatCall; 12] = [
        XnatCall::Login,
        XnatCall::Logout,
        XnatCall::Groups,
        XnatCall::Roles,
        XnatCall::Access,
        XnatCall::Users,
        XnatCall::UserOptions,
        XnatCall::Accessibility,
        XnatCall::ArchiveSpec,
        XnatCall::Experiment,
        XnatCall::Projects,
        XnatCall::ProjectUsers,
    ];

    /// The `endpoint` label of the metrics and `/readyz`.
    pub const fn name(self) -> &'static str {
        match self {
            XnatCall::Login => "login",
            XnatCall::Logout => "logout",
            XnatCall::Groups => "groups",
            XnatCall::Roles => "roles",
            XnatCall::Access => "access",
            XnatCall::Users => "users",
            XnatCall::UserOptions => "user_options",
            XnatCall::Accessibility => "accessibility",
            XnatCall::ArchiveSpec => "archive_spec",
            XnatCall::Experiment => "experiment",
            XnatCall::Projects => "projects",
            XnatCall::ProjectUsers => "project_users",
        }
    }

    /// Whether one answer serves many reviews (it is cached for all, or read for the index), so
    /// it waits for a request slot before calls about one user ([`super::client`]'s limiter).
    pub const fn shared(self) -> bool {
        matches!(
            self,
            XnatCall::Users
                | XnatCall::Accessibility
                | XnatCall::ArchiveSpec
                | XnatCall::Experiment
                | XnatCall::Projects
                | XnatCall::ProjectUsers
        )
    }

    /// The path as an admin reads it in XNAT's API docs.
    pub const fn path(self) -> &'static str {
        match self {
            XnatCall::Login | XnatCall::Logout => "/data/JSESSION",
            XnatCall::Groups => "/xapi/users/{user}/groups",
            XnatCall::Roles => "/xapi/users/{user}/roles",
            XnatCall::Access => "/xapi/access/{user}/projects",
            XnatCall::Users => "/xapi/users",
            XnatCall::UserOptions => "/xapi/jupyterhub/users/{user}/server/…/user-options",
            XnatCall::Accessibility => "/data/projects/{id}/accessibility",
            XnatCall::ArchiveSpec => "/data/projects/{id}/archive_spec",
            XnatCall::Experiment => "/data/experiments/{id}",
            XnatCall::Projects => "/data/projects",
            XnatCall::ProjectUsers => "/data/projects/{id}/users",
        }
    }

    /// The `Accept` header: the media type the resource class offers that the answer is read
    /// as; for an experiment the XML `ExperimentResource` offers, which `format=json` then turns
    /// into item JSON.
    pub const fn accept(self) -> &'static str {
        match (self, self.media()) {
            (XnatCall::Experiment, _) | (_, Media::Xml) => "text/xml",
            (_, Media::Json) => "application/json",
            (_, Media::Text) => "text/plain",
        }
    }

    /// What the answer is read as.
    pub const fn media(self) -> Media {
        match self {
            XnatCall::Login | XnatCall::Logout | XnatCall::Accessibility => Media::Text,
            XnatCall::ArchiveSpec => Media::Xml,
            _ => Media::Json,
        }
    }

    /// The site role a 403 to this call says the service account lacks (`UserXapiAuthorization`,
    /// `DataAccessApi`, the plugin's `@AuthorizedRoles`, `restrictUserListAccessToAdmins`).
    pub const fn role(self) -> &'static str {
        match self {
            XnatCall::UserOptions => "JupyterHub (or Administrator)",
            _ => "Administrator",
        }
    }

    /// The largest answer read: a site's project list and member lists grow with the site (a
    /// project row is ~200 bytes: 1 MiB would stop at ~5,000 projects).
    pub const fn max_body(self) -> usize {
        match self {
            XnatCall::Projects => 32 * MAX_BODY_BYTES,
            XnatCall::ProjectUsers | XnatCall::Users => 16 * MAX_BODY_BYTES,
            XnatCall::ArchiveSpec => 256 * 1024,
            _ => MAX_BODY_BYTES,
        }
    }

    /// Whether a `Content-Type` is one this call's answer is read as (`None`: not said).
    pub fn reads(self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match self.media() {
            Media::Json => essence == "application/json" || essence.ends_with("+json"),
            Media::Xml => {
                essence == "text/xml" || essence == "application/xml" || essence.ends_with("+xml")
            }
            Media::Text => essence == "text/plain",
        }
    }
}

/// Whether a `Content-Type` is an HTML page (a login page, a proxy's error page).
pub fn is_html(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_asks_for_what_its_resource_offers_and_reads_only_that() {
        assert_eq!(XnatCall::ArchiveSpec.accept(), "text/xml");
        assert_eq!(XnatCall::Accessibility.accept(), "text/plain");
        assert_eq!(XnatCall::Experiment.accept(), "text/xml");
        assert_eq!(XnatCall::Groups.accept(), "application/json");
        assert!(XnatCall::Experiment.reads("application/json"));
        assert!(XnatCall::ArchiveSpec.reads("text/xml"));
        assert!(XnatCall::Accessibility.reads("text/plain; charset=ISO-8859-1"));
        assert!(!XnatCall::Accessibility.reads("application/json"));
        assert!(!XnatCall::Groups.reads("text/html;charset=UTF-8"));
        assert!(is_html("text/html;charset=UTF-8"));
        let names: std::collections::HashSet<_> = XnatCall::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), XnatCall::ALL.len());
    }
}
