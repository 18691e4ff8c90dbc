//! Stage `snapshots` (contract §7.9): the snapshots of every guest that is a NetBox VM
//! become the plugin's snapshot records (`/api/plugins/proxbox/snapshots/`), matched by
//! `(NetBox VM, name)`; Proxmox's `current` pseudo-snapshot is never one. A guest is tied
//! to its NetBox VM by the plugin's sync-state records; guests that are not in NetBox are
//! skipped (their snapshots are not read). A snapshot's `proxmox_storage` is the plugin's
//! storage record of the guest's first disk, when the guest's config could be read.
//!
//! With `delete_nonexistent_snapshot=true` a record is deleted only when its VM's
//! snapshots were read in this run (and the VM is in `netbox_vm_ids`, when given),
//! Proxmox no longer lists its name, and it carries the `proxbox` tag.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use serde_json::{Map, Value, json};

use super::apply::per_vm_spec;
use super::backups::{
    Owners, Reconciled, RecordKind, StorageLinks, canonical_time, delete_reported, endpoint_id,
    has_owner_tag, missing_plugin, netbox_failure, reconcile_records, wanted_vms,
};
use super::devices::tag_ids;
use super::mapping::{self, map_batch};
use super::report::{Item, Outcome, Phase};
use super::resolve::ensure_tags;
use super::{EndpointRead, StageSummary, SyncRun, read_inventories};
use crate::events::{EventSink, Failure};
use crate::mapper::v1::{DesiredSnapshot, GuestType};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::Listed;
use crate::netbox::reconcile::{Desired, normalise};
use crate::normalize;
use crate::proxmox::inventory::read_snapshots;
use crate::proxmox::models::{ClusterResource, GuestConfig, GuestKind, Snapshot};

/// Stage and phase name.
pub const PHASE: &str = "snapshots";

/// The plugin's snapshot records (relative to `/api/`).
pub const SNAPSHOT_PATH: &str = "plugins/proxbox/snapshots/";

