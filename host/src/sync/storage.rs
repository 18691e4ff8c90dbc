//! Stage `storage` (contract §7.3): the storage definitions of each Proxmox endpoint
//! (`/storage`, completed from `/storage/{id}` where an entry lacks its type or content)
//! become the plugin's storage records (`/api/plugins/proxbox/storage/`), matched by
//! `(NetBox cluster, name)`. The NetBox cluster is found by its exact name; a storage
//! whose cluster does not exist fails. Nothing is deleted.
//!
//! Unlike the reference, whose result `count` is always 0, `count` is the number of
//! storage records that exist as desired after the stage.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::apply::{list_each, reconcile_kind};
use super::devices::tag_ids;
use super::mapping::{self, map_batch};
use super::report::{Item, Outcome, Phase};
use super::resolve::{ensure_tags, ids_by};
use super::{EndpointRead, StageSummary, SyncRun, read_inventories};
use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure};
use crate::mapper::v1::DesiredStorage;
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::netbox::{Listed, NetBoxClient, NetBoxError};
use crate::normalize;
use crate::proxmox::models::{FromValue, StorageConfig};

/// Stage and phase name.
pub const PHASE: &str = "storage";

/// The plugin's storage records.
pub const STORAGE_PATH: &str = "plugins/proxbox/storage/";

/// Fields of the plugin's storage model a mapper may set through `fields`.
pub const PLUGIN_FIELDS: [&str; 21] = [
    "path",
    "nodes",
    "shared",
    "enabled",
    "server",
    "port",
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
    "prune_backups",
    "max_protected_backups",
    "raw_config",
];

