//! Stage `backups` (contract §7.8): the backup volumes of every backup-capable storage
//! become the plugin's backup records (`/api/plugins/proxbox/backups/`), matched by
//! `(NetBox VM, volume id)`. A backup belongs to the NetBox VM whose sync-state record
//! names its `(endpoint, Proxmox cluster, VMID, guest type)`; backups of guests that are
//! not in NetBox (and files of no guest) are skipped.
//!
//! With `delete_nonexistent_backup=true` a record is deleted only when all of these hold:
//! its VM belongs to an endpoint this run read (and to `netbox_vm_ids`, when given), the
//! storage its volume lives on was read completely (a shared storage once, a node-local
//! one on every node that has it: an offline node or a failed read keeps every record of
//! that storage), Proxmox no longer lists its volume, and it carries the `proxbox` tag.
//!
//! The helpers shared with the snapshot stage live here too: VM owners from the
//! sync-state records, plugin storage links, plugin-API failures and reported deletes.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use serde_json::{Map, Value, json};

use super::apply::{list_by, list_fields, per_vm_spec, reconcile_kind};
use super::devices::tag_ids;
use super::mapping::{self, map_batch};
use super::report::{Item, Outcome, Phase};
use super::resolve::ensure_tags;
use super::{EndpointRead, StageSummary, SyncRun, read_inventories};
use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure};
use crate::mapper::v1::DesiredBackup;
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::netbox::vms::VM_PATH;
use crate::netbox::{Existing, Listed, NetBoxClient, NetBoxError};
use crate::normalize;
use crate::proxmox::ProxmoxClient;
use crate::proxmox::inventory::{BackupRead, Completeness, read_backups};
use crate::proxmox::models::StorageConfig;

/// Stage and phase name.
pub const PHASE: &str = "backups";

/// The plugin's backup records (relative to `/api/`).
pub const BACKUP_PATH: &str = "plugins/proxbox/backups/";

/// The plugin's storage records (relative to `/api/`).
pub const STORAGE_PATH: &str = "plugins/proxbox/storage/";

