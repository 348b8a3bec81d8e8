//! Directories of the claim that notebooks can write: the workspace, every read-write rule
//! mount and every user's directory below a `user`-scope launch mapping, each user their own. Kubelet resolves a mount's subPath — symlinks included — inside
//! the volume, so a subPath *below* such a directory can be pointed anywhere on the claim by a
//! symlink the user makes there (read-write, if the mount is). Such mounts are refused: templates
//! at load, rendered and launch-context paths at admission. A writable directory itself is safe
//! to mount: its own name lives in a directory no notebook can write.

use regex::Regex;

use super::storage::{MountTemplate, Volume};
use super::template::{Piece, Template};
use super::{PolicyError, invalid};

/// The writable directories, as patterns of subPaths strictly below them, each on its claim
/// (two volumes of one claim are one file system).
#[derive(Debug, Clone, Default)]
pub struct WritableDirs {
    /// (volume name, claim) of every volume.
    claims: Vec<(String, String)>,
    /// (field, claim, pattern).
    dirs: Vec<(String, String, Regex)>,
}

impl WritableDirs {
    /// From the read-write mount templates, each named by its policy field.
    pub(super) fn of<'a>(
        volumes: &[Volume],
        read_write: impl IntoIterator<Item = (String, &'a MountTemplate)>,
    ) -> Result<Self, PolicyError> {
        let mut dirs = Self {
            claims: volumes
                .iter()
                .map(|v| (v.name.clone(), v.claim_name.clone()))
                .collect(),
            dirs: Vec::new(),
        };
        for (field, t) in read_write {
            let pattern = below(&t.sub_path).map_err(|e| invalid(&field, e.to_string()))?;
            let claim = dirs.claim(&t.volume).to_owned();
            dirs.dirs.push((field, claim, pattern));
        }
        Ok(dirs)
    }

    /// Adds every user's directory below a `user`-scope launch mapping's `prefix` in `volume`
    /// (each user's own may be mounted read-write).
    pub(super) fn with_user_dirs(
        mut self,
        field: String,
        volume: &str,
        prefix: &str,
    ) -> Result<Self, PolicyError> {
        let prefix = match prefix {
            "" => String::new(),
            p => format!("{}/", regex::escape(p)),
        };
        let pattern = Regex::new(&format!("^{prefix}[^/]+/.+$"))
            .map_err(|e| invalid(&field, e.to_string()))?;
        let claim = self.claim(volume).to_owned();
        self.dirs.push((field, claim, pattern));
        Ok(self)
    }

    /// The claim of a volume of the policy (a name it does not have stands for itself).
    fn claim<'s>(&'s self, volume: &'s str) -> &'s str {
        self.claims
            .iter()
            .find(|(name, _)| name == volume)
            .map_or(volume, |(_, claim)| claim.as_str())
    }

    /// The field of the writable directory `sub_path` of `volume` lies strictly below, if any.
    pub fn below(&self, volume: &str, sub_path: &str) -> Option<&str> {
        let claim = self.claim(volume);
        self.dirs
            .iter()
            .find(|(_, c, pattern)| c == claim && pattern.is_match(sub_path))
            .map(|(field, _, _)| field.as_str())
    }

    /// Refuses a mount template that would lie below a writable directory for some user.
    pub(super) fn check(&self, field: &str, t: &MountTemplate) -> Result<(), PolicyError> {
        // Every placeholder as one plain segment: what any user's values would look like.
        match self.below(&t.volume, &t.sub_path.render_with("x")) {
            Some(dir) => Err(invalid(
                format!("{field}.subPath"),
                format!(
                    "{:?} lies below {dir}, a directory notebooks can write: a symlink there could \
                     point the mount anywhere on the claim",
                    t.sub_path.source()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// `^{the template, each placeholder one or more characters of a segment}/.+$`.
fn below(t: &Template) -> Result<Regex, regex::Error> {
    let mut pattern = String::from("^");
    for piece in t.pieces() {
        match piece {
            Piece::Text(literal) => pattern.push_str(&regex::escape(literal)),
            // Placeholder values are single safe segments (checked at admission).
            Piece::Var(_) => pattern.push_str("[^/]+"),
        }
    }
    pattern.push_str("/.+$");
    Regex::new(&pattern)
}
