//! Where XNAT keeps each project's files. A project's root is its own archive path when one is
//! set, else `{site archive}/{ID}/` (`XnatProjectdata.getRootArchivePath`); XNAT writes that
//! default into every new project (`initArcProjectImpl`), so "its own path" is one that differs
//! from it. The only endpoint that says is `GET /data/projects/{ID}/archive_spec`, always XML
//! (`ProjectArchive`): `arc:project/arc:paths/arc:archivePath`. Pure: the asking is
//! [`crate::xnat`]'s.

/// XNAT's archive namespace (`arc:`), of every `archive_spec` document.
pub const ARC_NAMESPACE: &str = "http://nrg.wustl.edu/arc";

/// A project's archive directory when XNAT does not say (`FileUtils.getCurrentArc`'s default).
pub const DEFAULT_ARC: &str = "arc001";

/// Most `<` and `=` read in one `archive_spec`: a real one has a few dozen. The XML parser
/// checks each attribute against the element's others, so 100,000 of them took ~30 s of CPU.
const MAX_SPEC_MARKUP: usize = 4096;

/// What is known of one project's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRoot {
    /// `{site archive}/{ID}`: the policy's project templates apply as written.
    Site,
    /// Its own archive path (absolute, as XNAT sees it, no trailing `/`).
    Own(String),
    /// XNAT could not say (the message says why): never mounted on a guess.
    Unknown(String),
    /// What XNAT said cannot be this project's (the message says why): never mounted.
    Refused(String),
}

/// Where one project's files are: its root and its current arc directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPlace {
    pub root: ProjectRoot,
    /// `None`: `arc001`, as XNAT does when it says nothing.
    pub arc: Option<String>,
}

impl ProjectPlace {
    /// `{site archive}/{ID}/arc001`: what a project is unless XNAT says otherwise.
    pub const SITE: ProjectPlace = ProjectPlace {
        root: ProjectRoot::Site,
        arc: None,
    };

    /// The current arc directory (`{arc}`).
    pub fn arc(&self) -> &str {
        self.arc.as_deref().unwrap_or(DEFAULT_ARC)
    }

    fn is_site(&self) -> bool {
        self.root == ProjectRoot::Site && self.arc() == DEFAULT_ARC
    }
}

/// The places of the projects one review mounts, sorted by project; a project not in it is at
/// the site archive in `arc001` (the policy does not ask, or the source is a fixed table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectRoots(Vec<(String, ProjectPlace)>);

static SITE_ROOT: ProjectRoot = ProjectRoot::Site;

impl ProjectRoots {
    /// None known: every project at the site archive.
    pub const SITE: ProjectRoots = ProjectRoots(Vec::new());

    /// The places that are not the site default (those are not kept: the warm path of a site
    /// without own paths allocates nothing).
    pub fn new(places: impl IntoIterator<Item = (String, ProjectPlace)>) -> Self {
        let mut places: Vec<_> = places.into_iter().filter(|(_, p)| !p.is_site()).collect();
        places.sort_by(|a, b| a.0.cmp(&b.0));
        Self(places)
    }

    fn place(&self, project: &str) -> Option<&ProjectPlace> {
        self.0
            .binary_search_by(|(p, _)| p.as_str().cmp(project))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn get(&self, project: &str) -> &ProjectRoot {
        self.place(project).map_or(&SITE_ROOT, |p| &p.root)
    }

    /// The project's current arc directory (`{arc}`).
    pub fn arc(&self, project: &str) -> &str {
        self.place(project).map_or(DEFAULT_ARC, ProjectPlace::arc)
    }
}

/// What a 404 to an item means: the service account does not see it, which is not a missing
/// role (that is a 403) and not proof the item does not exist.
pub fn hidden(kind: &str, id: &str) -> String {
    format!(
        "XNAT does not show the service account {kind} {id} (404: it does not exist, or the \
         account may not read it)"
    )
}

/// What `GET /data/projects/{ID}/archive_spec` said about a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSpec {
    /// The project's `arc:project`: its stored archive path (`None`: none stored, the site
    /// default) and its current arc (`None`: not said, `arc001`).
    Found {
        path: Option<String>,
        arc: Option<String>,
    },
    /// 404: XNAT does not show the service account this project.
    NoProject,
}