/// Fields of a backup record the sync owns.
const OWNED: [&str; 15] = [
    "virtual_machine",
    "volume_id",
    "storage",
    "proxmox_storage",
    "subtype",
    "format",
    "creation_time",
    "size",
    "used",
    "encrypted",
    "notes",
    "verification_state",
    "verification_upid",
    "vmid",
    "tags",
];

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    if let Some(failure) = missing_plugin(run, sink, PHASE) {
        return Err(failure);
    }
    let reads = read_inventories(run, sink, PHASE).await;
    let owners = Owners::read(run)
        .await
        .map_err(|e| netbox_failure(sink, PHASE, e))?;
    let mut reads = reads;
    if let Some(only) = &run.options.only_guest {
        reads.retain(|r| only.in_cluster(&r.inventory.name) || only.in_cluster(&r.session.name));
    }
    let endpoints = join_all(reads.iter().map(read_endpoint)).await;
    let wanted = wanted_vms(run);
    let dry_run = run.options.dry_run;

    // Normalise and map every backup read.
    let mut found: Vec<Found<'_>> = Vec::new();
    let mut inputs = Vec::new();
    let mut input_of = Vec::new();
    for (ep, read) in endpoints.iter().enumerate() {
        for backup in &read.backups {
            if let Some(only) = &run.options.only_guest
                && only
                    .volid
                    .as_ref()
                    .is_some_and(|volid| backup.entry.volid != *volid)
            {
                continue;
            }
            let input = normalize::backup(&backup.entry.raw);
            let (vmid, subtype) = match &input {
                Ok(input) => (input.vmid, input.subtype.clone()),
                Err(_) => (backup.entry.vmid, None),
            };
            let desired = match input {
                Ok(input) => {
                    let ctx =
                        mapping::context(read.read.session, &backup.node, &run.params, &run.now);
                    inputs.push((ctx, MapInput::Backup(input)));
                    input_of.push(found.len());
                    Err("not mapped".to_string())
                }
                Err(e) => Err(format!("invalid Proxmox data: {e}")),
            };
            found.push(Found {
                ep,
                backup,
                vmid,
                subtype,
                desired,
                owner: Err(String::new()),
            });
        }
    }
    for (index, result) in input_of
        .into_iter()
        .zip(map_batch(run.mappers.clone(), Kind::Backup, inputs).await)
    {
        found[index].desired = match result {
            Ok(Some(MapOutput::Backup(backup))) => Ok(Some(backup)),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err("the mapper returned another kind".into()),
            Err(e) => Err(e.to_string()),
        };
    }
    for f in &mut found {
        let read = &endpoints[f.ep].read;
        let (vmid, subtype) = match &f.desired {
            Ok(Some(d)) => (d.vmid.or(f.vmid), Some(d.subtype.clone())),
            _ => (f.vmid, f.subtype.clone()),
        };
        f.owner = match vmid {
            None => Err("it belongs to no guest".into()),
            Some(vmid) => owners.resolve(
                endpoint_id(read),
                &read.inventory.name,
                vmid,
                subtype.as_deref().and_then(guest_kind),
            ),
        };
    }
    if let Some(wanted) = &wanted {
        found.retain(|f| f.owner.as_ref().is_ok_and(|vm| wanted.contains(vm)));
    }

    // Report what cannot be synced; collect what can.
    let failures: Vec<(String, String)> = endpoints
        .iter()
        .flat_map(|e| e.failures.iter().cloned())
        .collect();
    let mut items: Vec<Item> = failures
        .iter()
        .map(|(what, _)| Item::new(what.clone(), "storage"))
        .collect();
    items.extend(
        found
            .iter()
            .map(|f| Item::new(f.backup.entry.volid.clone(), "backup")),
    );
    let mut phase = Phase::start(sink, PHASE, "backup", &items, dry_run);
    for (index, (_, why)) in failures.iter().enumerate() {
        phase.item(&items[index], Outcome::Failed(why.clone()));
    }
    let item_of = |i: usize| &items[failures.len() + i];
    let mut wants: Vec<(usize, &DesiredBackup, u64)> = Vec::new();
    for (index, f) in found.iter().enumerate() {
        match (&f.desired, &f.owner) {
            (Err(e), _) => phase.item(item_of(index), Outcome::Failed(e.clone())),
            (Ok(None), _) => phase.item(
                item_of(index),
                Outcome::Skipped("the mapper does not sync it".into()),
            ),
            (Ok(Some(_)), Err(why)) => phase.item(item_of(index), Outcome::Skipped(why.clone())),
            (Ok(Some(desired)), Ok(vm)) => wants.push((index, desired, *vm)),
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

    // The records of the VMs this run covers.
    let mut covered: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (ep, read) in endpoints.iter().enumerate().filter(|(_, e)| e.listed) {
        for vm in owners.vms_of(endpoint_id(read.read), &read.read.inventory.name) {
            if wanted.as_ref().is_none_or(|w| w.contains(&vm)) {
                covered.entry(vm).or_default().push(ep);
            }
        }
    }
    let deleting = run.options.delete_nonexistent_backup;
    let listed_vms: BTreeSet<u64> = if deleting {
        covered
            .keys()
            .copied()
            .chain(want_vms.iter().copied())
            .collect()
    } else {
        want_vms.clone()
    };
    let desired: Vec<Desired> = wants
        .iter()
        .map(|(_, d, vm)| {
            let proxmox_storage = links.storage_of(*vm, &d.storage);
            Desired {
                identity: Some(vec![json!(vm), json!(d.volume_id)]),
                payload: payload(d, *vm, proxmox_storage, &tags),
            }
        })
        .collect();
    let spec = per_vm_spec(BACKUP_PATH, "volume_id", &OWNED);
    let Reconciled {
        existing,
        count,
        matched,
    } = reconcile_records(
        run,
        &mut phase,
        RecordKind {
            spec: &spec,
            also: &["virtual_machine", "volume_id", "storage"],
            time_field: "creation_time",
        },
        &desired,
        &listed_vms,
        |index| item_of(wants[index].0),
    )
    .await
    .map_err(|e| netbox_failure(sink, PHASE, e))?;

    if deleting {
        let mut seen: BTreeSet<&str> = found
            .iter()
            .map(|f| f.backup.entry.volid.as_str())
            .collect();
        seen.extend(wants.iter().map(|(_, d, _)| d.volume_id.as_str()));
        let doomed: Vec<(u64, String)> = existing
            .iter()
            .map(Listed::value)
            .filter_map(|record| {
                let id = record.get("id").and_then(Value::as_u64)?;
                let volid = record
                    .get("volume_id")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())?;
                let vm = record.get("virtual_machine").map(normalise)?.as_u64()?;
                let storage = volid
                    .split_once(':')
                    .map(|(s, _)| s)
                    .or_else(|| record.get("storage").and_then(Value::as_str))?;
                let complete = covered.get(&vm).is_some_and(|eps| {
                    eps.iter()
                        .all(|ep| endpoints[*ep].complete.contains(storage))
                });
                (complete
                    && !matched.contains(&id)
                    && !seen.contains(volid)
                    && has_owner_tag(&record))
                .then(|| (id, volid.to_string()))
            })
            .collect();
        delete_reported(netbox, &mut phase, BACKUP_PATH, "backup", doomed, dry_run).await;
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// One backup read from Proxmox, on its way to NetBox.
struct Found<'a> {
    /// Index of the endpoint it was read through.
    ep: usize,
    /// What was read.
    backup: &'a BackupRead,
    /// VMID as read.
    vmid: Option<u32>,
    /// Subtype as read.
    subtype: Option<String>,
    /// The mapper's record (`None`: not to be synced), or why there is none.
    desired: Result<Option<DesiredBackup>, String>,
    /// The owning NetBox VM, or why there is none.
    owner: Result<u64, String>,
}

/// One endpoint's backups and how completely they were read.
struct EndpointBackups<'a> {
    /// The endpoint's read.
    read: &'a EndpointRead<'a>,
    /// Whether `/storage` was read (if not, none of its records are deleted).
    listed: bool,
    /// Backup volumes, each once.
    backups: Vec<BackupRead>,
    /// Storages whose backups were read completely.
    complete: BTreeSet<String>,
    /// Reads that failed: `(what, why)`.
    failures: Vec<(String, String)>,
}

