//! MAC addresses of interfaces as NetBox (≥ 4.2) keeps them: `dcim.MACAddress` objects
//! assigned to the interface, one of them the interface's `primary_mac_address`. A MAC
//! object with the address already on the interface is reused; otherwise one is created
//! (with the ownership tag). Other MAC objects of the interface are left alone.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::apply::{describe, list_by};
use super::ip_addresses::Assigned;
use crate::netbox::reconcile::normalise;
use crate::netbox::{NetBoxClient, NetBoxError};

/// NetBox MAC address objects.
pub const MAC_PATH: &str = "dcim/mac-addresses/";

/// The MAC one interface should have.
#[derive(Clone, Debug)]
pub struct WantMac {
    /// NetBox interface id.
    pub iface: u64,
    /// MAC, upper-case with colons.
    pub mac: String,
    /// The interface's current `primary_mac_address` id.
    pub primary: Option<u64>,
}

impl Assigned {
    /// The interfaces' list path.
    pub fn interface_path(self) -> &'static str {
        match self {
            Assigned::DeviceInterface => "dcim/interfaces/",
            Assigned::VmInterface => "virtualization/interfaces/",
        }
    }

    /// The MAC list filter of interfaces of this kind.
    fn mac_filter(self) -> &'static str {
        match self {
            Assigned::DeviceInterface => "interface_id",
            Assigned::VmInterface => "vminterface_id",
        }
    }
}

/// Give each interface of `wants` its MAC as primary MAC object (created ones tagged
/// with `owner`, the ownership tag). Per want: the fields that changed (`mac_address` for
/// a created object, `primary_mac_address`), or why not.
pub async fn sync(
    netbox: &NetBoxClient,
    assigned: Assigned,
    wants: &[WantMac],
    owner: Option<u64>,
    dry_run: bool,
) -> Result<Vec<Result<Vec<String>, String>>, NetBoxError> {
    if wants.is_empty() {
        return Ok(Vec::new());
    }
    let ifaces: BTreeSet<String> = wants.iter().map(|w| w.iface.to_string()).collect();
    let fields = [(
        "fields",
        "id,mac_address,assigned_object_type,assigned_object_id".to_string(),
    )];
    let mut on_iface: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for object in list_by(netbox, MAC_PATH, assigned.mac_filter(), &ifaces, &fields)
        .await?
        .iter()
        .map(|l| l.object())
    {
        let id_of = |f: &str| object.get(f).map(normalise).and_then(|v| v.as_u64());
        let on_kind = object.get("assigned_object_type").and_then(Value::as_str)
            == Some(assigned.object_type());
        if let (true, Some(id), Some(iface), Some(mac)) = (
            on_kind,
            id_of("id"),
            id_of("assigned_object_id"),
            object.get("mac_address").and_then(Value::as_str),
        ) {
            on_iface
                .entry((iface, mac.to_ascii_uppercase()))
                .or_insert(id);
        }
    }
    let mut out: Vec<Result<Vec<String>, String>> = vec![Ok(Vec::new()); wants.len()];
    let mut ids: Vec<Option<u64>> = vec![None; wants.len()];
    let mut creates: Vec<(usize, Value)> = Vec::new();
    for (index, want) in wants.iter().enumerate() {
        let mac = want.mac.to_ascii_uppercase();
        match on_iface.get(&(want.iface, mac.clone())) {
            Some(id) => ids[index] = Some(*id),
            None => creates.push((
                index,
                json!({
                    "mac_address": mac,
                    "assigned_object_type": assigned.object_type(),
                    "assigned_object_id": want.iface,
                    "tags": owner.into_iter().collect::<Vec<_>>(),
                }),
            )),
        }
    }
    if dry_run {
        for (index, _) in &creates {
            out[*index] = Ok(vec!["mac_address".into(), "primary_mac_address".into()]);
        }
        for (index, want) in wants.iter().enumerate() {
            if ids[index].is_some() && want.primary != ids[index] {
                out[index] = Ok(vec!["primary_mac_address".into()]);
            }
        }
        return Ok(out);
    }
    let (indexes, payloads): (Vec<usize>, Vec<Value>) = creates.into_iter().unzip();
    for (index, result) in indexes
        .into_iter()
        .zip(netbox.bulk_create(MAC_PATH, payloads).await)
    {
        match result {
            Ok(id) => {
                ids[index] = id;
                out[index] = Ok(vec!["mac_address".into()]);
            }
            Err(e) => out[index] = Err(describe(&e)),
        }
    }
    let mut patches = Vec::new();
    let mut patched = Vec::new();
    for (index, want) in wants.iter().enumerate() {
        if let Some(id) = ids[index]
            && want.primary != Some(id)
        {
            patches.push(json!({"id": want.iface, "primary_mac_address": id}));
            patched.push(index);
        }
    }
    for (index, result) in patched
        .into_iter()
        .zip(netbox.bulk_update(assigned.interface_path(), patches).await)
    {
        match result {
            Ok(_) => {
                if let Ok(fields) = &mut out[index] {
                    fields.push("primary_mac_address".into());
                }
            }
            Err(e) => out[index] = Err(describe(&e)),
        }
    }
    Ok(out)
}
