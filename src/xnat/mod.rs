//! Everything that talks to XNAT: the service credentials, the HTTP client and the cache in front
//! of it.

pub mod cache;
pub mod client;
pub mod credentials;
mod error;

pub use cache::{AccessCache, CacheStatus};
pub use client::XnatClient;
pub use credentials::{CredentialSource, Credentials, CredentialsError};
pub use error::{MAX_BODY_BYTES, XnatError};
