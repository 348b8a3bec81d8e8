//! Everything that talks to XNAT: the service credentials, the HTTP client and the cache in front
//! of it.

pub mod cache;
pub mod call;
pub mod check;
pub mod client;
mod confirm;
pub mod credentials;
pub mod error;
pub mod health;
pub mod index;
mod logins;
mod memory;

pub use cache::{AccessCache, CacheStatus};
pub use call::{MAX_BODY_BYTES, XnatCall};
pub use client::{XnatClient, as_other_caller};
pub use credentials::{CredentialSource, Credentials, CredentialsError};
pub use error::XnatError;
