//! Stage `backup-routines` (contract §7.11): each endpoint's scheduled backup jobs
//! (`/cluster/backup`) become the plugin's backup-routine records
//! (`/api/plugins/proxbox/backup-routines/`), matched by `(plugin endpoint, job id)`; see
//! [`cluster_jobs`](super::cluster_jobs) for what the stage does around them.
//!
//! Retention (`prune-backups`), `performance` and `fleecing` are read whether Proxmox
//! gives them as property strings or objects. The job's node and storages are linked to
//! the plugin's node and storage records. Unlike the reference, a run marks stale only
//! the routines of the endpoints it read (the reference marks every other endpoint's
//! routines stale), takes `io_workers` from `performance` (where Proxmox keeps it), and
//! does not rewrite every routine on every run.

use serde_json::{Map, Value, json};

use super::cluster_jobs::{JobContext, JobKind, flag, job_id, number};
use super::report::Outcome;
use super::{StageSummary, SyncRun};
use crate::events::{EventSink, Failure};

/// Stage and phase name.
pub const PHASE: &str = "backup-routines";

/// The plugin's backup-routine records (relative to `/api/`).
pub const ROUTINE_PATH: &str = "plugins/proxbox/backup-routines/";

/// The backup jobs as cluster jobs.
pub const KIND: JobKind = JobKind {
    phase: PHASE,
    proxmox_path: "cluster/backup",
    plugin_path: ROUTINE_PATH,
    key: "job_id",
    item_type: "backup-routine",
    owned: &[
        "endpoint",
        "job_id",
        "enabled",
        "schedule",
        "node",
        "storage",
        "selection",
        "comment",
        "status",
        "keep_last",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "keep_yearly",
        "keep_all",
        "notes_template",
        "bwlimit",
        "zstd",
        "io_workers",
        "fleecing",
        "fleecing_storage",
        "repeat_missed",
        "pbs_change_detection_mode",
        "raw_config",
        "tags",
    ],
    payload,
};

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    super::cluster_jobs::stage(run, sink, &KIND).await
}

