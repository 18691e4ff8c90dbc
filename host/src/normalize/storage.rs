//! Storages: an entry of `/storage` (merged with `/storage/{id}` by the caller).

use serde_json::Value;

use super::lenient::{as_bool, as_str};
use super::{NormalizeError, raw};
use crate::mapper::v1::StorageInput;

/// Keys that have a typed field in [`StorageInput`] (or are noise, like `digest`).
const TYPED: [&str; 9] = [
    "storage", "type", "content", "nodes", "shared", "disable", "path", "server", "digest",
];

/// Build the input for one storage definition.
pub fn storage(value: &Value) -> Result<StorageInput, NormalizeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| NormalizeError::new("storage entry is not an object"))?;
    let name = as_str(obj.get("storage"))
        .ok_or_else(|| NormalizeError::new("storage entry has no `storage` id"))?;
    let list = |key: &str| -> Vec<String> {
        as_str(obj.get(key))
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let options = obj
        .iter()
        .filter(|(k, _)| !TYPED.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some((k.clone(), text))
        })
        .collect();
    Ok(StorageInput {
        storage_type: as_str(obj.get("type")).unwrap_or_else(|| "unknown".to_string()),
        content: list("content"),
        nodes: list("nodes"),
        shared: as_bool(obj.get("shared")).unwrap_or(false),
        enabled: !as_bool(obj.get("disable")).unwrap_or(false),
        path: as_str(obj.get("path")),
        server: as_str(obj.get("server")),
        options,
        raw: vec![raw("storage", value)],
        name,
    })
}
