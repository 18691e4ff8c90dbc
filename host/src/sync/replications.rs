//! Stage `replications` (contract §7.11): each endpoint's storage replication jobs
//! (`/cluster/replication`) become the plugin's replication records
//! (`/api/plugins/proxbox/replications/`), matched by `(plugin endpoint, job id)`; see
//! [`cluster_jobs`](super::cluster_jobs) for what the stage does around them.
//!
//! A job belongs to the NetBox VM whose sync-state record names its guest; jobs of
//! guests that are not in NetBox are skipped. The job's source node is linked to the
//! plugin's node record. Unlike the reference, the operator's tags on a record are kept
//! (the reference empties them on every run), the node link is set (the reference asks a
//! path the plugin does not serve), and an endpoint whose jobs are all gone has its
//! records marked stale too.

use serde_json::{Map, Value, json};

use super::cluster_jobs::{JobContext, JobKind, flag, job_id, number, text};
use super::report::Outcome;
use super::{StageSummary, SyncRun};
use crate::events::{EventSink, Failure};

/// Stage and phase name.
pub const PHASE: &str = "replications";

/// The plugin's replication records (relative to `/api/`).
pub const REPLICATION_PATH: &str = "plugins/proxbox/replications/";

/// The replication jobs as cluster jobs.
pub const KIND: JobKind = JobKind {
    phase: PHASE,
    proxmox_path: "cluster/replication",
    plugin_path: REPLICATION_PATH,
    key: "replication_id",
    item_type: "replication",
    owned: &[
        "endpoint",
        "replication_id",
        "virtual_machine",
        "proxmox_node",
        "guest",
        "target",
        "job_type",
        "schedule",
        "rate",
        "comment",
        "disable",
        "source",
        "jobnum",
        "remove_job",
        "raw_config",
        "status",
        "tags",
    ],
    payload,
};

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    super::cluster_jobs::stage(run, sink, &KIND).await
}

/// The plugin record of one replication job.
fn payload(row: &Value, ctx: &JobContext<'_>) -> Result<Map<String, Value>, Outcome> {
    let invalid = |what: &str| Outcome::Failed(format!("invalid Proxmox data: {what}"));
    let id = job_id(row)?;
    let guest = number(row, "guest")
        .and_then(|g| u32::try_from(g).ok())
        .ok_or_else(|| invalid("the job has no guest"))?;
    let vm = ctx
        .owners
        .resolve(ctx.host_endpoint, ctx.cluster, guest, None)
        .map_err(Outcome::Skipped)?;
    let target = row
        .get("target")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("the job has no target node"))?;
    let jobnum = number(row, "jobnum")
        .or_else(|| id.rsplit('-').next()?.parse().ok())
        .ok_or_else(|| invalid("the job has no job number"))?;
    let source = row.get("source").and_then(Value::as_str);
    let mut p = ctx.base("replication_id", id, row);
    p.insert("virtual_machine".into(), json!(vm));
    p.insert(
        "proxmox_node".into(),
        json!(source.and_then(|s| ctx.nodes.get(s))),
    );
    p.insert("guest".into(), json!(guest));
    p.insert("target".into(), json!(target));
    p.insert(
        "job_type".into(),
        json!(row.get("type").and_then(Value::as_str).unwrap_or("local")),
    );
    p.insert(
        "schedule".into(),
        json!(row.get("schedule").and_then(Value::as_str).unwrap_or("")),
    );
    p.insert(
        "rate".into(),
        json!(
            row.get("rate")
                .and_then(|r| r.as_f64().or_else(|| r.as_str()?.parse().ok()))
        ),
    );
    p.insert("comment".into(), text(row, "comment"));
    p.insert(
        "disable".into(),
        json!(flag(row, "disable").unwrap_or(false)),
    );
    p.insert("source".into(), text(row, "source"));
    p.insert("jobnum".into(), json!(jobnum));
    p.insert("remove_job".into(), text(row, "remove_job"));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sync::backups::Owners;

    fn owners() -> Owners {
        Owners::from_records(&[json!({
            "virtual_machine": {"id": 77}, "proxmox_endpoint_raw_id": 2,
            "proxmox_cluster_name": "lab", "proxmox_vm_id": 101, "proxmox_vm_type": "qemu"
        })])
    }

    fn ctx<'a>(
        owners: &'a Owners,
        nodes: &'a BTreeMap<String, u64>,
        storages: &'a BTreeMap<String, u64>,
    ) -> JobContext<'a> {
        JobContext {
            endpoint: 3,
            host_endpoint: 2,
            cluster: "lab",
            guests: &[],
            nodes,
            storages,
            owners,
            tag: Some(9),
        }
    }

    #[test]
    fn a_job_becomes_a_record_linked_to_its_vm_and_source_node() {
        let row = json!({"id": "101-0", "type": "local", "guest": 101, "jobnum": 0,
                         "target": "pve2", "source": "pve1", "schedule": "*/15",
                         "rate": 12.5, "disable": 1});
        let (owners, nodes, storages) = (
            owners(),
            BTreeMap::from([("pve1".to_string(), 4)]),
            BTreeMap::new(),
        );
        let p = payload(&row, &ctx(&owners, &nodes, &storages)).expect("payload");
        assert_eq!(p["endpoint"], json!(3));
        assert_eq!(p["replication_id"], json!("101-0"));
        assert_eq!(p["virtual_machine"], json!(77));
        assert_eq!(p["proxmox_node"], json!(4));
        assert_eq!(p["guest"], json!(101));
        assert_eq!(p["jobnum"], json!(0));
        assert_eq!(p["rate"], json!(12.5));
        assert_eq!(p["disable"], json!(true));
        assert_eq!(p["comment"], Value::Null);
        assert_eq!(p["status"], json!("active"));
        assert_eq!(p["tags"], json!([9]));
        assert_eq!(p["raw_config"], row);
    }

    #[test]
    fn a_job_of_a_guest_not_in_netbox_is_skipped_and_a_bad_one_fails() {
        let (owners, nodes, storages) = (owners(), BTreeMap::new(), BTreeMap::new());
        let ctx = ctx(&owners, &nodes, &storages);
        let skipped = payload(&json!({"id": "102-0", "guest": 102, "target": "b"}), &ctx);
        assert!(matches!(skipped, Err(Outcome::Skipped(_))), "{skipped:?}");
        let no_target = payload(&json!({"id": "101-0", "guest": 101}), &ctx);
        assert!(
            matches!(no_target, Err(Outcome::Failed(_))),
            "{no_target:?}"
        );
        let no_id = payload(&json!({"guest": 101, "target": "b"}), &ctx);
        assert!(matches!(no_id, Err(Outcome::Failed(_))), "{no_id:?}");
    }
}