async fn read_endpoint<'a>(read: &'a EndpointRead<'a>) -> EndpointBackups<'a> {
    let client = &read.session.client;
    let mut out = EndpointBackups {
        read,
        listed: false,
        backups: Vec::new(),
        complete: BTreeSet::new(),
        failures: Vec::new(),
    };
    let listed = match client.storages().await {
        Ok(listed) => listed,
        Err(e) => {
            out.failures.push((
                format!("{}: storage list", read.inventory.name),
                e.to_string(),
            ));
            return out;
        }
    };
    out.listed = true;
    let (configs, unknown) = complete_configs(client, listed, &mut out.failures).await;
    let (backups, completeness) = read_backups(client, read.inventory, &configs).await;
    for ((node, storage), why) in &completeness.storages_failed {
        out.failures
            .push((format!("{node}/{storage}"), why.clone()));
    }
    out.complete = complete_storages(&configs, &completeness, &unknown);
    out.backups = backups;
    out
}

/// `/storage` entries with their sparse ones completed from `/storage/{id}`; storages
/// whose config could not be completed are returned as unknown (never complete).
async fn complete_configs(
    client: &ProxmoxClient,
    listed: Vec<StorageConfig>,
    failures: &mut Vec<(String, String)>,
) -> (Vec<StorageConfig>, BTreeSet<String>) {
    let details = join_all(listed.iter().map(|s| async move {
        if s.is_sparse() {
            Some(client.storage(&s.storage).await)
        } else {
            None
        }
    }))
    .await;
    let mut configs = Vec::new();
    let mut unknown = BTreeSet::new();
    for (config, detail) in listed.into_iter().zip(details) {
        match detail {
            None => configs.push(config),
            Some(Ok(full)) => configs.push(full),
            Some(Err(e)) => {
                failures.push((format!("storage {}", config.storage), e.to_string()));
                unknown.insert(config.storage.clone());
                configs.push(config);
            }
        }
    }
    (configs, unknown)
}

