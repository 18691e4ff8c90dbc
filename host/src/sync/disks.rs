//! Stage `virtual-disks` (contract §7.7): the disks of each guest's config become NetBox
//! virtual disks of its NetBox VM, matched by `(VM, name)`. A guest's VM is found
//! through the plugin's VM sync-state records (its Proxmox identity), never by name; a
//! guest without one is skipped. Guests whose VM the mapper does not sync offer no disks.
//!
//! Deletes: a NetBox disk of a VM whose config was read and mapped completely, that no
//! desired disk matches and that carries the `proxbox` tag, is deleted — except a disk
//! named like a config disk the mapper chose not to sync (e.g. a passthrough device
//! without a size), which is kept as the reference does.
//!
//! NetBox (4.x) has no storage field on virtual disks: the link to the plugin's storage
//! record is written to the plugin's disk sync-state record instead
//! (`/api/plugins/proxbox/sync-state/virtual-disks/`), when the plugin is installed.
//! After the disks, a VM's `disk` total is set to the sum of its disks' sizes where it
//! differs (NetBox itself keeps it equal to that sum on every disk write).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{delete_ids, describe, list_by, list_each, list_fields, reconcile_kind};
use super::devices::tag_ids;
use super::guest_vms::{self, NetBoxVm, read_vms};
use super::mapping::{self, Inputs, map_batch};
use super::report::{Item, Outcome, Phase};
use super::resolve::ensure_tags;
use super::storage::STORAGE_PATH;
use super::vms::{Guest, read_guests};
use super::{StageSummary, SyncRun, custom_fields, read_inventories};
use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure};
use crate::mapper::v1::{DesiredVirtualDisk, GuestInput};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::netbox::vms::VM_PATH;
use crate::netbox::{Existing, Listed, NetBoxClient};

/// Stage and phase name.
pub const PHASE: &str = "virtual-disks";

/// NetBox virtual disks.
pub const DISK_PATH: &str = "virtualization/virtual-disks/";

/// The plugin's virtual-disk sync-state records (they carry the storage link).
pub const DISK_STATE_PATH: &str = "plugins/proxbox/sync-state/virtual-disks/";

/// Largest size NetBox stores (a positive 32-bit integer, MiB).
const NETBOX_MAX_SIZE: u64 = 2_147_483_647;

/// One guest whose disks are synced into NetBox VM `vm`.
struct Scope {
    guest: usize,
    vm: u64,
    /// Every disk of its config was mapped and has a payload: deletes are safe.
    complete: bool,
    /// Config disk keys the mapper chose not to sync: NetBox disks of those names are kept.
    protected: BTreeSet<String>,
}

/// One line of the report, in order: its outcome now, or the desired disk it waits for.
enum Line {
    Done(Item, Outcome),
    Disk(Item, usize),
}

