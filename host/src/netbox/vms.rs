//! Virtual machines: identity from the plugin's sync-state records, reconcile per scope.
//!
//! Since netbox-proxbox 0.0.29 a VM's Proxmox identity lives in its sync-state record
//! (`/api/plugins/proxbox/sync-state/virtual-machines/`): endpoint, VMID and guest type.
//! A VM is matched by `(endpoint, NetBox cluster, VMID, type)` — never by name, which
//! Proxmox does not keep unique and operators may change.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::client::NetBoxClient;
use super::error::NetBoxError;
use super::listed::{Existing, Listed};
use super::reconcile::{self, Applied, Desired, Identity, KindSpec};

/// VM list endpoint.
pub const VM_PATH: &str = "virtualization/virtual-machines/";

/// Sync-state (identity) endpoint of VMs.
pub const VM_STATE_PATH: &str = "plugins/proxbox/sync-state/virtual-machines/";

/// Key under which listed VMs carry their identity for matching (never sent to NetBox).
pub const IDENTITY_KEY: &str = "_proxbox_identity";

/// The Proxmox identity of a VM.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VmIdentity {
    /// Proxmox endpoint id (the backend's record id).
    pub endpoint: u64,
    /// VMID.
    pub vmid: u32,
    /// `qemu` or `lxc`.
    pub kind: String,
}

/// One desired VM: identity, NetBox payload (related objects as ids), and the names the
/// sync-state record keeps.
#[derive(Clone, Debug)]
pub struct DesiredVm {
    /// Proxmox identity.
    pub identity: VmIdentity,
    /// NetBox payload; must hold `cluster` (an id).
    pub payload: Map<String, Value>,
    /// Proxmox cluster name (for the sync-state record).
    pub cluster_name: String,
    /// Proxmox node name (for the sync-state record).
    pub node_name: String,
}

/// The reconcile identity of a VM in `cluster` (a NetBox id or nested cluster object).
pub fn identity_of(cluster: &Value, identity: &VmIdentity) -> Identity {
    vec![
        json!(identity.endpoint),
        reconcile::normalise(cluster),
        json!(identity.vmid),
        json!(identity.kind),
    ]
}

/// The reconcile spec for VMs owning `owned` fields.
pub fn spec(owned: std::collections::BTreeSet<String>) -> KindSpec {
    KindSpec {
        path: VM_PATH.to_string(),
        identity: Box::new(|o: &Map<String, Value>| {
            o.get(IDENTITY_KEY).and_then(Value::as_array).cloned()
        }),
        owned,
        merge_tags: true,
        ownership_tag: super::prerequisites::OWNERSHIP_TAG_SLUG.to_string(),
    }
}

/// The fields of a VM sync-state record the sync reads (NetBox serialises only these,
/// about three times faster than whole records).
pub const STATE_FIELDS: &str = "id,virtual_machine,proxmox_endpoint_raw_id,proxmox_vm_id,\
proxmox_vm_type,proxmox_cluster_name,proxmox_vm_name";

/// Every VM sync-state record, with [`STATE_FIELDS`].
pub async fn read_state_records(client: &NetBoxClient) -> Result<Vec<Listed>, NetBoxError> {
    client
        .listed(VM_STATE_PATH, &[("fields", STATE_FIELDS.to_string())])
        .await
}

/// Sync-state records by NetBox VM id: `(record id, identity)`.
pub async fn read_identities(
    client: &NetBoxClient,
) -> Result<BTreeMap<u64, (u64, VmIdentity)>, NetBoxError> {
    Ok(identities_from(&read_state_records(client).await?))
}

/// The identities of sync-state `records` by NetBox VM id: `(record id, identity)`;
/// records lacking their VM, endpoint, VMID or guest type are left out.
pub fn identities_from<E: Existing>(records: &[E]) -> BTreeMap<u64, (u64, VmIdentity)> {
    let mut out = BTreeMap::new();
    for record in records.iter().map(Existing::parsed) {
        let vm = record
            .pointer("/virtual_machine/id")
            .and_then(Value::as_u64);
        let id = record.get("id").and_then(Value::as_u64);
        let endpoint = record
            .get("proxmox_endpoint_raw_id")
            .and_then(Value::as_u64);
        let vmid = record
            .get("proxmox_vm_id")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        let kind = record
            .get("proxmox_vm_type")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty());
        if let (Some(vm), Some(id), Some(endpoint), Some(vmid), Some(kind)) =
            (vm, id, endpoint, vmid, kind)
        {
            out.insert(
                vm,
                (
                    id,
                    VmIdentity {
                        endpoint,
                        vmid,
                        kind: kind.to_string(),
                    },
                ),
            );
        }
    }
    out
}

/// Reconcile the VMs of one NetBox cluster (the scope): one list read of the cluster's
/// VMs and one of the identity records, then bulk writes of only what changed, then the
/// identity records of created VMs. Deletes happen only when `scope_complete` and only
/// for VMs carrying the ownership tag.
pub async fn reconcile_cluster(
    client: &NetBoxClient,
    cluster_id: u64,
    desired: &[DesiredVm],
    owned: std::collections::BTreeSet<String>,
    scope_complete: bool,
) -> Result<Applied, NetBoxError> {
    let query = [
        ("cluster_id", cluster_id.to_string()),
        ("exclude", "config_context".to_string()),
    ];
    let (mut existing, identities) =
        tokio::try_join!(client.list(VM_PATH, &query), read_identities(client))?;
    for vm in existing.iter_mut().filter_map(Value::as_object_mut) {
        let Some(id) = vm.get("id").and_then(Value::as_u64) else {
            continue;
        };
        if let (Some((_, identity)), Some(cluster)) =
            (identities.get(&id), vm.get("cluster").cloned())
        {
            vm.insert(
                IDENTITY_KEY.into(),
                Value::Array(identity_of(&cluster, identity)),
            );
        }
    }
    let spec = spec(owned);
    let wanted: Vec<Desired> = desired
        .iter()
        .map(|d| Desired {
            identity: d
                .payload
                .get("cluster")
                .map(|c| identity_of(c, &d.identity)),
            payload: d.payload.clone(),
        })
        .collect();
    let plan = reconcile::plan(&spec, &wanted, &existing);
    let created: Vec<usize> = plan.creates.iter().map(|(i, _)| *i).collect();
    let applied = reconcile::apply(client, &spec, plan, scope_complete).await;

    let records: Vec<Value> = created
        .iter()
        .filter_map(|i| Some((*i, (*applied.ids.get(i)?)?)))
        .map(|(i, vm)| {
            let d = &desired[i];
            json!({
                "virtual_machine": {"id": vm},
                "proxmox_endpoint_raw_id": d.identity.endpoint,
                "proxmox_vm_id": d.identity.vmid,
                "proxmox_vm_type": d.identity.kind,
                "proxmox_cluster_name": d.cluster_name,
                "proxmox_node_name": d.node_name,
                "proxmox_vm_name": d.payload.get("name").and_then(Value::as_str).unwrap_or_default(),
            })
        })
        .collect();
    if !records.is_empty() {
        for result in client.bulk_create(VM_STATE_PATH, records).await {
            if let Err(e) = result {
                tracing::warn!("cannot record a VM identity: {e}");
            }
        }
    }
    Ok(applied)
}
