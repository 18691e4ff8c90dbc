//! Stage `task-history` (contract §7.10): the finished tasks of the guests NetBox holds
//! (each node's task archive, `/nodes/{node}/tasks?source=archive`, read page by page
//! up to the start of the run) become the plugin's task-history records
//! (`/api/plugins/proxbox/task-history/`), matched by UPID.
//!
//! A task belongs to the NetBox VM whose sync-state record names its guest; node tasks
//! and tasks of guests that are not in NetBox are skipped. With `netbox_vm_ids`, only
//! those VMs' tasks. Nothing is deleted. Times are RFC 3339 in UTC as NetBox renders them,
//! so a re-run of unchanged tasks writes nothing (the reference writes `+00:00` and NetBox
//! answers `Z`, so it rewrites every finished task on every run).

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::apply::{list_by, reconcile_kind};
use super::backups::{Owners, missing_plugin, netbox_failure, wanted_vms};
use super::cluster_jobs::number;
use super::report::{Item, Outcome, Phase};
use super::{StageSummary, SyncRun, read_inventories};
use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec};
use crate::normalize::unix_to_rfc3339;
use crate::proxmox::ProxmoxClient;

/// Stage and phase name.
pub const PHASE: &str = "task-history";

/// The plugin's task-history records (relative to `/api/`).
pub const TASK_PATH: &str = "plugins/proxbox/task-history/";

/// Archive rows asked per request.
const PAGE: usize = 500;

/// Fields of a record the sync may change once it exists (the reference's set).
const OWNED: [&str; 7] = [
    "virtual_machine",
    "vm_type",
    "end_time",
    "status",
    "task_state",
    "exitstatus",
    "tags",
];

/// Actions named in a task's type, first match wins (`qmstart` → Start).
const ACTIONS: [&str; 17] = [
    "start", "shutdown", "reboot", "stop", "pause", "resume", "suspend", "delete", "create",
    "clone", "move", "backup", "restore", "snapshot", "rollback", "migrate", "convert",
];

