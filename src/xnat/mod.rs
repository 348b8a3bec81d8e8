//! Everything that talks to XNAT: the service credentials, the HTTP client and the cache in front
//! of it.

pub mod cache;
pub mod client;
pub mod credentials;

pub use cache::{AccessCache, CacheStatus};
pub use client::{CredentialSource, XnatClient, XnatError};
pub use credentials::{Credentials, CredentialsError};
