//! Which XNAT login a hub name stands for when XNAT has none equal to it. XNAT's logins are
//! case-sensitive (`XDATUser` and `RoleHolder` look names up exactly), while JupyterHub's default
//! `normalize_username` lowercases every name: XNAT's `JSmith` is hub user `jsmith`. So for a
//! name XNAT does not know, the site's logins (`GET /xapi/users`, read at most once per
//! `cacheTtl`, or once per `negativeCacheTtl` while a name finds none; the last reading stands
//! in for `staleIfError` while XNAT cannot give a new one) are searched for the ones equal to it
//! but for ASCII case: exactly one is used; several are none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
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

/// The site's logins as last read, and one new reading at a time.
#[derive(Default)]
pub struct LoginDirectory {
    current: ArcSwapOption<Logins>,
    reading: Mutex<()>,
}

impl LoginDirectory {
    /// The logins equal to `name` but for case, from the last reading while it is younger than
    /// `cacheTtl` (and, when it finds none, younger than `negativeCacheTtl`: the account may be
    /// new), else from a new one. While XNAT cannot give a new one, a reading younger than
    /// `stale` stands in.
    pub async fn matching(
        &self,
        name: &str,
        client: &XnatClient,
        failures: &Failures,
        (live, stale): (&LiveSettings, Duration),
        deadline: Instant,
    ) -> Result<LoginMatch, XnatError> {
        let usable = |l: &Logins| {
            let age = l.read_at.elapsed();
            let found = l.matching(name);
            (age < live.negative_ttl || (age < live.ttl && found != LoginMatch::None))
                .then_some(found)
        };
        if let Some(found) = self.current.load().as_deref().and_then(usable) {
            return Ok(found);
        }
        let one_reading = tokio::time::timeout_at(deadline, self.reading.lock()).await;
        // Another review may have read them meanwhile.
        if let Some(found) = self.current.load().as_deref().and_then(usable) {
            return Ok(found);
        }
        // Held until the new reading is stored, so a review waiting for it finds it.
        let read = match &one_reading {
            Ok(_) => {
                failures
                    .ask(XnatCall::Users, "", live, client.logins(deadline))
                    .await
            }
            Err(_) => Err(XnatError::Busy),
        };
        match read {
            Ok(list) => {
                let logins = Arc::new(Logins::read(list));
                let found = logins.matching(name);
                self.current.store(Some(logins));
                Ok(found)
            }
            Err(e) => match self.current.load_full() {
                Some(last) if last.read_at.elapsed() <= stale => {
                    tracing::warn!(error = %e, age_s = last.read_at.elapsed().as_secs(),
                        "cannot read XNAT's logins; the last reading stands in");
                    Ok(last.matching(name))
                }
                _ => Err(e),
            },
        }
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
