//! The full update end to end on a 200-guest, 3-node cluster: the simulator as Proxmox,
//! the real NetBox with the plugin (`tests/netbox/netbox.sh up`), the host in between,
//! driven through `/full-update/stream` only.
//!
//! 1. Cold run: every stage reports no failure, and NetBox is read back object by object
//!    against the simulator's state (devices, cluster, VMs with their fields, disks,
//!    storage records, backups, snapshots, the `proxbox` tag on what the sync owns).
//! 2. Re-run: the host makes no NetBox write, every synced item is reported unchanged and
//!    the change log of the world's objects stays empty.
//! 3. Proxmox changes (a guest removed, one renamed, a disk resized, a backup deleted, a
//!    snapshot taken), re-run: exactly those changes land (the removed guest's VM stays:
//!    orphan deletion is opt-in), NetBox again matches, and a further run writes nothing.
//! 4. With `delete_orphans=true`: exactly the removed guest's VM goes, with what NetBox
//!    deletes along with it.
//!
//! Needs `NETBOX_URL`, `NETBOX_TOKEN_V1` and `NETBOX_TOKEN_V2_HEADER` (the env file of
//! `netbox.sh`); without them the test says it is skipped, unless
//! `PROXBOX_REQUIRE_NETBOX=1`. Other tests write to the same NetBox at the same time:
//! everything read back is filtered to this world's cluster and VMs.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::sse;
use common::world::{
    World, estate_with_unique_snapshots, now_iso, operations, summary, unique, world_with,
};
use futures::StreamExt;
use proxbox_host::netbox::Listed;
use proxbox_host::sync::apply::list_by;
use proxmox_sim::{
    Backup, EndpointState, Guest, GuestType, Snapshot, is_disk_key, is_mp_key, parse_size, prop_get,
};
use serde_json::Value;

const FULL_UPDATE: &str = "/full-update/stream";

/// Backup and snapshot pruning are opt-in; every run of this test asks for them (so the
/// no-op re-run also shows they delete nothing). VM orphan deletion (`delete_orphans`)
/// is deliberately not asked for: this is the plugin's default full update.
const PRUNE: &str = "&delete_nonexistent_backup=true&delete_nonexistent_snapshot=true";

/// The phases of a full update, in order.
const PHASES: [&str; 9] = [
    "devices",
    "storage",
    "virtual-machines",
    "virtual-disks",
    "backups",
    "snapshots",
    "node-interfaces",
    "vm-interfaces",
    "vm-ip-addresses",
];

const VM_STATE: &str = "plugins/proxbox/sync-state/virtual-machines/";
const DISKS: &str = "virtualization/virtual-disks/";
const BACKUPS: &str = "plugins/proxbox/backups/";
const SNAPSHOTS: &str = "plugins/proxbox/snapshots/";

// ---------------------------------------------------------------------------------------
// What NetBox should hold, from the simulator's state.

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

/// The VM's `disk` total: the sum of its disks; without any, Proxmox's boot disk size.
fn expected_disk_total(guest: &Guest) -> Option<u64> {
    let disks = expected_disks(guest);
    if disks.is_empty() {
        Some(guest.boot_disk_size().div_ceil(1 << 20)).filter(|&mib| mib > 0)
    } else {
        Some(disks.values().sum())
    }
}

/// NetBox's slug of a tag name (lower case, runs of other characters as one `-`).
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Tag slugs of a guest's VM: ownership, discovery, and its Proxmox tags (`a;b`, also
/// `,` or space separated, case-insensitive).
fn expected_vm_tags(guest: &Guest) -> BTreeSet<String> {
    let mut tags = BTreeSet::from([
        "proxbox".to_string(),
        format!("proxbox-discovered-{}", guest.guest_type.as_str()),
    ]);
    for tag in guest.tags().unwrap_or_default().split([';', ',', ' ']) {
        if !tag.trim().is_empty() {
            tags.insert(slug(tag.trim()));
        }
    }
    tags
}

/// The VM name of each guest: its Proxmox name (`VM n` / `CTn` without one); names
/// equal ignoring case get `" (N)"`, the lowest VMID keeping the bare name.
fn expected_names<'a>(guests: impl Iterator<Item = &'a Guest>) -> BTreeMap<u32, String> {
    let mut sorted: Vec<&Guest> = guests.collect();
    sorted.sort_by_key(|g| g.vmid);
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for guest in sorted {
        let original = guest.display_name().trim().to_string();
        let mut name = original.clone();
        let mut n = 2;
        while !taken.insert(name.to_lowercase()) {
            name = format!("{original} ({n})");
            n += 1;
        }
        out.insert(guest.vmid, name);
    }
    out
}

/// Every backup of the estate on a storage that may hold backups: (storage, backup).
fn sim_backups(state: &EndpointState) -> Vec<(String, Backup)> {
    state
        .storages
        .iter()
        .filter(|s| s.has_content("backup") && !s.disable)
        .flat_map(|s| s.backups.iter().map(|b| (s.storage.clone(), b.clone())))
        .collect()
}

