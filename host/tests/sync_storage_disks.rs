//! The storage and virtual-disks stages end to end: the simulator as Proxmox, the real
//! NetBox with the plugin, the host in between; NetBox read back record by record and
//! compared with the simulator's state.
//!
//! Needs the env file of `tests/netbox/netbox.sh`; without it each test says it is
//! skipped, unless `PROXBOX_REQUIRE_NETBOX=1`. Other tests may write to the same NetBox
//! at the same time, so change records are filtered to this world's objects.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::sse;
use common::world::{World, now_iso, operations, summary, world};
use proxmox_sim::{EndpointState, Guest, GuestType, is_disk_key, is_mp_key, parse_size, prop_get};
use serde_json::Value;

const STORAGE: &str = "/virtualization/virtual-machines/storage/create/stream";
const DISKS: &str = "/virtualization/virtual-machines/virtual-disks/create/stream";

/// Run devices, VMs, storage and virtual disks; return the storage and disk frames.
async fn sync_all(w: &World) -> (Vec<(String, Value)>, Vec<(String, Value)>) {
    w.stream("/dcim/devices/create/stream", "").await;
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    assert_eq!(
        summary(&frames, "virtual-machines")["result"]["failed"],
        0,
        "VM stage failures"
    );
    let storage = w.stream(STORAGE, "").await;
    let disks = w.stream(DISKS, "").await;
    (storage, disks)
}

/// The disks NetBox should hold for `guest`: name -> size in MiB (CD-ROMs 0; disks
/// without a size, such as passthrough devices, are not synced).
fn expected_disks(guest: &Guest) -> BTreeMap<String, u64> {
    let numbered = |key: &str, prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut out = BTreeMap::new();
    for (key, value) in &guest.config {
        let Some(value) = value.as_str() else {
            continue;
        };
        let disk = match guest.guest_type {
            GuestType::Qemu => {
                is_disk_key(key) || numbered(key, "efidisk") || numbered(key, "tpmstate")
            }
            GuestType::Lxc => key == "rootfs" || is_mp_key(key),
        };
        if !disk {
            continue;
        }
        if prop_get(value, "media") == Some("cdrom") {
            out.insert(key.clone(), 0);
        } else if let Some(bytes) = prop_get(value, "size").and_then(parse_size) {
            out.insert(key.clone(), bytes.div_ceil(1 << 20).min(2_147_483_647));
        }
    }
    out
}

/// NetBox VM id of each guest (by VMID), through the plugin's VM sync-state records.
async fn guest_vms(w: &World) -> BTreeMap<u32, u64> {
    let cluster_id = w.netbox_cluster().await["id"].as_u64().unwrap();
    let vm_ids: Vec<String> = w
        .netbox_vms(cluster_id)
        .await
        .values()
        .filter_map(|vm| vm["id"].as_u64())
        .map(|id| id.to_string())
        .collect();
    let mut out = BTreeMap::new();
    for chunk in vm_ids.chunks(50) {
        let query: Vec<(&str, String)> = chunk
            .iter()
            .map(|id| ("virtual_machine_id", id.clone()))
            .collect();
        for record in
            w.nb.client
                .list("plugins/proxbox/sync-state/virtual-machines/", &query)
                .await
                .expect("VM sync-state")
        {
            out.insert(
                u32::try_from(record["proxmox_vm_id"].as_u64().unwrap()).unwrap(),
                record["virtual_machine"]["id"].as_u64().unwrap(),
            );
        }
    }
    out
}

/// NetBox virtual disks of `vms`, by VM id and disk name.
async fn netbox_disks(w: &World, vms: &BTreeSet<u64>) -> BTreeMap<u64, BTreeMap<String, Value>> {
    let ids: Vec<String> = vms.iter().map(u64::to_string).collect();
    let mut out: BTreeMap<u64, BTreeMap<String, Value>> = BTreeMap::new();
    for chunk in ids.chunks(50) {
        let query: Vec<(&str, String)> = chunk
            .iter()
            .map(|id| ("virtual_machine_id", id.clone()))
            .collect();
        for disk in
            w.nb.client
                .list("virtualization/virtual-disks/", &query)
                .await
                .expect("virtual disks")
        {
            let vm = disk["virtual_machine"]["id"].as_u64().unwrap();
            let name = disk["name"].as_str().unwrap().to_string();
            let previous = out.entry(vm).or_default().insert(name.clone(), disk);
            assert!(previous.is_none(), "VM {vm} has two disks named {name}");
        }
    }
    out
}

