//! Stage `virtual-machines` (contract §7.4): QEMU VMs and LXC containers become NetBox
//! virtual machines. A VM is matched by `(endpoint, NetBox cluster, VMID, type)` through
//! the plugin's sync-state records, never by name. Names that collide inside one NetBox
//! cluster get the smallest free `" (N)"` suffix, the lowest VMID keeping the bare name.
//! Nothing is deleted here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{KindResult, reconcile_kind};
use super::devices::{self, Topology, tag_ids};
use super::mapping::{self, Inputs, map_batch};
use super::options::SyncMode;
use super::report::{Item, Outcome, Phase};
use super::resolve::{ensure_tags, ids_by};
use super::vm_match::{ClusterVms, Matched, Records, Want, match_guests};
use super::{EndpointRead, StageSummary, SyncRun, custom_fields, read_inventories};
use crate::events::{EventSink, Failure};
use crate::mapper::v1::{DesiredVirtualMachine, GuestInput, GuestType};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::reconcile::Desired;
use crate::netbox::vms::{self, IDENTITY_KEY, VM_PATH, VM_STATE_PATH, VmIdentity, identity_of};
use crate::netbox::{Listed, NetBoxClient};
use crate::normalize;
use crate::proxmox::models::{ClusterResource, GuestKind};

/// Stage and phase name.
pub const PHASE: &str = "virtual-machines";

/// A guest read from Proxmox: its identity, the endpoint's read, and its input (or why not).
pub struct Guest<'a> {
    /// Which endpoint read it.
    pub read: &'a EndpointRead<'a>,
    /// Its name in `/cluster/resources` (the whole entry is in the input; a stage keeps
    /// every guest, so only what the reports and sync-state records read is kept here).
    pub name: Option<String>,
    /// The node it runs on, per `/cluster/resources`.
    pub node: Option<String>,
    /// Proxmox identity.
    pub identity: VmIdentity,
    /// The normalised input, or why there is none.
    pub input: Result<GuestInput, String>,
}

impl Guest<'_> {
    /// `qemu/100 "name"`, for reports.
    pub fn label(&self) -> String {
        let name = self.name.clone().unwrap_or_default();
        format!("{}/{} {name}", self.identity.kind, self.identity.vmid)
            .trim_end()
            .to_string()
    }
}

fn kind_str(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "qemu",
        GuestKind::Lxc => "lxc",
    }
}

/// The guests of `reads` the options select, with their configs read (bounded per
/// endpoint). `wanted` restricts to those Proxmox identities (`netbox_vm_ids`).
pub async fn read_guests<'a>(
    run: &SyncRun,
    reads: &'a [EndpointRead<'a>],
    wanted: Option<&BTreeSet<VmIdentity>>,
) -> Vec<Guest<'a>> {
    let mut out = Vec::new();
    for read in reads {
        let endpoint = u64::try_from(read.session.endpoint.id).unwrap_or_default();
        let identity_of = |g: &ClusterResource| VmIdentity {
            endpoint,
            vmid: g.vmid.unwrap_or_default(),
            kind: kind_str(g.guest_kind().unwrap_or(GuestKind::Qemu)).into(),
        };
        let selected: Vec<&ClusterResource> = read
            .inventory
            .guests
            .iter()
            .filter(|g| {
                let template = g
                    .raw
                    .get("template")
                    .is_some_and(|t| t.as_u64() == Some(1) || t.as_bool() == Some(true));
                let mode = if template {
                    run.options.sync_mode_vm_template
                } else {
                    run.options.sync_mode_vm
                };
                mode != SyncMode::Disabled && wanted.is_none_or(|w| w.contains(&identity_of(g)))
            })
            .collect();
        let configs = run.proxmox.configs(read.session, &selected).await;
        for (resource, config) in selected.into_iter().zip(configs) {
            let kind = resource.guest_kind().unwrap_or(GuestKind::Qemu);
            // Parsed only while this guest is normalised.
            let input = config.and_then(|text| text.parse()).and_then(|config| {
                normalize::guest(
                    &resource.raw,
                    Some(&config.raw),
                    Some(match kind {
                        GuestKind::Qemu => GuestType::Qemu,
                        GuestKind::Lxc => GuestType::Lxc,
                    }),
                    resource.node.as_deref(),
                )
                .map_err(|e| format!("invalid Proxmox data: {e}"))
            });
            out.push(Guest {
                read,
                name: resource.name.clone(),
                node: resource.node.clone(),
                identity: identity_of(resource),
                input,
            });
        }
    }
    out
}

