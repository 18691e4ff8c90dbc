//! Stage `node-interfaces` (contract §7.2): each entry of a node's `/nodes/{node}/network`
//! becomes an interface of the node's NetBox device, matched by `(device, name)`, with
//! its VLANs, MAC address and IP addresses (under the ownership rule of
//! [`super::ip_addresses`]); then the device's primary IPs per the `ip-address` mapper.
//!
//! Parent, bridge and LAG links name other interfaces of the same device: they are set
//! in the same write when the other interface exists, else right after it is created.
//! A node whose network cannot be read fails alone (the reference fails the whole
//! stage); its interfaces and addresses are left as they are. Interfaces are never
//! deleted; stale addresses only on completely read and mapped nodes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{describe, list_by, reconcile_kind};
use super::devices;
use super::ip_addresses::{self, Assigned, PrimaryAsk, WantIp};
use super::macs::{self, WantMac};
use super::mapping::{self, map_batch};
use super::report::{Item, Outcome, Phase};
use super::resolve::ensure_tags;
use super::vlans::{self, Vlans};
use super::vm_interfaces::{
    InterfaceFields, interface_payload, interface_spec, primary_macs, with_mac,
};
use super::{StageSummary, SyncRun, read_inventories};
use crate::events::{EventSink, Failure};
use crate::mapper::v1::{Context, DesiredNodeInterface, PrimaryOwner, VlanRef};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::normalize::network;
use crate::proxmox::models::ClusterStatusEntry;

/// Stage and phase name.
pub const PHASE: &str = "node-interfaces";

/// NetBox device interfaces.
pub const INTERFACE_PATH: &str = "dcim/interfaces/";

/// The links an interface payload may carry to other interfaces of its device.
const LINKS: [&str; 3] = ["parent", "bridge", "lag"];