/// A desired disk: its scope, payload index and storage record (if resolved).
struct WantDisk {
    scope: usize,
    storage: Option<u64>,
}

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let reads = read_inventories(run, sink, PHASE).await;
    let (vms_of, wanted) = guest_vms::vms_by_identity(run).await?;
    let guests = read_guests(run, &reads, wanted.as_ref()).await;

    // Whether the mapper syncs each guest's VM, and into which NetBox VM.
    let resolved = guest_vms::resolve(run, &guests, &vms_of).await?;
    let netbox_vms = resolved.vms;
    let mut lines: Vec<(usize, Line)> = resolved
        .unsynced
        .into_iter()
        .map(|(index, item, outcome)| (index, Line::Done(item, outcome)))
        .collect();
    let mut scopes: Vec<Scope> = resolved
        .scopes
        .into_iter()
        .map(|s| Scope {
            guest: s.guest,
            vm: s.vm,
            complete: true,
            protected: BTreeSet::new(),
        })
        .collect();

    // Disks of the synced guests.
    let mut disk_of = Vec::new();
    for (s_index, scope) in scopes.iter().enumerate() {
        let guest = &guests[scope.guest];
        let Ok(input) = &guest.input else {
            continue;
        };
        disk_of.extend(input.disks.iter().map(|disk| (s_index, guest, input, disk)));
    }
    let disk_inputs: Inputs<'_> = Box::new(disk_of.iter().map(|(_, guest, input, disk)| {
        (
            context(run, guest, input),
            MapInput::VirtualDisk((*input).clone(), (*disk).clone()),
        )
    }));
    let disk_mapped = map_batch(run.mappers.clone(), Kind::VirtualDisk, disk_inputs).await;
    let mut mapped: Vec<(usize, String, Result<Option<DesiredVirtualDisk>, String>)> = Vec::new();
    for ((s_index, _, _, disk), result) in disk_of.into_iter().zip(disk_mapped) {
        let key = disk.key.clone();
        let result = match result {
            Ok(Some(MapOutput::VirtualDisk(disk))) => Ok(Some(disk)),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err("the mapper returned another kind".to_string()),
            Err(e) => Err(e.to_string()),
        };
        mapped.push((s_index, key, result));
    }

    // Related objects: tags, storage records of the VMs' clusters.
    let mut tag_names = BTreeSet::new();
    for (_, _, result) in &mapped {
        if let Ok(Some(disk)) = result {
            tag_names.extend(disk.tags.iter().cloned());
        }
    }
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let cluster_ids: BTreeSet<String> = scopes
        .iter()
        .filter_map(|s| netbox_vms.get(&s.vm).and_then(|v| v.cluster))
        .map(|c| c.to_string())
        .collect();
    let (storages, plugin) = match list_each(netbox, STORAGE_PATH, "cluster", &cluster_ids, &[])
        .await
    {
        Ok(records) => (storage_index(&records), true),
        Err(e) if e.status() == Some(404) => {
            let mut detail = ErrorDetail::new(
                ErrorCategory::NotFound,
                "The netbox-proxbox plugin API is not available: disks are synced without their storage",
            );
            detail.phase = Some(PHASE.to_string());
            detail.detail = Some(e.to_string());
            sink.emit(detail);
            (BTreeMap::new(), false)
        }
        Err(e) => return Err(e.into()),
    };

    // Desired disks.
    let mut desired: Vec<Desired> = Vec::new();
    let mut wants: Vec<WantDisk> = Vec::new();
    for (s_index, key, result) in mapped {
        let scope = &mut scopes[s_index];
        let guest_index = scope.guest;
        let vm = scope.vm;
        let vm_name = netbox_vms
            .get(&vm)
            .map_or_else(|| guests[guest_index].label(), |v| v.name.clone());
        let line = match result {
            Err(e) => {
                scope.complete = false;
                Line::Done(
                    Item::new(format!("{vm_name}/{key}"), "disk"),
                    Outcome::Failed(e),
                )
            }
            Ok(None) => {
                scope.protected.insert(key.clone());
                Line::Done(
                    Item::new(format!("{vm_name}/{key}"), "disk"),
                    Outcome::Skipped("the mapper does not sync it".into()),
                )
            }
            Ok(Some(disk)) => {
                let item = Item::new(format!("{vm_name}/{}", disk.name), "disk");
                match disk_payload(&disk, vm, &tags) {
                    Ok(payload) => {
                        let cluster = netbox_vms.get(&vm).and_then(|v| v.cluster);
                        let storage = disk.storage.as_ref().and_then(|name| {
                            cluster.and_then(|c| storages.get(&(c, name.clone())).copied())
                        });
                        desired.push(Desired {
                            identity: Some(vec![json!(vm), json!(disk.name)]),
                            payload,
                        });
                        wants.push(WantDisk {
                            scope: s_index,
                            storage,
                        });
                        Line::Disk(item, desired.len() - 1)
                    }
                    Err(e) => {
                        scope.complete = false;
                        Line::Done(item, Outcome::Failed(e))
                    }
                }
            }
        };
        lines.push((guest_index, line));
    }
    lines.sort_by_key(|(guest, _)| *guest);

    let items: Vec<Item> = lines
        .iter()
        .map(|(_, line)| match line {
            Line::Done(item, _) | Line::Disk(item, _) => item.clone(),
        })
        .collect();
    let mut phase = Phase::start(sink, PHASE, "virtual_disk", &items, dry_run);

    // Reconcile the disks of every VM in scope at once; deletes are decided per VM below.
    let scope_vms: BTreeSet<String> = scopes.iter().map(|s| s.vm.to_string()).collect();
    let spec = spec();
    let fields = list_fields(&spec, &desired, &["virtual_machine", "name", "size"]);
    let existing = list_by(
        netbox,
        DISK_PATH,
        "virtual_machine_id",
        &scope_vms,
        &[fields],
    )
    .await?;
    let result = reconcile_kind(netbox, &spec, &desired, &existing, false, dry_run).await;

    let stale = stale_disks(&scopes, &desired, &existing);
    let mut deleted: Vec<(Item, Outcome, u64)> = Vec::new();
    let mut gone: BTreeSet<u64> = BTreeSet::new();
    let stale_ids: Vec<u64> = stale.iter().map(|(id, _, _)| *id).collect();
    let outcomes = delete_ids(netbox, DISK_PATH, &stale_ids, dry_run).await;
    for ((id, vm, name), outcome) in stale.into_iter().zip(outcomes) {
        if outcome == Outcome::Deleted {
            gone.insert(id);
        }
        let vm_name = netbox_vms
            .get(&vm)
            .map_or_else(|| vm.to_string(), |v| v.name.clone());
        deleted.push((
            Item::new(format!("{vm_name}/{name}"), "disk").with_id(Some(id)),
            outcome,
            vm,
        ));
    }

    // Report the disks (and the guests that have none to sync).
    let mut count = 0;
    let mut troubled: BTreeSet<u64> = BTreeSet::new();
    let mut written: BTreeSet<u64> = BTreeSet::new();
    let mut linked: Vec<(u64, Option<u64>)> = Vec::new();
    for (guest_index, line) in lines {
        match line {
            Line::Done(item, outcome) => {
                if matches!(outcome, Outcome::Failed(_))
                    && let Some(scope) = scopes.iter().find(|s| s.guest == guest_index)
                {
                    troubled.insert(scope.vm);
                }
                phase.item(&item, outcome);
            }
            Line::Disk(item, d_index) => {
                let (outcome, id) = result.outcome(d_index);
                let want = &wants[d_index];
                let vm = scopes[want.scope].vm;
                match (&outcome, id) {
                    (Outcome::Failed(_), _) => {
                        troubled.insert(vm);
                    }
                    (outcome, Some(id)) => {
                        count += 1;
                        linked.push((id, want.storage));
                        if *outcome != Outcome::Unchanged {
                            written.insert(vm);
                        }
                    }
                    (_, None) => {
                        written.insert(vm);
                    }
                }
                phase.item(&item.with_id(id), outcome);
            }
        }
    }
    for (item, outcome, vm) in deleted {
        if matches!(outcome, Outcome::Failed(_)) {
            troubled.insert(vm);
        } else {
            written.insert(vm);
        }
        phase.item(&item, outcome);
    }

    if plugin && !dry_run && !linked.is_empty() {
        link_storages(netbox, &linked, &phase).await;
    }
    reconcile_totals(
        run,
        &scopes,
        &desired,
        &existing,
        &gone,
        &netbox_vms,
        &troubled,
        &written,
        &mut phase,
    )
    .await;
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// The mapper context of `guest`'s objects.
fn context(run: &SyncRun, guest: &Guest<'_>, input: &GuestInput) -> crate::mapper::v1::Context {
    mapping::context(guest.read.session, &input.node, &run.params, &run.now)
}