/// The backup storages whose content was read completely: a shared one on some node, a
/// node-local one on every listed node it is available on (an offline node is unread).
pub fn complete_storages(
    configs: &[StorageConfig],
    completeness: &Completeness,
    unknown: &BTreeSet<String>,
) -> BTreeSet<String> {
    configs
        .iter()
        .filter(|s| s.holds_backups() && s.disable != Some(true) && !unknown.contains(&s.storage))
        .filter(|s| {
            let mut nodes = completeness
                .nodes_listed
                .iter()
                .filter(|n| s.available_on(n))
                .peekable();
            if s.shared == Some(true) {
                nodes.any(|n| completeness.storage_read(n, &s.storage))
            } else {
                nodes.peek().is_some() && nodes.all(|n| completeness.storage_read(n, &s.storage))
            }
        })
        .map(|s| s.storage.clone())
        .collect()
}

/// The NetBox payload of one backup of VM `vm`. Fields the mapper leaves unset are
/// omitted, so NetBox keeps its value.
fn payload(
    d: &DesiredBackup,
    vm: u64,
    proxmox_storage: Option<u64>,
    tags: &BTreeMap<String, u64>,
) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("virtual_machine".into(), json!(vm));
    p.insert("volume_id".into(), json!(d.volume_id));
    p.insert("storage".into(), json!(d.storage));
    p.insert("proxmox_storage".into(), json!(proxmox_storage));
    p.insert("subtype".into(), json!(d.subtype));
    p.insert("format".into(), json!(d.format));
    let bytes = |b: u64| json!(i64::try_from(b).unwrap_or(i64::MAX));
    let optional = [
        ("vmid", d.vmid.map(|v| json!(v))),
        (
            "creation_time",
            d.creation_time
                .as_deref()
                .map(|t| json!(canonical_time(t).unwrap_or_else(|| t.to_string()))),
        ),
        ("size", d.size_bytes.map(bytes)),
        ("used", d.used_bytes.map(bytes)),
        ("encrypted", d.encrypted.as_ref().map(|v| json!(v))),
        ("notes", d.notes.as_ref().map(|v| json!(v))),
        (
            "verification_state",
            d.verification_state.as_ref().map(|v| json!(v)),
        ),
        (
            "verification_upid",
            d.verification_upid.as_ref().map(|v| json!(v)),
        ),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            p.insert(field.into(), value);
        }
    }
    p.insert("tags".into(), tag_ids(&d.tags, tags));
    p
}

/// `qemu` or `lxc` for a backup subtype (`vm`/`ct` too), `None` when it names neither.
pub fn guest_kind(subtype: &str) -> Option<&'static str> {
    match subtype.trim().to_ascii_lowercase().as_str() {
        "qemu" | "vm" => Some("qemu"),
        "lxc" | "ct" | "openvz" => Some("lxc"),
        _ => None,
    }
}

/// The backend's id of the endpoint a read came through.
pub fn endpoint_id(read: &EndpointRead<'_>) -> u64 {
    u64::try_from(read.session.endpoint.id).unwrap_or_default()
}

/// `netbox_vm_ids` as a set (`None`: every VM).
pub fn wanted_vms(run: &SyncRun) -> Option<BTreeSet<u64>> {
    run.options
        .netbox_vm_ids
        .as_ref()
        .map(|ids| ids.iter().copied().collect())
}

/// The NetBox VMs the plugin's sync-state records tie to Proxmox guests.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    records: Vec<OwnerRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnerRecord {
    vm: u64,
    endpoint: u64,
    /// Proxmox cluster name, lower case; empty when the record has none.
    cluster: String,
    vmid: u32,
    kind: String,
}

impl OwnerRecord {
    fn of(&self, endpoint: u64, cluster: &str) -> bool {
        self.endpoint == endpoint
            && (self.cluster.is_empty() || self.cluster == cluster.to_lowercase())
    }
}

impl Owners {
    /// The owners in the run's VM sync-state records.
    pub async fn read(run: &SyncRun) -> Result<Owners, NetBoxError> {
        Ok(Owners::from_records(&run.vm_state_records().await?))
    }

    /// Owners from sync-state records as listed; records lacking their VM, endpoint,
    /// VMID or guest type are ignored.
    pub fn from_records<E: Existing>(records: &[E]) -> Owners {
        let records = records
            .iter()
            .map(Existing::parsed)
            .filter_map(|r| {
                Some(OwnerRecord {
                    vm: r.pointer("/virtual_machine/id").and_then(Value::as_u64)?,
                    endpoint: r.get("proxmox_endpoint_raw_id").and_then(Value::as_u64)?,
                    cluster: r
                        .get("proxmox_cluster_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .trim()
                        .to_lowercase(),
                    vmid: r
                        .get("proxmox_vm_id")
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())?,
                    kind: r
                        .get("proxmox_vm_type")
                        .and_then(Value::as_str)
                        .filter(|k| !k.is_empty())?
                        .to_string(),
                })
            })
            .collect();
        Owners { records }
    }

