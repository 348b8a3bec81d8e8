//! Everything that talks to XNAT: the service credentials, the HTTP client and the cache in front
//! of it.

pub(crate) mod cache;
pub(crate) mod call;
pub mod check;
pub(crate) mod client;
mod confirm;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod index;
mod logins;
mod memory;

pub use cache::{AccessCache, CacheStatus};
pub use call::{MAX_BODY_BYTES, XnatCall};
pub use client::{XnatClient, as_other_caller};
pub use credentials::{CredentialSource, Credentials, CredentialsError};
pub use error::XnatError;
