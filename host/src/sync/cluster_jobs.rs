//! The pipeline of the stages that copy a cluster's scheduled jobs into the plugin's
//! records (replications, backup routines): read the jobs of each endpoint, build each
//! record, reconcile by `(plugin endpoint, job id)`, and mark the records of jobs that
//! are gone `stale` (never deleted) — only for endpoints whose jobs were read.
//!
//! Records point at the plugin's endpoint record ([`PluginEndpoints`]), and may point at
//! its node and storage records; the ownership tag is added to the operator's tags.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{list_each, reconcile_kind};
use super::backups::{Owners, missing_plugin, netbox_failure};
use super::plugin_refs::{PluginEndpoints, plugin_nodes};
use super::report::{Item, Outcome, Phase};
use super::resolve::ids_by;
use super::storage::STORAGE_PATH;
use super::{EndpointRead, StageSummary, SyncRun, read_inventories};
use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::netbox::{Existing, NetBoxClient, NetBoxError};
use crate::proxmox::models::ClusterResource;

/// The record of one job, or the outcome reporting it skipped or failed.
pub type JobRecord = Result<Map<String, Value>, Outcome>;

/// One kind of cluster job.
pub struct JobKind {
    /// Stage and phase name.
    pub phase: &'static str,
    /// The Proxmox list read (relative to `/api2/json/`).
    pub proxmox_path: &'static str,
    /// The plugin's records (relative to `/api/`).
    pub plugin_path: &'static str,
    /// The record field holding the Proxmox job id.
    pub key: &'static str,
    /// `item_type` of the progress frames.
    pub item_type: &'static str,
    /// Fields of a record the sync owns.
    pub owned: &'static [&'static str],
    /// The record of one job; an `Err` outcome reports the job skipped or failed.
    pub payload: fn(&Value, &JobContext<'_>) -> JobRecord,
}

/// What a job's record may point at.
pub struct JobContext<'a> {
    /// The plugin endpoint record.
    pub endpoint: u64,
    /// The host endpoint id (the sync-state records' `proxmox_endpoint_raw_id`).
    pub host_endpoint: u64,
    /// The Proxmox cluster name.
    pub cluster: &'a str,
    /// The cluster's guests (`/cluster/resources`).
    pub guests: &'a [ClusterResource],
    /// The plugin's node records of the endpoint, by name.
    pub nodes: &'a BTreeMap<String, u64>,
    /// The plugin's storage records of the cluster, by storage id.
    pub storages: &'a BTreeMap<String, u64>,
    /// NetBox VMs by their guests.
    pub owners: &'a Owners,
    /// The ownership tag.
    pub tag: Option<u64>,
}

impl JobContext<'_> {
    /// The base of every record: endpoint, job id, `status: active`, the ownership tag
    /// and the job as Proxmox returned it.
    pub fn base(&self, key: &str, id: &str, row: &Value) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("endpoint".into(), json!(self.endpoint));
        p.insert(key.into(), json!(id));
        p.insert("raw_config".into(), row.clone());
        p.insert("status".into(), json!("active"));
        p.insert(
            "tags".into(),
            json!(self.tag.into_iter().collect::<Vec<_>>()),
        );
        p
    }
}

/// A job's id (`id`), or a failure.
pub fn job_id(row: &Value) -> Result<&str, Outcome> {
    row.get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Outcome::Failed("invalid Proxmox data: the job has no id".into()))
}

/// A text field (numbers rendered), `null` when absent.
pub fn text(row: &Value, key: &str) -> Value {
    match row.get(key) {
        Some(Value::String(s)) => json!(s),
        Some(Value::Number(n)) => json!(n.to_string()),
        _ => Value::Null,
    }
}

