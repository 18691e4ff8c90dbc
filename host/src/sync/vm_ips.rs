//! Stage `vm-ip-addresses` (contract §7.6): the addresses of each NIC — what the guest
//! reports, then the static ones of its config — mapped by the `ip-address` kind onto
//! the NIC's NetBox VM interface, under the ownership rule of [`super::ip_addresses`];
//! then each VM's primary IPs per the mapper's choice.
//!
//! A NIC's stale addresses are removed only when its guest's view is complete: the
//! guest answered, or it has nothing to ask (a QEMU guest without its agent), and every
//! address of the NIC was mapped. A stopped guest or a silent agent removes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::guest_nics::{self, Live};
use super::guest_vms;
use super::ip_addresses::{self, Assigned, PrimaryAsk, WantIp};
use super::mapping::{Inputs, map_batch};
use super::report::{Item, Outcome, Phase};
use super::vm_interfaces::list_interfaces;
use super::vms::read_guests;
use super::{StageSummary, SyncRun, read_inventories};
use crate::events::{EventSink, Failure};
use crate::mapper::v1::PrimaryOwner;
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::reconcile::normalise;
use crate::normalize::network;

/// Stage and phase name.
pub const PHASE: &str = "vm-ip-addresses";

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let netbox = &run.netbox;
    let reads = read_inventories(run, sink, PHASE).await;
    let (vms_of, wanted) = guest_vms::vms_by_identity(run).await?;
    let guests = read_guests(run, &reads, wanted.as_ref()).await;
    let resolved = guest_vms::resolve(run, &guests, &vms_of).await?;
    let nics = guest_nics::read(run, &guests, &resolved.scopes).await;

    let vm_ids: BTreeSet<u64> = nics.iter().map(|g| g.vm).collect();
    let fields = [("fields", "id,name,virtual_machine".to_string())];
    let mut iface_of: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for object in list_interfaces(netbox, &vm_ids, &fields)
        .await?
        .iter()
        .map(|l| l.object())
    {
        let id_of = |f: &str| object.get(f).map(normalise).and_then(|v| v.as_u64());
        if let (Some(id), Some(vm), Some(name)) = (
            id_of("id"),
            id_of("virtual_machine"),
            object.get("name").and_then(Value::as_str),
        ) {
            iface_of.insert((vm, name.to_string()), id);
        }
    }

    // Every address of every NIC whose interface is in NetBox, mapped.
    enum Line {
        Done(Item, Outcome),
        Want(usize),
    }
    let mut lines: Vec<(usize, Line)> = resolved
        .unsynced
        .into_iter()
        .map(|(guest, item, outcome)| (guest, Line::Done(item, outcome)))
        .collect();
    let mut inputs = Vec::new();
    let mut input_of: Vec<(usize, u64, String, u64, String)> = Vec::new();
    let mut interfaces: BTreeSet<u64> = BTreeSet::new();
    let mut complete: BTreeSet<u64> = BTreeSet::new();
    for (e_index, entry) in nics.iter().enumerate() {
        let vm_name = entry.vm_name(&resolved.vms);
        for (nic, mapped) in entry.nics.iter().zip(&entry.mapped) {
            let Ok(Some(desired)) = mapped else {
                if let Err(e) = mapped {
                    lines.push((
                        entry.guest,
                        Line::Done(
                            Item::new(format!("{vm_name}/{}", nic.nic.key), "interface"),
                            Outcome::Failed(format!("its interface cannot be mapped: {e}")),
                        ),
                    ));
                }
                continue;
            };
            let Some(iface) = iface_of.get(&(entry.vm, desired.name.clone())).copied() else {
                lines.push((
                    entry.guest,
                    Line::Done(
                        Item::new(format!("{vm_name}/{}", desired.name), "interface"),
                        Outcome::Skipped(
                            "its interface is not in NetBox yet; run the vm-interfaces stage first"
                                .into(),
                        ),
                    ),
                ));
                continue;
            };
            interfaces.insert(iface);
            if entry.live != Live::Missing {
                complete.insert(iface);
            }
            for address in network::nic_addresses(nic) {
                input_of.push((
                    e_index,
                    iface,
                    desired.name.clone(),
                    entry.vm,
                    format!("{vm_name}/{} {}", desired.name, address.address),
                ));
                inputs.push((e_index, nic, address));
            }
        }
    }
    let inputs: Inputs<'_> = Box::new(inputs.into_iter().map(|(e_index, nic, address)| {
        let entry = &nics[e_index];
        (
            entry.ctx.clone(),
            MapInput::IpAddress(entry.input.clone(), nic.clone(), address),
        )
    }));
    let mapped = map_batch(run.mappers.clone(), Kind::IpAddress, inputs).await;
    let mut wants: Vec<WantIp> = Vec::new();
    let mut wants_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for ((e_index, iface, iface_name, vm, name), result) in input_of.into_iter().zip(mapped) {
        let guest = nics[e_index].guest;
        let item = Item::new(name, "ip_address");
        match result {
            Ok(Some(MapOutput::IpAddress(desired))) => {
                wants_of.entry(e_index).or_default().push(wants.len());
                lines.push((guest, Line::Want(wants.len())));
                wants.push(WantIp {
                    iface,
                    iface_name,
                    owner: vm,
                    desired,
                    item,
                });
            }
            Ok(None) => lines.push((
                guest,
                Line::Done(
                    item,
                    Outcome::Skipped("the mapper does not record it".into()),
                ),
            )),
            Ok(Some(_)) => {
                complete.remove(&iface);
                lines.push((
                    guest,
                    Line::Done(
                        item,
                        Outcome::Failed("the mapper returned another kind".into()),
                    ),
                ));
            }
            Err(e) => {
                complete.remove(&iface);
                lines.push((guest, Line::Done(item, Outcome::Failed(e.to_string()))));
            }
        }
    }
    lines.sort_by_key(|(guest, _)| *guest);
    let items: Vec<Item> = lines
        .iter()
        .map(|(_, line)| match line {
            Line::Done(item, _) => item.clone(),
            Line::Want(index) => wants[*index].item.clone(),
        })
        .collect();
    let mut phase = Phase::start(sink, PHASE, "ip_address", &items, run.options.dry_run);

    let result =
        ip_addresses::reconcile(run, Assigned::VmInterface, &wants, &interfaces, &complete).await?;
    let asks: Vec<PrimaryAsk> = wants_of
        .into_iter()
        .map(|(e_index, indexes)| {
            let entry = &nics[e_index];
            PrimaryAsk {
                owner: entry.vm,
                name: entry.vm_name(&resolved.vms),
                ctx: entry.ctx.clone(),
                who: PrimaryOwner::Guest(entry.input.clone()),
                wants: indexes,
            }
        })
        .collect();

    let mut count = 0;
    for (_, line) in lines {
        match line {
            Line::Done(item, outcome) => phase.item(&item, outcome),
            Line::Want(index) => {
                let (outcome, id) = result.wants[index].clone();
                if id.is_some() && !matches!(outcome, Outcome::Failed(_)) {
                    count += 1;
                }
                phase.item(&wants[index].item.clone().with_id(id), outcome);
            }
        }
    }
    for (item, outcome) in &result.deleted {
        phase.item(item, outcome.clone());
    }
    for (item, outcome) in
        ip_addresses::set_primaries(run, Assigned::VmInterface, &wants, &result, asks).await?
    {
        phase.item(&item, outcome);
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}
