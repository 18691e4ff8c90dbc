//! Snapshots: one entry of `/nodes/{node}/{qemu|lxc}/{vmid}/snapshot`.

use serde_json::Value;

use super::lenient::{as_bool, as_i64, as_str};
use super::{NormalizeError, raw, unix_to_rfc3339};
use crate::mapper::v1::{GuestType, SnapshotInput};

/// Build the input for one snapshot of guest `vmid` on `node`.
pub fn snapshot(
    value: &Value,
    vmid: u32,
    guest_type: GuestType,
    node: &str,
) -> Result<SnapshotInput, NormalizeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| NormalizeError::new("snapshot entry is not an object"))?;
    let name =
        as_str(obj.get("name")).ok_or_else(|| NormalizeError::new("snapshot entry has no name"))?;
    let snaptime = as_i64(obj.get("snaptime")).filter(|&t| t > 0);
    Ok(SnapshotInput {
        name,
        vmid,
        guest_type,
        node: node.to_string(),
        description: as_str(obj.get("description")).map(|d| d.trim_end().to_string()),
        parent: as_str(obj.get("parent")),
        snaptime,
        snaptime_utc: snaptime.and_then(unix_to_rfc3339),
        vmstate: as_bool(obj.get("vmstate")).unwrap_or(false),
        raw: vec![raw("snapshot", value)],
    })
}
