//! Backups: one row of `/nodes/{node}/storage/{storage}/content?content=backup`.

use serde_json::Value;

use super::lenient::{as_bool, as_i64, as_str, as_u64};
use super::{NormalizeError, raw, unix_to_rfc3339};
use crate::mapper::v1::BackupInput;

/// Build the input for one backup volume.
pub fn backup(value: &Value) -> Result<BackupInput, NormalizeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| NormalizeError::new("backup entry is not an object"))?;
    let volid =
        as_str(obj.get("volid")).ok_or_else(|| NormalizeError::new("backup entry has no volid"))?;
    let storage = volid
        .split_once(':')
        .map(|(s, _)| s.to_string())
        .ok_or_else(|| NormalizeError::new(format!("backup volid `{volid}` names no storage")))?;
    let ctime = as_i64(obj.get("ctime")).filter(|&t| t > 0);
    let encrypted = match obj.get("encrypted") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(other) if as_bool(Some(other)) == Some(true) => Some("true".to_string()),
        _ => None,
    };
    Ok(BackupInput {
        storage,
        vmid: as_u64(obj.get("vmid")).and_then(|n| u32::try_from(n).ok()),
        subtype: as_str(obj.get("subtype")),
        format: as_str(obj.get("format")),
        size_bytes: as_u64(obj.get("size")),
        used_bytes: as_u64(obj.get("used")),
        ctime,
        ctime_utc: ctime.and_then(unix_to_rfc3339),
        encrypted,
        notes: as_str(obj.get("notes")),
        protected: as_bool(obj.get("protected")).unwrap_or(false),
        verification_state: obj.get("verification").and_then(|v| as_str(v.get("state"))),
        verification_upid: obj.get("verification").and_then(|v| as_str(v.get("upid"))),
        raw: vec![raw("content", value)],
        volid,
    })
}
