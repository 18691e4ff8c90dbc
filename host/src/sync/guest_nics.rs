//! The NICs of the guests whose VMs are in NetBox, as the network stages need them: each
//! guest's config `netN` entries joined with what the guest itself reports (the QEMU
//! guest agent, a running container), mapped by the `vm-interface` kind.
//!
//! A guest's own view is asked for only when it can answer (a running QEMU guest with its
//! agent enabled, a running container) and at most once per run (see
//! [`super::proxmox_reads::ProxmoxReads::observed`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::guest_vms::{GuestVm, NetBoxVm};
use super::mapping::{self, Inputs, map_batch};
use super::proxmox_reads::Ask;
use super::vms::Guest;
use super::{SyncRun, options::SyncOptions};
use crate::mapper::v1::{Context, DesiredVmInterface, GuestInput, GuestNicInput, GuestType};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::normalize::network;

/// Whether what a guest reports about its addresses is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// The guest was asked and answered.
    Answered,
    /// The guest has no view of its own to ask (a QEMU guest without its agent): the
    /// config is all there is.
    NotExpected,
    /// The guest could answer but did not (stopped, agent not running, read failed).
    Missing,
}

/// One guest whose VM is in NetBox, with its NICs.
pub struct GuestNics<'a> {
    /// Index into the guests.
    pub guest: usize,
    /// NetBox VM id.
    pub vm: u64,
    /// The guest's input.
    pub input: &'a GuestInput,
    /// Its mapper context.
    pub ctx: Context,
    /// Its NICs, in config key order.
    pub nics: Vec<GuestNicInput>,
    /// Per NIC: the VM interface the mapper made of it (`None`: not synced), or why not.
    pub mapped: Vec<Result<Option<DesiredVmInterface>, String>>,
    /// Whether the guest's own view is complete.
    pub live: Live,
}

impl GuestNics<'_> {
    /// The NetBox name of the guest's VM (else the guest's name), for report lines.
    pub fn vm_name(&self, vms: &BTreeMap<u64, NetBoxVm>) -> String {
        vms.get(&self.vm)
            .map_or_else(|| self.input.name.clone(), |v| v.name.clone())
    }
}

/// The mapper site parameters of the network stages: the run's, plus what the plugin's
/// query says about link-local addresses and the primary IP family.
pub fn network_params(run: &SyncRun) -> Vec<(String, String)> {
    let mut params = run.params.clone();
    let options: &SyncOptions = &run.options;
    if let Some(ignore) = options.ignore_ipv6_link_local
        && !params.iter().any(|(k, _)| k == "keep-link-local")
    {
        params.push(("keep-link-local".into(), (!ignore).to_string()));
    }
    if let Some(preference) = &options.primary_ip_preference {
        params.push(("primary-ip-preference".into(), preference.clone()));
    }
    params
}

/// Ask the guests of `scopes` about their interfaces, join them with their configs and
/// map each NIC.
pub async fn read<'a>(
    run: &SyncRun,
    guests: &'a [Guest<'_>],
    scopes: &[GuestVm],
) -> Vec<GuestNics<'a>> {
    let params = network_params(run);
    // Per endpoint: a guest read through it (for its session) and what to ask, by index.
    let mut asks_by_session: BTreeMap<i64, (usize, Vec<(usize, Ask)>)> = BTreeMap::new();
    let mut out: Vec<GuestNics> = Vec::new();
    for scope in scopes {
        let guest = &guests[scope.guest];
        let Ok(input) = &guest.input else {
            continue;
        };
        let running = input.status == "running";
        let can_answer = running
            && match input.guest_type {
                GuestType::Qemu => input.agent == Some(true),
                GuestType::Lxc => true,
            };
        let live = if input.guest_type == GuestType::Qemu && input.agent != Some(true) {
            Live::NotExpected
        } else {
            Live::Missing
        };
        let index = out.len();
        if can_answer {
            asks_by_session
                .entry(guest.read.session.endpoint.id)
                .or_insert_with(|| (scope.guest, Vec::new()))
                .1
                .push((
                    index,
                    Ask {
                        node: input.node.clone(),
                        vmid: input.vmid,
                        guest_type: input.guest_type,
                    },
                ));
        }
        out.push(GuestNics {
            guest: scope.guest,
            vm: scope.vm,
            ctx: mapping::context(guest.read.session, &input.node, &params, &run.now),
            input,
            nics: Vec::new(),
            mapped: Vec::new(),
            live,
        });
    }
    let mut observed: Vec<Option<Vec<crate::mapper::v1::ObservedInterface>>> =
        vec![None; out.len()];
    for (first, asks) in asks_by_session.values() {
        let session = guests[*first].read.session;
        let list: Vec<Ask> = asks.iter().map(|(_, a)| a.clone()).collect();
        let seen = run
            .proxmox
            .observed(session, &list, run.options.fetch_max_concurrency)
            .await;
        for ((index, _), seen) in asks.iter().zip(seen) {
            if seen.is_some() {
                out[*index].live = Live::Answered;
            }
            observed[*index] = seen;
        }
    }
    for (entry, seen) in out.iter_mut().zip(&observed) {
        // The config is parsed only while this guest's NICs are read from it.
        let config = entry
            .input
            .raw
            .iter()
            .find(|r| r.name == "config")
            .and_then(|r| serde_json::from_str::<Value>(&r.json).ok());
        entry.nics = network::guest_nics(entry.input, config.as_ref(), seen.as_deref());
    }
    let inputs: Inputs<'_> = Box::new(out.iter().flat_map(|entry| {
        entry.nics.iter().map(|nic| {
            (
                entry.ctx.clone(),
                MapInput::VmInterface(entry.input.clone(), nic.clone()),
            )
        })
    }));
    let mut mapped = map_batch(run.mappers.clone(), Kind::VmInterface, inputs)
        .await
        .into_iter();
    for entry in &mut out {
        entry.mapped = entry
            .nics
            .iter()
            .map(|_| match mapped.next() {
                Some(Ok(Some(MapOutput::VmInterface(desired)))) => Ok(Some(desired)),
                Some(Ok(None)) => Ok(None),
                Some(Ok(Some(_))) => Err("the mapper returned another kind".to_string()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("missing from the mapping result".to_string()),
            })
            .collect();
    }
    out
}