impl ArchiveSpec {
    /// Where the project's files are, given the site archive path; `None` for the site default
    /// (`{archive}/{ID}`, `arc001`), found without allocating: the warm path of every review.
    pub fn place(&self, project: &str, site_archive: &str) -> Option<ProjectPlace> {
        match self {
            ArchiveSpec::Found { path, arc } => {
                let root = match path {
                    Some(p) => classify(project, p, site_archive),
                    None => ProjectRoot::Site,
                };
                let arc = arc.as_deref().filter(|a| *a != DEFAULT_ARC);
                if let Some(a) = arc
                    && !crate::names::is_safe_segment(a)
                {
                    return Some(ProjectPlace {
                        root: ProjectRoot::Refused(format!(
                            "its current arc {:?} is not a directory name",
                            crate::echo::echo(a)
                        )),
                        arc: None,
                    });
                }
                let place = ProjectPlace {
                    root,
                    arc: arc.map(str::to_owned),
                };
                (!place.is_site()).then_some(place)
            }
            ArchiveSpec::NoProject => Some(ProjectPlace {
                root: ProjectRoot::Unknown(hidden("project", project)),
                arc: None,
            }),
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
    /// Reached through a symbolic link out of the claim: left out, with a warning. Kubelet
    /// resolves a subPath's links and refuses one that leaves the volume, so the pod would not
    /// start; and it is not this claim's directory.
    OutOfClaim,
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

/// Reads the `archive_spec` of `project` as `ProjectArchive` writes it: an `arc:project` whose
/// `id` is the project asked about (`ProjectArchive` also resolves aliases, so the spec of
/// another project can come back for an id), with `current_arc` and
/// `arc:paths/arc:archivePath`. Anything else is refused, with why: an XHTML login page is XML
/// too, and must not read as "no path of its own".
pub fn archive_spec_of(xml: &str, project: &str) -> Result<ArchiveSpec, String> {
    let markup = xml.bytes().filter(|b| matches!(b, b'<' | b'=')).count();
    if markup > MAX_SPEC_MARKUP {
        return Err(format!(
            "it has {markup} tags and attributes; at most {MAX_SPEC_MARKUP} are read"
        ));
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_SPEC_MARKUP as u32,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| format!("it is not XML ({e})"))?;
    let root = doc.root_element();
    let arc = |n: &roxmltree::Node<'_, '_>, name: &str| {
        n.is_element()
            && n.tag_name().name() == name
            && n.tag_name().namespace() == Some(ARC_NAMESPACE)
    };
    if !arc(&root, "project") {
        return Err("it is not an arc:project document".into());
    }
    match root.attribute("id") {
        Some(id) if id == project => {}
        Some(id) => {
            return Err(format!(
                "it describes project {:?}, not {project} (an alias of another project?)",
                crate::echo::echo(id)
            ));
        }
        None => return Err("its arc:project has no id".into()),
    }
    let path = root
        .children()
        .find(|n| arc(n, "paths"))
        .and_then(|paths| paths.children().find(|n| arc(n, "archivePath")))
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let current = root
        .attribute("current_arc")
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    Ok(ArchiveSpec::Found { path, arc: current })
}

/// `path` compared with the site's `{archive}/{project}`: backslashes as `/` (XNAT does so on
/// Windows paths), empty and `.` segments and a trailing `/` ignored. A path at or inside the
/// site archive that is not the project's own directory (the archive itself, another project's
/// directory) is refused: no project keeps its files there. The site default allocates nothing.
pub fn classify(project: &str, path: &str, site_archive: &str) -> ProjectRoot {
    fn segments(p: &str) -> impl Iterator<Item = &str> + Clone {
        p.split(['/', '\\']).filter(|s| !s.is_empty() && *s != ".")
    }
    let shown = || format!("/{}", segments(path).collect::<Vec<_>>().join("/"));
    if segments(path).any(|s| s == "..") {
        return ProjectRoot::Refused(format!("its archive path {} has a `..` segment", shown()));
    }
    let mut own = segments(path);
    let inside_site = segments(site_archive).all(|s| own.next() == Some(s));
    if !inside_site {
        let mut site = segments(site_archive);
        if segments(path).all(|s| site.next() == Some(s)) {
            return ProjectRoot::Refused(format!(
                "its archive path {} holds the site archive",
                shown()
            ));
        }
        return ProjectRoot::Own(shown());
    }
    match (own.next(), own.next()) {
        (None, _) => ProjectRoot::Refused(format!(
            "its archive path {} is the site archive itself",
            shown()
        )),
        (Some(dir), _) if dir != project => ProjectRoot::Refused(format!(
            "its archive path {} is project {dir}'s directory",
            shown()
        )),
        (Some(_), None) => ProjectRoot::Site,
        (Some(_), Some(_)) => ProjectRoot::Own(shown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `ProjectArchive` writes it: the generated `arc:project` (`id`, `current_arc` and the
    /// codes as attributes, every XNAT namespace declared) with `arc:paths`.
    const SPEC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<arc:project id="ALPHA" current_arc="arc002" prearchive_code="4" quarantine_code="0" xmlns:arc="http://nrg.wustl.edu/arc" xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<arc:paths>
<arc:archivePath>/mnt/big/alpha/</arc:archivePath>
<arc:prearchivePath>/data/xnat/prearchive/ALPHA/</arc:prearchivePath>
</arc:paths>
</arc:project>"#;

    fn found(path: Option<&str>, arc: Option<&str>) -> Result<ArchiveSpec, String> {
        Ok(ArchiveSpec::Found {
            path: path.map(Into::into),
            arc: arc.map(Into::into),
        })
    }

    #[test]
    fn the_archive_path_and_current_arc_as_xnat_writes_them() {
        assert_eq!(
            archive_spec_of(SPEC, "ALPHA"),
            found(Some("/mnt/big/alpha/"), Some("arc002"))
        );
        let none = SPEC
            .replace("<arc:archivePath>/mnt/big/alpha/</arc:archivePath>", "")
            .replace(" current_arc=\"arc002\"", "");
        assert_eq!(archive_spec_of(&none, "ALPHA"), found(None, None));
        let place = archive_spec_of(&none, "ALPHA")
            .unwrap()
            .place("ALPHA", "/data/xnat/archive");
        assert_eq!(place, None, "the site default");
        for not_a_spec in [
            "<html>login</html>",
            r#"<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>"#,
            "not xml",
            // The right name in no namespace, or in another one, is not XNAT's arc:project.
            r#"<project id="ALPHA"/>"#,
            r#"<a:project xmlns:a="urn:other" id="ALPHA"/>"#,
        ] {
            assert!(
                archive_spec_of(not_a_spec, "ALPHA").is_err(),
                "{not_a_spec}"
            );
        }
    }

    /// `ProjectArchive` looks a project up by id *or alias*: the spec of GAMMA comes back for
    /// `ALPHA_PET` when that is one of GAMMA's aliases.
    #[test]
    fn a_spec_of_another_project_is_refused() {
        let why = archive_spec_of(SPEC, "ALPHA_PET").unwrap_err();
        assert!(
            why.contains("describes project \"ALPHA\", not ALPHA_PET"),
            "{why}"
        );
        assert!(archive_spec_of(&SPEC.replace("id=\"ALPHA\" ", ""), "ALPHA").is_err());
        // Ids are compared exactly, as XNAT stores them.
        assert!(archive_spec_of(SPEC, "alpha").is_err());
    }

    #[test]
    fn a_spec_with_many_attributes_is_refused_before_it_is_parsed() {
        let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"x\"")).collect();
        let bomb =
            format!(r#"<arc:project xmlns:arc="http://nrg.wustl.edu/arc" id="ALPHA"{attrs}/>"#);
        let why = archive_spec_of(&bomb, "ALPHA").unwrap_err();
        assert!(why.contains("at most 4096 are read"), "{why}");
    }

    #[test]
    fn a_current_arc_that_is_not_a_directory_name_is_refused() {
        let spec = ArchiveSpec::Found {
            path: None,
            arc: Some("../BETA".into()),
        };
        let place = spec.place("ALPHA", "/data/xnat/archive").unwrap();
        assert!(matches!(place.root, ProjectRoot::Refused(_)), "{place:?}");
    }

    #[test]
    fn the_site_default_is_not_an_own_path_and_the_archives_other_directories_are_refused() {
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
        assert_eq!(
            classify("ALPHA", "/data/xnat/archive/ALPHA/part1", site),
            ProjectRoot::Own("/data/xnat/archive/ALPHA/part1".into())
        );
        for (path, why) in [
            ("/data/xnat/archive/BETA/", "is project BETA's directory"),
            (
                "/data/xnat/archive/BETA/arc001",
                "is project BETA's directory",
            ),
            ("/data/xnat/archive/", "is the site archive itself"),
            ("/data/xnat/archive", "is the site archive itself"),
            ("/data/xnat", "holds the site archive"),
            ("/", "holds the site archive"),
            ("/mnt/../data/xnat/archive/BETA", "has a `..` segment"),
        ] {
            match classify("ALPHA", path, site) {
                ProjectRoot::Refused(m) => assert!(m.contains(why), "{path}: {m}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}
