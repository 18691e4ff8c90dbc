//! The replications, backup-routines and task-history stages
//! (`/proxmox/replication/stream`, `/proxmox/cluster/backup/stream`,
//! `/virtualization/virtual-machines/task-history/create/stream`) against the simulator
//! and the real NetBox with the plugin. Replications and backup routines:
//!
//! 1. Without a plugin endpoint record for the host's endpoint, every job fails with the
//!    reason, and the stream still completes.
//! 2. With one (the host endpoint named `"… (nb:<pk>)"`, as the plugin pushes it), every
//!    job becomes a record: linked to the endpoint, to its VM (replications) and to the
//!    plugin's storage records (backup routines), tagged `proxbox`.
//! 3. Re-run: nothing changes. An operator's tag on a record is kept.
//! 4. A job removed in Proxmox marks its record stale; a changed schedule is updated;
//!    nothing else is written.
//!
//! Task history: every guest task of the node archives becomes a record of its VM, and a
//! re-run writes nothing.
//!
//! Needs the NetBox env of `tests/netbox/netbox.sh` (skipped without it, unless
//! `PROXBOX_REQUIRE_NETBOX=1`).

mod common;

use std::collections::BTreeMap;

use common::sse;
use common::world::{World, estate_with_unique_snapshots, summary, unique, world_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REPLICATIONS: &str = "/proxmox/replication/stream";
const ROUTINES: &str = "/proxmox/cluster/backup/stream";
const TASK_HISTORY: &str = "/virtualization/virtual-machines/task-history/create/stream";

/// `[created, updated, deleted, failed, skipped]` of a phase.
fn counts(frames: &[(String, Value)], phase: &str) -> [u64; 5] {
    let r = &summary(frames, phase)["result"];
    ["created", "updated", "deleted", "failed", "skipped"].map(|k| r[k].as_u64().unwrap_or(0))
}

/// The items of a phase that did not end unchanged, for assertion messages.
fn notable(frames: &[(String, Value)]) -> Vec<String> {
    sse::named(frames, "item_progress")
        .into_iter()
        .filter(|i| i["operation"] != "unchanged")
        .map(|i| {
            format!(
                "{} {} {} {}",
                i["item"]["name"], i["operation"], i["status"], i["error"]
            )
        })
        .collect()
}

/// A plugin Proxmox endpoint record for the world's simulator (disabled, so the plugin's
/// own jobs leave it alone), and the host endpoint renamed to carry its pk (and given the
/// record's address, `localhost`).
async fn plugin_endpoint(w: &World) -> u64 {
    let created =
        w.nb.client
            .create(
                "plugins/proxbox/endpoints/proxmox/",
                json!({
                    "name": unique("sim"),
                    "domain": "localhost",
                    "port": w.sim.addr().port(),
                    "mode": "undefined",
                    "enabled": false,
                    "username": "root@pam",
                }),
            )
            .await
            .expect("plugin endpoint record");
    let pk = created["id"].as_u64().expect("pk");
    let answer = w
        .server
        .call(
            Method::PUT,
            &format!("/proxmox/endpoints/{}", w.endpoint),
            Some(json!({ "name": format!("pve (nb:{pk})"), "domain": "localhost" })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    pk
}

async fn records(w: &World, path: &str, pk: u64, key: &str) -> BTreeMap<String, Value> {
    w.nb.client
        .list(path, &[("endpoint", pk.to_string())])
        .await
        .expect("records")
        .into_iter()
        .map(|r| (r[key].as_str().unwrap_or_default().to_string(), r))
        .collect()
}

fn tag_slugs(record: &Value) -> Vec<&str> {
    record["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["slug"].as_str())
        .collect()
}

/// NetBox VM ids by VMID, from the sync-state records of the world's VMs.
async fn vm_ids(w: &World) -> BTreeMap<u64, u64> {
    let cluster = w.netbox_cluster().await["id"].as_u64().unwrap();
    let vms = w.netbox_vms(cluster).await;
    let mut out = BTreeMap::new();
    for vm in vms.values() {
        let id = vm["id"].as_u64().unwrap();
        let states =
            w.nb.client
                .list(
                    "plugins/proxbox/sync-state/virtual-machines/",
                    &[("virtual_machine_id", id.to_string())],
                )
                .await
                .expect("sync state");
        for state in states {
            if let Some(vmid) = state["proxmox_vm_id"].as_u64() {
                out.insert(vmid, id);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_jobs_become_plugin_records_then_rerun_idle_then_go_stale() {
    let (estate, _) = estate_with_unique_snapshots(73, 12);
    let Some(w) = world_with(estate, |b| b).await else {
        return;
    };
    let state = w.sim.state();
    let replication_jobs = state.replication_jobs.clone();
    // Backup jobs that select no guest (an empty pool) are skipped: the plugin's record
    // cannot hold an empty selection.
    let backup_jobs: Vec<_> = state
        .backup_jobs
        .iter()
        .filter(|job| !common::backup_job_selection(&state, job).is_empty())
        .cloned()
        .collect();
    let idle_jobs = (state.backup_jobs.len() - backup_jobs.len()) as u64;
    assert!(!replication_jobs.is_empty() && !backup_jobs.is_empty());

    // 1. No plugin endpoint record for this endpoint: each job fails, saying why.
    let frames = w.stream(REPLICATIONS, "").await;
    assert_eq!(
        counts(&frames, "replications"),
        [0, 0, 0, replication_jobs.len() as u64, 0],
        "{:#?}",
        notable(&frames)
    );
    let failed = sse::named(&frames, "item_progress");
    assert!(
        failed.iter().all(|i| i["status"] == "failed"
            && i["error"]
                .as_str()
                .is_some_and(|e| e.contains("netbox-proxbox Proxmox endpoint"))),
        "{failed:#?}"
    );

    // 2. With the record: every job lands, linked.
    let pk = plugin_endpoint(&w).await;
    for stage in [
        "/dcim/devices/create/stream",
        "/virtualization/virtual-machines/storage/create/stream",
        "/virtualization/virtual-machines/create/stream",
    ] {
        w.stream(stage, "").await;
    }
    let vms = vm_ids(&w).await;
    let frames = w.stream(REPLICATIONS, "").await;
    assert_eq!(
        counts(&frames, "replications"),
        [replication_jobs.len() as u64, 0, 0, 0, 0],
        "{:#?}",
        notable(&frames)
    );
    let replications = records(&w, "plugins/proxbox/replications/", pk, "replication_id").await;
    assert_eq!(replications.len(), replication_jobs.len());
    for job in &replication_jobs {
        let record = &replications[job["id"].as_str().unwrap()];
        let guest = job["guest"].as_u64().unwrap();
        assert_eq!(record["guest"], guest, "{record:#}");
        assert_eq!(record["virtual_machine"]["id"], vms[&guest], "{record:#}");
        assert_eq!(record["target"], job["target"]);
        assert_eq!(record["source"], job["source"]);
        assert_eq!(record["status"]["value"], "active");
        assert_eq!(record["disable"], job.get("disable").is_some());
        assert_eq!(tag_slugs(record), ["proxbox"]);
    }

    let frames = w.stream(ROUTINES, "").await;
    assert_eq!(
        counts(&frames, "backup-routines"),
        [backup_jobs.len() as u64, 0, 0, 0, idle_jobs],
        "{:#?}",
        notable(&frames)
    );
    let storages: BTreeMap<String, u64> =
        w.nb.client
            .list(
                "plugins/proxbox/storage/",
                &[(
                    "cluster",
                    w.netbox_cluster().await["id"].as_u64().unwrap().to_string(),
                )],
            )
            .await
            .expect("storage records")
            .into_iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["id"].as_u64().unwrap(),
                )
            })
            .collect();
    let routines = records(&w, "plugins/proxbox/backup-routines/", pk, "job_id").await;
    assert_eq!(routines.len(), backup_jobs.len());
    for job in &backup_jobs {
        let record = &routines[job["id"].as_str().unwrap()];
        assert_eq!(record["schedule"], job["schedule"]);
        assert_eq!(record["enabled"], job["enabled"] == 1);
        let storage = job["storage"].as_str().unwrap();
        assert_eq!(record["storage"]["id"], storages[storage], "{record:#}");
        assert_eq!(
            record["selection"],
            json!(common::backup_job_selection(&state, job)),
            "{job:?}"
        );
        assert_eq!(record["notes_template"], "{{guestname}}");
        assert_eq!(tag_slugs(record), ["proxbox"]);
    }

    // 3. An operator's tag, then a re-run: nothing is written, the tag stays.
    let tag =
        w.nb.client
            .create(
                "extras/tags/",
                json!({"name": unique("operator"), "slug": unique("operator")}),
            )
            .await
            .expect("tag");
    let first = &replications[replication_jobs[0]["id"].as_str().unwrap()];
    let mut tags: Vec<Value> = first["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json!(t["id"]))
        .collect();
    tags.push(json!(tag["id"]));
    w.nb.client
        .bulk_update(
            "plugins/proxbox/replications/",
            vec![json!({"id": first["id"], "tags": tags})],
        )
        .await;
    let frames = w.stream(REPLICATIONS, "").await;
    assert_eq!(
        counts(&frames, "replications"),
        [0, 0, 0, 0, replication_jobs.len() as u64],
        "{:#?}",
        notable(&frames)
    );
    let frames = w.stream(ROUTINES, "").await;
    assert_eq!(
        counts(&frames, "backup-routines"),
        [0, 0, 0, 0, backup_jobs.len() as u64 + idle_jobs],
        "{:#?}",
        notable(&frames)
    );
    let after = records(&w, "plugins/proxbox/replications/", pk, "replication_id").await;
    assert_eq!(
        after[replication_jobs[0]["id"].as_str().unwrap()]["tags"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // 4. Proxmox changes: a replication job and a backup job removed, a schedule changed.
    let gone_replication = replication_jobs.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gone_routine = backup_jobs.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rescheduled = (backup_jobs.len() > 1).then(|| backup_jobs[0]["id"].clone());
    w.sim.mutate(|s| {
        s.replication_jobs.pop();
        s.backup_jobs
            .retain(|job| job["id"] != gone_routine.as_str());
        if let Some(job) = s
            .backup_jobs
            .iter_mut()
            .find(|job| Some(&job["id"]) == rescheduled.as_ref())
        {
            job.insert("schedule".into(), json!("sun 04:15"));
        }
    });
    let frames = w.stream(REPLICATIONS, "").await;
    let stale = counts(&frames, "replications");
    assert_eq!(stale[1], 1, "{stale:?}");
    assert_eq!(stale[0] + stale[2] + stale[3], 0, "{stale:?}");
    let after = records(&w, "plugins/proxbox/replications/", pk, "replication_id").await;
    assert_eq!(after.len(), replication_jobs.len(), "stale records stay");
    for (id, record) in &after {
        let want = if *id == gone_replication {
            "stale"
        } else {
            "active"
        };
        assert_eq!(record["status"]["value"], want, "{id}");
    }
    let frames = w.stream(ROUTINES, "").await;
    let changed = counts(&frames, "backup-routines");
    let expected_updates = if rescheduled.is_some() { 2 } else { 1 };
    assert_eq!(changed[1], expected_updates, "{:#?}", notable(&frames));
    assert_eq!(changed[0] + changed[2] + changed[3], 0, "{changed:?}");
    let after = records(&w, "plugins/proxbox/backup-routines/", pk, "job_id").await;
    assert_eq!(after[&gone_routine]["status"]["value"], "stale");
    if let Some(first) = rescheduled.as_ref().and_then(Value::as_str) {
        assert_eq!(after[first]["schedule"], "sun 04:15");
        assert_eq!(after[first]["status"]["value"], "active");
    }
}

/// The task-history stage: each guest task of the node archives becomes a record of its
/// VM (node tasks are skipped); a re-run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_guest_tasks_become_task_history_then_rerun_idle() {
    let (estate, _) = estate_with_unique_snapshots(83, 12);
    let Some(w) = world_with(estate, |b| b).await else {
        return;
    };
    let state = w.sim.state();
    for stage in [
        "/dcim/devices/create/stream",
        "/virtualization/virtual-machines/create/stream",
    ] {
        w.stream(stage, "").await;
    }
    let vms = vm_ids(&w).await;
    let guest_tasks: Vec<&proxmox_sim::PveObject> = state
        .tasks
        .iter()
        .filter(|t| t["id"].as_str().is_some_and(|id| !id.is_empty()))
        .collect();
    assert!(!guest_tasks.is_empty());

    let frames = w.stream(TASK_HISTORY, "").await;
    let [created, updated, deleted, failed, _] = counts(&frames, "task-history");
    // A task already recorded by an earlier run of this test on the same NetBox is
    // updated to point at this world's VM instead of created.
    assert_eq!(
        (created + updated, deleted, failed),
        (guest_tasks.len() as u64, 0, 0),
        "{:#?}",
        notable(&frames)
    );
    let ids: std::collections::BTreeSet<String> = vms.values().map(u64::to_string).collect();
    let mut records = BTreeMap::new();
    for vm in &ids {
        for record in
            w.nb.client
                .list(
                    "plugins/proxbox/task-history/",
                    &[("virtual_machine", vm.clone())],
                )
                .await
                .expect("task history")
        {
            records.insert(record["upid"].as_str().unwrap().to_string(), record);
        }
    }
    assert_eq!(records.len(), guest_tasks.len());
    for task in &guest_tasks {
        let record = &records[task["upid"].as_str().unwrap()];
        let vmid: u64 = task["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(record["virtual_machine"]["id"], vms[&vmid], "{record:#}");
        assert_eq!(record["node"], task["node"]);
        assert_eq!(record["status"], task["status"]);
        assert_eq!(record["task_type"], task["type"]);
        assert_eq!(record["task_state"], "stopped");
        let prefix = if record["vm_type"] == "lxc" {
            "CT"
        } else {
            "QEMU"
        };
        assert!(
            record["description"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{prefix} {vmid} - ")),
            "{record:#}"
        );
        assert_eq!(tag_slugs(record), ["proxbox"]);
    }

    let frames = w.stream(TASK_HISTORY, "").await;
    assert_eq!(
        counts(&frames, "task-history"),
        [0, 0, 0, 0, guest_tasks.len() as u64],
        "{:#?}",
        notable(&frames)
    );
}