/// Backup volume ids by VMID, for the VMIDs in `vmids` (the others belong to no VM).
fn expected_backups(
    state: &EndpointState,
    vmids: &BTreeSet<u32>,
) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (_, backup) in sim_backups(state) {
        if let Some(vmid) = backup.vmid.filter(|v| vmids.contains(v)) {
            out.entry(vmid).or_default().insert(backup.volid.clone());
        }
    }
    out
}

/// Snapshot names by VMID.
fn expected_snapshots<'a>(
    guests: impl Iterator<Item = &'a Guest>,
) -> BTreeMap<u32, BTreeSet<String>> {
    guests
        .filter(|g| !g.snapshots.is_empty())
        .map(|g| (g.vmid, g.snapshots.iter().map(|s| s.name.clone()).collect()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// What NetBox holds for the world.

/// The world's objects in NetBox.
struct Netbox {
    cluster: Value,
    /// Devices by name.
    devices: BTreeMap<String, Value>,
    /// VMs by VMID (through the plugin's sync-state records of this endpoint).
    vms: BTreeMap<u32, Value>,
    /// The plugin's VM sync-state records by VMID.
    states: BTreeMap<u32, Value>,
    /// Virtual disks by VM id, then name.
    disks: BTreeMap<u64, BTreeMap<String, Value>>,
    /// Storage records by name.
    storages: BTreeMap<String, Value>,
    /// Backup records by VMID.
    backups: BTreeMap<u32, Vec<Value>>,
    /// Snapshot records by VMID.
    snapshots: BTreeMap<u32, Vec<Value>>,
}

fn id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v["id"].as_u64())
}

fn tag_slugs(record: &Value) -> BTreeSet<String> {
    record["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t["slug"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn owned(record: &Value) -> bool {
    tag_slugs(record).contains("proxbox")
}

impl Netbox {
    /// Read the world's objects; `tag` is the one all its snapshot names contain.
    async fn read(w: &World, tag: &str) -> Netbox {
        let nb = &w.nb.client;
        let cluster = w.netbox_cluster().await;
        let cluster_id = id(&cluster).unwrap();
        let devices = nb
            .list("dcim/devices/", &[("cluster_id", cluster_id.to_string())])
            .await
            .expect("devices")
            .into_iter()
            .map(|d| (d["name"].as_str().unwrap().to_string(), d))
            .collect();
        let by_id: BTreeMap<u64, Value> = w
            .netbox_vms(cluster_id)
            .await
            .into_values()
            .map(|vm| (id(&vm).unwrap(), vm))
            .collect();
        let vm_ids: BTreeSet<String> = by_id.keys().map(u64::to_string).collect();
        let (mut vms, mut states) = (BTreeMap::new(), BTreeMap::new());
        for record in list_by(nb, VM_STATE, "virtual_machine_id", &vm_ids, &[])
            .await
            .expect("VM sync-state records")
            .iter()
            .map(Listed::value)
        {
            assert_eq!(
                record["proxmox_endpoint_raw_id"].as_i64(),
                Some(w.endpoint),
                "{record}"
            );
            let vmid = u32::try_from(record["proxmox_vm_id"].as_u64().unwrap()).unwrap();
            let vm = by_id[&id(&record["virtual_machine"]).unwrap()].clone();
            states.insert(vmid, record);
            let previous = vms.insert(vmid, vm);
            assert!(previous.is_none(), "two NetBox VMs of VMID {vmid}");
        }
        assert_eq!(
            vms.len(),
            by_id.len(),
            "every VM of the cluster has a sync-state record"
        );
        let mut disks: BTreeMap<u64, BTreeMap<String, Value>> = BTreeMap::new();
        for disk in list_by(nb, DISKS, "virtual_machine_id", &vm_ids, &[])
            .await
            .expect("virtual disks")
            .iter()
            .map(Listed::value)
        {
            let vm = id(&disk["virtual_machine"]).unwrap();
            let name = disk["name"].as_str().unwrap().to_string();
            let previous = disks.entry(vm).or_default().insert(name.clone(), disk);
            assert!(previous.is_none(), "VM {vm} has two disks named {name}");
        }
        let storages = nb
            .list(
                "plugins/proxbox/storage/",
                &[("cluster", cluster_id.to_string())],
            )
            .await
            .expect("storage records")
            .into_iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r))
            .collect();
        // The plugin's `virtual_machine` filter takes one value: backups are read VM by
        // VM; snapshots at once, by the tag in their names (checked to be on our VMs).
        let backups = futures::stream::iter(vms.iter().map(|(vmid, vm)| {
            let query = [("virtual_machine", id(vm).unwrap().to_string())];
            async move {
                let records = nb.list(BACKUPS, &query).await.expect("backups");
                for record in &records {
                    assert_eq!(id(&record["virtual_machine"]), id(vm), "{record}");
                }
                (*vmid, records)
            }
        }))
        .buffer_unordered(8)
        .filter(|(_, records)| std::future::ready(!records.is_empty()))
        .collect::<BTreeMap<u32, Vec<Value>>>()
        .await;
        let vmid_of: BTreeMap<u64, u32> = vms
            .iter()
            .map(|(vmid, vm)| (id(vm).unwrap(), *vmid))
            .collect();
        let mut snapshots: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
        for record in nb
            .list(SNAPSHOTS, &[("q", tag.to_string())])
            .await
            .expect("snapshots")
        {
            let vm = id(&record["virtual_machine"]).expect("a snapshot of a VM");
            let vmid = vmid_of
                .get(&vm)
                .unwrap_or_else(|| panic!("a snapshot of this world on another VM: {record}"));
            snapshots.entry(*vmid).or_default().push(record);
        }
        Netbox {
            cluster,
            devices,
            vms,
            states,
            disks,
            storages,
            backups,
            snapshots,
        }
    }

    fn vm_ids(&self) -> BTreeSet<u64> {
        self.vms.values().filter_map(id).collect()
    }

    fn disk_ids(&self) -> BTreeSet<u64> {
        self.disks
            .values()
            .flat_map(|d| d.values().filter_map(id))
            .collect()
    }

    fn device_ids(&self) -> BTreeSet<u64> {
        self.devices.values().filter_map(id).collect()
    }

    fn disk(&self, vmid: u32, name: &str) -> &Value {
        &self.disks[&id(&self.vms[&vmid]).unwrap()][name]
    }

    fn keys(records: &BTreeMap<u32, Vec<Value>>, field: &str) -> BTreeMap<u32, BTreeSet<String>> {
        records
            .iter()
            .map(|(vmid, list)| {
                (
                    *vmid,
                    list.iter()
                        .map(|r| r[field].as_str().unwrap().to_string())
                        .collect::<BTreeSet<_>>(),
                )
            })
            .filter(|(_, set)| !set.is_empty())
            .collect()
    }
}