/// Fields of a snapshot record the sync owns.
const OWNED: [&str; 11] = [
    "virtual_machine",
    "name",
    "description",
    "vmid",
    "node",
    "snaptime",
    "parent",
    "subtype",
    "status",
    "proxmox_storage",
    "tags",
];

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    if let Some(failure) = missing_plugin(run, sink, PHASE) {
        return Err(failure);
    }
    let mut reads = read_inventories(run, sink, PHASE).await;
    if let Some(only) = &run.options.only_guest {
        reads.retain(|r| only.in_cluster(&r.inventory.name) || only.in_cluster(&r.session.name));
    }
    let owners = Owners::read(run)
        .await
        .map_err(|e| netbox_failure(sink, PHASE, e))?;
    let wanted = wanted_vms(run);
    let guests: Vec<GuestRead<'_>> = join_all(
        reads
            .iter()
            .map(|read| read_endpoint(run, read, &owners, wanted.as_ref())),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let dry_run = run.options.dry_run;

    // Normalise and map every snapshot read.
    let mut found: Vec<Found> = Vec::new();
    let mut inputs = Vec::new();
    let mut input_of = Vec::new();
    for (index, guest) in guests.iter().enumerate() {
        let Ok(snapshots) = &guest.snapshots else {
            continue;
        };
        let node = guest.resource.node.clone().unwrap_or_default();
        let guest_type = match guest.kind {
            GuestKind::Qemu => GuestType::Qemu,
            GuestKind::Lxc => GuestType::Lxc,
        };
        for snapshot in snapshots {
            if let Some(only) = &run.options.only_guest
                && only
                    .snapshot
                    .as_ref()
                    .is_some_and(|name| snapshot.name != *name)
            {
                continue;
            }
            let desired = match normalize::snapshot(&snapshot.raw, guest.vmid(), guest_type, &node)
            {
                Ok(input) => {
                    let ctx = mapping::context(guest.read.session, &node, &run.params, &run.now);
                    inputs.push((ctx, MapInput::Snapshot(input)));
                    input_of.push(found.len());
                    Err("not mapped".to_string())
                }
                Err(e) => Err(format!("invalid Proxmox data: {e}")),
            };
            found.push(Found {
                guest: index,
                name: snapshot.name.clone(),
                desired,
            });
        }
    }
    for (index, result) in input_of
        .into_iter()
        .zip(map_batch(run.mappers.clone(), Kind::Snapshot, inputs).await)
    {
        found[index].desired = match result {
            Ok(Some(MapOutput::Snapshot(snapshot))) => Ok(Some(snapshot)),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err("the mapper returned another kind".into()),
            Err(e) => Err(e.to_string()),
        };
    }

    // Report guests that cannot be synced and snapshots that cannot; collect the rest.
    let unsynced: Vec<(usize, Outcome)> = guests
        .iter()
        .enumerate()
        .filter_map(|(index, g)| match (&g.vm, &g.snapshots) {
            (Err(why), _) => Some((index, Outcome::Skipped(why.clone()))),
            (Ok(_), Err(why)) => Some((
                index,
                Outcome::Failed(format!("cannot read its snapshots: {why}")),
            )),
            (Ok(_), Ok(_)) => None,
        })
        .collect();
    let mut items: Vec<Item> = unsynced
        .iter()
        .map(|(index, _)| Item::new(guests[*index].label(), "vm"))
        .collect();
    items.extend(found.iter().map(|f| {
        Item::new(
            format!("{}: {}", guests[f.guest].label(), f.name),
            "snapshot",
        )
    }));
    let mut phase = Phase::start(sink, PHASE, "snapshot", &items, dry_run);
    for (item, (_, outcome)) in items.iter().zip(&unsynced) {
        phase.item(item, outcome.clone());
    }
    let item_of = |i: usize| &items[unsynced.len() + i];
    let mut wants: Vec<(usize, &DesiredSnapshot, u64)> = Vec::new();
    for (index, f) in found.iter().enumerate() {
        match (&f.desired, &guests[f.guest].vm) {
            (Err(e), _) => phase.item(item_of(index), Outcome::Failed(e.clone())),
            (Ok(None), _) => phase.item(
                item_of(index),
                Outcome::Skipped("the mapper does not sync it".into()),
            ),
            (Ok(Some(desired)), Ok(vm)) => wants.push((index, desired, *vm)),
            (Ok(Some(_)), Err(why)) => phase.item(item_of(index), Outcome::Skipped(why.clone())),
        }
    }

    // Related objects: tags and the plugin's storage records.
    let netbox = &run.netbox;
    let tag_names: BTreeSet<String> = wants
        .iter()
        .flat_map(|(_, d, _)| d.tags.iter().cloned())
        .collect();
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let want_vms: BTreeSet<u64> = wants.iter().map(|(_, _, vm)| *vm).collect();
    let links = StorageLinks::read(netbox, &want_vms)
        .await
        .map_err(|e| netbox_failure(sink, PHASE, e))?;

    // The records of the VMs whose snapshots were read.
    let mut seen: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for guest in &guests {
        if let (Ok(vm), Ok(snapshots)) = (&guest.vm, &guest.snapshots) {
            seen.entry(*vm)
                .or_default()
                .extend(snapshots.iter().map(|s| s.name.as_str()));
        }
    }
    for (_, d, vm) in &wants {
        seen.entry(*vm).or_default().insert(d.name.as_str());
    }
    let deleting = run.options.delete_nonexistent_snapshot;
    let listed_vms: BTreeSet<u64> = if deleting {
        seen.keys().copied().collect()
    } else {
        want_vms.clone()
    };
    let desired: Vec<Desired> = wants
        .iter()
        .map(|(found_index, d, vm)| {
            let proxmox_storage =
                guests[found[*found_index].guest]
                    .storage
                    .as_ref()
                    .map(|storage| {
                        storage
                            .as_deref()
                            .and_then(|name| links.storage_of(*vm, name))
                    });
            Desired {
                identity: Some(vec![json!(vm), json!(d.name)]),
                payload: payload(d, *vm, proxmox_storage, &tags),
            }
        })
        .collect();
    let spec = per_vm_spec(SNAPSHOT_PATH, "name", &OWNED);
    let Reconciled {
        existing,
        count,
        matched,
    } = reconcile_records(
        run,
        &mut phase,
        RecordKind {
            spec: &spec,
            also: &["virtual_machine", "name"],
            time_field: "snaptime",
        },
        &desired,
        &listed_vms,
        |index| item_of(wants[index].0),
    )
    .await
    .map_err(|e| netbox_failure(sink, PHASE, e))?;

    if deleting {
        let doomed: Vec<(u64, String)> = existing
            .iter()
            .map(Listed::value)
            .filter_map(|record| {
                let id = record.get("id").and_then(Value::as_u64)?;
                let name = record.get("name").and_then(Value::as_str)?;
                let vm = record.get("virtual_machine").map(normalise)?.as_u64()?;
                let names = seen.get(&vm)?;
                (!matched.contains(&id) && !names.contains(name) && has_owner_tag(&record)).then(
                    || {
                        let vm_name = record
                            .pointer("/virtual_machine/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        (id, format!("{vm_name}: {name}"))
                    },
                )
            })
            .collect();
        delete_reported(
            netbox,
            &mut phase,
            SNAPSHOT_PATH,
            "snapshot",
            doomed,
            dry_run,
        )
        .await;
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// A guest of an endpoint, its NetBox VM and its snapshots.
struct GuestRead<'a> {
    /// The endpoint's read.
    read: &'a EndpointRead<'a>,
    /// The `/cluster/resources` entry.
    resource: ClusterResource,
    /// QEMU or LXC.
    kind: GuestKind,
    /// The NetBox VM, or why there is none.
    vm: Result<u64, String>,
    /// Its snapshots (never `current`), or why they were not read.
    snapshots: Result<Vec<Snapshot>, String>,
    /// Storage of its first disk (`Some(None)`: none), when its config was read.
    storage: Option<Option<String>>,
}

impl GuestRead<'_> {
    fn vmid(&self) -> u32 {
        self.resource.vmid.unwrap_or_default()
    }

    /// `qemu/100 name`, for reports.
    fn label(&self) -> String {
        let name = self.resource.name.clone().unwrap_or_default();
        format!("{}/{} {name}", self.kind.path(), self.vmid())
            .trim_end()
            .to_string()
    }
}

