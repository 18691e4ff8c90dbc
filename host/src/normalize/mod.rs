//! Proxmox JSON -> typed mapper inputs.
//!
//! Proxmox is loose about types: numbers arrive as strings, booleans as `0`/`1`/`""`,
//! keys go missing. Everything here is lenient about that and strict about what it
//! needs: a value that is required and absent or unusable is a [`NormalizeError`]
//! for that one object.

mod backup;
mod guest;
mod lenient;
pub mod network;
mod node;
mod snapshot;
mod storage;

pub use backup::backup;
pub use guest::{guest, parse_disk, parse_disk_size, parse_nic, parse_tags};
pub use lenient::{as_bool, as_i64, as_str, as_u64};
pub use node::node;
pub use snapshot::snapshot;
pub use storage::storage;

use crate::mapper::v1::RawSource;

/// Proxmox data that cannot become a mapper input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NormalizeError(pub String);

impl NormalizeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        NormalizeError(message.into())
    }
}

/// A raw source record holding `value` as JSON text.
pub(crate) fn raw(name: &str, value: &serde_json::Value) -> RawSource {
    RawSource {
        name: name.to_string(),
        json: value.to_string(),
    }
}

/// Unix seconds as RFC 3339 in UTC (`2023-08-28T20:00:00Z`).
pub fn unix_to_rfc3339(seconds: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).ok()?;
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}