/// The identities of guest `only` on the endpoints of `reads`.
fn only_identities(
    reads: &[EndpointRead<'_>],
    only: &crate::sync::options::OnlyGuest,
) -> BTreeSet<VmIdentity> {
    let kinds: Vec<&str> = match &only.kind {
        Some(kind) => vec![kind.as_str()],
        None => vec!["qemu", "lxc"],
    };
    reads
        .iter()
        .flat_map(|r| {
            let endpoint = u64::try_from(r.session.endpoint.id).unwrap_or_default();
            kinds.iter().map(move |kind| VmIdentity {
                endpoint,
                vmid: only.vmid,
                kind: (*kind).to_string(),
            })
        })
        .collect()
}

/// Identities of the NetBox VMs `ids` (for `netbox_vm_ids`).
pub async fn identities_of(
    run: &SyncRun,
    ids: &[u64],
) -> Result<BTreeSet<VmIdentity>, crate::netbox::NetBoxError> {
    let records = run.vm_identities().await?;
    Ok(ids
        .iter()
        .filter_map(|id| records.get(id).map(|(_, identity)| identity.clone()))
        .collect())
}

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let mut reads = read_inventories(run, sink, PHASE).await;
    if let Some(only) = &run.options.only_guest {
        reads.retain(|r| only.in_cluster(&r.inventory.name) || only.in_cluster(&r.session.name));
    }
    let (topology, _) = devices::reconcile(run, &reads, None).await?;
    let wanted = match (&run.options.netbox_vm_ids, &run.options.only_guest) {
        (_, Some(only)) => Some(only_identities(&reads, only)),
        (Some(ids), None) => Some(identities_of(run, ids).await?),
        (None, None) => None,
    };
    let guests = read_guests(run, &reads, wanted.as_ref()).await;
    let result = reconcile(run, &reads, &guests, &topology, sink).await?;
    Ok(result.summary)
}

/// What the VM reconcile produced.
pub struct VmResult {
    /// Counts and count.
    pub summary: StageSummary,
    /// NetBox VM id per Proxmox identity, for the VMs that exist now.
    pub ids: BTreeMap<VmIdentity, u64>,
}

/// A VM to reconcile and its payload.
type Member = (Want, Map<String, Value>);