    /// The NetBox VM of guest `vmid` (of type `kind`, when known) in Proxmox cluster
    /// `cluster` read through `endpoint`, or why there is none (absent or ambiguous).
    pub fn resolve(
        &self,
        endpoint: u64,
        cluster: &str,
        vmid: u32,
        kind: Option<&str>,
    ) -> Result<u64, String> {
        let vms: BTreeSet<u64> = self
            .records
            .iter()
            .filter(|r| r.of(endpoint, cluster) && r.vmid == vmid)
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .map(|r| r.vm)
            .collect();
        let guest = format!("{}/{vmid}", kind.unwrap_or("guest"));
        match vms.len() {
            0 => Err(format!("its VM {guest} is not in NetBox")),
            1 => Ok(vms.into_iter().next().unwrap_or_default()),
            n => Err(format!(
                "{n} NetBox VMs claim {guest}; resolve their sync-state records"
            )),
        }
    }

    /// The NetBox VM of guest `vmid` in Proxmox cluster `cluster` read through
    /// `endpoint`, with its guest type (`qemu`/`lxc`), or why there is none.
    pub fn owner(&self, endpoint: u64, cluster: &str, vmid: u32) -> Result<(u64, &str), String> {
        let vm = self.resolve(endpoint, cluster, vmid, None)?;
        let kind = self
            .records
            .iter()
            .find(|r| r.vm == vm && r.of(endpoint, cluster) && r.vmid == vmid)
            .map_or("unknown", |r| r.kind.as_str());
        Ok((vm, kind))
    }

    /// The NetBox VMs of Proxmox cluster `cluster` read through `endpoint`.
    pub fn vms_of(&self, endpoint: u64, cluster: &str) -> BTreeSet<u64> {
        self.records
            .iter()
            .filter(|r| r.of(endpoint, cluster))
            .map(|r| r.vm)
            .collect()
    }
}

/// The plugin's storage records by `(NetBox cluster, name)`, and the NetBox cluster of VMs.
#[derive(Clone, Debug, Default)]
pub struct StorageLinks {
    storages: BTreeMap<(u64, String), u64>,
    clusters: BTreeMap<u64, u64>,
}

impl StorageLinks {
    /// Read the storage records and (when there are any) the clusters of `vms`; a plugin
    /// without storage records links nothing.
    pub async fn read(client: &NetBoxClient, vms: &BTreeSet<u64>) -> Result<Self, NetBoxError> {
        if vms.is_empty() {
            return Ok(StorageLinks::default());
        }
        let records = match client.list(STORAGE_PATH, &[]).await {
            Err(NetBoxError::Status { status: 404, .. }) => Vec::new(),
            records => records?,
        };
        let storages: BTreeMap<(u64, String), u64> = records
            .iter()
            .filter_map(|s| {
                let cluster = s.get("cluster").map(normalise)?.as_u64()?;
                let name = s.get("name").and_then(Value::as_str)?;
                Some(((cluster, name.to_string()), s.get("id")?.as_u64()?))
            })
            .collect();
        if storages.is_empty() {
            return Ok(StorageLinks::default());
        }
        let ids: BTreeSet<String> = vms.iter().map(u64::to_string).collect();
        let clusters = list_by(
            client,
            VM_PATH,
            "id",
            &ids,
            &[("fields", "id,cluster".into())],
        )
        .await?
        .iter()
        .map(Listed::value)
        .filter_map(|vm| {
            Some((
                vm.get("id")?.as_u64()?,
                vm.get("cluster").map(normalise)?.as_u64()?,
            ))
        })
        .collect();
        Ok(StorageLinks { storages, clusters })
    }

    /// The storage record named `storage` in the NetBox cluster of VM `vm`, if any.
    pub fn storage_of(&self, vm: u64, storage: &str) -> Option<u64> {
        let cluster = self.clusters.get(&vm)?;
        self.storages.get(&(*cluster, storage.to_string())).copied()
    }
}

