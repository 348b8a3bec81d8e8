//! `{placeholder}` templates for subPaths, mount paths and env values, parsed once at policy load
//! so that rendering on the admission path is a plain copy.

use std::fmt;

/// A value a template can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// One authorised XNAT project id (project mount templates only).
    Project,
    /// That project's current arc directory (`arc001` unless its archive_spec says otherwise;
    /// project mount subPaths only).
    Arc,
    /// The XNAT username the JupyterHub username maps to.
    XnatUser,
    /// The raw JupyterHub username from the pod annotation.
    JupyterUser,
    /// The JupyterHub server name (empty for the default server).
    ServerName,
    /// All mounted project ids, comma-separated (env only).
    Projects,
    /// The XNAT base URL (env only).
    XnatUrl,
}

impl Var {
    const ALL: [Var; 7] = [
        Var::Project,
        Var::Arc,
        Var::XnatUser,
        Var::JupyterUser,
        Var::ServerName,
        Var::Projects,
        Var::XnatUrl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Var::Project => "project",
            Var::Arc => "arc",
            Var::XnatUser => "xnat_user",
            Var::JupyterUser => "jupyter_user",
            Var::ServerName => "server_name",
            Var::Projects => "projects",
            Var::XnatUrl => "xnat_url",
        }
    }

    fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// One piece of a template, as [`Template::pieces`] gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Piece<'a> {
    Text(&'a str),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed template. `{{` and `}}` stand for literal braces.
#[derive(Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// The values a template is rendered with; `None` for what this context does not have.
#[derive(Debug, Default, Clone, Copy)]
pub struct Values<'a> {
    pub project: Option<&'a str>,
    /// The project's current arc (with `project`).
    pub arc: &'a str,
    pub xnat_user: &'a str,
    pub jupyter_user: &'a str,
    pub server_name: &'a str,
    pub projects: &'a str,
    pub xnat_url: &'a str,
}

impl Values<'_> {
    /// The value of one placeholder.
    pub fn get(&self, var: Var) -> &str {
        match var {
            Var::Project => self.project.unwrap_or_default(),
            Var::Arc => self.arc,
            Var::XnatUser => self.xnat_user,
            Var::JupyterUser => self.jupyter_user,
            Var::ServerName => self.server_name,
            Var::Projects => self.projects,
            Var::XnatUrl => self.xnat_url,
        }
    }
}

impl Template {
    /// Parses `source`, accepting only the placeholders in `allowed`.
    pub fn parse(source: &str, allowed: &[Var]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "unmatched `}}` in {source:?} (write `}}}}` for a literal brace)"
                ));
            }
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {source:?}"))?;
            let name = &tail[1..end];
            let var = Var::from_name(name)
                .filter(|v| allowed.contains(v))
                .ok_or_else(|| {
                    let names: Vec<String> = allowed
                        .iter()
                        .map(|v| format!("{{{}}}", v.name()))
                        .collect();
                    format!(
                        "unknown placeholder `{{{name}}}` in {source:?}; allowed here: {}",
                        names.join(", ")
                    )
                })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// The template's pieces in order: literal text and placeholders.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> + '_ {
        self.parts.iter().map(|p| match p {
            Part::Literal(s) => Piece::Text(s),
            Part::Var(v) => Piece::Var(*v),
        })
    }

    /// The placeholders this template uses.
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(*v),
            Part::Literal(_) => None,
        })
    }

    /// The literal text with every placeholder replaced by `stand_in`; used to check a path
    /// template's fixed shape at load time.
    pub fn render_with(&self, stand_in: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(_) => out.push_str(stand_in),
            }
        }
        out
    }

    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => out.push_str(values.get(*v)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH_VARS: &[Var] = &[Var::Project, Var::XnatUser];

    #[test]
    fn renders_placeholders_and_literals() {
        let t = Template::parse("archive/{project}/arc001", PATH_VARS).unwrap();
        let v = Values {
            project: Some("ALPHA"),
            ..Values::default()
        };
        assert_eq!(t.render(&v), "archive/ALPHA/arc001");
        assert!(t.uses(Var::Project));
        assert!(!t.uses(Var::XnatUser));
    }

    #[test]
    fn escaped_braces_are_literal() {
        let t = Template::parse("{{x}} {xnat_user}", PATH_VARS).unwrap();
        let v = Values {
            xnat_user: "bob",
            ..Values::default()
        };
        assert_eq!(t.render(&v), "{x} bob");
    }

    #[test]
    fn rejects_unknown_and_disallowed_placeholders() {
        let err = Template::parse("a/{nope}", PATH_VARS).unwrap_err();
        assert!(err.contains("{nope}") && err.contains("{project}"), "{err}");
        assert!(Template::parse("{projects}", PATH_VARS).is_err());
        assert!(Template::parse("a/{project", PATH_VARS).is_err());
        assert!(Template::parse("a/}", PATH_VARS).is_err());
    }
}