/// The plugin's storage records of this world's NetBox cluster, by name.
async fn storage_records(w: &World) -> BTreeMap<String, Value> {
    let cluster_id = w.netbox_cluster().await["id"].as_u64().unwrap();
    w.nb.client
        .list(
            "plugins/proxbox/storage/",
            &[("cluster", cluster_id.to_string())],
        )
        .await
        .expect("storage records")
        .into_iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r))
        .collect()
}

/// Change records since `since` of this world's objects: its storage records, VMs and
/// disks, and records that point at those VMs or disks (sync-state rows). Other tests
/// write to the same NetBox at the same time; their changes are left out.
async fn world_changes(
    w: &World,
    since: &str,
    storages: &BTreeSet<u64>,
    vms: &BTreeSet<u64>,
    disks: &BTreeSet<u64>,
) -> Vec<Value> {
    let points_at_ours = |c: &Value| {
        let related = c["related_object_id"].as_u64();
        let data = [&c["prechange_data"], &c["postchange_data"]];
        related.is_some_and(|r| vms.contains(&r) || disks.contains(&r))
            || data.iter().any(|d| {
                d["virtual_disk"]
                    .as_u64()
                    .is_some_and(|id| disks.contains(&id))
                    || d["virtual_machine"]
                        .as_u64()
                        .is_some_and(|id| vms.contains(&id))
            })
    };
    // `World::changes_since` keeps only changes it can tie to the world's cluster or
    // VMs; a disk's sync-state row is neither, so read the change log directly.
    let all =
        w.nb.client
            .list("core/object-changes/", &[("time_after", since.to_string())])
            .await
            .expect("object changes");
    all.into_iter()
        .filter(|c| {
            let id = c["changed_object_id"].as_u64().unwrap_or_default();
            match c["changed_object_type"].as_str().unwrap_or_default() {
                "netbox_proxbox.proxmoxstorage" => storages.contains(&id),
                "virtualization.virtualmachine" => vms.contains(&id),
                "virtualization.virtualdisk" => disks.contains(&id),
                _ => points_at_ours(c),
            }
        })
        .collect()
}

/// Whether a NetBox record carries the `proxbox` tag.
fn owned(record: &Value) -> bool {
    record["tags"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["slug"] == "proxbox"))
}