/// A Proxmox boolean (`0`/`1`, `true`/`false`), if present.
pub fn flag(row: &Value, key: &str) -> Option<bool> {
    match row.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-negative integer (number or numeric text), if present.
pub fn number(row: &Value, key: &str) -> Option<u64> {
    row.get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
}

/// One job read, and what became of it.
struct Job {
    item: Item,
    desired: JobRecord,
}

/// One endpoint's jobs, and what their records may point at.
struct EndpointJobs<'a> {
    read: &'a EndpointRead<'a>,
    rows: Vec<Value>,
    endpoint: Result<u64, String>,
    nodes: BTreeMap<String, u64>,
    storages: BTreeMap<String, u64>,
}

/// Run stage `kind` with its events.
pub async fn stage(
    run: &SyncRun,
    sink: &EventSink,
    kind: &JobKind,
) -> Result<StageSummary, Failure> {
    if let Some(failure) = missing_plugin(run, sink, kind.phase) {
        return Err(failure);
    }
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let fail = |e: NetBoxError| netbox_failure(sink, kind.phase, e);
    let reads = read_inventories(run, sink, kind.phase).await;
    let owners = Owners::read(run).await.map_err(fail)?;
    let plugin_endpoints = PluginEndpoints::read(netbox).await.map_err(fail)?;
    let answers = futures::future::join_all(
        reads
            .iter()
            .map(|r| r.session.client.get(kind.proxmox_path, &[])),
    )
    .await;
    let clusters: BTreeSet<String> = reads.iter().map(|r| r.inventory.name.clone()).collect();
    let cluster_ids = ids_by(netbox, "virtualization/clusters/", "name", &clusters)
        .await
        .map_err(fail)?;

    let mut endpoints = Vec::new();
    for (read, answer) in reads.iter().zip(answers) {
        let rows = match answer {
            Ok(rows) => rows.as_array().cloned().unwrap_or_default(),
            Err(e) => {
                let mut event = ErrorDetail::new(
                    ErrorCategory::Connection,
                    format!(
                        "Cannot read /{} of Proxmox endpoint '{}'",
                        kind.proxmox_path, read.session.endpoint.name
                    ),
                );
                event.phase = Some(kind.phase.to_string());
                event.detail = Some(e.to_string());
                sink.emit(event);
                continue;
            }
        };
        let endpoint = plugin_endpoints.of(read.session);
        let nodes = match endpoint {
            Ok(pk) => plugin_nodes(netbox, pk).await.map_err(fail)?,
            Err(_) => BTreeMap::new(),
        };
        let storages = match cluster_ids.get(&read.inventory.name) {
            Some(cluster) => storage_records(netbox, *cluster).await.map_err(fail)?,
            None => BTreeMap::new(),
        };
        endpoints.push(EndpointJobs {
            read,
            rows,
            endpoint,
            nodes,
            storages,
        });
    }

    let mut jobs: Vec<Job> = Vec::new();
    // Plugin endpoints read completely, with the job ids they still have.
    let mut read_ids: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for ep in &endpoints {
        let cluster = ep.read.inventory.name.as_str();
        if let Ok(pk) = ep.endpoint {
            read_ids.entry(pk).or_default();
        }
        for row in &ep.rows {
            let id = row.get("id").and_then(Value::as_str).unwrap_or_default();
            if let Ok(pk) = ep.endpoint {
                read_ids.entry(pk).or_default().insert(id.to_string());
            }
            let item = Item::new(format!("{cluster}/{id}"), kind.item_type);
            let desired = ep.endpoint.clone().map_err(Outcome::Failed).and_then(|pk| {
                let ctx = JobContext {
                    endpoint: pk,
                    host_endpoint: u64::try_from(ep.read.session.endpoint.id).unwrap_or(0),
                    cluster,
                    guests: &ep.read.inventory.guests,
                    nodes: &ep.nodes,
                    storages: &ep.storages,
                    owners: &owners,
                    tag: run.prerequisites.ownership_tag(),
                };
                (kind.payload)(row, &ctx)
            });
            jobs.push(Job { item, desired });
        }
    }

    let pks: BTreeSet<String> = read_ids.keys().map(u64::to_string).collect();
    let existing = list_each(netbox, kind.plugin_path, "endpoint", &pks, &[])
        .await
        .map_err(fail)?;
    for record in &existing {
        let record = record.parsed();
        let (Some(pk), Some(id)) = (
            record
                .get("endpoint")
                .map(normalise)
                .and_then(|v| v.as_u64()),
            record.get(kind.key).and_then(Value::as_str),
        ) else {
            continue;
        };
        let gone = read_ids.get(&pk).is_some_and(|ids| !ids.contains(id));
        let active = record.get("status").map(normalise) != Some(json!("stale"));
        if gone && active {
            let mut payload = Map::new();
            payload.insert("endpoint".into(), json!(pk));
            payload.insert(kind.key.into(), json!(id));
            payload.insert("status".into(), json!("stale"));
            jobs.push(Job {
                item: Item::new(format!("{id} (gone from Proxmox)"), kind.item_type),
                desired: Ok(payload),
            });
        }
    }

    let items: Vec<Item> = jobs.iter().map(|j| j.item.clone()).collect();
    let mut phase = Phase::start(sink, kind.phase, kind.item_type, &items, dry_run);
    let mut desired = Vec::new();
    let mut desired_job = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        match &job.desired {
            Ok(payload) => {
                desired.push(Desired {
                    identity: identity(kind.key, payload),
                    payload: payload.clone(),
                });
                desired_job.push(index);
            }
            Err(outcome) => phase.item(&job.item, outcome.clone()),
        }
    }
    let result = reconcile_kind(netbox, &spec(kind), &desired, &existing, false, dry_run).await;
    let mut count = 0;
    for (d_index, j_index) in desired_job.iter().enumerate() {
        let (outcome, id) = result.outcome(d_index);
        if id.is_some() && !matches!(outcome, Outcome::Failed(_)) {
            count += 1;
        }
        phase.item(&jobs[*j_index].item.clone().with_id(id), outcome);
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

fn identity(key: &str, record: &Map<String, Value>) -> Option<Vec<Value>> {
    Some(vec![
        normalise(record.get("endpoint")?),
        json!(record.get(key)?.as_str()?),
    ])
}

/// The reconcile spec of `kind`: matched by `(endpoint, key)`; never deleted.
pub fn spec(kind: &JobKind) -> KindSpec {
    let key = kind.key;
    KindSpec {
        path: kind.plugin_path.into(),
        identity: Box::new(move |o: &Map<String, Value>| identity(key, o)),
        owned: kind.owned.iter().map(|f| f.to_string()).collect(),
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    }
}

/// The plugin's storage records of NetBox cluster `cluster`, by storage id.
async fn storage_records(
    netbox: &NetBoxClient,
    cluster: u64,
) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let listed = netbox
        .list(
            STORAGE_PATH,
            &[
                ("cluster", cluster.to_string()),
                ("fields", "id,name".to_string()),
            ],
        )
        .await?;
    Ok(listed
        .iter()
        .filter_map(|s| Some((s.get("name")?.as_str()?.to_string(), s.get("id")?.as_u64()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_values_are_read_leniently() {
        let row = json!({"a": 1, "b": "0", "c": true, "n": "12", "m": 7, "t": 5});
        assert_eq!(flag(&row, "a"), Some(true));
        assert_eq!(flag(&row, "b"), Some(false));
        assert_eq!(flag(&row, "c"), Some(true));
        assert_eq!(flag(&row, "x"), None);
        assert_eq!(number(&row, "n"), Some(12));
        assert_eq!(number(&row, "m"), Some(7));
        assert_eq!(text(&row, "t"), json!("5"));
        assert_eq!(text(&row, "x"), Value::Null);
        assert!(job_id(&json!({"id": ""})).is_err());
    }
}
