//! The XNAT service account's credentials, read from a mounted Secret: never from the policy or a
//! command-line value, never logged.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::XnatError;

/// A username and password (or an XNAT alias token's alias and secret, used the same way).
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read XNAT credentials from {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("XNAT credentials in {path}: {message}")]
    Invalid { path: String, message: &'static str },
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// Reads credentials from `path`: either a directory holding the files `username` and
    /// `password` (a `kubernetes.io/basic-auth` Secret mounted as a volume) or `alias` and
    /// `secret` (an XNAT alias token, used the same way), or a single file `username:password`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CredentialsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let invalid = |message| CredentialsError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let (username, password) = if path.is_dir() {
            let (user_key, pass_key) = if path.join("alias").exists() {
                ("alias", "secret")
            } else {
                ("username", "password")
            };
            let user = read(&path.join(user_key))?;
            let pass = read(&path.join(pass_key))?;
            (trim_line(&user).to_owned(), trim_line(&pass).to_owned())
        } else {
            let text = read(path)?;
            let (u, p) = trim_line(&text)
                .split_once(':')
                .ok_or_else(|| invalid("expected one line `username:password`"))?;
            (u.to_owned(), p.to_owned())
        };
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            return Err(invalid(
                "the username is empty or contains `:` or control characters",
            ));
        }
        if password.is_empty() {
            return Err(invalid("the password is empty"));
        }
        Ok(Self::new(username, password))
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        self.password.expose_secret()
    }

    /// A hash of the pair, to recognise the same credentials again without keeping them around.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.username.as_str(), self.password.expose_secret()).hash(&mut h);
        h.finish()
    }
}

/// Secrets are often written with a trailing newline.
fn trim_line(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

/// Where the service credentials come from: a mounted Secret, re-read at every login so a
/// rotation on disk takes effect without a restart; or fixed (tests, benchmarks).
#[derive(Debug, Clone)]
pub enum CredentialSource {
    File(PathBuf),
    Fixed(Credentials),
}

impl CredentialSource {
    /// The credentials as they are now (for a login).
    pub async fn current(&self) -> Result<Credentials, XnatError> {
        match self {
            CredentialSource::Fixed(c) => Ok(c.clone()),
            CredentialSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Credentials::load(&path))
                    .await
                    .map_err(|e| XnatError::Credentials(e.to_string()))?
                    .map_err(|e| XnatError::Credentials(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials::new("svc", "hunter2");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("svc") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn reads_a_file_and_a_basic_auth_secret_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(&file, "svc:pa:ss\n").unwrap();
        let c = Credentials::load(&file).unwrap();
        assert_eq!((c.username(), c.password()), ("svc", "pa:ss"));

        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("username"), "svc2").unwrap();
        std::fs::write(secret.join("password"), "pw\n").unwrap();
        let c = Credentials::load(&secret).unwrap();
        assert_eq!((c.username(), c.password()), ("svc2", "pw"));

        let token = dir.path().join("token");
        std::fs::create_dir(&token).unwrap();
        std::fs::write(token.join("alias"), "a1b2c3").unwrap();
        std::fs::write(token.join("secret"), "s3cr3t").unwrap();
        let c = Credentials::load(&token).unwrap();
        assert_eq!((c.username(), c.password()), ("a1b2c3", "s3cr3t"));

        std::fs::write(&file, "no-colon\n").unwrap();
        let err = Credentials::load(&file).unwrap_err().to_string();
        assert!(err.contains("username:password"), "{err}");
        std::fs::write(&file, "svc:\n").unwrap();
        assert!(Credentials::load(&file).is_err());
    }
}