/// Every disk of every guest in NetBox, with its size, and no other.
async fn assert_disks_match(w: &World, state: &EndpointState, vms: &BTreeMap<u32, u64>) {
    let ids: BTreeSet<u64> = vms.values().copied().collect();
    let disks = netbox_disks(w, &ids).await;
    for guest in state.guests.values() {
        let vm = vms
            .get(&guest.vmid)
            .unwrap_or_else(|| panic!("no NetBox VM for {}", guest.vmid));
        let expected = expected_disks(guest);
        let have: BTreeMap<String, u64> = disks
            .get(vm)
            .map(|d| {
                d.iter()
                    .map(|(name, disk)| (name.clone(), disk["size"].as_u64().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(have, expected, "disks of guest {}", guest.vmid);
        for disk in disks.get(vm).into_iter().flat_map(BTreeMap::values) {
            assert!(owned(disk), "disk without the proxbox tag: {disk}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_and_disks_land_as_in_proxmox() {
    let Some(w) = world(51, 30).await else {
        return;
    };
    let state = w.sim.state();
    let (storage_frames, disk_frames) = sync_all(&w).await;

    // Storage: one plugin record per Proxmox storage, with its type and content.
    let complete = sse::complete(&storage_frames);
    assert_eq!(
        complete["result"]["count"],
        state.storages.len(),
        "{complete}"
    );
    let s = &summary(&storage_frames, "storage")["result"];
    assert_eq!(s["created"], state.storages.len(), "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let records = storage_records(&w).await;
    let names: BTreeSet<&str> = records.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = state.storages.iter().map(|s| s.storage.as_str()).collect();
    assert_eq!(names, expected);
    for storage in &state.storages {
        let record = &records[&storage.storage];
        assert_eq!(record["storage_type"], storage.storage_type.as_str());
        assert_eq!(record["content"], storage.content.as_str());
        assert_eq!(record["shared"], storage.is_shared(), "{}", storage.storage);
        assert_eq!(record["enabled"], !storage.disable, "{}", storage.storage);
        assert_eq!(record["raw_config"]["storage"], storage.storage.as_str());
        assert!(owned(record), "{record}");
    }

    // Virtual disks: each guest's config disks, by name and size.
    let s = &summary(&disk_frames, "virtual-disks")["result"];
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["deleted"], 0, "{s}");
    let total: usize = state.guests.values().map(|g| expected_disks(g).len()).sum();
    assert_eq!(s["created"], total, "{s}");
    assert_eq!(sse::complete(&disk_frames)["result"]["count"], total);
    let vms = guest_vms(&w).await;
    assert_disks_match(&w, &state, &vms).await;

    // Each VM's disk total is the sum of its disks; each disk links its storage record.
    let cluster_id = w.netbox_cluster().await["id"].as_u64().unwrap();
    let by_id: BTreeMap<u64, Value> = w
        .netbox_vms(cluster_id)
        .await
        .into_values()
        .map(|vm| (vm["id"].as_u64().unwrap(), vm))
        .collect();
    let disks = netbox_disks(&w, &vms.values().copied().collect()).await;
    let mut disk_storage = BTreeMap::new();
    for guest in state.guests.values() {
        let vm = vms[&guest.vmid];
        let expected = expected_disks(guest);
        if !expected.is_empty() {
            assert_eq!(
                by_id[&vm]["disk"].as_u64(),
                Some(expected.values().sum::<u64>()),
                "disk total of guest {}",
                guest.vmid
            );
        }
        for (name, disk) in disks.get(&vm).into_iter().flatten() {
            let volume = guest.config[name].as_str().unwrap_or_default();
            let storage = volume
                .split(',')
                .next()
                .and_then(|v| v.split_once(':'))
                .map(|(s, _)| s)
                .filter(|s| records.contains_key(*s) && prop_get(volume, "media") != Some("cdrom"));
            disk_storage.insert(
                disk["id"].as_u64().unwrap(),
                storage.map(|s| records[s]["id"].as_u64().unwrap()),
            );
        }
    }
    let ids: Vec<String> = disk_storage.keys().map(u64::to_string).collect();
    let mut links = BTreeMap::new();
    for chunk in ids.chunks(50) {
        let query: Vec<(&str, String)> = chunk
            .iter()
            .map(|id| ("virtual_disk_id", id.clone()))
            .collect();
        for record in
            w.nb.client
                .list("plugins/proxbox/sync-state/virtual-disks/", &query)
                .await
                .expect("disk sync-state")
        {
            links.insert(
                record["virtual_disk"]["id"].as_u64().unwrap(),
                record["proxbox_storage"]["id"].as_u64(),
            );
        }
    }
    assert_eq!(links, disk_storage, "storage links of the disks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_storage_and_disks_writes_nothing() {
    let Some(w) = world(52, 30).await else {
        return;
    };
    let (storage_frames, disk_frames) = sync_all(&w).await;
    assert_eq!(summary(&storage_frames, "storage")["result"]["failed"], 0);
    assert_eq!(
        summary(&disk_frames, "virtual-disks")["result"]["failed"],
        0
    );
    let vms = guest_vms(&w).await;
    let vm_ids: BTreeSet<u64> = vms.values().copied().collect();
    let disk_ids: BTreeSet<u64> = netbox_disks(&w, &vm_ids)
        .await
        .values()
        .flat_map(|d| d.values().filter_map(|disk| disk["id"].as_u64()))
        .collect();
    let storage_ids: BTreeSet<u64> = storage_records(&w)
        .await
        .values()
        .filter_map(|r| r["id"].as_u64())
        .collect();

    let since = now_iso();
    let frames = w.stream(STORAGE, "").await;
    let ops = operations(&frames, "storage");
    assert_eq!(ops.keys().collect::<Vec<_>>(), ["skipped"], "{ops:?}");
    assert_eq!(ops["skipped"], storage_ids.len());
    assert_eq!(sse::complete(&frames)["result"]["count"], storage_ids.len());
    let frames = w.stream(DISKS, "").await;
    let ops = operations(&frames, "virtual-disks");
    assert_eq!(ops.keys().collect::<Vec<_>>(), ["skipped"], "{ops:?}");
    assert_eq!(sse::complete(&frames)["result"]["count"], disk_ids.len());
    let s = &summary(&frames, "virtual-disks")["result"];
    assert_eq!(
        (
            s["created"].as_u64(),
            s["updated"].as_u64(),
            s["deleted"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{s}"
    );
    let changes = world_changes(&w, &since, &storage_ids, &vm_ids, &disk_ids).await;
    assert!(
        changes.is_empty(),
        "a no-op re-run changed NetBox: {changes:#?}"
    );
    let changes = w.changes_since(&since).await;
    assert!(
        changes.is_empty(),
        "a no-op re-run changed the world's cluster: {changes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resized_and_a_removed_disk_are_all_that_changes() {
    let Some(w) = world(53, 30).await else {
        return;
    };
    sync_all(&w).await;
    let state = w.sim.state();
    let vms = guest_vms(&w).await;
    let vm_ids: BTreeSet<u64> = vms.values().copied().collect();
    let before = netbox_disks(&w, &vm_ids).await;

    // Resize the scsi0 of one QEMU guest; remove another synced disk of another guest.
    let resized = state
        .guests
        .values()
        .find(|g| {
            g.guest_type == GuestType::Qemu
                && expected_disks(g).get("scsi0").is_some_and(|s| *s > 0)
        })
        .expect("a QEMU guest with scsi0");
    let new_size = if expected_disks(resized)["scsi0"] == 64 * 1024 {
        "80G"
    } else {
        "64G"
    };
    let (removed_vmid, removed_key) = state
        .guests
        .values()
        .filter(|g| g.vmid != resized.vmid)
        .find_map(|g| {
            expected_disks(g)
                .into_iter()
                .find(|(key, size)| *size > 0 && key != "scsi0" && key != "rootfs")
                .map(|(key, _)| (g.vmid, key))
        })
        .expect("a guest with a second disk");
    w.sim
        .resize_disk(resized.vmid, "scsi0", new_size)
        .expect("resize");
    w.sim.mutate(|st| {
        st.guests
            .get_mut(&removed_vmid)
            .expect("guest")
            .config
            .remove(&removed_key)
    });
    let resized_id = before[&vms[&resized.vmid]]["scsi0"]["id"].as_u64().unwrap();
    let removed_id = before[&vms[&removed_vmid]][&removed_key]["id"]
        .as_u64()
        .unwrap();

    let disk_ids: BTreeSet<u64> = before
        .values()
        .flat_map(|d| d.values().filter_map(|disk| disk["id"].as_u64()))
        .collect();

    // A dry run reports exactly these two changes and makes none.
    let since = now_iso();
    let frames = w.stream(DISKS, "&dry_run=true").await;
    let ops = operations(&frames, "virtual-disks");
    assert_eq!(ops.get("updated"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("would_delete"), Some(&1), "{ops:?}");
    assert_eq!(ops.len(), 3, "{ops:?}");
    let changes = world_changes(&w, &since, &BTreeSet::new(), &vm_ids, &disk_ids).await;
    assert!(changes.is_empty(), "a dry run changed NetBox: {changes:#?}");

    let since = now_iso();
    let frames = w.stream(DISKS, "").await;
    let ops = operations(&frames, "virtual-disks");
    assert_eq!(ops.get("updated"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("deleted"), Some(&1), "{ops:?}");
    assert_eq!(
        ops.len(),
        3,
        "only one update, one delete, the rest skipped: {ops:?}"
    );

    // NetBox now matches the simulator again.
    let state = w.sim.state();
    assert_disks_match(&w, &state, &vms).await;
    let after = netbox_disks(&w, &vm_ids).await;
    assert_eq!(
        after[&vms[&resized.vmid]]["scsi0"]["size"].as_u64(),
        parse_size(new_size).map(|b| b >> 20)
    );
    assert!(!after[&vms[&removed_vmid]].contains_key(&removed_key));

    // Exactly one disk updated (its size) and one deleted; the plugin's sync-state row of
    // the deleted disk goes with it; nothing else of this world changed.
    let changes = world_changes(&w, &since, &BTreeSet::new(), &vm_ids, &disk_ids).await;
    let mut disk_changes: Vec<(String, u64)> = Vec::new();
    let mut cascaded = 0;
    for change in &changes {
        let action = change["action"]["value"].as_str().unwrap_or_default();
        let id = change["changed_object_id"].as_u64().unwrap_or_default();
        match change["changed_object_type"].as_str().unwrap_or_default() {
            "virtualization.virtualdisk" => disk_changes.push((action.to_string(), id)),
            "netbox_proxbox.proxboxvirtualdisksyncstate" => {
                assert_eq!(action, "delete", "{change:#}");
                assert_eq!(
                    change["prechange_data"]["virtual_disk"].as_u64(),
                    Some(removed_id),
                    "{change:#}"
                );
                cascaded += 1;
            }
            other => panic!("unexpected change of a {other}: {change:#}"),
        }
    }
    assert_eq!(
        cascaded, 1,
        "the deleted disk's sync-state row: {changes:#?}"
    );
    disk_changes.sort();
    assert_eq!(
        disk_changes,
        vec![
            ("delete".to_string(), removed_id),
            ("update".to_string(), resized_id)
        ],
        "{changes:#?}"
    );
    let update = changes
        .iter()
        .find(|c| c["action"]["value"] == "update")
        .expect("the update");
    let pre = &update["prechange_data"];
    let post = &update["postchange_data"];
    let changed: Vec<&String> = post
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| pre.get(k.as_str()) != Some(v) && k.as_str() != "last_updated")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed, ["size"], "{update:#}");
}