/// One snapshot read from Proxmox, on its way to NetBox.
struct Found {
    /// Index of its guest.
    guest: usize,
    /// Its name.
    name: String,
    /// The mapper's record (`None`: not to be synced), or why there is none.
    desired: Result<Option<DesiredSnapshot>, String>,
}

/// The guests of one endpoint that the options select, with the snapshots (and first
/// disk storage) of those that are NetBox VMs.
async fn read_endpoint<'a>(
    run: &SyncRun,
    read: &'a EndpointRead<'a>,
    owners: &Owners,
    wanted: Option<&BTreeSet<u64>>,
) -> Vec<GuestRead<'a>> {
    let endpoint = endpoint_id(read);
    let mut guests = Vec::new();
    for resource in &read.inventory.guests {
        let mode = if resource.template {
            run.options.sync_mode_vm_template
        } else {
            run.options.sync_mode_vm
        };
        if !mode.enabled() {
            continue;
        }
        let kind = resource.guest_kind().unwrap_or(GuestKind::Qemu);
        if let Some(only) = &run.options.only_guest
            && !only.is_guest(resource.vmid, kind.path())
        {
            continue;
        }
        let vm = owners.resolve(
            endpoint,
            &read.inventory.name,
            resource.vmid.unwrap_or_default(),
            Some(kind.path()),
        );
        if wanted.is_some_and(|w| !vm.as_ref().is_ok_and(|vm| w.contains(vm))) {
            continue;
        }
        guests.push(GuestRead {
            read,
            resource: resource.clone(),
            kind,
            vm,
            snapshots: Err("its snapshots were not read".into()),
            storage: None,
        });
    }
    let client = &read.session.client;
    let mut inventory = read.inventory.clone();
    let targets: BTreeSet<u32> = guests
        .iter()
        .filter(|g| g.vm.is_ok())
        .map(GuestRead::vmid)
        .collect();
    inventory
        .guests
        .retain(|g| targets.contains(&g.vmid.unwrap_or_default()));
    let (snapshots, completeness) = read_snapshots(client, &inventory).await;
    let mut snapshots: BTreeMap<u32, Vec<Snapshot>> = snapshots
        .into_iter()
        .map(|(resource, list)| (resource.vmid.unwrap_or_default(), list))
        .collect();
    let with_snapshots: Vec<&ClusterResource> = inventory
        .guests
        .iter()
        .filter(|g| {
            snapshots
                .get(&g.vmid.unwrap_or_default())
                .is_some_and(|s| !s.is_empty())
        })
        .collect();
    let configs = run.proxmox.configs(read.session, &with_snapshots).await;
    let mut storages: BTreeMap<u32, Option<String>> = with_snapshots
        .into_iter()
        .zip(configs)
        .filter_map(|(resource, config)| {
            let config = config.and_then(|text| text.parse()).ok()?;
            let storage = first_disk_storage(resource, &config);
            Some((resource.vmid.unwrap_or_default(), storage))
        })
        .collect();
    for guest in guests.iter_mut().filter(|g| g.vm.is_ok()) {
        let vmid = guest.vmid();
        guest.snapshots = snapshots.remove(&vmid).ok_or_else(|| {
            completeness
                .guests_failed
                .get(&vmid)
                .cloned()
                .unwrap_or_else(|| "they were not read".into())
        });
        guest.storage = storages.remove(&vmid);
    }
    guests
}