/// A plugin record kind that belongs to VMs, as [`reconcile_records`] reads it.
pub struct RecordKind<'a> {
    /// How records are matched and which fields are ours.
    pub spec: &'a KindSpec,
    /// Fields read besides the owned ones (identity, what the stage reads).
    pub also: &'a [&'a str],
    /// The time field made canonical before comparing.
    pub time_field: &'a str,
}

/// What [`reconcile_records`] found and did.
pub struct Reconciled {
    /// The records of the listed VMs, as NetBox held them before the writes.
    pub existing: Vec<Listed>,
    /// Desired records that now exist as desired.
    pub count: usize,
    /// Ids of existing records some desired record matched.
    pub matched: BTreeSet<u64>,
}

/// Reconcile `desired` records of `kind` against the records of the NetBox VMs `vms`,
/// and report each desired record's outcome under the item `item_of` gives its index.
pub async fn reconcile_records<'i>(
    run: &SyncRun,
    phase: &mut Phase,
    kind: RecordKind<'_>,
    desired: &[Desired],
    vms: &BTreeSet<u64>,
    item_of: impl Fn(usize) -> &'i Item,
) -> Result<Reconciled, NetBoxError> {
    let netbox = &run.netbox;
    let fields = list_fields(kind.spec, desired, kind.also);
    let mut existing = records_of(netbox, &kind.spec.path, vms, fields).await?;
    canonicalise_times(&mut existing, kind.time_field);
    let result = reconcile_kind(
        netbox,
        kind.spec,
        desired,
        &existing,
        false,
        run.options.dry_run,
    )
    .await;
    let mut count = 0;
    let mut matched = BTreeSet::new();
    for index in 0..desired.len() {
        let (outcome, id) = result.outcome(index);
        if let Some(id) = id {
            matched.insert(id);
            if !matches!(outcome, Outcome::Failed(_)) {
                count += 1;
            }
        }
        phase.item(&item_of(index).clone().with_id(id), outcome);
    }
    Ok(Reconciled {
        existing,
        count,
        matched,
    })
}

/// Up to this many VMs, their records are read VM by VM; beyond, all records at once.
const PER_VM_READS: usize = 20;

