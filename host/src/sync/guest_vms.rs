//! Which NetBox VM a guest's children (disks, interfaces) belong to: the VM with the
//! guest's Proxmox identity (from the plugin's sync-state records) in the NetBox cluster
//! the VM mapper puts the guest in. Never by name; a guest without one is skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::SyncRun;
use super::apply::list_by;
use super::mapping::{self, Inputs, map_batch};
use super::report::{Item, Outcome};
use super::resolve::ids_by;
use super::vms::Guest;
use crate::events::Failure;
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::reconcile::normalise;
use crate::netbox::vms::{VM_PATH, VmIdentity};
use crate::netbox::{Listed, NetBoxClient};

/// A NetBox VM as the child stages need it.
#[derive(Clone, Debug)]
pub struct NetBoxVm {
    /// Name.
    pub name: String,
    /// NetBox cluster id.
    pub cluster: Option<u64>,
    /// Total disk (MiB).
    pub disk: Option<u64>,
    /// Site id.
    pub site: Option<u64>,
}

/// A guest and its NetBox VM.
#[derive(Clone, Copy, Debug)]
pub struct GuestVm {
    /// Index into the guests.
    pub guest: usize,
    /// NetBox VM id.
    pub vm: u64,
}

/// The guests' NetBox VMs, and why the others have none.
pub struct GuestVms {
    /// The guests whose children are synced, with their VM.
    pub scopes: Vec<GuestVm>,
    /// The NetBox VMs of the scopes.
    pub vms: BTreeMap<u64, NetBoxVm>,
    /// Guests without a VM to sync into: guest index, item and outcome.
    pub unsynced: Vec<(usize, Item, Outcome)>,
}

/// NetBox VM ids by Proxmox identity (several when NetBox clusters share one), limited to
/// the run's `netbox_vm_ids`, and the identities those select (none: all).
pub async fn vms_by_identity(
    run: &SyncRun,
) -> Result<(BTreeMap<VmIdentity, Vec<u64>>, Option<BTreeSet<VmIdentity>>), Failure> {
    let records = run.vm_identities().await?;
    let selected = run
        .options
        .netbox_vm_ids
        .as_ref()
        .map(|ids| ids.iter().copied().collect::<BTreeSet<u64>>());
    let mut vms_of: BTreeMap<VmIdentity, Vec<u64>> = BTreeMap::new();
    for (vm, (_, identity)) in &records {
        if selected.as_ref().is_none_or(|s| s.contains(vm)) {
            vms_of.entry(identity.clone()).or_default().push(*vm);
        }
    }
    let wanted = selected.as_ref().map(|_| vms_of.keys().cloned().collect());
    Ok((vms_of, wanted))
}

/// Map each guest with the VM mapper (which decides whether it is synced, and into which
/// NetBox cluster) and find its NetBox VM among `vms_of`.
pub async fn resolve(
    run: &SyncRun,
    guests: &[Guest<'_>],
    vms_of: &BTreeMap<VmIdentity, Vec<u64>>,
) -> Result<GuestVms, Failure> {
    let mut unsynced = Vec::new();
    let mut mapped_guests = Vec::new();
    for (index, guest) in guests.iter().enumerate() {
        match &guest.input {
            Ok(input) => mapped_guests.push((index, guest, input)),
            Err(e) => unsynced.push((
                index,
                Item::new(guest.label(), "vm"),
                Outcome::Failed(e.clone()),
            )),
        }
    }
    let inputs: Inputs<'_> = Box::new(mapped_guests.iter().map(|(_, guest, input)| {
        let ctx = mapping::context(guest.read.session, &input.node, &run.params, &run.now);
        (ctx, MapInput::VirtualMachine((*input).clone()))
    }));
    let mapped = map_batch(run.mappers.clone(), Kind::VirtualMachine, inputs).await;
    let mapped_guests = mapped_guests.into_iter().map(|(index, _, _)| index);
    let mut cluster_of: Vec<(usize, String)> = Vec::new();
    for (index, mapped) in mapped_guests.zip(mapped) {
        let outcome = match mapped {
            Ok(Some(MapOutput::VirtualMachine(vm))) => {
                cluster_of.push((index, vm.cluster));
                continue;
            }
            Ok(None) => Outcome::Skipped("the mapper does not sync its VM".into()),
            Ok(Some(_)) => Outcome::Failed("the VM mapper returned another kind".into()),
            Err(e) => Outcome::Failed(format!("its VM cannot be mapped: {e}")),
        };
        unsynced.push((index, Item::new(guests[index].label(), "vm"), outcome));
    }
    let cluster_names: BTreeSet<String> = cluster_of.iter().map(|(_, c)| c.clone()).collect();
    let clusters = ids_by(
        &run.netbox,
        "virtualization/clusters/",
        "name",
        &cluster_names,
    )
    .await?;
    let candidates: BTreeSet<String> = cluster_of
        .iter()
        .filter_map(|(index, _)| vms_of.get(&guests[*index].identity))
        .flatten()
        .map(u64::to_string)
        .collect();
    let vms = read_vms(&run.netbox, &candidates).await?;
    let mut scopes = Vec::new();
    for (index, cluster) in cluster_of {
        let cluster = clusters.get(&cluster).copied();
        let vm = vms_of
            .get(&guests[index].identity)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| cluster.is_some() && vms.get(id).is_some_and(|v| v.cluster == cluster))
            .min();
        match vm {
            Some(vm) => scopes.push(GuestVm { guest: index, vm }),
            None => unsynced.push((
                index,
                Item::new(guests[index].label(), "vm"),
                Outcome::Skipped("no NetBox VM yet; run the virtual-machines stage first".into()),
            )),
        }
    }
    let used: BTreeSet<u64> = scopes.iter().map(|s| s.vm).collect();
    let vms = vms
        .into_iter()
        .filter(|(id, _)| used.contains(id))
        .collect();
    Ok(GuestVms {
        scopes,
        vms,
        unsynced,
    })
}

/// The NetBox VMs `ids` (only the fields the child stages need).
pub async fn read_vms(
    netbox: &NetBoxClient,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<u64, NetBoxVm>, crate::netbox::NetBoxError> {
    let fields = [("fields", "id,name,cluster,disk,site".to_string())];
    let mut out = BTreeMap::new();
    for vm in list_by(netbox, VM_PATH, "id", ids, &fields)
        .await?
        .iter()
        .map(Listed::value)
    {
        if let Some(id) = vm.get("id").and_then(Value::as_u64) {
            let id_of = |field: &str| vm.get(field).map(normalise).and_then(|c| c.as_u64());
            out.insert(
                id,
                NetBoxVm {
                    name: vm
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    cluster: id_of("cluster"),
                    disk: vm.get("disk").and_then(Value::as_u64),
                    site: id_of("site"),
                },
            );
        }
    }
    Ok(out)
}