/// Storage record ids by `(NetBox cluster id, storage name)`.
fn storage_index(records: &[Listed]) -> BTreeMap<(u64, String), u64> {
    records
        .iter()
        .map(Listed::value)
        .filter_map(|r| {
            let cluster = r.get("cluster").map(normalise)?.as_u64()?;
            let name = r.get("name")?.as_str()?.to_string();
            Some(((cluster, name), r.get("id")?.as_u64()?))
        })
        .collect()
}

/// The reconcile spec of virtual disks: `(virtual machine, name)`; every field sent is
/// owned; tags are merged.
fn spec() -> KindSpec {
    KindSpec {
        path: DISK_PATH.into(),
        identity: Box::new(|o: &Map<String, Value>| {
            Some(vec![
                o.get("virtual_machine").map(normalise)?,
                o.get("name").cloned()?,
            ])
        }),
        owned: [
            "virtual_machine",
            "name",
            "size",
            "description",
            "tags",
            "custom_fields",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    }
}

/// The NetBox payload of one disk of VM `vm`.
fn disk_payload(
    disk: &DesiredVirtualDisk,
    vm: u64,
    tags: &BTreeMap<String, u64>,
) -> Result<Map<String, Value>, String> {
    if disk.name.trim().is_empty() {
        return Err("the mapper gave the disk no name".into());
    }
    let mut payload = Map::new();
    payload.insert("virtual_machine".into(), json!(vm));
    payload.insert("name".into(), json!(disk.name));
    payload.insert("size".into(), json!(disk.size_mib.min(NETBOX_MAX_SIZE)));
    payload.insert("description".into(), json!(disk.description));
    payload.insert("tags".into(), tag_ids(&disk.tags, tags));
    if let Some(fields) = custom_fields(&disk.custom_fields)? {
        payload.insert("custom_fields".into(), Value::Object(fields));
    }
    Ok(payload)
}

/// The NetBox VM id of a listed disk.
fn vm_of_disk(disk: &Map<String, Value>) -> Option<u64> {
    disk.get("virtual_machine").map(normalise)?.as_u64()
}

fn has_ownership_tag(disk: &Map<String, Value>) -> bool {
    disk.get("tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| {
            tags.iter()
                .any(|t| t.get("slug").and_then(Value::as_str) == Some(OWNERSHIP_TAG_SLUG))
        })
}