/// The storage of a guest's first disk that names one (CD-ROMs aside).
fn first_disk_storage(resource: &ClusterResource, config: &GuestConfig) -> Option<String> {
    let guest_type = match resource.guest_kind() {
        Some(GuestKind::Lxc) => GuestType::Lxc,
        _ => GuestType::Qemu,
    };
    let input = normalize::guest(
        &resource.raw,
        Some(&config.raw),
        Some(guest_type),
        resource.node.as_deref(),
    )
    .ok()?;
    input
        .disks
        .into_iter()
        .find(|d| !d.cdrom)
        .and_then(|d| d.storage)
}

/// The NetBox payload of one snapshot of VM `vm`. Fields the mapper leaves unset are
/// omitted, so NetBox keeps its value; `proxmox_storage` too when the guest's disks are
/// unknown (`None`), while `Some(None)` clears it.
fn payload(
    d: &DesiredSnapshot,
    vm: u64,
    proxmox_storage: Option<Option<u64>>,
    tags: &BTreeMap<String, u64>,
) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("virtual_machine".into(), json!(vm));
    p.insert("name".into(), json!(d.name));
    p.insert("description".into(), json!(d.description));
    p.insert("vmid".into(), json!(d.vmid));
    p.insert("node".into(), json!(d.node));
    p.insert("subtype".into(), json!(d.subtype));
    p.insert("status".into(), json!(d.status));
    if let Some(snaptime) = &d.snaptime {
        p.insert(
            "snaptime".into(),
            json!(canonical_time(snaptime).unwrap_or_else(|| snaptime.clone())),
        );
    }
    p.insert("parent".into(), json!(d.parent));
    if let Some(storage) = proxmox_storage {
        p.insert("proxmox_storage".into(), json!(storage));
    }
    p.insert("tags".into(), tag_ids(&d.tags, tags));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxmox::models::FromValue;

    fn desired() -> DesiredSnapshot {
        DesiredSnapshot {
            name: "pre-upgrade".into(),
            vmid: 100,
            node: "pve1".into(),
            description: String::new(),
            parent: None,
            snaptime: Some("2025-10-08T02:00:00+02:00".into()),
            subtype: "qemu".into(),
            status: "active".into(),
            tags: vec!["Proxbox".into()],
        }
    }

    #[test]
    fn payload_leaves_an_unknown_storage_to_netbox() {
        let tags = BTreeMap::from([("Proxbox".to_string(), 9)]);
        let p = payload(&desired(), 5, None, &tags);
        assert_eq!(p["virtual_machine"], 5);
        assert_eq!(p["snaptime"], "2025-10-08T00:00:00Z");
        assert_eq!(p["tags"], json!([9]));
        assert_eq!(p["parent"], Value::Null, "a root snapshot has no parent");
        assert!(!p.contains_key("proxmox_storage"));
        let p = payload(&desired(), 5, Some(None), &tags);
        assert_eq!(p["proxmox_storage"], Value::Null);
        assert_eq!(
            payload(&desired(), 5, Some(Some(3)), &tags)["proxmox_storage"],
            3
        );
    }

    #[test]
    fn first_disk_storage_skips_cdroms() {
        let resource = ClusterResource::from_value(json!({
            "id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve1", "name": "vm"
        }))
        .expect("resource");
        let config = GuestConfig::from_value(json!({
            "ide2": "local:iso/debian.iso,media=cdrom",
            "scsi0": "ceph:vm-100-disk-0,size=32G",
        }))
        .expect("config");
        assert_eq!(
            first_disk_storage(&resource, &config).as_deref(),
            Some("ceph")
        );
    }
}