/// The records at `path` (a plugin list with a `virtual_machine` field) of the NetBox
/// VMs `vms`, each once. The plugin's `virtual_machine` filter takes one id (and refuses
/// an id that no longer exists), so a few VMs are read one by one and many by listing
/// every record.
pub async fn records_of(
    client: &NetBoxClient,
    path: &str,
    vms: &BTreeSet<u64>,
    fields: (&'static str, String),
) -> Result<Vec<Listed>, NetBoxError> {
    let listed = if vms.is_empty() {
        Vec::new()
    } else if vms.len() <= PER_VM_READS {
        let fields = &fields;
        let reads = join_all(vms.iter().map(|vm| async move {
            client
                .listed(path, &[("virtual_machine", vm.to_string()), fields.clone()])
                .await
        }))
        .await;
        let mut listed = Vec::new();
        for read in reads {
            match read {
                Ok(records) => listed.extend(records),
                Err(NetBoxError::Status { status: 400, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        listed
    } else {
        client.listed(path, &[fields]).await?
    };
    let mut seen = BTreeSet::new();
    Ok(listed
        .into_iter()
        .filter(|listed| {
            let r = listed.value();
            r.get("virtual_machine")
                .map(normalise)
                .and_then(|v| v.as_u64())
                .is_some_and(|vm| vms.contains(&vm))
                && r.get("id")
                    .and_then(Value::as_u64)
                    .is_some_and(|id| seen.insert(id))
        })
        .collect())
}

/// A date-time as RFC 3339 in UTC (`…Z`), so NetBox's rendering (in its own time zone)
/// compares equal to the mapper's; `None` when it is not RFC 3339.
pub fn canonical_time(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .ok()
}

/// Rewrite `field` of `objects` (NetBox records) with [`canonical_time`] where it is
/// not canonical already.
pub fn canonicalise_times(objects: &mut [Listed], field: &str) {
    for listed in objects.iter_mut() {
        let mut value = listed.value();
        let Some(object) = value.as_object_mut() else {
            continue;
        };
        let Some(text) = object.get(field).and_then(Value::as_str) else {
            continue;
        };
        if let Some(canonical) = canonical_time(text).filter(|c| c != text) {
            object.insert(field.into(), Value::String(canonical));
            *listed = Listed::new(&value);
        }
    }
}

/// Whether a NetBox record carries the ownership tag.
pub fn has_owner_tag(record: &Value) -> bool {
    record
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| {
            tags.iter()
                .any(|t| t.get("slug").and_then(Value::as_str) == Some(OWNERSHIP_TAG_SLUG))
        })
}

/// Delete `doomed` (`(id, label)`) records at `path` (dry run: only report), reporting
/// each deletion, or its failure, as an item of `item_type`.
pub async fn delete_reported(
    client: &NetBoxClient,
    phase: &mut Phase,
    path: &str,
    item_type: &'static str,
    doomed: Vec<(u64, String)>,
    dry_run: bool,
) {
    if doomed.is_empty() {
        return;
    }
    let ids: Vec<u64> = doomed.iter().map(|(id, _)| *id).collect();
    let results = if dry_run {
        ids.iter().map(|_| Ok(())).collect()
    } else {
        client.bulk_delete(path, &ids).await
    };
    for ((id, label), result) in doomed.into_iter().zip(results) {
        let outcome = match result {
            Ok(()) => Outcome::Deleted,
            Err(e) => Outcome::Failed(format!("cannot delete it: {e}")),
        };
        phase.item(&Item::new(label, item_type).with_id(Some(id)), outcome);
    }
}

/// The stage's failure (announced with an `error_detail`) when NetBox does not run the
/// plugin.
pub fn missing_plugin(run: &SyncRun, sink: &EventSink, phase: &str) -> Option<Failure> {
    (!run.netbox_status.has_proxbox_plugin()).then(|| {
        plugin_missing(
            sink,
            phase,
            "NetBox does not report the netbox_proxbox plugin".into(),
        )
    })
}

/// A NetBox error as the stage's failure; a 404 from a plugin path means the plugin's API
/// is missing and is announced with an `error_detail`.
pub fn netbox_failure(sink: &EventSink, phase: &str, error: NetBoxError) -> Failure {
    match &error {
        NetBoxError::Status {
            status: 404, path, ..
        } if path.contains("plugins/") => plugin_missing(sink, phase, error.to_string()),
        _ => Failure::from(error),
    }
}

fn plugin_missing(sink: &EventSink, phase: &str, detail: String) -> Failure {
    let message = "The netbox-proxbox plugin API is not available in NetBox";
    let mut event = ErrorDetail::new(ErrorCategory::NotFound, message);
    event.phase = Some(phase.to_string());
    event.detail = Some(detail.clone());
    event.suggestion =
        Some("Install or upgrade the netbox-proxbox plugin (0.0.29 or later) in NetBox".into());
    sink.emit(event);
    Failure::new(format!("{message}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Stage};
    use crate::proxmox::models::FromValue;
    use futures::StreamExt;

    fn config(value: Value) -> StorageConfig {
        StorageConfig::from_value(value).expect("storage config")
    }

    #[test]
    fn storages_are_complete_only_when_every_node_holding_them_was_read() {
        let configs = vec![
            config(json!({"storage": "pbs", "type": "pbs", "content": "backup", "shared": 1})),
            config(json!({"storage": "local", "type": "dir", "content": "backup,iso"})),
            config(json!({"storage": "nfs", "type": "nfs", "content": "backup", "shared": 1})),
            config(json!({"storage": "usb", "type": "dir", "content": "backup", "nodes": "b"})),
            config(json!({"storage": "thin", "type": "lvmthin", "content": "images"})),
            config(json!({"storage": "off", "type": "dir", "content": "backup", "disable": 1})),
        ];
        let pair = |n: &str, s: &str| (n.to_string(), s.to_string());
        let c = Completeness {
            nodes_listed: ["a", "b", "c"].map(String::from).into(),
            nodes_offline: ["c".to_string()].into(),
            storages_read: [
                pair("a", "pbs"),
                pair("a", "local"),
                pair("b", "local"),
                pair("b", "usb"),
            ]
            .into(),
            storages_failed: [(pair("a", "nfs"), "boom".to_string())].into(),
            ..Completeness::default()
        };
        let complete = complete_storages(&configs, &c, &BTreeSet::new());
        // `local` is on offline node c too; `nfs` failed; `thin` and `off` hold no backups.
        assert_eq!(complete, ["pbs", "usb"].map(String::from).into());
        let unknown = ["usb".to_string()].into();
        assert_eq!(
            complete_storages(&configs, &c, &unknown),
            ["pbs".to_string()].into()
        );
    }

    #[test]
    fn owners_match_endpoint_cluster_vmid_and_type() {
        let record = |vm: u64, endpoint: u64, cluster: &str, vmid: u64, kind: &str| {
            json!({"virtual_machine": {"id": vm}, "proxmox_endpoint_raw_id": endpoint,
                   "proxmox_cluster_name": cluster, "proxmox_vm_id": vmid, "proxmox_vm_type": kind})
        };
        let owners = Owners::from_records(&[
            record(1, 7, "Lab", 100, "qemu"),
            record(2, 7, "other", 100, "qemu"),
            record(3, 7, "lab", 101, "lxc"),
            record(4, 8, "lab", 100, "qemu"),
            record(5, 7, "", 102, "qemu"),
            record(6, 7, "lab", 103, "qemu"),
            record(7, 7, "lab", 103, "qemu"),
            json!({"virtual_machine": null, "proxmox_endpoint_raw_id": 7}),
        ]);
        assert_eq!(owners.resolve(7, "lab", 100, Some("qemu")), Ok(1));
        assert_eq!(owners.resolve(7, "LAB", 100, None), Ok(1));
        assert!(owners.resolve(7, "lab", 100, Some("lxc")).is_err());
        assert_eq!(owners.resolve(7, "lab", 101, None), Ok(3));
        assert_eq!(owners.resolve(7, "lab", 102, Some("qemu")), Ok(5));
        let ambiguous = owners.resolve(7, "lab", 103, None).unwrap_err();
        assert!(ambiguous.contains("2 NetBox VMs"), "{ambiguous}");
        assert_eq!(owners.vms_of(7, "lab"), [1, 3, 5, 6, 7].into());
    }

    #[test]
    fn times_compare_in_utc() {
        assert_eq!(
            canonical_time("2025-10-08T02:33:20+02:00").as_deref(),
            Some("2025-10-08T00:33:20Z")
        );
        assert_eq!(
            canonical_time("2025-10-08T00:33:20Z").as_deref(),
            Some("2025-10-08T00:33:20Z")
        );
        assert_eq!(canonical_time("yesterday"), None);
        let mut records = vec![
            Listed::new(&json!({"id": 1, "creation_time": "2025-10-08T01:33:20+01:00"})),
            Listed::new(&json!({"id": 2, "creation_time": "2025-10-08T00:33:20Z"})),
        ];
        let canonical = records[1].clone();
        canonicalise_times(&mut records, "creation_time");
        assert_eq!(records[0].value()["creation_time"], "2025-10-08T00:33:20Z");
        assert!(
            std::ptr::eq(records[1].text(), canonical.text()),
            "rewritten needlessly"
        );
    }

    #[test]
    fn subtypes_name_guest_kinds() {
        assert_eq!(guest_kind("vm"), Some("qemu"));
        assert_eq!(guest_kind("CT"), Some("lxc"));
        assert_eq!(guest_kind("undefined"), None);
    }

    #[tokio::test]
    async fn a_missing_plugin_api_fails_the_stage_with_an_error_detail() {
        let events: Vec<Event> = Stage::new(PHASE)
            .run(|sink| async move {
                let error = NetBoxError::Status {
                    method: "GET".into(),
                    path: BACKUP_PATH.into(),
                    status: 404,
                    body: json!({"detail": "Not found."}),
                };
                Err::<crate::events::Dict, _>(netbox_failure(&sink, PHASE, error))
            })
            .collect()
            .await;
        let names: Vec<&str> = events.iter().map(Event::name).collect();
        assert_eq!(names, ["step", "error_detail", "error", "complete"]);
        let Some(Event::Complete(complete)) = events.last() else {
            panic!("no complete");
        };
        assert!(!complete.ok);
    }
}