/// A property string (`k=v,k=v`) or object as key → text.
fn properties(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::String(s)) => s
            .split(',')
            .filter_map(|part| {
                let (k, v) = part.split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                (k.clone(), text)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn property<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The first of `keys` present in the row.
fn either<'a>(row: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| row.get(*k))
}

/// A VMID list (`"100,101"`, a list, or one number).
fn vmids(value: Option<&Value>) -> Vec<u64> {
    match value {
        Some(Value::String(list)) => list
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
            .collect(),
        Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The guests a job backs up, sorted (a job that selects none is skipped: the plugin's
/// record cannot hold an empty selection): its `vmid` list; else, for `all`, every guest of
/// the cluster (of its `node`, when set) but the `exclude`d ones; else the members of
/// its `pool`. (The reference leaves `all` and pool jobs with an empty selection, which
/// the plugin refuses.)
fn selection(row: &Value, ctx: &JobContext<'_>) -> Vec<u64> {
    let listed = vmids(row.get("vmid"));
    if !listed.is_empty() {
        return listed;
    }
    let node = row.get("node").and_then(Value::as_str);
    let pool = row.get("pool").and_then(Value::as_str);
    let all = flag(row, "all").unwrap_or(false);
    let excluded = vmids(row.get("exclude"));
    let mut out: Vec<u64> = ctx
        .guests
        .iter()
        .filter(|g| node.is_none_or(|n| g.node.as_deref() == Some(n)))
        .filter(|g| {
            if all {
                true
            } else {
                pool.is_some_and(|p| g.raw.get("pool").and_then(Value::as_str) == Some(p))
            }
        })
        .filter_map(|g| g.vmid.map(u64::from))
        .filter(|v| !excluded.contains(v))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The plugin record of one backup job.
fn payload(row: &Value, ctx: &JobContext<'_>) -> Result<Map<String, Value>, Outcome> {
    let id = job_id(row)?;
    let mut p = ctx.base("job_id", id, row);
    let string = |keys: &[&str]| {
        either(row, keys)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    p.insert(
        "enabled".into(),
        json!(flag(row, "enabled").unwrap_or(true)),
    );
    p.insert("schedule".into(), json!(string(&["schedule", "starttime"])));
    p.insert("comment".into(), json!(string(&["comment"])));
    p.insert(
        "notes_template".into(),
        json!(string(&["notes-template", "notes_template"])),
    );
    let node = row.get("node").and_then(Value::as_str);
    p.insert("node".into(), json!(node.and_then(|n| ctx.nodes.get(n))));
    let storage = row.get("storage").and_then(Value::as_str);
    p.insert(
        "storage".into(),
        json!(storage.and_then(|s| ctx.storages.get(s))),
    );
    let selection = selection(row, ctx);
    if selection.is_empty() {
        return Err(Outcome::Skipped(
            "the job selects no guest now, and the plugin's backup-routine record needs at least one"
                .into(),
        ));
    }
    p.insert("selection".into(), json!(selection));
    let prune = properties(either(row, &["prune-backups", "prune_backups"]));
    for keep in ["last", "daily", "weekly", "monthly", "yearly"] {
        let value = property(&prune, &format!("keep-{keep}")).and_then(|v| v.parse::<u64>().ok());
        p.insert(format!("keep_{keep}"), json!(value));
    }
    p.insert(
        "keep_all".into(),
        json!(property(&prune, "keep-all").map(|v| v == "1" || v == "true")),
    );
    p.insert("bwlimit".into(), json!(number(row, "bwlimit")));
    p.insert("zstd".into(), json!(number(row, "zstd")));
    let performance = properties(row.get("performance"));
    p.insert(
        "io_workers".into(),
        json!(
            property(&performance, "max-workers")
                .and_then(|v| v.parse::<u64>().ok())
                .or_else(|| number(row, "io_workers"))
        ),
    );
    let fleecing = properties(row.get("fleecing"));
    let fleecing_text = match row.get("fleecing") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(_)) => fleecing
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    p.insert("fleecing".into(), json!(fleecing_text));
    p.insert(
        "fleecing_storage".into(),
        json!(property(&fleecing, "storage").and_then(|s| ctx.storages.get(s))),
    );
    p.insert(
        "repeat_missed".into(),
        json!(flag(row, "repeat-missed").or_else(|| flag(row, "repeat_missed"))),
    );
    p.insert(
        "pbs_change_detection_mode".into(),
        json!(string(&[
            "pbs-change-detection-mode",
            "pbs_change_detection_mode"
        ])),
    );
    Ok(p)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::proxmox::models::{ClusterResource, FromValue};
    use crate::sync::backups::Owners;

    #[test]
    fn a_job_becomes_a_routine_with_retention_links_and_selection() {
        let owners = Owners::default();
        let nodes = BTreeMap::from([("pve1".to_string(), 4)]);
        let storages = BTreeMap::from([("pbs".to_string(), 11), ("local-lvm".to_string(), 12)]);
        let ctx = JobContext {
            endpoint: 3,
            host_endpoint: 2,
            cluster: "lab",
            guests: &[],
            nodes: &nodes,
            storages: &storages,
            owners: &owners,
            tag: Some(9),
        };
        let row = json!({
            "id": "backup-1a2b", "type": "vzdump", "enabled": 0, "schedule": "sat 03:30",
            "storage": "pbs", "node": "pve1", "vmid": "100,101", "notes-template": "{{guestname}}",
            "prune-backups": "keep-last=3,keep-daily=7", "performance": "max-workers=4",
            "fleecing": {"enabled": 1, "storage": "local-lvm"}, "repeat-missed": 1, "bwlimit": 1000
        });
        let p = payload(&row, &ctx).expect("payload");
        assert_eq!(p["job_id"], json!("backup-1a2b"));
        assert_eq!(p["enabled"], json!(false));
        assert_eq!(p["node"], json!(4));
        assert_eq!(p["storage"], json!(11));
        assert_eq!(p["selection"], json!([100, 101]));
        assert_eq!(p["keep_last"], json!(3));
        assert_eq!(p["keep_daily"], json!(7));
        assert_eq!(p["keep_weekly"], Value::Null);
        assert_eq!(p["keep_all"], Value::Null);
        assert_eq!(p["io_workers"], json!(4));
        assert_eq!(p["fleecing"], json!("enabled=1,storage=local-lvm"));
        assert_eq!(p["fleecing_storage"], json!(12));
        assert_eq!(p["repeat_missed"], json!(true));
        assert_eq!(p["bwlimit"], json!(1000));
        assert_eq!(p["comment"], json!(""));
        assert_eq!(p["status"], json!("active"));
        assert_eq!(p["tags"], json!([9]));
    }

    fn guest(vmid: u32, node: &str, pool: Option<&str>) -> ClusterResource {
        let mut raw =
            json!({"id": format!("qemu/{vmid}"), "type": "qemu", "vmid": vmid, "node": node});
        if let Some(pool) = pool {
            raw["pool"] = json!(pool);
        }
        ClusterResource::from_value(raw).expect("resource")
    }

    #[test]
    fn retention_as_an_object_and_all_guests() {
        let owners = Owners::default();
        let (nodes, storages) = (BTreeMap::new(), BTreeMap::new());
        let guests = [
            guest(102, "pve1", Some("prod")),
            guest(100, "pve1", None),
            guest(101, "pve2", Some("prod")),
        ];
        let ctx = JobContext {
            endpoint: 3,
            host_endpoint: 2,
            cluster: "lab",
            guests: &guests,
            nodes: &nodes,
            storages: &storages,
            owners: &owners,
            tag: None,
        };
        let row = json!({"id": "b", "all": 1, "exclude": "101", "prune-backups": {"keep-all": 1}});
        let p = payload(&row, &ctx).expect("payload");
        assert_eq!(p["selection"], json!([100, 102]));
        let on_node = json!({"id": "n", "all": 1, "node": "pve2"});
        assert_eq!(payload(&on_node, &ctx).unwrap()["selection"], json!([101]));
        let pool = json!({"id": "p", "pool": "prod"});
        assert_eq!(
            payload(&pool, &ctx).unwrap()["selection"],
            json!([101, 102])
        );
        let nothing = json!({"id": "e", "pool": "empty"});
        assert!(matches!(payload(&nothing, &ctx), Err(Outcome::Skipped(_))));
        assert_eq!(p["keep_all"], json!(true));
        assert_eq!(p["enabled"], json!(true));
        assert_eq!(p["storage"], Value::Null);
    }
}