/// NetBox holds, object by object, what `state` says, for the VMs of `guests` (the
/// estate's guests, plus guests gone from Proxmox whose VMs the sync keeps).
fn assert_matches(nb: &Netbox, state: &EndpointState, guests: &BTreeMap<u32, Guest>) {
    // The cluster.
    let cluster_id = id(&nb.cluster).unwrap();
    assert_eq!(nb.cluster["type"]["slug"], "cluster", "{}", nb.cluster);
    assert!(
        tag_slugs(&nb.cluster).is_superset(&BTreeSet::from([
            "proxbox".to_string(),
            "proxbox-discovered-cluster".to_string()
        ])),
        "{}",
        nb.cluster
    );

    // A device per node.
    let names: BTreeSet<&str> = nb.devices.keys().map(String::as_str).collect();
    let nodes: BTreeSet<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, nodes, "devices");
    for node in &state.nodes {
        let device = &nb.devices[&node.name];
        assert_eq!(device["role"]["slug"], "proxmox-node", "{device}");
        assert_eq!(
            device["device_type"]["model"], "Proxmox Generic Device",
            "{device}"
        );
        let status = if node.online { "active" } else { "offline" };
        assert_eq!(device["status"]["value"], status, "{device}");
        assert_eq!(id(&device["cluster"]), Some(cluster_id), "{device}");
        assert_eq!(
            tag_slugs(device),
            BTreeSet::from(["proxbox".to_string(), "proxbox-discovered-node".to_string()]),
            "{device}"
        );
    }

    // A VM per guest, with its fields.
    assert_eq!(
        nb.vms.keys().collect::<BTreeSet<_>>(),
        guests.keys().collect::<BTreeSet<_>>(),
        "VMs by VMID"
    );
    let names = expected_names(guests.values());
    for guest in guests.values() {
        let vm = &nb.vms[&guest.vmid];
        let what = format!("VM of guest {}: {vm}", guest.vmid);
        assert_eq!(vm["name"], names[&guest.vmid].as_str(), "{what}");
        assert_eq!(id(&vm["cluster"]), Some(cluster_id), "{what}");
        assert_eq!(id(&vm["device"]), id(&nb.devices[&guest.node]), "{what}");
        let status = if guest.status.is_running() {
            "active"
        } else {
            "offline"
        };
        assert_eq!(vm["status"]["value"], status, "{what}");
        let node_cpus = state.node(&guest.node).unwrap().cpus;
        assert_eq!(
            vm["vcpus"].as_f64(),
            Some(f64::from(guest.cpus(node_cpus))),
            "{what}"
        );
        assert_eq!(vm["memory"].as_u64(), Some(guest.memory_mib()), "{what}");
        assert_eq!(vm["disk"].as_u64(), expected_disk_total(guest), "{what}");
        let role = match guest.guest_type {
            GuestType::Qemu => "virtual-machine-qemu",
            GuestType::Lxc => "container-lxc",
        };
        assert_eq!(vm["role"]["slug"], role, "{what}");
        let state = &nb.states[&guest.vmid];
        assert_eq!(
            state["proxmox_vm_type"],
            guest.guest_type.as_str(),
            "{state}"
        );
        assert_eq!(
            state["proxmox_vm_name"],
            guest.display_name().as_str(),
            "{state}"
        );
        if !vm["virtual_machine_type"].is_null() {
            let vm_type = match guest.guest_type {
                GuestType::Qemu => "qemu-virtual-machine",
                GuestType::Lxc => "lxc-container",
            };
            assert_eq!(vm["virtual_machine_type"]["slug"], vm_type, "{what}");
        }
        assert_eq!(tag_slugs(vm), expected_vm_tags(guest), "{what}");
    }

    // A virtual disk per guest disk, with its size.
    for guest in guests.values() {
        let vm = id(&nb.vms[&guest.vmid]).unwrap();
        let have: BTreeMap<String, u64> = nb
            .disks
            .get(&vm)
            .into_iter()
            .flatten()
            .map(|(name, disk)| (name.clone(), disk["size"].as_u64().unwrap()))
            .collect();
        assert_eq!(have, expected_disks(guest), "disks of guest {}", guest.vmid);
        for disk in nb.disks.get(&vm).into_iter().flat_map(BTreeMap::values) {
            assert!(owned(disk), "disk without the proxbox tag: {disk}");
        }
    }
    assert!(
        nb.disks.keys().all(|vm| nb.vm_ids().contains(vm)),
        "disks of other VMs"
    );

    // A storage record per Proxmox storage.
    let names: BTreeSet<&str> = nb.storages.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = state.storages.iter().map(|s| s.storage.as_str()).collect();
    assert_eq!(names, expected, "storage records");
    for storage in &state.storages {
        let record = &nb.storages[&storage.storage];
        assert_eq!(
            record["storage_type"],
            storage.storage_type.as_str(),
            "{record}"
        );
        assert_eq!(record["content"], storage.content.as_str(), "{record}");
        assert_eq!(record["shared"], storage.is_shared(), "{record}");
        assert_eq!(record["enabled"], !storage.disable, "{record}");
        assert!(owned(record), "{record}");
    }

    // A backup record per backup of a guest, on its VM.
    let vmids: BTreeSet<u32> = guests.keys().copied().collect();
    let expected = expected_backups(state, &vmids);
    assert!(expected.values().map(BTreeSet::len).sum::<usize>() > 100);
    assert_eq!(Netbox::keys(&nb.backups, "volume_id"), expected, "backups");
    let storage_of: BTreeMap<String, String> = sim_backups(state)
        .into_iter()
        .map(|(s, b)| (b.volid, s))
        .collect();
    for (vmid, records) in &nb.backups {
        for record in records {
            assert_eq!(record["vmid"], *vmid, "{record}");
            assert_eq!(
                record["storage"],
                storage_of[record["volume_id"].as_str().unwrap()].as_str(),
                "{record}"
            );
            assert_eq!(
                record["subtype"]["value"],
                guests[vmid].guest_type.as_str(),
                "{record}"
            );
            assert!(owned(record), "{record}");
        }
    }

    // A snapshot record per snapshot, on its VM.
    let expected = expected_snapshots(guests.values());
    assert!(expected.values().map(BTreeSet::len).sum::<usize>() > 50);
    assert_eq!(Netbox::keys(&nb.snapshots, "name"), expected, "snapshots");
    for (vmid, records) in &nb.snapshots {
        let guest = &guests[vmid];
        for record in records {
            let snapshot = guest
                .snapshots
                .iter()
                .find(|s| s.name == record["name"])
                .unwrap();
            assert_eq!(record["vmid"], *vmid, "{record}");
            assert_eq!(record["node"], guest.node.as_str(), "{record}");
            assert_eq!(
                record["parent"].as_str(),
                snapshot.parent.as_deref(),
                "{record}"
            );
            assert!(owned(record), "{record}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The stream and NetBox's change log.

/// Run a full update; assert it completed with no failure in any phase.
async fn full_update(w: &World, extra: &str) -> Vec<(String, Value)> {
    let frames = w.stream(FULL_UPDATE, extra).await;
    let lifecycle: Vec<&str> = sse::named(&frames, "phase_summary")
        .into_iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(lifecycle, PHASES, "one phase_summary per stage, in order");
    let failed: Vec<&Value> = sse::named(&frames, "item_progress")
        .into_iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for phase in PHASES {
        let s = summary(&frames, phase);
        assert_eq!(s["result"]["failed"], 0, "{s}");
    }
    let errors = sse::named(&frames, "error_detail");
    assert!(errors.is_empty(), "{errors:#?}");
    frames
}

/// `[created, updated, deleted, failed, skipped]` of a phase.
fn counts(frames: &[(String, Value)], phase: &str) -> [u64; 5] {
    let r = &summary(frames, phase)["result"];
    ["created", "updated", "deleted", "failed", "skipped"].map(|k| r[k].as_u64().unwrap())
}

/// The `item_progress` frames of a phase.
fn items<'a>(frames: &'a [(String, Value)], phase: &str) -> Vec<&'a Value> {
    sse::named(frames, "item_progress")
        .into_iter()
        .filter(|i| i["phase"] == phase)
        .collect()
}

/// The messages of the items of a phase skipped for another reason than being unchanged.
fn skips(frames: &[(String, Value)], phase: &str) -> Vec<String> {
    items(frames, phase)
        .iter()
        .filter(|i| i["operation"] == "skipped")
        .map(|i| i["message"].as_str().unwrap().to_string())
        .filter(|m| !m.ends_with(" unchanged"))
        .collect()
}

/// How many items of a phase were reported unchanged (not skipped for another reason).
fn unchanged(frames: &[(String, Value)], phase: &str) -> usize {
    items(frames, phase)
        .iter()
        .filter(|i| {
            i["operation"] == "skipped" && i["message"].as_str().unwrap().ends_with(" unchanged")
        })
        .count()
}

/// The host's own count of NetBox write requests in a full update.
fn netbox_writes(frames: &[(String, Value)]) -> u64 {
    sse::complete(frames)["result"]["netbox_requests"]["writes"]
        .as_u64()
        .expect("netbox_requests.writes")
}

/// Change records since `since` of the world's objects: its cluster, devices, VMs and
/// disks, and every record pointing at them (storage records, sync-state records,
/// backups, snapshots). `nb` is what NetBox held before the changes (so deleted objects
/// are still known); objects created since are found by what they point at.
async fn world_changes(w: &World, since: &str, nb: &Netbox) -> Vec<Value> {
    let cluster = id(&nb.cluster).unwrap();
    let (vms, disks, devices) = (nb.vm_ids(), nb.disk_ids(), nb.device_ids());
    let points_at_ours = |data: &Value| {
        id(&data["cluster"]) == Some(cluster)
            || id(&data["virtual_machine"]).is_some_and(|vm| vms.contains(&vm))
            || id(&data["virtual_disk"]).is_some_and(|d| disks.contains(&d))
            || id(&data["device"]).is_some_and(|d| devices.contains(&d))
    };
    w.nb.client
        .list("core/object-changes/", &[("time_after", since.to_string())])
        .await
        .expect("object changes")
        .into_iter()
        .filter(|c| {
            let object = c["changed_object_id"].as_u64().unwrap_or_default();
            let ours = match c["changed_object_type"].as_str().unwrap_or_default() {
                "virtualization.cluster" => object == cluster,
                "virtualization.virtualmachine" => vms.contains(&object),
                "virtualization.virtualdisk" => disks.contains(&object),
                "dcim.device" => devices.contains(&object),
                _ => false,
            };
            ours || points_at_ours(&c["prechange_data"]) || points_at_ours(&c["postchange_data"])
        })
        .collect()
}

/// `(object type, object id, action)` of change records.
fn change_set(changes: &[Value]) -> BTreeSet<(String, u64, String)> {
    changes
        .iter()
        .map(|c| {
            (
                c["changed_object_type"].as_str().unwrap().to_string(),
                c["changed_object_id"].as_u64().unwrap(),
                c["action"]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The fields an update change record changed (`last_updated` aside).
fn changed_fields(change: &Value) -> Vec<String> {
    let pre = &change["prechange_data"];
    change["postchange_data"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| pre.get(k.as_str()) != Some(v) && k.as_str() != "last_updated")
        .map(|(k, _)| k.clone())
        .collect()
}

/// A guest whose (case-insensitive) name no other guest has.
fn uniquely_named(state: &EndpointState, guest: &Guest) -> bool {
    let name = guest.display_name().to_lowercase();
    state
        .guests
        .values()
        .filter(|g| g.display_name().to_lowercase() == name)
        .count()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_update_of_200_guests_lands_then_reruns_idle_then_lands_exactly_the_changes() {
    let (estate, tag) = estate_with_unique_snapshots(61, 200);
    let Some(w) = world_with(estate, |b| b).await else {
        return;
    };
    let state = w.sim.state();
    assert_eq!(state.nodes.len(), 3);
    assert_eq!(state.guests.len(), 200);

    // 1. Cold: everything is created, nothing fails, NetBox matches object by object.
    let started = std::time::Instant::now();
    let frames = full_update(&w, PRUNE).await;
    eprintln!("cold full update: {:?}", started.elapsed());
    let disk_total: usize = state.guests.values().map(|g| expected_disks(g).len()).sum();
    let vmids: BTreeSet<u32> = state.guests.keys().copied().collect();
    let backup_total: usize = expected_backups(&state, &vmids)
        .values()
        .map(BTreeSet::len)
        .sum();
    let snapshot_total: usize = state.guests.values().map(|g| g.snapshots.len()).sum();
    let all_backups = sim_backups(&state).len();
    assert_eq!(counts(&frames, "devices")[0], state.nodes.len() as u64);
    assert_eq!(counts(&frames, "storage")[0], state.storages.len() as u64);
    assert_eq!(
        counts(&frames, "virtual-machines")[0],
        200,
        "{:#?}",
        skips(&frames, "virtual-machines")
    );
    assert_eq!(
        counts(&frames, "virtual-disks")[0],
        disk_total as u64,
        "{:#?}",
        skips(&frames, "virtual-disks")
    );
    assert_eq!(
        counts(&frames, "backups"),
        [
            backup_total as u64,
            0,
            0,
            0,
            (all_backups - backup_total) as u64
        ]
    );
    assert_eq!(
        counts(&frames, "snapshots"),
        [snapshot_total as u64, 0, 0, 0, 0]
    );

    let nb = Netbox::read(&w, &tag).await;
    assert_matches(&nb, &state, &state.guests);

    // 2. Re-run: no NetBox write, every synced object reported unchanged.
    let since = now_iso();
    w.sim.reset_counters();
    let started = std::time::Instant::now();
    let frames = full_update(&w, PRUNE).await;
    eprintln!("no-op full update: {:?}", started.elapsed());
    // The six stages share one read of the estate: the inventory and each guest's
    // config are read once per run.
    assert_eq!(w.sim.request_count("/cluster/resources"), 1);
    for guest in state.guests.values() {
        let config = format!(
            "/nodes/{}/{}/{}/config",
            guest.node,
            guest.guest_type.as_str(),
            guest.vmid
        );
        assert_eq!(w.sim.request_count(&config), 1, "{config}");
    }
    assert_eq!(
        netbox_writes(&frames),
        0,
        "a no-op full update wrote to NetBox"
    );
    for phase in PHASES {
        let ops = operations(&frames, phase);
        assert_eq!(
            ops.keys().collect::<Vec<_>>(),
            ["skipped"],
            "{phase}: {ops:?}"
        );
        let [created, updated, deleted, failed, _] = counts(&frames, phase);
        assert_eq!([created, updated, deleted, failed], [0; 4], "{phase}");
    }
    for (phase, synced) in [
        ("devices", state.nodes.len()),
        ("storage", state.storages.len()),
        ("virtual-machines", 200),
        ("virtual-disks", disk_total),
        ("backups", backup_total),
        ("snapshots", snapshot_total),
    ] {
        assert_eq!(
            unchanged(&frames, phase),
            synced,
            "{phase} reported unchanged; other skips: {:#?}",
            skips(&frames, phase)
        );
    }
    let changes = world_changes(&w, &since, &nb).await;
    assert!(
        changes.is_empty(),
        "a no-op full update changed NetBox: {changes:#?}"
    );

    // 3. Proxmox changes: a guest goes away, one is renamed, a disk grows, a backup is
    //    deleted, a snapshot is taken. Guests with names of their own, so that no
    //    duplicate-name suffix moves.
    let mut candidates = state
        .guests
        .values()
        .filter(|g| !g.template && uniquely_named(&state, g));
    let with_backups = expected_backups(&state, &vmids);
    let removed = candidates
        .by_ref()
        .find(|g| !g.snapshots.is_empty() && with_backups.contains_key(&g.vmid))
        .expect("a guest with backups and snapshots")
        .clone();
    let renamed = candidates.next().expect("a guest to rename").vmid;
    let resized = state
        .guests
        .values()
        .filter(|g| g.vmid != removed.vmid && g.vmid != renamed)
        .find(|g| {
            g.guest_type == GuestType::Qemu
                && expected_disks(g).get("scsi0").is_some_and(|s| *s > 0)
        })
        .expect("a QEMU guest with scsi0")
        .vmid;
    let new_size = if expected_disks(&state.guests[&resized])["scsi0"] == 100 * 1024 {
        "120G"
    } else {
        "100G"
    };
    let (_, gone) = sim_backups(&state)
        .into_iter()
        .find(|(_, b)| {
            b.vmid
                .is_some_and(|v| v != removed.vmid && state.guests.contains_key(&v))
        })
        .expect("a backup of another guest");
    let snapped = state
        .guests
        .values()
        .find(|g| {
            ![removed.vmid, renamed, resized].contains(&g.vmid)
                && !g.template
                && !g.snapshots.is_empty()
        })
        .expect("a guest with snapshots")
        .vmid;
    let new_name = unique("renamed");
    let new_snapshot = format!("added-{tag}");
    w.sim.remove_guest(removed.vmid).unwrap();
    w.sim.rename_guest(renamed, &new_name).unwrap();
    w.sim.resize_disk(resized, "scsi0", new_size).unwrap();
    w.sim.delete_backup(&gone.volid).unwrap();
    w.sim
        .add_snapshot(snapped, Snapshot::new(&new_snapshot, "taken by the test"))
        .unwrap();

    let since = now_iso();
    let started = std::time::Instant::now();
    let frames = w.stream(FULL_UPDATE, PRUNE).await;
    eprintln!("full update after the changes: {:?}", started.elapsed());
    let after = Netbox::read(&w, &tag).await;

    // The rename lands; the resized guest's VM is not written by the VM stage (NetBox
    // keeps a VM's `disk` equal to the sum of its virtual disks), only its disk is.
    let failed: Vec<&Value> = sse::named(&frames, "item_progress")
        .into_iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(counts(&frames, "virtual-machines"), [0, 1, 0, 0, 198]);
    let errors = sse::named(&frames, "error_detail");
    assert!(errors.is_empty(), "{errors:#?}");

    // The other phases: exactly the changes, everything else unchanged.
    assert_eq!(counts(&frames, "devices"), [0, 0, 0, 0, 3]);
    assert_eq!(
        counts(&frames, "storage"),
        [0, 0, 0, 0, state.storages.len() as u64]
    );
    // Only the disks of guests still in Proxmox are items; the removed guest's stay.
    let removed_disks = expected_disks(&removed).len();
    assert_eq!(
        counts(&frames, "virtual-disks")[..4],
        [0, 1, 0, 0],
        "{:#?}",
        summary(&frames, "virtual-disks")
    );
    assert_eq!(
        unchanged(&frames, "virtual-disks"),
        disk_total - removed_disks - 1,
        "{:#?}",
        skips(&frames, "virtual-disks")
    );
    // The removed guest's backups are still on their storages and still belong to its
    // VM: unchanged. One backup is gone: deleted.
    assert_eq!(
        counts(&frames, "backups"),
        [0, 0, 1, 0, (all_backups - 1) as u64]
    );
    let deleted: Vec<&str> = items(&frames, "backups")
        .into_iter()
        .filter(|i| i["operation"] == "deleted")
        .map(|i| i["item"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, [gone.volid.as_str()]);
    // The removed guest's snapshots are not read (so kept); one snapshot is new.
    let snapshots_left = snapshot_total - removed.snapshots.len();
    assert_eq!(
        counts(&frames, "snapshots"),
        [1, 0, 0, 0, snapshots_left as u64]
    );

    // NetBox's change log of the world: exactly these changes (the removed guest's VM,
    // disks, backups and snapshots are untouched; NetBox recomputes the resized guest's
    // VM `disk` total from its disks without a change record of its own). The renamed
    // VM's sync-state record keeps the new Proxmox name: the evidence by which the sync
    // tells a Proxmox rename from an operator's NetBox edit.
    let changes = world_changes(&w, &since, &nb).await;
    let snapshot_id = after.snapshots[&snapped]
        .iter()
        .find(|s| s["name"] == new_snapshot.as_str())
        .and_then(id)
        .expect("the new snapshot record");
    let backup_id = nb.backups[&gone.vmid.unwrap()]
        .iter()
        .find(|b| b["volume_id"] == gone.volid.as_str())
        .and_then(id)
        .unwrap();
    let change = |kind: &str, id: u64, action: &str| (kind.to_string(), id, action.to_string());
    let disk_id = id(nb.disk(resized, "scsi0")).unwrap();
    let renamed_vm = id(&nb.vms[&renamed]).unwrap();
    let renamed_state = id(&nb.states[&renamed]).unwrap();
    let expected = BTreeSet::from([
        change("virtualization.virtualdisk", disk_id, "update"),
        change("virtualization.virtualmachine", renamed_vm, "update"),
        change(
            "netbox_proxbox.proxboxvirtualmachinesyncstate",
            renamed_state,
            "update",
        ),
        change("netbox_proxbox.vmbackup", backup_id, "delete"),
        change("netbox_proxbox.vmsnapshot", snapshot_id, "create"),
    ]);
    assert_eq!(change_set(&changes), expected, "{changes:#?}");
    assert_eq!(changes.len(), expected.len(), "{changes:#?}");
    for change in changes.iter().filter(|c| c["action"]["value"] == "update") {
        let object = (
            change["changed_object_type"].as_str().unwrap_or_default(),
            change["changed_object_id"].as_u64(),
        );
        let expected = match object {
            ("virtualization.virtualdisk", Some(id)) if id == disk_id => "size",
            ("virtualization.virtualmachine", Some(id)) if id == renamed_vm => "name",
            _ => "proxmox_vm_name",
        };
        assert_eq!(changed_fields(change), [expected], "{change:#}");
    }
    assert_eq!(
        after.disk(resized, "scsi0")["size"].as_u64(),
        parse_size(new_size).map(|b| b >> 20)
    );

    // The next full update writes nothing.
    let since = now_iso();
    let frames = full_update(&w, PRUNE).await;
    for phase in PHASES {
        assert_eq!(counts(&frames, phase)[..4], [0, 0, 0, 0], "{phase}");
    }
    let changes = world_changes(&w, &since, &after).await;
    assert!(changes.is_empty(), "{changes:#?}");

    // NetBox matches the simulator again, the removed guest's objects as they were.
    let after = Netbox::read(&w, &tag).await;
    let state = w.sim.state();
    let mut guests = state.guests.clone();
    guests.insert(removed.vmid, removed.clone());
    assert_matches(&after, &state, &guests);
    assert_eq!(after.vms[&renamed]["name"], new_name.as_str());
    assert_eq!(after.vms[&removed.vmid]["id"], nb.vms[&removed.vmid]["id"]);
    assert_eq!(
        after.vms[&removed.vmid]["last_updated"],
        nb.vms[&removed.vmid]["last_updated"]
    );

    // 4. Orphan deletion is opt-in: with `delete_orphans=true` the removed guest's VM is
    //    deleted, and NetBox deletes what hangs on it (its disks, interfaces, backup and
    //    snapshot records, and their sync-state records) — nothing else changes.
    let gone_interfaces: Vec<u64> =
        w.nb.client
            .list(
                "virtualization/interfaces/",
                &[(
                    "virtual_machine_id",
                    id(&after.vms[&removed.vmid]).unwrap().to_string(),
                )],
            )
            .await
            .expect("VM interfaces")
            .iter()
            .filter_map(id)
            .collect();
    // NetBox clears a VM's primary IP (an update) when the IP goes with its interface.
    let had_primary_ip =
        w.nb.client
            .list(
                "virtualization/virtual-machines/",
                &[("id", id(&after.vms[&removed.vmid]).unwrap().to_string())],
            )
            .await
            .expect("VM")
            .iter()
            .any(|vm| !vm["primary_ip4"].is_null() || !vm["primary_ip6"].is_null());
    let since = now_iso();
    let frames = full_update(&w, &format!("{PRUNE}&delete_orphans=true")).await;
    assert_eq!(counts(&frames, "virtual-machines"), [0, 0, 1, 0, 199]);
    let deleted: Vec<&Value> = items(&frames, "virtual-machines")
        .into_iter()
        .filter(|i| i["operation"] == "deleted")
        .collect();
    assert_eq!(
        deleted[0]["item"]["netbox_id"],
        id(&nb.vms[&removed.vmid]).unwrap()
    );
    assert_eq!(
        counts(&frames, "backups"),
        [0, 0, 0, 0, (all_backups - 1) as u64],
        "the removed guest's backups now belong to no VM"
    );
    assert_eq!(
        counts(&frames, "snapshots"),
        [0, 0, 0, 0, snapshots_left as u64 + 1]
    );
    for phase in ["devices", "storage", "virtual-disks"] {
        assert_eq!(counts(&frames, phase)[..3], [0, 0, 0], "{phase}");
    }
    let changes = world_changes(&w, &since, &after).await;
    let gone_vm = id(&after.vms[&removed.vmid]).unwrap();
    let gone_disks: BTreeSet<u64> = after.disks[&gone_vm].values().filter_map(id).collect();
    let mut expected = BTreeSet::from([change("virtualization.virtualmachine", gone_vm, "delete")]);
    expected.extend(
        gone_disks
            .iter()
            .map(|d| change("virtualization.virtualdisk", *d, "delete")),
    );
    expected.extend(
        gone_interfaces
            .iter()
            .map(|i| change("virtualization.vminterface", *i, "delete")),
    );
    if had_primary_ip {
        expected.insert(change("virtualization.virtualmachine", gone_vm, "update"));
    }
    for (kind, records) in [
        ("netbox_proxbox.vmbackup", &after.backups[&removed.vmid]),
        ("netbox_proxbox.vmsnapshot", &after.snapshots[&removed.vmid]),
    ] {
        expected.extend(
            records
                .iter()
                .map(|r| change(kind, id(r).unwrap(), "delete")),
        );
    }
    let (sync_state, others): (Vec<Value>, Vec<Value>) = changes.into_iter().partition(|c| {
        c["changed_object_type"]
            .as_str()
            .unwrap()
            .contains("syncstate")
    });
    assert_eq!(change_set(&others), expected, "{others:#?}");
    assert_eq!(others.len(), expected.len(), "{others:#?}");
    // One sync-state record of the VM and one of each of its disks.
    assert_eq!(sync_state.len(), 1 + gone_disks.len(), "{sync_state:#?}");
    for change in &sync_state {
        let pre = &change["prechange_data"];
        assert_eq!(change["action"]["value"], "delete", "{change:#}");
        assert!(
            id(&pre["virtual_machine"]) == Some(gone_vm)
                || id(&pre["virtual_disk"]).is_some_and(|d| gone_disks.contains(&d)),
            "{change:#}"
        );
    }
    let after = Netbox::read(&w, &tag).await;
    assert_matches(&after, &state, &state.guests);
}

/// `stages` runs only the named stages, in the full update's order whatever the order
/// asked; an unknown name is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_update_runs_only_the_stages_asked_for() {
    let Some(w) = common::world::world(67, 6).await else {
        return;
    };
    let frames = w
        .stream(FULL_UPDATE, "&stages=virtual_machines,devices")
        .await;
    let announced: Vec<&str> = sse::named(&frames, "discovery")
        .into_iter()
        .find(|d| d["phase"] == "full-update")
        .expect("the full update's discovery frame")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(announced, ["devices", "virtual-machines"]);
    let ran: Vec<&str> = sse::named(&frames, "phase_summary")
        .into_iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["devices", "virtual-machines"]);
    let result = &sse::complete(&frames)["result"];
    assert_eq!(
        result["virtual_machines_count"],
        w.sim.state().guests.len(),
        "{result}"
    );
    assert!(result.get("virtual_disks").is_none(), "{result}");

    let answer = w
        .server
        .call(
            reqwest::Method::GET,
            &format!(
                "{FULL_UPDATE}?proxmox_endpoint_ids={}&stages=devices,vms",
                w.endpoint
            ),
            None,
        )
        .await;
    assert_eq!(
        answer.status,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert!(answer.text.contains("vms"), "{}", answer.text);
    assert!(answer.text.contains("virtual_machines"), "{}", answer.text);
}
