//! Default mapper: Proxmox storage -> the plugin's storage record.

wit_bindgen::generate!({ world: "storage-mapper", path: "../../wit" });

use exports::proxbox::mapper::storage::{DesiredStorage, Guest, StorageInput};
use proxbox::mapper::types::{Context, MapperError};
use proxbox_mapper_rules as rules;

struct StorageMapper;

/// Plugin fields copied from same-named Proxmox keys as text.
const TEXT_FIELDS: [&str; 13] = [
    "server",
    "username",
    "export",
    "share",
    "pool",
    "monhost",
    "namespace",
    "datastore",
    "subdir",
    "mountpoint",
    "is_mountpoint",
    "preallocation",
    "format",
];

impl Guest for StorageMapper {
    fn map_storage(
        ctx: Context,
        storage: StorageInput,
    ) -> Result<Option<DesiredStorage>, MapperError> {
        if storage.name.trim().is_empty() {
            return Err(MapperError {
                code: "invalid-input".into(),
                message: "storage has no name".into(),
            });
        }
        let option = |key: &str| {
            storage
                .options
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let mut fields = vec![
            (
                "path".to_string(),
                rules::json_opt_string(storage.path.as_deref()),
            ),
            (
                "nodes".to_string(),
                rules::json_string(&storage.nodes.join(",")),
            ),
            ("shared".to_string(), storage.shared.to_string()),
            ("enabled".to_string(), storage.enabled.to_string()),
        ];
        for key in TEXT_FIELDS {
            let value = if key == "server" {
                storage.server.as_deref()
            } else {
                option(key)
            };
            if let Some(value) = value {
                fields.push((key.to_string(), rules::json_string(value)));
            }
        }
        if let Some(port) = option("port") {
            fields.push(("port".to_string(), integer_or_text(port)));
        }
        if let Some(prune) = option("prune-backups") {
            fields.push(("prune_backups".to_string(), rules::json_string(prune)));
        }
        if let Some(max) = option("max-protected-backups") {
            fields.push(("max_protected_backups".to_string(), integer_or_text(max)));
        }
        if let Some(raw) = storage.raw.iter().find(|r| r.name == "storage") {
            fields.push(("raw_config".to_string(), raw.json.clone()));
        }
        Ok(Some(DesiredStorage {
            name: storage.name,
            cluster: ctx.cluster_name,
            storage_type: storage.storage_type,
            content: storage.content.join(","),
            fields,
            tags: rules::tags_with_owner([]),
        }))
    }
}

/// JSON integer for numeric text, else a JSON string (the plugin reports the mismatch).
fn integer_or_text(value: &str) -> String {
    value
        .trim()
        .parse::<i64>()
        .map_or_else(|_| rules::json_string(value), |n| n.to_string())
}

export!(StorageMapper);
