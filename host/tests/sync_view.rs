//! The NetBox view end to end (the real NetBox with the plugin, the simulator as
//! Proxmox): kept lists make a steady re-sync read less than a host without them, and
//! what others change in NetBox between runs still lands exactly.
//!
//! 1. Cold full update, then a re-sync that takes in the cold run's own writes, then a
//!    steady one: no writes, nothing re-read, the view never dropped, and fewer NetBox
//!    GETs than the same no-op run on a host with the view off.
//! 2. Someone else changes a VM's memory, deletes a virtual disk and a backup record:
//!    the next run updates exactly that VM's memory and recreates exactly that disk and
//!    backup, without dropping the view; the run after writes nothing.
//! 3. Someone else changes a tag: the view is dropped (tags are part of every object),
//!    the run reads everything again and still writes nothing.
//!
//! This binary has one test, so no other test writes to NetBox meanwhile.

mod common;

use common::world::{World, estate_with_unique_snapshots, operations, summary, unique, world_with};
use proxbox_host::server::AppStateBuilder;
use reqwest::Method;
use serde_json::{Value, json};

const FULL_UPDATE: &str = "/full-update/stream";
const PRUNE: &str = "&delete_nonexistent_backup=true&delete_nonexistent_snapshot=true";

/// A full update; asserts no failure. Returns the frames and the `complete` result.
async fn full_update(w: &World) -> (Vec<(String, Value)>, Value) {
    let frames = w.stream(FULL_UPDATE, PRUNE).await;
    let failed: Vec<&Value> = common::sse::named(&frames, "item_progress")
        .into_iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let result = common::sse::complete(&frames)["result"].clone();
    (frames, result)
}

fn writes(result: &Value) -> u64 {
    result["netbox_requests"]["writes"]
        .as_u64()
        .expect("writes")
}

fn gets(result: &Value) -> u64 {
    result["netbox_requests"]["gets"].as_u64().expect("gets")
}

fn listed(result: &Value) -> u64 {
    result["netbox_requests"]["objects_listed"]
        .as_u64()
        .expect("objects_listed")
}

