//! Proxmox VE API client.
//!
//! - [`ProxmoxClient`]: one endpoint; token or ticket auth, TLS verify / pin / off,
//!   timeouts, retries with backoff for GETs, bounded concurrency.
//! - [`models`]: lenient typed answers that keep their raw JSON.
//! - [`inventory`]: multi-request reads with their [`Completeness`].

mod client;
mod credentials;
mod error;
pub mod inventory;
pub mod models;
mod tls;

pub use client::{EndpointConfig, ProxmoxClient};
pub use credentials::{Credentials, Secret};
pub use error::ProxmoxError;
pub use inventory::{Completeness, Inventory};
pub use tls::{TlsMode, fingerprint};
