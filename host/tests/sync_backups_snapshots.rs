//! The backup and snapshot stages end to end: the simulator as Proxmox, the real NetBox
//! with the plugin (`tests/netbox/netbox.sh up`), the host in between, driven through
//! the sync routes and read back from the plugin's records.
//!
//! Needs `NETBOX_URL`, `NETBOX_TOKEN_V1` and `NETBOX_TOKEN_V2_HEADER` (the env file of
//! `netbox.sh`); without them each test says it is skipped, unless
//! `PROXBOX_REQUIRE_NETBOX=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::sse;
use common::world::{
    World, estate_with_unique_snapshots, now_iso, operations, summary, unique, world_with,
};
use proxmox_sim::{Backup, Fault, FaultKind, GuestType, Snapshot};
use reqwest::Method;
use serde_json::Value;

const BACKUPS: &str = "/virtualization/virtual-machines/backups/all/create/stream";
const SNAPSHOTS: &str = "/virtualization/virtual-machines/snapshots/all/create/stream";
const DELETE: &str = "&delete_nonexistent_backup=true&delete_nonexistent_snapshot=true";

/// The tests of this file share NetBox's change log; one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Devices, VMs and (whatever it does yet) storage, so backups and snapshots have owners.
async fn prepare(w: &World) {
    w.stream("/dcim/devices/create/stream", "").await;
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    assert_eq!(summary(&frames, "virtual-machines")["result"]["failed"], 0);
    let query = format!("proxmox_endpoint_ids={}", w.endpoint);
    w.server
        .call(
            Method::GET,
            &format!("/virtualization/virtual-machines/storage/create/stream?{query}"),
            None,
        )
        .await;
}