/// The existing disks to delete, as `(id, VM, name)`: in a complete scope, carrying the
/// ownership tag, and either matching no desired disk (and not a protected name) or a
/// second row of a desired disk's identity.
fn stale_disks<E: Existing>(
    scopes: &[Scope],
    desired: &[Desired],
    existing: &[E],
) -> Vec<(u64, u64, String)> {
    let complete: BTreeMap<u64, &Scope> = scopes
        .iter()
        .filter(|s| s.complete)
        .map(|s| (s.vm, s))
        .collect();
    let wanted: BTreeSet<(u64, String)> = desired
        .iter()
        .filter_map(|d| {
            Some((
                d.payload.get("virtual_machine")?.as_u64()?,
                d.payload.get("name")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut matched: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut out = Vec::new();
    for disk in existing.iter().map(Existing::parsed) {
        let Some(disk) = disk.as_object() else {
            continue;
        };
        let (Some(id), Some(vm), Some(name)) = (
            disk.get("id").and_then(Value::as_u64),
            vm_of_disk(disk),
            disk.get("name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let key = (vm, name.to_string());
        if wanted.contains(&key) && matched.insert(key.clone()) {
            continue;
        }
        let Some(scope) = complete.get(&vm) else {
            continue;
        };
        let duplicate = wanted.contains(&key);
        if (duplicate || !scope.protected.contains(name)) && has_ownership_tag(disk) {
            out.push((id, vm, name.to_string()));
        }
    }
    out
}

/// Write the storage link of each disk `(disk id, storage record)` to the plugin's disk
/// sync-state records (only what differs). Failures are reported, not fatal.
async fn link_storages(netbox: &NetBoxClient, linked: &[(u64, Option<u64>)], phase: &Phase) {
    let ids: BTreeSet<String> = linked.iter().map(|(id, _)| id.to_string()).collect();
    let fields = [("fields", "id,virtual_disk,proxbox_storage,tags".to_string())];
    let existing = match list_by(netbox, DISK_STATE_PATH, "virtual_disk_id", &ids, &fields).await {
        Ok(existing) => existing,
        Err(e) => {
            phase.problem(
                ErrorCategory::Unknown,
                "Cannot read the virtual disks' sync-state records",
                Some(e.to_string()),
            );
            return;
        }
    };
    let desired: Vec<Desired> = linked
        .iter()
        .map(|(disk, storage)| {
            let mut payload = Map::new();
            payload.insert("virtual_disk".into(), json!(disk));
            payload.insert("proxbox_storage".into(), json!(storage));
            Desired {
                identity: Some(vec![json!(disk)]),
                payload,
            }
        })
        .collect();
    let spec = KindSpec {
        path: DISK_STATE_PATH.into(),
        identity: Box::new(|o: &Map<String, Value>| {
            Some(vec![o.get("virtual_disk").map(normalise)?])
        }),
        owned: BTreeSet::from(["proxbox_storage".to_string()]),
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    };
    let result = reconcile_kind(netbox, &spec, &desired, &existing, false, false).await;
    let failed: Vec<String> = result
        .items
        .values()
        .filter_map(|(outcome, _)| match outcome {
            Outcome::Failed(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    if let Some(first) = failed.first() {
        phase.problem(
            ErrorCategory::Validation,
            format!(
                "{} virtual disk storage link(s) could not be written",
                failed.len()
            ),
            Some(first.clone()),
        );
    }
}

/// Set each VM's `disk` to the sum of the sizes of its NetBox disks after the stage
/// (the desired ones and those kept), where it differs. VMs with a failed disk, or with
/// no disk at all (the VM stage's total stands), are left alone. Dry run: reported only,
/// and not for VMs whose disks would change (NetBox recomputes their total itself).
#[allow(clippy::too_many_arguments)]
async fn reconcile_totals(
    run: &SyncRun,
    scopes: &[Scope],
    desired: &[Desired],
    existing: &[Listed],
    gone: &BTreeSet<u64>,
    vms: &BTreeMap<u64, NetBoxVm>,
    troubled: &BTreeSet<u64>,
    written: &BTreeSet<u64>,
    phase: &mut Phase,
) {
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let mut targets: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for d in desired {
        if let (Some(vm), Some(size)) = (
            d.payload.get("virtual_machine").and_then(Value::as_u64),
            d.payload.get("size").and_then(Value::as_u64),
        ) {
            let entry = targets.entry(vm).or_default();
            entry.0 = entry.0.saturating_add(size);
            entry.1 += 1;
        }
    }
    let wanted: BTreeSet<(u64, &str)> = desired
        .iter()
        .filter_map(|d| {
            Some((
                d.payload.get("virtual_machine")?.as_u64()?,
                d.payload.get("name")?.as_str()?,
            ))
        })
        .collect();
    for disk in existing.iter().map(Listed::object) {
        let (Some(id), Some(vm), Some(name)) = (
            disk.get("id").and_then(Value::as_u64),
            vm_of_disk(&disk),
            disk.get("name").and_then(Value::as_str),
        ) else {
            continue;
        };
        if gone.contains(&id) || wanted.contains(&(vm, name)) {
            continue;
        }
        let entry = targets.entry(vm).or_default();
        entry.0 = entry
            .0
            .saturating_add(disk.get("size").and_then(Value::as_u64).unwrap_or(0));
        entry.1 += 1;
    }
    let in_scope: BTreeSet<u64> = scopes.iter().map(|s| s.vm).collect();
    targets.retain(|vm, (_, disks)| *disks > 0 && in_scope.contains(vm) && !troubled.contains(vm));
    if targets.is_empty() {
        return;
    }
    // NetBox recomputes a VM's total on every disk write: read it again where one
    // happened; on a dry run, such a VM's total would follow its disks by itself.
    if dry_run {
        targets.retain(|vm, _| !written.contains(vm));
    }
    let mut current: BTreeMap<u64, Option<u64>> =
        vms.iter().map(|(id, vm)| (*id, vm.disk)).collect();
    let reread: BTreeSet<String> = targets
        .keys()
        .filter(|vm| written.contains(vm))
        .map(u64::to_string)
        .collect();
    if !reread.is_empty() {
        match read_vms(netbox, &reread).await {
            Ok(fresh) => current.extend(fresh.into_iter().map(|(id, vm)| (id, vm.disk))),
            Err(e) => {
                phase.problem(
                    ErrorCategory::Unknown,
                    "Cannot read the VMs' disk totals",
                    Some(e.to_string()),
                );
                return;
            }
        }
    }
    let changes: Vec<(u64, u64)> = targets
        .into_iter()
        .map(|(vm, (total, _))| (vm, total.min(NETBOX_MAX_SIZE)))
        .filter(|(vm, total)| current.get(vm).copied().flatten().unwrap_or(0) != *total)
        .collect();
    if changes.is_empty() {
        return;
    }
    let outcomes: Vec<Outcome> = if dry_run {
        changes
            .iter()
            .map(|_| Outcome::Updated(vec!["disk".into()]))
            .collect()
    } else {
        let patches = changes
            .iter()
            .map(|(vm, total)| json!({"id": vm, "disk": total}))
            .collect();
        netbox
            .bulk_update(VM_PATH, patches)
            .await
            .into_iter()
            .map(|r| {
                r.map_or_else(
                    |e| Outcome::Failed(describe(&e)),
                    |_| Outcome::Updated(vec!["disk".into()]),
                )
            })
            .collect()
    };
    for ((vm, _), outcome) in changes.into_iter().zip(outcomes) {
        let name = vms
            .get(&vm)
            .map_or_else(|| vm.to_string(), |v| v.name.clone());
        phase.item(
            &Item::new(format!("{name} disk total"), "vm").with_id(Some(vm)),
            outcome,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(vm: u64, complete: bool, protected: &[&str]) -> Scope {
        Scope {
            guest: 0,
            vm,
            complete,
            protected: protected.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn want(vm: u64, name: &str) -> Desired {
        let mut payload = Map::new();
        payload.insert("virtual_machine".into(), json!(vm));
        payload.insert("name".into(), json!(name));
        payload.insert("size".into(), json!(1024));
        Desired {
            identity: Some(vec![json!(vm), json!(name)]),
            payload,
        }
    }

    fn have(id: u64, vm: u64, name: &str, owned: bool) -> Value {
        let tags = if owned {
            json!([{"id": 1, "slug": "proxbox", "name": "Proxbox"}])
        } else {
            json!([])
        };
        json!({"id": id, "virtual_machine": {"id": vm, "name": "x"}, "name": name,
               "size": 10, "tags": tags})
    }

    #[test]
    fn only_owned_unmatched_disks_of_complete_scopes_are_stale() {
        let scopes = [scope(1, true, &["sata1"]), scope(2, false, &[])];
        let desired = [want(1, "scsi0"), want(2, "scsi0")];
        let existing = [
            have(10, 1, "scsi0", true),
            have(11, 1, "scsi1", true),
            have(12, 1, "scsi2", false),
            have(13, 1, "sata1", true),
            have(14, 2, "scsi1", true),
            have(15, 1, "scsi0", true),
        ];
        let stale = stale_disks(&scopes, &desired, &existing);
        let ids: Vec<u64> = stale.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(ids, vec![11, 15]);
    }

    #[test]
    fn payload_clamps_the_size_and_parses_custom_fields() {
        let tags = BTreeMap::from([("Proxbox".to_string(), 4)]);
        let disk = DesiredVirtualDisk {
            name: "scsi0".into(),
            size_mib: u64::MAX,
            storage: Some("local-lvm".into()),
            description: "Storage: local-lvm".into(),
            custom_fields: vec![("x".into(), "1".into())],
            tags: vec!["Proxbox".into()],
        };
        let p = disk_payload(&disk, 9, &tags).expect("payload");
        assert_eq!(p["size"], json!(NETBOX_MAX_SIZE));
        assert_eq!(p["virtual_machine"], json!(9));
        assert_eq!(p["tags"], json!([4]));
        assert_eq!(p["custom_fields"], json!({"x": 1}));
        let bad = DesiredVirtualDisk {
            custom_fields: vec![("x".into(), "nope".into())],
            ..disk
        };
        assert!(disk_payload(&bad, 9, &tags).is_err());
    }

    #[test]
    fn storage_records_are_indexed_by_cluster_and_name() {
        let index = storage_index(&[
            Listed::new(&json!({"id": 5, "cluster": {"id": 2, "name": "c"}, "name": "local"})),
            Listed::new(&json!({"id": 6, "cluster": 3, "name": "nfs"})),
            Listed::new(&json!({"id": 7, "name": "orphan"})),
        ]);
        assert_eq!(index.get(&(2, "local".to_string())), Some(&5));
        assert_eq!(index.get(&(3, "nfs".to_string())), Some(&6));
        assert_eq!(index.len(), 2);
    }
}