/// One node whose device is in NetBox.
struct NodeScope {
    device: u64,
    device_name: String,
    ctx: Context,
    /// The network was read and every entry mapped: stale addresses may go.
    complete: bool,
}

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let reads = read_inventories(run, sink, PHASE).await;
    let (topology, _) = devices::reconcile(run, &reads, None).await?;
    let params = super::guest_nics::network_params(run);

    enum Line {
        Done(Item, Outcome),
        Iface(Item, usize),
    }
    let mut lines: Vec<Line> = Vec::new();
    let mut scopes: Vec<NodeScope> = Vec::new();
    let mut asks = Vec::new();
    for read in &reads {
        for entry in &read.inventory.status {
            let ClusterStatusEntry::Node { name, .. } = entry else {
                continue;
            };
            match topology
                .nodes
                .get(&(read.session.endpoint.id, name.clone()))
            {
                Some((device, device_name)) => {
                    asks.push((read, name.clone(), scopes.len()));
                    scopes.push(NodeScope {
                        device: *device,
                        device_name: device_name.clone(),
                        ctx: mapping::context(read.session, name, &params, &run.now),
                        complete: true,
                    });
                }
                None => lines.push(Line::Done(
                    Item::new(name.clone(), "node"),
                    Outcome::Skipped("its device is not in NetBox".into()),
                )),
            }
        }
    }
    let networks = futures::future::join_all(
        asks.iter()
            .map(|(read, node, _)| read.session.client.node_network(node)),
    )
    .await;
    let mut inputs = Vec::new();
    let mut input_of: Vec<(usize, String)> = Vec::new();
    for ((_, node, s_index), network) in asks.iter().zip(networks) {
        let scope = &mut scopes[*s_index];
        let entries: Vec<Value> = match network {
            Ok(list) => list.into_iter().map(|i| i.raw).collect(),
            Err(e) => {
                scope.complete = false;
                lines.push(Line::Done(
                    Item::new(scope.device_name.clone(), "device"),
                    Outcome::Failed(format!("cannot read the network of node {node}: {e}")),
                ));
                continue;
            }
        };
        for (entry, input) in entries.iter().zip(network::node_interfaces(node, &entries)) {
            match input {
                Ok(input) => {
                    input_of.push((*s_index, input.name.clone()));
                    inputs.push((scope.ctx.clone(), MapInput::NodeInterface(input)));
                }
                Err(e) => {
                    scope.complete = false;
                    let name = entry.get("iface").and_then(Value::as_str).unwrap_or("?");
                    lines.push(Line::Done(
                        Item::new(format!("{}/{name}", scope.device_name), "interface"),
                        Outcome::Failed(format!("invalid Proxmox data: {e}")),
                    ));
                }
            }
        }
    }
    let mapped = map_batch(run.mappers.clone(), Kind::NodeInterface, inputs).await;
    let mut wanted: Vec<(usize, DesiredNodeInterface)> = Vec::new();
    for ((s_index, name), result) in input_of.into_iter().zip(mapped) {
        let scope = &mut scopes[s_index];
        let item = Item::new(format!("{}/{name}", scope.device_name), "interface");
        match result {
            Ok(Some(MapOutput::NodeInterface(d))) => wanted.push((s_index, d)),
            Ok(None) => lines.push(Line::Done(
                item,
                Outcome::Skipped("the mapper does not sync it".into()),
            )),
            Ok(Some(_)) => {
                scope.complete = false;
                lines.push(Line::Done(
                    item,
                    Outcome::Failed("the mapper returned another kind".into()),
                ));
            }
            Err(e) => {
                scope.complete = false;
                lines.push(Line::Done(item, Outcome::Failed(e.to_string())));
            }
        }
    }

    let refs: Vec<VlanRef> = wanted
        .iter()
        .flat_map(|(_, d)| d.untagged_vlan.iter().chain(d.tagged_vlans.iter()))
        .cloned()
        .collect();
    let vlans = vlans::ensure(netbox, &refs, run.prerequisites.ownership_tag(), dry_run).await?;
    let tag_names: BTreeSet<String> = wanted
        .iter()
        .flat_map(|(_, d)| d.tags.iter().cloned())
        .collect();
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let inline_mac = !run.netbox_status.has_mac_objects();

    // What NetBox holds: the devices' interfaces, for the links.
    let spec = spec(run, inline_mac);
    let devices: BTreeSet<String> = scopes.iter().map(|s| s.device.to_string()).collect();
    let mut fields = "id,tags,custom_fields,device,name,type,enabled,mtu,description,mode,\
                      untagged_vlan,tagged_vlans,parent,bridge,lag,primary_mac_address"
        .to_string();
    if inline_mac {
        fields.push_str(",mac_address");
    }
    let fields = ("fields", fields);
    let existing = list_by(netbox, INTERFACE_PATH, "device_id", &devices, &[fields]).await?;
    let mut id_of: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for object in existing.iter().map(|l| l.object()) {
        let get = |f: &str| object.get(f).map(normalise).and_then(|v| v.as_u64());
        if let (Some(id), Some(device), Some(name)) = (
            get("id"),
            get("device"),
            object.get("name").and_then(Value::as_str),
        ) {
            id_of.insert((device, name.to_string()), id);
        }
    }

    let mut desired: Vec<Desired> = Vec::new();
    let mut desired_of: Vec<(usize, usize)> = Vec::new();
    let mut deferred: Vec<(usize, &'static str, String)> = Vec::new();
    for (w_index, (s_index, d)) in wanted.iter().enumerate() {
        let device = scopes[*s_index].device;
        let item = Item::new(
            format!("{}/{}", scopes[*s_index].device_name, d.name),
            "interface",
        );
        match payload(d, device, &vlans, &tags, inline_mac) {
            Ok(mut payload) => {
                for (field, target) in LINKS.into_iter().zip([&d.parent, &d.bridge, &d.lag]) {
                    let Some(target) = target.as_ref().filter(|t| **t != d.name) else {
                        continue;
                    };
                    match id_of.get(&(device, target.clone())) {
                        Some(id) => {
                            payload.insert(field.into(), json!(id));
                        }
                        None => deferred.push((desired.len(), field, target.clone())),
                    }
                }
                desired.push(Desired {
                    identity: Some(vec![json!(device), json!(d.name)]),
                    payload,
                });
                desired_of.push((w_index, *s_index));
                lines.push(Line::Iface(item, desired.len() - 1));
            }
            Err(e) => {
                scopes[*s_index].complete = false;
                lines.push(Line::Done(item, Outcome::Failed(e)));
            }
        }
    }

    let mut items: Vec<Item> = vlans.created.iter().map(|(i, _)| i.clone()).collect();
    items.extend(lines.iter().map(|line| match line {
        Line::Done(item, _) | Line::Iface(item, _) => item.clone(),
    }));
    let mut phase = Phase::start(sink, PHASE, "interface", &items, dry_run);
    for (item, outcome) in &vlans.created {
        phase.item(item, outcome.clone());
    }

    let result = reconcile_kind(netbox, &spec, &desired, &existing, false, dry_run).await;

    // Links to interfaces created just now.
    let mut extra: BTreeMap<usize, Result<Vec<String>, String>> = BTreeMap::new();
    if !dry_run && !deferred.is_empty() {
        let mut by_name: BTreeMap<(u64, String), u64> = id_of.clone();
        for (d_index, d) in desired.iter().enumerate() {
            if let (Some(id), Some(device), Some(name)) = (
                result.id(d_index),
                d.payload.get("device").and_then(Value::as_u64),
                d.payload.get("name").and_then(Value::as_str),
            ) {
                by_name.insert((device, name.to_string()), id);
            }
        }
        let mut patches: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
        for (d_index, field, target) in &deferred {
            let device = desired[*d_index]
                .payload
                .get("device")
                .and_then(Value::as_u64)
                .unwrap_or_default();
            if let (Some(id), Some(target)) =
                (result.id(*d_index), by_name.get(&(device, target.clone())))
            {
                let patch = patches.entry(*d_index).or_default();
                patch.insert("id".into(), json!(id));
                patch.insert((*field).into(), json!(target));
            }
        }
        let (indexes, values): (Vec<usize>, Vec<Value>) = patches
            .into_iter()
            .map(|(i, p)| {
                let fields: Vec<String> = p.keys().filter(|k| *k != "id").cloned().collect();
                extra.insert(i, Ok(fields));
                (i, Value::Object(p))
            })
            .unzip();
        for (index, r) in indexes
            .into_iter()
            .zip(netbox.bulk_update(INTERFACE_PATH, values).await)
        {
            if let Err(e) = r {
                extra.insert(index, Err(describe(&e)));
            }
        }
    }

    // MACs.
    if !inline_mac {
        let primaries = primary_macs(&existing);
        let mut wants = Vec::new();
        let mut of = Vec::new();
        for (d_index, (w_index, _)) in desired_of.iter().enumerate() {
            if let (Some(mac), Some(iface)) = (&wanted[*w_index].1.mac, result.id(d_index)) {
                wants.push(WantMac {
                    iface,
                    mac: mac.clone(),
                    primary: primaries.get(&iface).copied(),
                });
                of.push(d_index);
            }
        }
        let outcomes = macs::sync(
            netbox,
            Assigned::DeviceInterface,
            &wants,
            run.prerequisites.ownership_tag(),
            dry_run,
        )
        .await?;
        for (d_index, mac) in of.into_iter().zip(outcomes) {
            let merged = match (extra.remove(&d_index), mac) {
                (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                (Some(Ok(mut a)), Ok(b)) => {
                    a.extend(b);
                    Ok(a)
                }
                (None, Ok(b)) => Ok(b),
            };
            extra.insert(d_index, merged);
        }
    }

    // Addresses on the interfaces that exist.
    let mut ip_wants: Vec<WantIp> = Vec::new();
    let mut ip_lines: Vec<usize> = Vec::new();
    let mut wants_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut interfaces: BTreeSet<u64> = BTreeSet::new();
    let mut complete: BTreeSet<u64> = BTreeSet::new();
    for (d_index, (w_index, s_index)) in desired_of.iter().enumerate() {
        let Some(iface) = result.id(d_index) else {
            continue;
        };
        let (_, d) = &wanted[*w_index];
        let scope = &scopes[*s_index];
        interfaces.insert(iface);
        if scope.complete {
            complete.insert(iface);
        }
        for address in &d.addresses {
            wants_of.entry(*s_index).or_default().push(ip_wants.len());
            ip_lines.push(ip_wants.len());
            ip_wants.push(WantIp {
                iface,
                iface_name: d.name.clone(),
                owner: scope.device,
                desired: address.clone(),
                item: Item::new(
                    format!("{}/{} {}", scope.device_name, d.name, address.address),
                    "ip_address",
                ),
            });
        }
    }
    let ips = ip_addresses::reconcile(
        run,
        Assigned::DeviceInterface,
        &ip_wants,
        &interfaces,
        &complete,
    )
    .await?;

    let mut count = 0;
    for line in lines {
        match line {
            Line::Done(item, outcome) => phase.item(&item, outcome),
            Line::Iface(item, index) => {
                let (outcome, id) = result.outcome(index);
                let outcome = with_mac(outcome, extra.remove(&index));
                if id.is_some() && !matches!(outcome, Outcome::Failed(_)) {
                    count += 1;
                }
                phase.item(&item.with_id(id), outcome);
            }
        }
    }
    for index in ip_lines {
        let (outcome, id) = ips.wants[index].clone();
        phase.item(&ip_wants[index].item.clone().with_id(id), outcome);
    }
    for (item, outcome) in &ips.deleted {
        phase.item(item, outcome.clone());
    }
    let asks: Vec<PrimaryAsk> = wants_of
        .into_iter()
        .map(|(s_index, indexes)| {
            let scope = &scopes[s_index];
            PrimaryAsk {
                owner: scope.device,
                name: scope.device_name.clone(),
                ctx: scope.ctx.clone(),
                who: PrimaryOwner::Node(scope.device_name.clone()),
                wants: indexes,
            }
        })
        .collect();
    for (item, outcome) in
        ip_addresses::set_primaries(run, Assigned::DeviceInterface, &ip_wants, &ips, asks).await?
    {
        phase.item(&item, outcome);
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// The reconcile spec: `(device, name)`, with type and links; tags and custom fields per
/// the `overwrite_node_interface_*` flags.
fn spec(run: &SyncRun, inline_mac: bool) -> KindSpec {
    interface_spec(
        run,
        INTERFACE_PATH,
        "device",
        &["type", "parent", "bridge", "lag"],
        inline_mac,
        "overwrite_node_interface",
    )
}

/// The NetBox payload of one interface of device `device` (without its links).
fn payload(
    d: &DesiredNodeInterface,
    device: u64,
    vlans: &Vlans,
    tags: &BTreeMap<String, u64>,
    inline_mac: bool,
) -> Result<Map<String, Value>, String> {
    if d.interface_type.trim().is_empty() {
        return Err("the mapper gave the interface no type".into());
    }
    let fields = InterfaceFields {
        name: &d.name,
        enabled: d.enabled,
        mtu: d.mtu,
        description: d.description.as_deref(),
        mode: d.mode.as_deref(),
        untagged: d.untagged_vlan.as_ref(),
        tagged: &d.tagged_vlans,
        mac: d.mac.as_deref(),
        tags: &d.tags,
        custom_fields: &d.custom_fields,
    };
    let mut payload = interface_payload(("device", device), &fields, vlans, tags, inline_mac)?;
    payload.insert("type".into(), json!(d.interface_type));
    Ok(payload)
}
