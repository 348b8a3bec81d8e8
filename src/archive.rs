//! Where XNAT keeps each project's files. A project's root is its own archive path when one is
//! set, else `{site archive}/{ID}/` (`XnatProjectdata.getRootArchivePath`); XNAT writes that
//! default into every new project (`initArcProjectImpl`), so "its own path" is one that differs
//! from it. The only endpoint that says is `GET /data/projects/{ID}/archive_spec`, always XML
//! (`ProjectArchive`): `arc:project/arc:paths/arc:archivePath`. Pure: the asking is
//! [`crate::xnat`]'s.

/// What is known of one project's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRoot {
    /// `{site archive}/{ID}`: the policy's project templates apply as written.
    Site,
    /// Its own archive path (absolute, as XNAT sees it, no trailing `/`).
    Own(String),
    /// XNAT could not say (the message says why): never mounted on a guess.
    Unknown(String),
}

/// The roots of the projects one review mounts, sorted by project; a project not in it is at
/// the site archive (the policy does not ask, or the source is a fixed table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectRoots(Vec<(String, ProjectRoot)>);

impl ProjectRoots {
    /// None known: every project at the site archive.
    pub const SITE: ProjectRoots = ProjectRoots(Vec::new());

    pub fn new(mut roots: Vec<(String, ProjectRoot)>) -> Self {
        roots.sort_by(|a, b| a.0.cmp(&b.0));
        Self(roots)
    }

    pub fn get(&self, project: &str) -> &ProjectRoot {
        match self.0.binary_search_by(|(p, _)| p.as_str().cmp(project)) {
            Ok(i) => &self.0[i].1,
            Err(_) => &ProjectRoot::Site,
        }
    }
}

/// What `GET /data/projects/{ID}/archive_spec` said about a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSpec {
    /// Its stored archive path.
    Path(String),
    /// None stored: the site default (`getRootArchivePath` falls back to it).
    NoPath,
    /// 404: XNAT does not show the service account this project.
    NoProject,
}

impl ArchiveSpec {
    /// The project's root, given the site archive path.
    pub fn root(&self, project: &str, site_archive: &str) -> ProjectRoot {
        match self {
            ArchiveSpec::Path(p) => classify(project, p, site_archive),
            ArchiveSpec::NoPath => ProjectRoot::Site,
            ArchiveSpec::NoProject => {
                ProjectRoot::Unknown("XNAT does not show this project's archive_spec (404)".into())
            }
        }
    }
}

/// What the webhook found of the directories of `optional` project mounts it looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    /// Looked for and not there: left out, as XNAT's plugin leaves out what does not exist.
    Missing,
    /// Could not be looked for (the claim is not visible at `seenAt`, or the look did not finish
    /// in time): left out too, with a warning — mounting it could fail the pod.
    Unseen,
}

/// The directories of optional mounts that are not to be mounted (volume, subPath), sorted; one
/// not in it exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbsentDirs(Vec<(String, String, Seen)>);

impl AbsentDirs {
    pub const NONE: AbsentDirs = AbsentDirs(Vec::new());

    pub fn new(mut dirs: Vec<(String, String, Seen)>) -> Self {
        dirs.sort();
        Self(dirs)
    }

    pub fn get(&self, volume: &str, sub_path: &str) -> Option<Seen> {
        self.0
            .binary_search_by(|(v, s, _)| (v.as_str(), s.as_str()).cmp(&(volume, sub_path)))
            .ok()
            .map(|i| self.0[i].2)
    }
}

/// Reads an `archive_spec` answer; `None` when it is not an `arc:project` document (an XHTML
/// login page is XML too, and must not read as "no path of its own").
pub fn archive_spec_of(xml: &str) -> Option<ArchiveSpec> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let project = doc.root_element();
    if project.tag_name().name() != "project" {
        return None;
    }
    let path = project
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "paths")
        .and_then(|paths| {
            paths
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == "archivePath")
        })
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|p| !p.is_empty());
    Some(path.map_or(ArchiveSpec::NoPath, |p| ArchiveSpec::Path(p.to_owned())))
}

/// `path` compared with the site's `{archive}/{project}`: backslashes as `/` (XNAT does so on
/// Windows paths), empty and `.` segments and a trailing `/` ignored.
pub fn classify(project: &str, path: &str, site_archive: &str) -> ProjectRoot {
    let norm = |p: &str| -> String {
        let p = p.replace('\\', "/");
        let segments: Vec<&str> = p
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        format!("/{}", segments.join("/"))
    };
    let own = norm(path);
    if own == norm(&format!("{site_archive}/{project}")) {
        ProjectRoot::Site
    } else {
        ProjectRoot::Own(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `ProjectArchive` writes it (`arc:project` with `arc:paths`, generated XML).
    const SPEC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<arc:project ID="ALPHA" current_arc="arc001" prearchive_code="4" xmlns:arc="http://nrg.wustl.edu/arc" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<arc:paths>
<arc:archivePath>/mnt/big/alpha/</arc:archivePath>
<arc:prearchivePath>/data/xnat/prearchive/ALPHA/</arc:prearchivePath>
</arc:paths>
</arc:project>"#;

    #[test]
    fn the_archive_path_as_xnat_writes_it() {
        assert_eq!(
            archive_spec_of(SPEC),
            Some(ArchiveSpec::Path("/mnt/big/alpha/".into()))
        );
        let none = SPEC.replace("<arc:archivePath>/mnt/big/alpha/</arc:archivePath>", "");
        assert_eq!(archive_spec_of(&none), Some(ArchiveSpec::NoPath));
        assert_eq!(archive_spec_of("<html>login</html>"), None);
        let xhtml =
            r#"<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>"#;
        assert_eq!(archive_spec_of(xhtml), None);
        assert_eq!(archive_spec_of("not xml"), None);
    }

    #[test]
    fn the_site_default_is_not_an_own_path() {
        let site = "/data/xnat/archive";
        assert_eq!(
            classify("ALPHA", "/data/xnat/archive/ALPHA/", site),
            ProjectRoot::Site
        );
        assert_eq!(
            classify("ALPHA", "/data/xnat/archive//ALPHA", site),
            ProjectRoot::Site
        );
        assert_eq!(
            classify("ALPHA", "/mnt/big/alpha/", site),
            ProjectRoot::Own("/mnt/big/alpha".into())
        );
        // Another project's directory is not this one's default.
        assert_eq!(
            classify("ALPHA", "/data/xnat/archive/BETA/", site),
            ProjectRoot::Own("/data/xnat/archive/BETA".into())
        );
    }
}