/// One archived task, and what became of it.
struct Task {
    item: Item,
    desired: Result<Map<String, Value>, Outcome>,
    /// `(endtime, starttime)`: of two rows of one UPID the later wins.
    order: (i64, i64),
}

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    if let Some(failure) = missing_plugin(run, sink, PHASE) {
        return Err(failure);
    }
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let reads = read_inventories(run, sink, PHASE).await;
    let owners = Owners::read(run)
        .await
        .map_err(|e| netbox_failure(sink, PHASE, e))?;
    let wanted = wanted_vms(run);
    let until = time::OffsetDateTime::now_utc().unix_timestamp();
    let tag = run.prerequisites.ownership_tag();

    // Read each node's archive (at most `fetch_max_concurrency` nodes at once).
    let mut node_reads = Vec::new();
    for read in &reads {
        for node in read.inventory.online_nodes() {
            node_reads.push((read, node));
        }
    }
    let fetches: Vec<(ProxmoxClient, String)> = node_reads
        .iter()
        .map(|(read, node)| (read.session.client.clone(), node.clone()))
        .collect();
    let archives: Vec<Result<Vec<Value>, String>> = futures::stream::iter(fetches)
        .map(|(client, node)| async move { archive(&client, &node, until).await })
        .buffered(run.options.fetch_max_concurrency.max(1))
        .collect()
        .await;

    // One record per UPID; the same task seen twice keeps the latest-ending row.
    let mut found: BTreeMap<String, Task> = BTreeMap::new();
    let mut skipped = 0u64;
    for ((read, node), archive) in node_reads.iter().zip(archives) {
        let rows = match archive {
            Ok(rows) => rows,
            Err(e) => {
                let mut event = ErrorDetail::new(
                    ErrorCategory::Connection,
                    format!(
                        "Cannot read the task archive of node '{node}' of Proxmox endpoint '{}'",
                        read.session.endpoint.name
                    ),
                );
                event.phase = Some(PHASE.to_string());
                event.detail = Some(e);
                sink.emit(event);
                continue;
            }
        };
        let endpoint = u64::try_from(read.session.endpoint.id).unwrap_or(0);
        for row in rows {
            let (Some(upid), Some(vmid)) = (
                row.get("upid")
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty()),
                number(&row, "id")
                    .or_else(|| number(&row, "vmid"))
                    .filter(|v| *v > 0)
                    .and_then(|v| u32::try_from(v).ok()),
            ) else {
                skipped += 1;
                continue;
            };
            let Ok((vm, kind)) = owners.owner(endpoint, &read.inventory.name, vmid) else {
                skipped += 1;
                continue;
            };
            if wanted.as_ref().is_some_and(|w| !w.contains(&vm)) {
                continue;
            }
            let order = (
                row.get("endtime").and_then(Value::as_i64).unwrap_or(0),
                row.get("starttime").and_then(Value::as_i64).unwrap_or(0),
            );
            if found.get(upid).is_some_and(|seen| seen.order >= order) {
                continue;
            }
            let task = Task {
                item: Item::new(upid.to_string(), "task"),
                desired: payload(&row, node, vm, kind, vmid, tag).map_err(Outcome::Failed),
                order,
            };
            found.insert(upid.to_string(), task);
        }
    }
    tracing::debug!(skipped, "task rows of no NetBox VM");

    // By UPID, not by VM: a UPID is unique across the plugin's records, whichever VM
    // holds it now.
    let upids: BTreeSet<String> = found
        .iter()
        .filter(|(_, t)| t.desired.is_ok())
        .map(|(upid, _)| upid.clone())
        .collect();
    let existing = list_by(netbox, TASK_PATH, "upid", &upids, &[])
        .await
        .map_err(|e| netbox_failure(sink, PHASE, e))?;

    let items: Vec<Item> = found.values().map(|t| t.item.clone()).collect();
    let mut phase = Phase::start(sink, PHASE, "task", &items, dry_run);
    let mut desired = Vec::new();
    let mut desired_item = Vec::new();
    for task in found.values() {
        match &task.desired {
            Ok(payload) => {
                desired.push(Desired {
                    identity: Some(vec![payload["upid"].clone()]),
                    payload: payload.clone(),
                });
                desired_item.push(&task.item);
            }
            Err(outcome) => phase.item(&task.item, outcome.clone()),
        }
    }
    let result = reconcile_kind(netbox, &spec(), &desired, &existing, false, dry_run).await;
    let mut count = 0;
    for (index, item) in desired_item.into_iter().enumerate() {
        let (outcome, id) = result.outcome(index);
        if id.is_some() && !matches!(outcome, Outcome::Failed(_)) {
            count += 1;
        }
        phase.item(&item.clone().with_id(id), outcome);
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// Every archived task of `node` that started before `until`, page by page; a page that
/// adds no new task ends the read (Proxmox ignoring `start` must not loop forever).
async fn archive(client: &ProxmoxClient, node: &str, until: i64) -> Result<Vec<Value>, String> {
    let path = format!("nodes/{node}/tasks");
    let mut rows: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        let query = [
            ("source", "archive".to_string()),
            ("start", rows.len().to_string()),
            ("limit", PAGE.to_string()),
            ("until", until.to_string()),
        ];
        let page = client.get(&path, &query).await.map_err(|e| e.to_string())?;
        let page = page.as_array().cloned().unwrap_or_default();
        let full = page.len() >= PAGE;
        let before = rows.len();
        for row in page {
            let upid = row.get("upid").and_then(Value::as_str).unwrap_or_default();
            if seen.insert(upid.to_string()) {
                rows.push(row);
            }
        }
        if !full || rows.len() == before {
            return Ok(rows);
        }
    }
}

/// The reconcile spec: matched by UPID; never deleted.
fn spec() -> KindSpec {
    KindSpec {
        path: TASK_PATH.into(),
        identity: Box::new(|o: &Map<String, Value>| Some(vec![o.get("upid")?.clone()])),
        owned: OWNED.iter().map(|f| f.to_string()).collect(),
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    }
}

/// `"QEMU 101 - Start"`: the guest type, the task's id, and the action its type names.
fn description(kind: &str, task_id: &str, task_type: &str) -> String {
    let prefix = match kind {
        "qemu" => "QEMU".to_string(),
        "lxc" => "CT".to_string(),
        other => other.to_uppercase(),
    };
    let lower = task_type.to_lowercase();
    let action = ACTIONS
        .iter()
        .find(|a| lower.contains(*a))
        .map_or(lower.as_str(), |a| a);
    let mut chars = action.chars();
    let action = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect::<String>())
        .unwrap_or_default();
    format!("{prefix} {task_id} - {action}")
}