/// One storage definition read from an endpoint, and what became of it.
struct Entry {
    item: Item,
    desired: Result<Option<DesiredStorage>, String>,
}

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let reads = read_inventories(run, sink, PHASE).await;
    let lists = futures::future::join_all(reads.iter().map(|read| read_storages(run, read))).await;

    // Normalise, deduplicated by (Proxmox cluster, storage id); the first endpoint wins.
    let mut entries: Vec<Entry> = Vec::new();
    let mut inputs = Vec::new();
    let mut input_of = Vec::new();
    let mut seen = BTreeSet::new();
    for (read, list) in reads.iter().zip(lists) {
        let configs = match list {
            Ok(configs) => configs,
            Err(e) => {
                let mut detail = ErrorDetail::new(
                    ErrorCategory::Connection,
                    format!(
                        "Cannot read the storages of Proxmox endpoint '{}'",
                        read.session.endpoint.name
                    ),
                );
                detail.phase = Some(PHASE.to_string());
                detail.detail = Some(e);
                sink.emit(detail);
                continue;
            }
        };
        for config in configs {
            if !seen.insert((read.inventory.name.clone(), config.storage.clone())) {
                continue;
            }
            let label = format!("{}/{}", read.inventory.name, config.storage);
            let mut entry = Entry {
                item: Item::new(label, "storage"),
                desired: Ok(None),
            };
            match normalize::storage(&config.raw) {
                Ok(input) => {
                    let node = match config.nodes.as_slice() {
                        [only] => only.as_str(),
                        _ => "",
                    };
                    let ctx = mapping::context(read.session, node, &run.params, &run.now);
                    inputs.push((ctx, MapInput::Storage(input)));
                    input_of.push(entries.len());
                }
                Err(e) => entry.desired = Err(format!("invalid Proxmox data: {e}")),
            }
            entries.push(entry);
        }
    }
    for (index, result) in input_of
        .into_iter()
        .zip(map_batch(run.mappers.clone(), Kind::Storage, inputs).await)
    {
        entries[index].desired = match result {
            Ok(Some(MapOutput::Storage(storage))) => Ok(Some(storage)),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err("the mapper returned another kind".into()),
            Err(e) => Err(e.to_string()),
        };
    }

    // Related objects, and what the plugin holds, before anything is reported.
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let mut cluster_names = BTreeSet::new();
    let mut tag_names = BTreeSet::new();
    for storage in entries
        .iter()
        .filter_map(|e| e.desired.as_ref().ok().and_then(Option::as_ref))
    {
        cluster_names.insert(storage.cluster.clone());
        tag_names.extend(storage.tags.iter().cloned());
    }
    let clusters = ids_by(netbox, "virtualization/clusters/", "name", &cluster_names).await?;
    let cluster_ids: BTreeSet<String> = clusters.values().map(u64::to_string).collect();
    let existing = list_storage_records(netbox, &cluster_ids).await?;
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;

    let items: Vec<Item> = entries.iter().map(|e| e.item.clone()).collect();
    let mut phase = Phase::start(sink, PHASE, "storage", &items, dry_run);
    let mut desired = Vec::new();
    let mut desired_entry = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let storage = match &entry.desired {
            Err(e) => {
                phase.item(&entry.item, Outcome::Failed(e.clone()));
                continue;
            }
            Ok(None) => {
                phase.item(
                    &entry.item,
                    Outcome::Skipped("the mapper does not sync it".into()),
                );
                continue;
            }
            Ok(Some(storage)) => storage,
        };
        let Some(cluster) = clusters.get(&storage.cluster).copied() else {
            phase.item(
                &entry.item,
                Outcome::Failed(format!(
                    "NetBox cluster `{}` does not exist; run the devices stage first",
                    storage.cluster
                )),
            );
            continue;
        };
        match payload(storage, cluster, &tags) {
            Ok(payload) => {
                desired.push(Desired {
                    identity: Some(vec![json!(cluster), json!(storage.name)]),
                    payload,
                });
                desired_entry.push(index);
            }
            Err(e) => phase.item(&entry.item, Outcome::Failed(e)),
        }
    }

    let result = reconcile_kind(
        netbox,
        &spec(run.options.overwrite.allows("overwrite_storage_tags")),
        &desired,
        &existing,
        false,
        dry_run,
    )
    .await;
    let mut count = 0;
    for (d_index, e_index) in desired_entry.iter().enumerate() {
        let (outcome, id) = result.outcome(d_index);
        if id.is_some() && !matches!(outcome, Outcome::Failed(_)) {
            count += 1;
        }
        phase.item(&entries[*e_index].item.clone().with_id(id), outcome);
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// The reconcile spec of storage records: every field sent is owned, except `tags`
/// when `overwrite_tags` is false; never deleted.
fn spec(overwrite_tags: bool) -> KindSpec {
    let mut owned: BTreeSet<String> = ["cluster", "name", "storage_type", "content"]
        .into_iter()
        .chain(PLUGIN_FIELDS)
        .map(String::from)
        .collect();
    if overwrite_tags {
        owned.insert("tags".into());
    }
    KindSpec {
        path: STORAGE_PATH.into(),
        identity: Box::new(|o: &Map<String, Value>| {
            Some(vec![
                o.get("cluster").map(normalise).unwrap_or(Value::Null),
                o.get("name").cloned().unwrap_or(Value::Null),
            ])
        }),
        owned,
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    }
}

/// The plugin's storage records of the NetBox clusters `cluster_ids`. A 404 means the
/// plugin is not installed: a fatal failure with an `error_detail`.
async fn list_storage_records(
    netbox: &NetBoxClient,
    cluster_ids: &BTreeSet<String>,
) -> Result<Vec<Value>, Failure> {
    match list_each(netbox, STORAGE_PATH, "cluster", cluster_ids, &[]).await {
        Ok(records) => Ok(records.iter().map(Listed::value).collect()),
        Err(e) if e.status() == Some(404) => Err(plugin_missing(PHASE, &e)),
        Err(e) => Err(e.into()),
    }
}

/// The failure of stage `phase`, which needs the netbox-proxbox plugin's API and did not
/// find it (`error` is NetBox's 404).
pub fn plugin_missing(phase: &str, error: &NetBoxError) -> Failure {
    let text = "The netbox-proxbox plugin API (/api/plugins/proxbox/) is not available in NetBox";
    let mut detail = ErrorDetail::new(ErrorCategory::NotFound, text);
    detail.phase = Some(phase.to_string());
    detail.detail = Some(error.to_string());
    detail.suggestion =
        Some("Install and enable the netbox-proxbox plugin in NetBox, then retry".into());
    Failure::new(format!("{text}: {error}")).with_error_detail(detail)
}

/// `/storage` of one endpoint, each entry that lacks its type or content completed from
/// `/storage/{id}` (at most `fetch_max_concurrency` reads at once). An entry whose detail
/// read fails keeps what the list said.
async fn read_storages(
    run: &SyncRun,
    read: &EndpointRead<'_>,
) -> Result<Vec<StorageConfig>, String> {
    let client = &read.session.client;
    let configs = client.storages().await.map_err(|e| e.to_string())?;
    let sparse: Vec<String> = configs
        .iter()
        .filter(|c| c.is_sparse())
        .map(|c| c.storage.clone())
        .collect();
    let details: BTreeMap<String, StorageConfig> = futures::stream::iter(sparse)
        .map(|name| async move {
            let detail = client.storage(&name).await;
            (name, detail)
        })
        .buffer_unordered(run.options.fetch_max_concurrency.max(1))
        .filter_map(|(name, detail)| async move {
            match detail {
                Ok(detail) => Some((name, detail)),
                Err(e) => {
                    tracing::warn!(storage = %name, "cannot read the storage config: {e}");
                    None
                }
            }
        })
        .collect()
        .await;
    Ok(configs
        .into_iter()
        .map(|config| match details.get(&config.storage) {
            Some(detail) => merge(config, detail),
            None => config,
        })
        .collect())
}

/// `config` with the keys of `detail` added (the detail wins).
fn merge(config: StorageConfig, detail: &StorageConfig) -> StorageConfig {
    let mut raw = config.raw.as_object().cloned().unwrap_or_default();
    if let Some(extra) = detail.raw.as_object() {
        for (key, value) in extra {
            raw.insert(key.clone(), value.clone());
        }
    }
    raw.entry("storage")
        .or_insert_with(|| Value::String(config.storage.clone()));
    StorageConfig::from_value(Value::Object(raw)).unwrap_or(config)
}

/// The plugin payload of one storage: cluster id, name, type, content, the mapper's
/// further fields (JSON) and tag ids.
fn payload(
    storage: &DesiredStorage,
    cluster: u64,
    tags: &BTreeMap<String, u64>,
) -> Result<Map<String, Value>, String> {
    let mut payload = Map::new();
    payload.insert("cluster".into(), json!(cluster));
    payload.insert("name".into(), json!(storage.name));
    payload.insert("storage_type".into(), json!(storage.storage_type));
    payload.insert("content".into(), json!(storage.content));
    for (name, text) in &storage.fields {
        if !PLUGIN_FIELDS.contains(&name.as_str()) {
            return Err(format!(
                "the mapper set `{name}`, which is not a field of the plugin's storage record"
            ));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("field `{name}` is not JSON ({e})"))?;
        payload.insert(name.clone(), value);
    }
    payload.insert("tags".into(), tag_ids(&storage.tags, tags));
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(fields: Vec<(&str, &str)>) -> DesiredStorage {
        DesiredStorage {
            name: "local".into(),
            cluster: "pve".into(),
            storage_type: "dir".into(),
            content: "iso,backup".into(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: vec!["Proxbox".into()],
        }
    }

    #[test]
    fn payload_parses_fields_and_refuses_unknown_ones() {
        let tags = BTreeMap::from([("Proxbox".to_string(), 7)]);
        let p = payload(
            &desired(vec![
                ("path", "\"/var/lib/vz\""),
                ("shared", "false"),
                ("raw_config", "{\"storage\":\"local\"}"),
            ]),
            3,
            &tags,
        )
        .expect("payload");
        assert_eq!(p["cluster"], json!(3));
        assert_eq!(p["path"], json!("/var/lib/vz"));
        assert_eq!(p["shared"], json!(false));
        assert_eq!(p["raw_config"], json!({"storage": "local"}));
        assert_eq!(p["tags"], json!([7]));
        assert!(payload(&desired(vec![("colour", "\"red\"")]), 3, &tags).is_err());
        assert!(payload(&desired(vec![("path", "not json")]), 3, &tags).is_err());
    }

    #[test]
    fn sparse_entries_take_the_detail_keys() {
        let list = StorageConfig::from_value(json!({"storage": "nfs1", "digest": "x"})).unwrap();
        assert!(list.is_sparse());
        let detail = StorageConfig::from_value(json!({
            "storage": "nfs1", "type": "nfs", "content": "images,backup", "server": "10.0.0.5"
        }))
        .unwrap();
        let merged = merge(list, &detail);
        assert!(!merged.is_sparse());
        assert_eq!(merged.kind.as_deref(), Some("nfs"));
        assert_eq!(merged.content, vec!["images", "backup"]);
        assert_eq!(merged.raw["digest"], json!("x"));
        assert_eq!(merged.raw["server"], json!("10.0.0.5"));
    }

    #[test]
    fn a_missing_plugin_fails_with_an_error_detail() {
        let error = NetBoxError::Status {
            method: "GET".into(),
            path: STORAGE_PATH.into(),
            status: 404,
            body: json!({"detail": "Not found."}),
        };
        let failure = plugin_missing(PHASE, &error);
        assert!(
            failure.error.contains("netbox-proxbox plugin"),
            "{failure:?}"
        );
        let detail = failure.error_detail.expect("error_detail");
        assert_eq!(detail.phase.as_deref(), Some(PHASE));
        assert_eq!(detail.category, ErrorCategory::NotFound);
    }

    #[test]
    fn tags_are_owned_only_when_the_flag_allows() {
        assert!(spec(true).owned.contains("tags"));
        assert!(!spec(false).owned.contains("tags"));
        assert!(spec(false).owned.contains("raw_config"));
    }
}