/// Map and reconcile `guests` (read through `reads`) into the clusters of `topology`,
/// reporting each VM; with `delete_orphans`, also delete our VMs whose guest is gone.
pub async fn reconcile(
    run: &SyncRun,
    reads: &[EndpointRead<'_>],
    guests: &[Guest<'_>],
    topology: &Topology,
    sink: &EventSink,
) -> Result<VmResult, Failure> {
    let dry_run = run.options.dry_run;
    let input_of: Vec<(usize, &Guest<'_>, &GuestInput)> = guests
        .iter()
        .enumerate()
        .filter_map(|(index, guest)| guest.input.as_ref().ok().map(|input| (index, guest, input)))
        .collect();
    let inputs: Inputs<'_> = Box::new(input_of.iter().map(|(_, guest, input)| {
        let ctx = mapping::context(guest.read.session, &input.node, &run.params, &run.now);
        (ctx, MapInput::VirtualMachine((*input).clone()))
    }));
    let mut mapped: BTreeMap<usize, Result<Option<DesiredVirtualMachine>, String>> =
        BTreeMap::new();
    for (index, result) in input_of
        .iter()
        .map(|(index, _, _)| *index)
        .zip(map_batch(run.mappers.clone(), Kind::VirtualMachine, inputs).await)
    {
        mapped.insert(
            index,
            match result {
                Ok(Some(MapOutput::VirtualMachine(vm))) => Ok(Some(vm)),
                Ok(None) => Ok(None),
                Ok(Some(_)) => Err("the mapper returned another kind".into()),
                Err(e) => Err(e.to_string()),
            },
        );
    }
    let items: Vec<Item> = guests.iter().map(|g| Item::new(g.label(), "vm")).collect();
    let mut phase = Phase::start(sink, PHASE, "virtual_machine", &items, dry_run);

    let mut wants: Vec<Want> = Vec::new();
    for (index, guest) in guests.iter().enumerate() {
        let outcome = match (&guest.input, mapped.remove(&index)) {
            (Err(e), _) => Outcome::Failed(e.clone()),
            (Ok(_), Some(Err(e))) => Outcome::Failed(e),
            (Ok(_), Some(Ok(None))) => Outcome::Skipped("the mapper does not sync it".into()),
            (Ok(_), Some(Ok(Some(desired)))) => {
                wants.push(Want {
                    guest: index,
                    cluster: desired.cluster.clone(),
                    desired,
                });
                continue;
            }
            (Ok(_), None) => Outcome::Failed("not mapped".into()),
        };
        phase.item(&items[index], outcome);
    }

    // The NetBox VMs of the target clusters, matched to the guests; names settled.
    let netbox = &run.netbox;
    let spec = vms::spec(run.options.overwrite.vm_fields());
    let fields: BTreeSet<&str> = spec
        .owned
        .iter()
        .map(String::as_str)
        .chain([
            "id",
            "name",
            "cluster",
            "tags",
            "custom_fields",
            "virtual_disk_count",
        ])
        .collect();
    let fields = fields.into_iter().collect::<Vec<_>>().join(",");
    let mut clusters: BTreeMap<String, ClusterVms> = BTreeMap::new();
    for name in wants
        .iter()
        .map(|w| w.cluster.clone())
        .collect::<BTreeSet<_>>()
    {
        if let Some(id) = topology.clusters.get(&name).and_then(|c| c.id) {
            let query = [("cluster_id", id.to_string()), ("fields", fields.clone())];
            let vms = netbox.listed(VM_PATH, &query).await?;
            clusters.insert(name, ClusterVms { id, vms });
        }
    }
    let records = if clusters.is_empty() {
        Records::default()
    } else {
        Records::from_records(&run.vm_state_records().await?)
    };
    let matched = match_guests(
        &mut wants,
        guests,
        &mut clusters,
        &records,
        spec.owned.contains("name"),
        sink,
    );

    // Related objects by natural key.
    let mut site_slugs = BTreeSet::new();
    let mut tenant_slugs = BTreeSet::new();
    let mut platform_slugs = BTreeSet::new();
    let mut role_slugs = BTreeSet::new();
    let mut type_slugs = BTreeSet::new();
    let mut tag_names = BTreeSet::new();
    for want in &wants {
        let d = &want.desired;
        site_slugs.extend(d.site.clone());
        tenant_slugs.extend(d.tenant.clone());
        platform_slugs.extend(d.platform.clone());
        role_slugs.extend(d.role.clone());
        type_slugs.extend(d.virtual_machine_type.clone());
        tag_names.extend(d.tags.iter().cloned());
    }
    let sites = ids_by(netbox, "dcim/sites/", "slug", &site_slugs).await?;
    let tenants = ids_by(netbox, "tenancy/tenants/", "slug", &tenant_slugs).await?;
    let platforms = ids_by(netbox, "dcim/platforms/", "slug", &platform_slugs).await?;
    let mut roles = run.prerequisites.roles.clone();
    let missing: BTreeSet<String> = role_slugs
        .difference(&roles.keys().cloned().collect())
        .cloned()
        .collect();
    roles.extend(ids_by(netbox, "dcim/device-roles/", "slug", &missing).await?);
    let mut vm_types = run.prerequisites.vm_types.clone();
    if run.netbox_status.has_vm_types() {
        let missing: BTreeSet<String> = type_slugs
            .difference(&vm_types.keys().cloned().collect())
            .cloned()
            .collect();
        vm_types.extend(
            ids_by(
                netbox,
                "virtualization/virtual-machine-types/",
                "slug",
                &missing,
            )
            .await?,
        );
    }
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let discovered = |kind: &str| {
        run.prerequisites
            .tags
            .get(&format!("proxbox-discovered-{kind}"))
            .copied()
    };

    // Group by NetBox cluster, then reconcile each cluster's VMs.
    let mut by_cluster: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    // NetBox keeps the `disk` of a VM with virtual disks equal to their sum (and refuses
    // any other value): the virtual-disks stage owns it there.
    let with_disks: BTreeSet<u64> = clusters
        .values()
        .flat_map(|c| &c.vms)
        .filter(|vm| {
            vm.value()
                .get("virtual_disk_count")
                .and_then(Value::as_u64)
                .is_some_and(|n| n > 0)
        })
        .filter_map(Listed::id)
        .collect();
    for (index, want) in wants.into_iter().enumerate() {
        let disk_total_owned = matched
            .vm_of
            .get(&index)
            .is_none_or(|vm| !with_disks.contains(vm));
        let guest = &guests[want.guest];
        let Some(cluster) = topology.clusters.get(&want.cluster).copied() else {
            phase.item(
                &items[want.guest],
                Outcome::Failed(format!("NetBox cluster `{}` is not known", want.cluster)),
            );
            continue;
        };
        let d = &want.desired;
        let payload = (|| -> Result<Map<String, Value>, String> {
            let lookup = |map: &BTreeMap<String, u64>, what: &str, key: &str| {
                map.get(key)
                    .copied()
                    .ok_or_else(|| format!("{what} `{key}` does not exist in NetBox"))
            };
            let mut p = Map::new();
            p.insert("name".into(), json!(d.name));
            p.insert("status".into(), json!(d.status));
            p.insert("cluster".into(), json!(cluster.id));
            let site = match &d.site {
                Some(slug) => Some(lookup(&sites, "site", slug)?),
                None => cluster.site,
            };
            p.insert("site".into(), json!(site));
            let device = d
                .device
                .as_ref()
                .and_then(|name| topology.devices.get(&(want.cluster.clone(), name.clone())));
            p.insert("device".into(), json!(device));
            if let Some(role) = &d.role {
                p.insert("role".into(), json!(lookup(&roles, "VM role", role)?));
            }
            if let Some(vm_type) = d
                .virtual_machine_type
                .as_ref()
                .filter(|_| run.netbox_status.has_vm_types())
            {
                p.insert(
                    "virtual_machine_type".into(),
                    json!(lookup(&vm_types, "VM type", vm_type)?),
                );
            }
            if let Some(platform) = &d.platform {
                p.insert(
                    "platform".into(),
                    json!(lookup(&platforms, "platform", platform)?),
                );
            }
            if let Some(tenant) = &d.tenant {
                p.insert("tenant".into(), json!(lookup(&tenants, "tenant", tenant)?));
            }
            p.insert("vcpus".into(), json!(d.vcpus.filter(|v| *v > 0)));
            p.insert("memory".into(), json!(d.memory_mib));
            if disk_total_owned {
                p.insert(
                    "disk".into(),
                    json!(d.disk_mib.map(|m| m.min(2_147_483_647))),
                );
            }
            p.insert("description".into(), json!(d.description));
            if let Some(comments) = &d.comments {
                p.insert("comments".into(), json!(comments));
            }
            let mut tag_list = tag_ids(&d.tags, &tags);
            if let (Some(tag), Value::Array(list)) =
                (discovered(&guest.identity.kind), &mut tag_list)
            {
                list.push(json!(tag));
            }
            p.insert("tags".into(), tag_list);
            if let Some(fields) = custom_fields(&d.custom_fields)? {
                p.insert("custom_fields".into(), Value::Object(fields));
            }
            Ok(p)
        })();
        match payload {
            Ok(payload) => by_cluster
                .entry(want.cluster.clone())
                .or_default()
                .push((want, payload)),
            Err(e) => phase.item(&items[want.guest], Outcome::Failed(e)),
        }
    }

    let mut ids = BTreeMap::new();
    let mut count = 0;
    let mut orphans: Vec<Listed> = Vec::new();
    for (cluster_name, members) in by_cluster {
        let cluster = topology.clusters.get(&cluster_name).copied();
        let desired: Vec<Desired> = members
            .iter()
            .map(|(want, payload)| Desired {
                identity: cluster
                    .and_then(|c| c.id)
                    .map(|id| identity_of(&json!(id), &guests[want.guest].identity)),
                payload: payload.clone(),
            })
            .collect();
        let existing = clusters
            .remove(&cluster_name)
            .map(|c| c.vms)
            .unwrap_or_default();
        let result = reconcile_kind(netbox, &spec, &desired, &existing, false, dry_run).await;
        if !dry_run {
            record_identities(netbox, &result, &members, guests, &matched, &records).await;
        }
        let matched: BTreeSet<u64> = result.items.values().filter_map(|(_, id)| *id).collect();
        orphans.extend(
            existing
                .into_iter()
                .filter(|vm| vm.id().is_some_and(|id| !matched.contains(&id))),
        );
        for (index, (want, _)) in members.iter().enumerate() {
            let (outcome, id) = result.outcome(index);
            if let Some(id) = id {
                count += 1;
                ids.insert(guests[want.guest].identity.clone(), id);
            }
            phase.item(&items[want.guest].clone().with_id(id), outcome);
        }
    }
    if run.options.delete_orphans && run.options.netbox_vm_ids.is_none() {
        delete_orphans(run, reads, guests, &orphans, &mut phase).await;
    }
    let written = phase.counts();
    if !dry_run && written.created + written.updated + written.deleted > 0 {
        run.forget_vm_states().await;
    }
    let counts = phase.finish();
    Ok(VmResult {
        summary: StageSummary { counts, count },
        ids,
    })
}

