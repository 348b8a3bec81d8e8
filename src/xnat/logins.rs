//! Which XNAT login a hub name stands for when XNAT has none equal to it. XNAT's logins are
//! case-sensitive (`XDATUser` and `RoleHolder` look names up exactly), while JupyterHub's default
//! `normalize_username` lowercases every name: XNAT's `JSmith` is hub user `jsmith`. So for a
//! name XNAT does not know, the site's logins (`GET /xapi/users`, read at most once per
//! `cacheTtl`, or once per `negativeCacheTtl` while a name finds none) are searched for the
//! ones equal to it but for ASCII case: exactly one is used; several are none.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::memory::Failures;
use super::{XnatCall, XnatClient, XnatError};
use crate::policy::LiveSettings;

/// What the site's logins say of a name XNAT does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMatch {
    /// No login differs from it only in case.
    None,
    /// Exactly one does: that is the user's XNAT login.
    One(String),
    /// Several do (sorted): none can be chosen.
    Several(Vec<String>),
}

impl LoginMatch {
    /// The logins equal to `name` but for case, `name` itself excluded.
    pub fn among<'a>(name: &str, logins: impl IntoIterator<Item = &'a str>) -> Self {
        let mut found: Vec<String> = logins
            .into_iter()
            .filter(|l| *l != name && l.eq_ignore_ascii_case(name))
            .map(str::to_owned)
            .collect();
        found.sort();
        found.dedup();
        match found.len() {
            0 => LoginMatch::None,
            1 => LoginMatch::One(found.remove(0)),
            _ => LoginMatch::Several(found),
        }
    }
}

/// One reading of the site's logins, by their ASCII-lowercased form.
struct Logins {
    folded: HashMap<String, Vec<String>>,
    read_at: Instant,
}

impl Logins {
    fn read(list: Vec<String>) -> Self {
        let mut folded: HashMap<String, Vec<String>> = HashMap::with_capacity(list.len());
        for login in list {
            folded
                .entry(login.to_ascii_lowercase())
                .or_default()
                .push(login);
        }
        Self {
            folded,
            read_at: Instant::now(),
        }
    }

    fn matching(&self, name: &str) -> LoginMatch {
        let same = self.folded.get(&name.to_ascii_lowercase());
        LoginMatch::among(name, same.into_iter().flatten().map(String::as_str))
    }
}

/// The site's logins as last read; one reading at a time.
#[derive(Default)]
pub struct LoginDirectory(Mutex<Option<Arc<Logins>>>);

impl LoginDirectory {
    /// The logins equal to `name` but for case, from the last reading while it is younger than
    /// `cacheTtl` (and, when it finds none, younger than `negativeCacheTtl`: the account may be
    /// new), else from a new one.
    pub async fn matching(
        &self,
        name: &str,
        client: &XnatClient,
        failures: &Failures,
        live: &LiveSettings,
        deadline: Instant,
    ) -> Result<LoginMatch, XnatError> {
        let mut current = tokio::time::timeout_at(deadline, self.0.lock())
            .await
            .map_err(|_| XnatError::Busy)?;
        if let Some(logins) = current.as_ref() {
            let age = logins.read_at.elapsed();
            let found = logins.matching(name);
            if age < live.negative_ttl || (age < live.ttl && found != LoginMatch::None) {
                return Ok(found);
            }
        }
        let list = failures
            .ask(XnatCall::Users, "", live, client.logins(deadline))
            .await?;
        let logins = Arc::new(Logins::read(list));
        let found = logins.matching(name);
        *current = Some(logins);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_login_is_not_a_match_and_case_is_ascii_only() {
        let logins = Logins::read(
            ["JSmith", "jsmith2", "Anna", "ANNA", "bob", "\u{212A}arl"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(logins.matching("jsmith"), LoginMatch::One("JSmith".into()));
        assert_eq!(logins.matching("JSmith"), LoginMatch::None);
        assert_eq!(
            logins.matching("anna"),
            LoginMatch::Several(vec!["ANNA".into(), "Anna".into()])
        );
        assert_eq!(logins.matching("Anna"), LoginMatch::One("ANNA".into()));
        assert_eq!(logins.matching("karl"), LoginMatch::None);
        assert_eq!(logins.matching("nobody"), LoginMatch::None);
    }
}