/// This world's NetBox VMs: id -> (VMID, type), from the plugin's sync-state records.
async fn vms(w: &World) -> BTreeMap<u64, (u32, String)> {
    w.nb.client
        .list("plugins/proxbox/sync-state/virtual-machines/", &[])
        .await
        .expect("sync-state records")
        .into_iter()
        .filter(|r| r["proxmox_cluster_name"] == w.cluster.as_str())
        .map(|r| {
            (
                r["virtual_machine"]["id"].as_u64().unwrap(),
                (
                    r["proxmox_vm_id"].as_u64().unwrap() as u32,
                    r["proxmox_vm_type"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The plugin records at `path` of `vms`, by VMID.
async fn records(
    w: &World,
    path: &str,
    vms: &BTreeMap<u64, (u32, String)>,
) -> BTreeMap<u32, Vec<Value>> {
    let mut out: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for (vm, (vmid, _)) in vms {
        let found =
            w.nb.client
                .list(path, &[("virtual_machine", vm.to_string())])
                .await
                .expect("records");
        for record in found {
            assert_eq!(record["virtual_machine"]["id"], *vm, "filtered by VM");
            out.entry(*vmid).or_default().push(record);
        }
    }
    out
}

/// Volume ids (backups) or names (snapshots) of records, by VMID.
fn keys(records: &BTreeMap<u32, Vec<Value>>, field: &str) -> BTreeMap<u32, BTreeSet<String>> {
    records
        .iter()
        .map(|(vmid, list)| {
            (
                *vmid,
                list.iter()
                    .map(|r| r[field].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .filter(|(_, set): &(u32, BTreeSet<String>)| !set.is_empty())
        .collect()
}

/// Every backup of the simulated estate (storages that may hold backups, not disabled).
fn sim_backups(w: &World) -> Vec<(String, Backup)> {
    w.sim
        .state()
        .storages
        .iter()
        .filter(|s| s.has_content("backup") && !s.disable)
        .flat_map(|s| s.backups.iter().map(|b| (s.storage.clone(), b.clone())))
        .collect()
}

/// Expected backup volume ids by VMID: those of guests (the others belong to no NetBox VM).
fn expected_backups(w: &World, backups: &[(String, Backup)]) -> BTreeMap<u32, BTreeSet<String>> {
    let guests = w.sim.state().guests;
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (_, backup) in backups {
        if let Some(vmid) = backup.vmid.filter(|v| guests.contains_key(v)) {
            out.entry(vmid).or_default().insert(backup.volid.clone());
        }
    }
    out
}

/// Expected snapshot names by VMID.
fn expected_snapshots(w: &World) -> BTreeMap<u32, BTreeSet<String>> {
    w.sim
        .state()
        .guests
        .values()
        .filter(|g| !g.snapshots.is_empty())
        .map(|g| (g.vmid, g.snapshots.iter().map(|s| s.name.clone()).collect()))
        .collect()
}

fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn has_proxbox_tag(record: &Value) -> bool {
    record["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["slug"] == "proxbox")
}

/// NetBox changes since `since` that concern `vms` (their backup and snapshot records).
async fn changes_of(w: &World, since: &str, vms: &BTreeMap<u64, (u32, String)>) -> Vec<Value> {
    w.changes_since(since)
        .await
        .into_iter()
        .filter(|c| {
            ["prechange_data", "postchange_data"].iter().any(|k| {
                c[*k]["virtual_machine"]
                    .as_u64()
                    .is_some_and(|vm| vms.contains_key(&vm))
            }) || (c["changed_object_type"] == "virtualization.virtualmachine"
                && c["changed_object_id"]
                    .as_u64()
                    .is_some_and(|vm| vms.contains_key(&vm)))
        })
        .collect()
}

fn counts(frames: &[(String, Value)], phase: &str) -> [u64; 5] {
    let r = &summary(frames, phase)["result"];
    ["created", "updated", "deleted", "failed", "skipped"].map(|k| r[k].as_u64().unwrap())
}

/// Names of the `item_progress` items of `phase` with `operation`.
fn items_with(frames: &[(String, Value)], phase: &str, operation: &str) -> Vec<String> {
    sse::named(frames, "item_progress")
        .into_iter()
        .filter(|i| i["phase"] == phase && i["operation"] == operation)
        .map(|i| i["item"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_snapshots_land_rerun_is_a_noop_and_deletes_are_exact() {
    let _serial = SERIAL.lock().await;
    let Some(w) = world_with(estate_with_unique_snapshots(41, 24).0, |b| b).await else {
        return;
    };
    prepare(&w).await;
    let vms = vms(&w).await;
    let state = w.sim.state();
    assert_eq!(vms.len(), state.guests.len());

    // Backups: every guest backup lands on its VM; the others are skipped.
    let all_backups = sim_backups(&w);
    let expected = expected_backups(&w, &all_backups);
    let expected_count: usize = expected.values().map(BTreeSet::len).sum();
    assert!(expected_count > 10 && expected_count < all_backups.len());
    let frames = w.stream(BACKUPS, "").await;
    assert_eq!(
        sse::complete(&frames)["result"]["count"],
        expected_count,
        "{:#?}",
        summary(&frames, "backups")
    );
    assert_eq!(
        counts(&frames, "backups"),
        [
            expected_count as u64,
            0,
            0,
            0,
            (all_backups.len() - expected_count) as u64
        ]
    );
    let backups = records(&w, "plugins/proxbox/backups/", &vms).await;
    assert_eq!(keys(&backups, "volume_id"), expected);
    let by_volid: BTreeMap<&str, (&str, &Backup)> = all_backups
        .iter()
        .map(|(s, b)| (b.volid.as_str(), (s.as_str(), b)))
        .collect();
    for record in backups.values().flatten() {
        let (storage, backup) = by_volid[record["volume_id"].as_str().unwrap()];
        let guest = &state.guests[&backup.vmid.unwrap()];
        assert_eq!(record["storage"], storage);
        assert_eq!(record["vmid"], guest.vmid);
        assert_eq!(record["subtype"]["value"], guest.guest_type.as_str());
        assert_eq!(record["size"], backup.size);
        assert_eq!(record["creation_time"], rfc3339(backup.ctime));
        let format = match backup.format.as_str() {
            "vma.zst" => "zst",
            "tar.zst" => "tzst",
            other => other,
        };
        if ["zst", "tzst", "pbs-vm", "pbs-ct"].contains(&format) {
            assert_eq!(record["format"]["value"], format, "{record}");
        }
        assert_eq!(record["notes"].as_str(), backup.notes.as_deref());
        assert_eq!(
            record["verification_state"].as_str(),
            backup.verification.as_ref().map(|v| v.state.as_str())
        );
        assert_eq!(
            record["encrypted"].as_str().filter(|e| !e.is_empty()),
            backup.encrypted.as_deref()
        );
        assert!(
            record["proxmox_storage"].is_null() || record["proxmox_storage"]["name"] == storage,
            "{record}"
        );
        assert!(has_proxbox_tag(record), "{record}");
    }

    // Snapshots: every guest's snapshots, never `current`.
    let expected = expected_snapshots(&w);
    let expected_count: usize = expected.values().map(BTreeSet::len).sum();
    assert!(expected_count > 5);
    let frames = w.stream(SNAPSHOTS, "").await;
    assert_eq!(sse::complete(&frames)["result"]["count"], expected_count);
    assert_eq!(
        counts(&frames, "snapshots"),
        [expected_count as u64, 0, 0, 0, 0]
    );
    let snapshots = records(&w, "plugins/proxbox/snapshots/", &vms).await;
    assert_eq!(keys(&snapshots, "name"), expected);
    for (vmid, list) in &snapshots {
        let guest = &state.guests[vmid];
        for record in list {
            let snapshot = guest
                .snapshots
                .iter()
                .find(|s| s.name == record["name"])
                .unwrap();
            assert_eq!(record["vmid"], *vmid);
            assert_eq!(record["node"], guest.node.as_str());
            assert_eq!(record["subtype"]["value"], guest.guest_type.as_str());
            assert_eq!(record["status"]["value"], "active");
            assert_eq!(record["description"], snapshot.description.trim_end());
            assert_eq!(record["parent"].as_str(), snapshot.parent.as_deref());
            assert_eq!(record["snaptime"], rfc3339(snapshot.snaptime));
            assert!(has_proxbox_tag(record), "{record}");
        }
    }

    // A re-run writes nothing and reports every object unchanged.
    let since = now_iso();
    let frames = w.stream(BACKUPS, DELETE).await;
    assert_eq!(
        operations(&frames, "backups"),
        BTreeMap::from([("skipped".to_string(), all_backups.len())])
    );
    let frames = w.stream(SNAPSHOTS, DELETE).await;
    assert_eq!(
        operations(&frames, "snapshots"),
        BTreeMap::from([("skipped".to_string(), expected_count)])
    );
    // Targeted at one VM, only its objects are considered.
    let (vm, (vmid, _)) = vms
        .iter()
        .find(|(_, (vmid, _))| backups.contains_key(vmid) && snapshots.contains_key(vmid))
        .expect("a VM with backups and snapshots");
    let target = format!("{DELETE}&netbox_vm_ids={vm}");
    let frames = w.stream(BACKUPS, &target).await;
    assert_eq!(
        operations(&frames, "backups"),
        BTreeMap::from([("skipped".to_string(), backups[vmid].len())])
    );
    let frames = w.stream(SNAPSHOTS, &target).await;
    assert_eq!(
        operations(&frames, "snapshots"),
        BTreeMap::from([("skipped".to_string(), snapshots[vmid].len())])
    );
    let changes = changes_of(&w, &since, &vms).await;
    assert!(
        changes.is_empty(),
        "a no-op re-run changed NetBox: {changes:#?}"
    );

    // One backup goes away, one snapshot appears: exactly that changes.
    let (_, gone) = all_backups
        .iter()
        .find(|(s, b)| s == "pbs" && b.vmid.is_some_and(|v| state.guests.contains_key(&v)))
        .expect("a PBS backup of a guest");
    w.sim.delete_backup(&gone.volid).unwrap();
    let guest = state
        .guests
        .values()
        .find(|g| g.guest_type == GuestType::Qemu && !g.snapshots.is_empty())
        .expect("a QEMU guest with snapshots");
    let added = format!("added-{}", unique("s"));
    w.sim
        .add_snapshot(guest.vmid, Snapshot::new(&added, "taken by the test"))
        .unwrap();
    let since = now_iso();
    let frames = w.stream(BACKUPS, DELETE).await;
    assert_eq!(
        counts(&frames, "backups"),
        [0, 0, 1, 0, (all_backups.len() - 1) as u64]
    );
    assert_eq!(
        items_with(&frames, "backups", "deleted"),
        [gone.volid.as_str()]
    );
    let frames = w.stream(SNAPSHOTS, DELETE).await;
    assert_eq!(
        counts(&frames, "snapshots"),
        [1, 0, 0, 0, expected_count as u64]
    );
    let changes = changes_of(&w, &since, &vms).await;
    assert_eq!(changes.len(), 2, "{changes:#?}");
    let backup_change = changes
        .iter()
        .find(|c| c["changed_object_type"] == "netbox_proxbox.vmbackup")
        .expect("the backup change");
    assert_eq!(backup_change["action"]["value"], "delete");
    assert_eq!(
        backup_change["prechange_data"]["volume_id"],
        gone.volid.as_str()
    );
    let snapshot_change = changes
        .iter()
        .find(|c| c["changed_object_type"] == "netbox_proxbox.vmsnapshot")
        .expect("the snapshot change");
    assert_eq!(snapshot_change["action"]["value"], "create");
    assert_eq!(snapshot_change["postchange_data"]["name"], added.as_str());
    let backups = records(&w, "plugins/proxbox/backups/", &vms).await;
    assert_eq!(
        keys(&backups, "volume_id"),
        expected_backups(&w, &sim_backups(&w))
    );
    let snapshots = records(&w, "plugins/proxbox/snapshots/", &vms).await;
    assert_eq!(keys(&snapshots, "name"), expected_snapshots(&w));
    let record = snapshots[&guest.vmid]
        .iter()
        .find(|r| r["name"] == added.as_str())
        .unwrap();
    assert_eq!(
        record["parent"].as_str(),
        guest.snapshots.last().map(|s| s.name.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reads_delete_nothing_they_could_have_shown() {
    let _serial = SERIAL.lock().await;
    let Some(w) = world_with(estate_with_unique_snapshots(43, 24).0, |b| b).await else {
        return;
    };
    prepare(&w).await;
    let vms = vms(&w).await;
    let state = w.sim.state();
    w.stream(BACKUPS, "").await;
    w.stream(SNAPSHOTS, "").await;
    let before_backups = keys(
        &records(&w, "plugins/proxbox/backups/", &vms).await,
        "volume_id",
    );
    let before_snapshots = keys(
        &records(&w, "plugins/proxbox/snapshots/", &vms).await,
        "name",
    );

    // A shared storage whose content cannot be read, and a backup on it that went away;
    // meanwhile a backup vanished from a storage that was read completely.
    let all_backups = sim_backups(&w);
    let of_guest = |b: &Backup| b.vmid.is_some_and(|v| state.guests.contains_key(&v));
    let (failing, on_failing) = all_backups
        .iter()
        .find(|(s, b)| s != "pbs" && state.storage(s).unwrap().is_shared() && of_guest(b))
        .expect("a guest backup on a shared storage besides PBS");
    let (_, on_complete) = all_backups
        .iter()
        .find(|(s, b)| s == "pbs" && of_guest(b))
        .expect("a guest backup on PBS");
    for node in &state.nodes {
        w.sim.faults().inject(Fault::new(
            format!("/nodes/{}/storage/{failing}/content", node.name).as_str(),
            FaultKind::Status(500, "boom".into()),
        ));
    }
    w.sim.delete_backup(&on_failing.volid).unwrap();
    w.sim.delete_backup(&on_complete.volid).unwrap();
    let frames = w.stream(BACKUPS, DELETE).await;
    let unread = all_backups.iter().filter(|(s, _)| s == failing).count();
    assert_eq!(
        counts(&frames, "backups"),
        [0, 0, 1, 1, (all_backups.len() - unread - 1) as u64]
    );
    let failed = items_with(&frames, "backups", "failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].ends_with(&format!("/{failing}")), "{failed:?}");
    assert_eq!(
        items_with(&frames, "backups", "deleted"),
        [on_complete.volid.as_str()]
    );
    let mut expected = before_backups.clone();
    let vmid = on_complete.vmid.unwrap();
    expected.get_mut(&vmid).unwrap().remove(&on_complete.volid);
    expected.retain(|_, set| !set.is_empty());
    assert_eq!(
        keys(
            &records(&w, "plugins/proxbox/backups/", &vms).await,
            "volume_id"
        ),
        expected,
        "only the vanished backup of the completely read storage is gone"
    );

    // A guest whose snapshots cannot be read keeps its records, even one that went away;
    // another guest's vanished leaf snapshot is deleted.
    let with_leaf = |g: &&proxmox_sim::Guest| {
        g.snapshots.iter().any(|s| {
            !g.snapshots
                .iter()
                .any(|c| c.parent.as_ref() == Some(&s.name))
        })
    };
    let mut guests = state
        .guests
        .values()
        .filter(|g| !g.snapshots.is_empty())
        .filter(with_leaf);
    let unreadable = guests.next().expect("a guest with snapshots");
    let pruned = guests.next().expect("another guest with snapshots");
    let leaf = |g: &proxmox_sim::Guest| {
        g.snapshots
            .iter()
            .find(|s| {
                !g.snapshots
                    .iter()
                    .any(|c| c.parent.as_ref() == Some(&s.name))
            })
            .unwrap()
            .name
            .clone()
    };
    w.sim.faults().inject(Fault::new(
        format!(
            "/nodes/{}/{}/{}/snapshot",
            unreadable.node,
            unreadable.guest_type.as_str(),
            unreadable.vmid
        )
        .as_str(),
        FaultKind::Status(500, "boom".into()),
    ));
    w.sim
        .delete_snapshot(unreadable.vmid, &leaf(unreadable))
        .unwrap();
    let pruned_leaf = leaf(pruned);
    w.sim.delete_snapshot(pruned.vmid, &pruned_leaf).unwrap();
    let frames = w.stream(SNAPSHOTS, DELETE).await;
    let total: usize = before_snapshots.values().map(BTreeSet::len).sum();
    let unread = before_snapshots[&unreadable.vmid].len();
    assert_eq!(
        counts(&frames, "snapshots"),
        [0, 0, 1, 1, (total - unread - 1) as u64]
    );
    assert_eq!(items_with(&frames, "snapshots", "deleted").len(), 1);
    let mut expected = before_snapshots.clone();
    expected.get_mut(&pruned.vmid).unwrap().remove(&pruned_leaf);
    expected.retain(|_, set| !set.is_empty());
    assert_eq!(
        keys(
            &records(&w, "plugins/proxbox/snapshots/", &vms).await,
            "name"
        ),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_parent_is_cleared_and_a_guest_that_cannot_snapshot_has_none() {
    let _serial = SERIAL.lock().await;
    let Some(w) = world_with(estate_with_unique_snapshots(44, 24).0, |b| b).await else {
        return;
    };
    prepare(&w).await;
    let vms = vms(&w).await;
    w.stream(SNAPSHOTS, "").await;
    let state = w.sim.state();

    // A root snapshot with a child goes away: the child becomes a root.
    let (guest, root, child) = state
        .guests
        .values()
        .find_map(|g| {
            let root = g.snapshots.iter().find(|s| s.parent.is_none())?;
            let child = g
                .snapshots
                .iter()
                .find(|s| s.parent.as_deref() == Some(root.name.as_str()))?;
            Some((g, root.name.clone(), child.name.clone()))
        })
        .expect("a root snapshot with a child");
    let record_of = |records: &BTreeMap<u32, Vec<Value>>, vmid: u32, name: &str| {
        records[&vmid]
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no record of {vmid}/{name}"))
    };
    let before = records(&w, "plugins/proxbox/snapshots/", &vms).await;
    assert_eq!(
        record_of(&before, guest.vmid, &child)["parent"],
        root.as_str()
    );
    w.sim.delete_snapshot(guest.vmid, &root).unwrap();

    // Another guest's storage cannot snapshot: Proxmox answers 501.
    let unsupported = state
        .guests
        .values()
        .find(|g| g.vmid != guest.vmid && !g.snapshots.is_empty())
        .expect("another guest with snapshots");
    w.sim.faults().inject(Fault::new(
        format!(
            "/nodes/{}/{}/{}/snapshot",
            unsupported.node,
            unsupported.guest_type.as_str(),
            unsupported.vmid
        )
        .as_str(),
        FaultKind::Status(501, "snapshot feature is not available".into()),
    ));

    let frames = w.stream(SNAPSHOTS, DELETE).await;
    let [_, _, _, failed, _] = counts(&frames, "snapshots");
    assert_eq!(failed, 0, "a 501 is no failure");
    let after = records(&w, "plugins/proxbox/snapshots/", &vms).await;
    assert_eq!(record_of(&after, guest.vmid, &child)["parent"], Value::Null);
    assert!(
        !after[&guest.vmid]
            .iter()
            .any(|r| r["name"] == root.as_str()),
        "the deleted root is gone"
    );
    assert!(
        !after.contains_key(&unsupported.vmid),
        "a guest that cannot snapshot has none"
    );
}