/// Delete the VMs of `candidates` that are ours and whose guest is gone: they carry our
/// identity record for an endpoint read completely in this run (every node online, the
/// guest list read) and the ownership tag, and no guest of that endpoint has their
/// identity (a guest whose config read failed still counts as present).
async fn delete_orphans(
    run: &SyncRun,
    reads: &[EndpointRead<'_>],
    guests: &[Guest<'_>],
    candidates: &[Listed],
    phase: &mut Phase,
) {
    let complete: BTreeSet<u64> = reads
        .iter()
        .filter(|r| r.inventory.completeness.nodes_offline.is_empty())
        .map(|r| u64::try_from(r.session.endpoint.id).unwrap_or_default())
        .collect();
    let present: BTreeSet<(u64, u32, String)> = guests
        .iter()
        .map(|g| {
            (
                g.identity.endpoint,
                g.identity.vmid,
                g.identity.kind.clone(),
            )
        })
        .collect();
    let mut doomed = Vec::new();
    for vm in candidates.iter().map(Listed::value) {
        let Some(identity) = vm.get(IDENTITY_KEY).and_then(Value::as_array) else {
            continue;
        };
        let endpoint = identity.first().and_then(Value::as_u64);
        let vmid = identity
            .get(2)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        let kind = identity.get(3).and_then(Value::as_str);
        let (Some(endpoint), Some(vmid), Some(kind)) = (endpoint, vmid, kind) else {
            continue;
        };
        let tagged = vm
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|tags| {
                tags.iter().any(|t| {
                    t.get("slug").and_then(Value::as_str)
                        == Some(crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG)
                })
            });
        if tagged
            && complete.contains(&endpoint)
            && !present.contains(&(endpoint, vmid, kind.to_string()))
            && let Some(id) = vm.get("id").and_then(Value::as_u64)
        {
            let name = vm.get("name").and_then(Value::as_str).unwrap_or_default();
            doomed.push((
                id,
                Item::new(format!("{kind}/{vmid} {name}"), "vm").with_id(Some(id)),
            ));
        }
    }
    if doomed.is_empty() {
        return;
    }
    if run.options.dry_run {
        for (_, item) in &doomed {
            phase.item(item, Outcome::Deleted);
        }
        return;
    }
    let ids: Vec<u64> = doomed.iter().map(|(id, _)| *id).collect();
    let results = run.netbox.bulk_delete(VM_PATH, &ids).await;
    for ((_, item), result) in doomed.iter().zip(results) {
        match result {
            Ok(()) => phase.item(item, Outcome::Deleted),
            Err(e) => phase.item(item, Outcome::Failed(format!("cannot delete: {e}"))),
        }
    }
}

/// Write the sync-state records (Proxmox identity and name) of the VMs created or
/// adopted, and bring the `proxmox_vm_name` of the others up to date (the rename rule's
/// evidence). Failures are logged: the VMs themselves are written.
async fn record_identities(
    client: &NetBoxClient,
    result: &KindResult,
    members: &[Member],
    guests: &[Guest<'_>],
    matched: &Matched,
    records: &Records,
) {
    let mut creates = Vec::new();
    let mut renames = Vec::new();
    for (i, (want, _)) in members.iter().enumerate() {
        let (outcome, Some(vm)) = result.outcome(i) else {
            continue;
        };
        if matches!(outcome, Outcome::Failed(_)) {
            continue;
        }
        let guest = &guests[want.guest];
        let name = guest.name.clone().unwrap_or_default();
        match records.identities.get(&vm) {
            Some((record, _)) if !matched.adopted.contains(&vm) => {
                if records.last_names.get(&vm) != Some(&name) {
                    renames.push(json!({"id": record, "proxmox_vm_name": name}));
                }
            }
            _ => creates.push(json!({
                "virtual_machine": {"id": vm},
                "proxmox_endpoint_raw_id": guest.identity.endpoint,
                "proxmox_vm_id": guest.identity.vmid,
                "proxmox_vm_type": guest.identity.kind,
                "proxmox_cluster_name": guest.read.inventory.name,
                "proxmox_node_name": guest.node.clone().unwrap_or_default(),
                "proxmox_vm_name": name,
            })),
        }
    }
    let mut results = Vec::new();
    if !creates.is_empty() {
        results.extend(client.bulk_create(VM_STATE_PATH, creates).await);
    }
    if !renames.is_empty() {
        results.extend(client.bulk_update(VM_STATE_PATH, renames).await);
    }
    for result in results {
        if let Err(e) = result {
            tracing::warn!("cannot record a VM identity: {e}");
        }
    }
}
