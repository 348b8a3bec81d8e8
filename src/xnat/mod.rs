//! Everything that talks to XNAT: the service credentials, the HTTP client and the cache in front
//! of it.

pub mod cache;
pub mod check;
pub mod client;
pub mod credentials;
pub mod error;
pub mod health;
pub mod index;

pub use cache::{AccessCache, CacheStatus};
pub use client::XnatClient;
pub use credentials::{CredentialSource, Credentials, CredentialsError};
pub use error::{MAX_BODY_BYTES, XnatError};