/// `(created, updated)` of a phase.
fn created_updated(frames: &[(String, Value)], phase: &str) -> (u64, u64) {
    let r = &summary(frames, phase)["result"];
    (
        r["created"].as_u64().unwrap(),
        r["updated"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_lists_follow_foreign_changes_and_steady_runs_read_less() {
    let (estate, _) = estate_with_unique_snapshots(61, 40);
    let Some(w) = world_with(estate.clone(), |b| b).await else {
        return;
    };

    // 1. Cold, the re-sync that takes in our own writes, a steady re-sync.
    let (_, cold) = full_update(&w).await;
    assert!(writes(&cold) > 0);
    assert!(cold["netbox_view"]["dropped"].is_null(), "{cold}");
    let (_, first) = full_update(&w).await;
    assert_eq!(writes(&first), 0, "{first}");
    assert!(first["netbox_view"]["dropped"].is_null(), "{first}");
    assert!(
        first["netbox_view"]["changes_read"].as_u64().unwrap() > 0,
        "{first}"
    );
    let (steady_frames, steady) = full_update(&w).await;
    assert_eq!(writes(&steady), 0, "{steady}");
    assert!(steady["netbox_view"]["dropped"].is_null(), "{steady}");
    assert_eq!(steady["netbox_view"]["objects_reread"], 0, "{steady}");
    for phase in ["virtual-machines", "virtual-disks", "backups", "snapshots"] {
        let ops = operations(&steady_frames, phase);
        assert_eq!(ops.keys().collect::<Vec<_>>(), vec!["skipped"], "{phase}");
    }

    // The same no-op run by a host without the view reads more.
    let plain = world_with(estate, |b: AppStateBuilder| {
        b.netbox_view_max_age(std::time::Duration::ZERO)
    })
    .await
    .expect("world");
    let (_, unviewed) = full_update(&plain).await;
    assert_eq!(writes(&unviewed), 0, "{unviewed}");
    assert_eq!(unviewed["netbox_view"]["changes_read"], 0);
    println!(
        "GETs / objects listed: cold {} / {}, first re-sync {} / {}, steady {} / {}, \
         steady without the view {} / {}",
        gets(&cold),
        listed(&cold),
        gets(&first),
        listed(&first),
        gets(&steady),
        listed(&steady),
        gets(&unviewed),
        listed(&unviewed)
    );
    // Without the view, every VM, disk, backup and snapshot (and their records) is
    // listed again; with it, none of them is.
    let kept = ["virtual_machines", "virtual_disks", "backups", "snapshots"]
        .iter()
        .map(|k| steady[format!("{k}_count")].as_u64().unwrap())
        .sum::<u64>();
    assert!(kept > 100, "{steady}");
    assert!(
        listed(&steady) + kept <= listed(&unviewed),
        "the steady run listed {} objects, the run without the view {} (kept kinds: {kept})",
        listed(&steady),
        listed(&unviewed)
    );

    // 2. Someone else's changes land exactly.
    let nb = &w.nb.client;
    let cluster = w.netbox_cluster().await["id"].as_u64().unwrap();
    let vms = w.netbox_vms(cluster).await;
    let vm = vms.values().next().expect("a VM");
    let vm_id = vm["id"].as_u64().unwrap();
    let memory = vm["memory"].as_u64().unwrap();
    nb.request(
        Method::PATCH,
        &format!("virtualization/virtual-machines/{vm_id}/"),
        &[],
        Some(&json!({"memory": memory + 1})),
    )
    .await
    .expect("patch memory");
    let mut disk = None;
    for id in vms.values().filter_map(|v| v["id"].as_u64()) {
        let disks = nb
            .list(
                "virtualization/virtual-disks/",
                &[("virtual_machine_id", id.to_string())],
            )
            .await
            .expect("disks");
        if let Some(first) = disks.into_iter().next() {
            disk = Some(first);
            break;
        }
    }
    let disk = disk.expect("a virtual disk");
    let disk_id = disk["id"].as_u64().unwrap();
    nb.request(
        Method::DELETE,
        &format!("virtualization/virtual-disks/{disk_id}/"),
        &[],
        None,
    )
    .await
    .expect("delete disk");
    let vm_ids: Vec<u64> = vms.values().filter_map(|v| v["id"].as_u64()).collect();
    let backup = nb
        .list("plugins/proxbox/backups/", &[])
        .await
        .expect("backups")
        .into_iter()
        .find(|b| {
            b["virtual_machine"]["id"]
                .as_u64()
                .is_some_and(|v| vm_ids.contains(&v))
        })
        .expect("a backup record");
    let backup_id = backup["id"].as_u64().unwrap();
    nb.request(
        Method::DELETE,
        &format!("plugins/proxbox/backups/{backup_id}/"),
        &[],
        None,
    )
    .await
    .expect("delete backup");

    let (frames, result) = full_update(&w).await;
    assert!(result["netbox_view"]["dropped"].is_null(), "{result}");
    assert_eq!(created_updated(&frames, "virtual-machines"), (0, 1));
    let updated: Vec<&Value> = common::sse::named(&frames, "item_progress")
        .into_iter()
        .filter(|i| i["phase"] == "virtual-machines" && i["operation"] == "updated")
        .collect();
    assert_eq!(updated.len(), 1, "{updated:#?}");
    assert_eq!(
        nb.request(
            Method::GET,
            &format!("virtualization/virtual-machines/{vm_id}/"),
            &[],
            None
        )
        .await
        .expect("vm")["memory"],
        json!(memory)
    );
    assert_eq!(created_updated(&frames, "virtual-disks").0, 1);
    let recreated = nb
        .list(
            "virtualization/virtual-disks/",
            &[
                (
                    "virtual_machine_id",
                    disk["virtual_machine"]["id"].to_string(),
                ),
                ("name", disk["name"].as_str().unwrap().to_string()),
            ],
        )
        .await
        .expect("disks");
    assert_eq!(recreated.len(), 1);
    assert_eq!(recreated[0]["size"], disk["size"]);
    assert_eq!(created_updated(&frames, "backups").0, 1);
    let (_, after) = full_update(&w).await;
    assert_eq!(writes(&after), 0, "{after}");
    assert!(after["netbox_view"]["dropped"].is_null(), "{after}");

    // 3. A tag changes: the view is dropped, and nothing is written.
    let slug = unique("view-tag");
    let tag = nb
        .create(
            "extras/tags/",
            json!({"name": slug.clone(), "slug": slug, "color": "aa1409"}),
        )
        .await
        .expect("tag");
    nb.request(
        Method::PATCH,
        &format!("extras/tags/{}/", tag["id"]),
        &[],
        Some(&json!({"color": "00ff00"})),
    )
    .await
    .expect("patch tag");
    let (_, dropped) = full_update(&w).await;
    assert!(
        dropped["netbox_view"]["dropped"]
            .as_str()
            .is_some_and(|r| r.contains("extras.tag")),
        "{dropped}"
    );
    assert_eq!(writes(&dropped), 0, "{dropped}");
}