/// The plugin record of one archived task.
fn payload(
    row: &Value,
    node: &str,
    vm: u64,
    kind: &str,
    vmid: u32,
    tag: Option<u64>,
) -> Result<Map<String, Value>, String> {
    let upid = row
        .get("upid")
        .and_then(Value::as_str)
        .ok_or("invalid Proxmox data: the task has no UPID")?;
    let start = row
        .get("starttime")
        .and_then(Value::as_i64)
        .and_then(unix_to_rfc3339)
        .ok_or("invalid Proxmox data: the task has no start time")?;
    let end = row
        .get("endtime")
        .and_then(Value::as_i64)
        .and_then(unix_to_rfc3339);
    let task_type = row
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("unknown");
    let task_id = row
        .get("id")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map_or_else(|| vmid.to_string(), str::to_string);
    let status: String = row
        .get("exitstatus")
        .or_else(|| row.get("status"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .chars()
        .take(2048)
        .collect();
    let mut p = Map::new();
    p.insert("virtual_machine".into(), json!(vm));
    p.insert("vm_type".into(), json!(kind));
    p.insert("upid".into(), json!(upid));
    p.insert(
        "node".into(),
        json!(row.get("node").and_then(Value::as_str).unwrap_or(node)),
    );
    p.insert("pid".into(), json!(number(row, "pid")));
    p.insert(
        "pstart".into(),
        json!(row.get("pstart").and_then(Value::as_i64)),
    );
    p.insert("task_id".into(), json!(task_id));
    p.insert("task_type".into(), json!(task_type));
    p.insert(
        "username".into(),
        json!(
            row.get("user")
                .and_then(Value::as_str)
                .unwrap_or("root@pam")
        ),
    );
    p.insert("start_time".into(), json!(start));
    p.insert("end_time".into(), json!(end));
    p.insert(
        "description".into(),
        json!(description(kind, &task_id, task_type)),
    );
    p.insert("status".into(), json!(status));
    p.insert("exitstatus".into(), json!(status));
    p.insert("task_state".into(), json!("stopped"));
    p.insert("tags".into(), json!(tag.into_iter().collect::<Vec<_>>()));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_the_guest_and_the_action() {
        assert_eq!(description("qemu", "101", "qmstart"), "QEMU 101 - Start");
        assert_eq!(description("lxc", "200", "vzshutdown"), "CT 200 - Shutdown");
        assert_eq!(description("qemu", "101", "vzdump"), "QEMU 101 - Vzdump");
        assert_eq!(
            description("qemu", "101", "qmsnapshot"),
            "QEMU 101 - Snapshot"
        );
    }

    #[test]
    fn an_archived_task_becomes_a_record() {
        let row = json!({
            "upid": "UPID:pve1:0000ABCD:00001234:65000000:qmstart:101:root@pam:",
            "node": "pve1", "pid": 43981, "pstart": 4660, "starttime": 1_700_000_000,
            "endtime": 1_700_000_042, "type": "qmstart", "id": "101", "user": "admin@pve",
            "status": "OK"
        });
        let p = payload(&row, "pve1", 7, "qemu", 101, Some(3)).expect("payload");
        assert_eq!(p["virtual_machine"], json!(7));
        assert_eq!(p["start_time"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(p["end_time"], json!("2023-11-14T22:14:02Z"));
        assert_eq!(p["status"], json!("OK"));
        assert_eq!(p["exitstatus"], json!("OK"));
        assert_eq!(p["username"], json!("admin@pve"));
        assert_eq!(p["description"], json!("QEMU 101 - Start"));
        assert_eq!(p["tags"], json!([3]));
        let running = json!({"upid": "UPID:x", "starttime": 1_700_000_000, "type": "qmstart"});
        let p = payload(&running, "pve2", 7, "qemu", 101, None).expect("payload");
        assert_eq!(p["end_time"], Value::Null);
        assert_eq!(p["status"], json!("unknown"));
        assert_eq!(p["node"], json!("pve2"));
        assert_eq!(p["task_id"], json!("101"));
    }
}
