//! IP addresses on interfaces (device or VM), with the ownership rule of contract §8.2:
//! an address already assigned to another object is never taken over. For each desired
//! address, in order: the NetBox IP with that host (and VRF) on this interface is kept
//! (and updated); else an unassigned one is adopted; else, if another object holds it or
//! an earlier interface of this run claimed it, the address is reported as a conflict
//! (a warning) and not written; else it is created.
//!
//! Stale addresses — on an interface whose addresses were read completely, carrying the
//! ownership tag, matching no desired address — are deleted. Then the primary IP of each
//! owner (VM or device) is set per the `ip-address` mapper's `choose-primary`: a family's
//! primary is set when it is empty (or its IP was just deleted), and replaced only when
//! the mapper says it owns that choice.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{KindResult, delete_ids, describe, list_by, reconcile_kind};
use super::devices::tag_ids;
use super::mapping::map_batch;
use super::report::{Item, Outcome};
use super::resolve::{ensure_tags, ids_by};
use super::{SyncRun, custom_fields};
use crate::mapper::v1::{
    Context, DesiredIpAddress, IpFamily, PrimaryCandidate, PrimaryChoice, PrimaryOwner,
};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, has_tag, normalise};
use crate::netbox::{NetBoxClient, NetBoxError};
use crate::normalize::network::scope;

/// NetBox IP addresses.
pub const IP_PATH: &str = "ipam/ip-addresses/";

/// Which kind of interface the addresses are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assigned {
    /// A device interface (`dcim.interface`).
    DeviceInterface,
    /// A VM interface (`virtualization.vminterface`).
    VmInterface,
}

impl Assigned {
    /// NetBox's `assigned_object_type`.
    pub fn object_type(self) -> &'static str {
        match self {
            Assigned::DeviceInterface => "dcim.interface",
            Assigned::VmInterface => "virtualization.vminterface",
        }
    }

    /// The list filter of addresses on interfaces of this kind.
    fn filter(self) -> &'static str {
        match self {
            Assigned::DeviceInterface => "interface_id",
            Assigned::VmInterface => "vminterface_id",
        }
    }

    /// The owners' list path (devices or VMs).
    fn owner_path(self) -> &'static str {
        match self {
            Assigned::DeviceInterface => "dcim/devices/",
            Assigned::VmInterface => "virtualization/virtual-machines/",
        }
    }
}

/// One desired address on one interface.
#[derive(Clone, Debug)]
pub struct WantIp {
    /// NetBox interface id.
    pub iface: u64,
    /// Interface name (for the primary-IP candidates).
    pub iface_name: String,
    /// NetBox id of the interface's owner (VM or device).
    pub owner: u64,
    /// What the mapper made of the address.
    pub desired: DesiredIpAddress,
    /// Its report line.
    pub item: Item,
}

/// What happened to the addresses of one stage.
#[derive(Debug, Default)]
pub struct IpResult {
    /// Per want, in order: outcome and NetBox id.
    pub wants: Vec<(Outcome, Option<u64>)>,
    /// Stale addresses deleted (dry run: that would be): item and outcome.
    pub deleted: Vec<(Item, Outcome)>,
    /// Ids of the addresses deleted.
    pub deleted_ids: BTreeSet<u64>,
}

/// The host part of a CIDR.
fn host(address: &str) -> &str {
    address.split('/').next().unwrap_or(address)
}

/// Reconcile `wants` (addresses of interfaces of kind `assigned`). `complete` are the
/// interfaces whose addresses were read completely: only their stale addresses go.
pub async fn reconcile(
    run: &SyncRun,
    assigned: Assigned,
    wants: &[WantIp],
    interfaces: &BTreeSet<u64>,
    complete: &BTreeSet<u64>,
) -> Result<IpResult, NetBoxError> {
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let fields = (
        "fields",
        "id,address,vrf,tenant,status,role,dns_name,description,tags,custom_fields,\
         assigned_object_type,assigned_object_id"
            .to_string(),
    );
    let hosts: BTreeSet<String> = wants
        .iter()
        .map(|w| host(&w.desired.address).to_string())
        .collect();
    let iface_ids: BTreeSet<String> = interfaces.iter().map(u64::to_string).collect();
    let mut existing: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    for listed in list_by(
        netbox,
        IP_PATH,
        "address",
        &hosts,
        std::slice::from_ref(&fields),
    )
    .await?
    .into_iter()
    .chain(list_by(netbox, IP_PATH, assigned.filter(), &iface_ids, &[fields]).await?)
    {
        let object = listed.object();
        if let Some(id) = object.get("id").and_then(Value::as_u64) {
            existing.insert(id, object);
        }
    }

    let mut tag_names = BTreeSet::new();
    let mut vrf_names = BTreeSet::new();
    let mut tenant_slugs = BTreeSet::new();
    for want in wants {
        tag_names.extend(want.desired.tags.iter().cloned());
        vrf_names.extend(want.desired.vrf.clone());
        tenant_slugs.extend(want.desired.tenant.clone());
    }
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let vrfs = ids_by(netbox, "ipam/vrfs/", "name", &vrf_names).await?;
    let tenants = ids_by(netbox, "tenancy/tenants/", "slug", &tenant_slugs).await?;

    // Existing addresses by (host, VRF).
    let mut by_host: BTreeMap<(String, Option<u64>), Vec<u64>> = BTreeMap::new();
    for (id, object) in &existing {
        if let Some(address) = object.get("address").and_then(Value::as_str) {
            let vrf = object.get("vrf").map(normalise).and_then(|v| v.as_u64());
            by_host
                .entry((host(address).to_string(), vrf))
                .or_default()
                .push(*id);
        }
    }
    let assigned_to = |object: &Map<String, Value>| -> Option<(String, u64)> {
        Some((
            object.get("assigned_object_type")?.as_str()?.to_string(),
            object.get("assigned_object_id")?.as_u64()?,
        ))
    };

    let mut out = IpResult::default();
    let mut desired: Vec<Desired> = Vec::new();
    let mut desired_of: Vec<Option<usize>> = Vec::new();
    let mut claimed: BTreeMap<(String, Option<u64>), usize> = BTreeMap::new();
    let mut matched: BTreeSet<u64> = BTreeSet::new();
    for (index, want) in wants.iter().enumerate() {
        let d = &want.desired;
        let vrf = match &d.vrf {
            Some(name) => match vrfs.get(name) {
                Some(id) => Some(*id),
                None => {
                    out.wants.push((
                        Outcome::Failed(format!("VRF `{name}` does not exist in NetBox")),
                        None,
                    ));
                    desired_of.push(None);
                    continue;
                }
            },
            None => None,
        };
        let key = (host(&d.address).to_string(), vrf);
        if let Some(first) = claimed.get(&key) {
            let other = &wants[*first];
            let why = if other.owner == want.owner && other.iface == want.iface {
                format!("{} is listed twice on this interface", d.address)
            } else {
                format!(
                    "{} is also reported by {}, which keeps it",
                    host(&d.address),
                    other.item.name
                )
            };
            out.wants.push((Outcome::Conflict(why), None));
            desired_of.push(None);
            continue;
        }
        let candidates = by_host.get(&key).map(Vec::as_slice).unwrap_or_default();
        let mine = candidates.iter().copied().find(|id| {
            assigned_to(&existing[id])
                .is_some_and(|(t, i)| t == assigned.object_type() && i == want.iface)
        });
        let free = candidates
            .iter()
            .copied()
            .find(|id| assigned_to(&existing[id]).is_none() && !matched.contains(id));
        let held = candidates
            .iter()
            .copied()
            .find(|id| assigned_to(&existing[id]).is_some());
        let target = match (mine, free, held) {
            (Some(id), _, _) | (None, Some(id), _) => Some(id),
            (None, None, Some(id)) => {
                let (t, i) = assigned_to(&existing[&id]).unwrap_or_default();
                let what = match t.as_str() {
                    "dcim.interface" => "device interface",
                    "virtualization.vminterface" => "VM interface",
                    other => other,
                };
                out.wants.push((
                    Outcome::Conflict(format!(
                        "{} is assigned to another {what} (#{i}) in NetBox and is not taken over",
                        host(&d.address)
                    )),
                    None,
                ));
                desired_of.push(None);
                continue;
            }
            (None, None, None) => None,
        };
        claimed.insert(key, index);
        if let Some(id) = target {
            matched.insert(id);
        }
        match payload(d, assigned, want.iface, vrf, &tags, &tenants) {
            Ok(payload) => {
                desired.push(Desired {
                    identity: target.map(|id| vec![json!(id)]),
                    payload,
                });
                desired_of.push(Some(desired.len() - 1));
                out.wants.push((Outcome::Unchanged, None));
            }
            Err(e) => {
                out.wants.push((Outcome::Failed(e), None));
                desired_of.push(None);
            }
        }
    }

    let spec = spec(run);
    let listed: Vec<Value> = existing
        .values()
        .filter(|o| {
            o.get("id")
                .and_then(Value::as_u64)
                .is_some_and(|id| matched.contains(&id))
        })
        .map(|o| Value::Object(o.clone()))
        .collect();
    let result: KindResult = reconcile_kind(netbox, &spec, &desired, &listed, false, dry_run).await;
    for (slot, d_index) in out.wants.iter_mut().zip(&desired_of) {
        if let Some(d_index) = d_index {
            *slot = result.outcome(*d_index);
        }
    }

    // Stale: owned addresses on completely read interfaces that no want matched.
    let mut stale: Vec<(u64, String, u64)> = Vec::new();
    for (id, object) in &existing {
        let Some((t, iface)) = assigned_to(object) else {
            continue;
        };
        if t != assigned.object_type()
            || !complete.contains(&iface)
            || matched.contains(id)
            || !has_tag(object, OWNERSHIP_TAG_SLUG)
        {
            continue;
        }
        let address = object
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        stale.push((*id, address, iface));
    }
    let names: BTreeMap<u64, &str> = wants
        .iter()
        .map(|w| (w.iface, w.item.name.rsplit_once(' ').map_or("", |(n, _)| n)))
        .collect();
    let ids: Vec<u64> = stale.iter().map(|(id, _, _)| *id).collect();
    let outcomes = delete_ids(netbox, IP_PATH, &ids, dry_run).await;
    for ((id, address, iface), outcome) in stale.into_iter().zip(outcomes) {
        if outcome == Outcome::Deleted {
            out.deleted_ids.insert(id);
        }
        let on = names
            .get(&iface)
            .map_or_else(|| format!("interface #{iface}"), |n| n.to_string());
        out.deleted.push((
            Item::new(format!("{on} {address}"), "ip_address").with_id(Some(id)),
            outcome,
        ));
    }
    Ok(out)
}

/// The reconcile spec: matched by NetBox id (the ownership rule chose the match); the
/// `overwrite_ip_*` flags decide which fields of an existing address are ours.
fn spec(run: &SyncRun) -> KindSpec {
    let flags = &run.options.overwrite;
    let mut owned: BTreeSet<String> = [
        "address",
        "vrf",
        "tenant",
        "role",
        "description",
        "assigned_object_type",
        "assigned_object_id",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for (flag, field) in [
        ("overwrite_ip_status", "status"),
        ("overwrite_ip_tags", "tags"),
        ("overwrite_ip_custom_fields", "custom_fields"),
        ("overwrite_ip_address_dns_name", "dns_name"),
    ] {
        if flags.allows(flag) {
            owned.insert(field.to_string());
        }
    }
    KindSpec {
        path: IP_PATH.into(),
        identity: Box::new(|o: &Map<String, Value>| Some(vec![o.get("id").map(normalise)?])),
        owned,
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    }
}

/// The NetBox payload of one address on interface `iface`.
fn payload(
    d: &DesiredIpAddress,
    assigned: Assigned,
    iface: u64,
    vrf: Option<u64>,
    tags: &BTreeMap<String, u64>,
    tenants: &BTreeMap<String, u64>,
) -> Result<Map<String, Value>, String> {
    let tenant = match &d.tenant {
        Some(slug) => Some(
            *tenants
                .get(slug)
                .ok_or_else(|| format!("tenant `{slug}` does not exist in NetBox"))?,
        ),
        None => None,
    };
    let mut payload = Map::new();
    payload.insert("address".into(), json!(d.address));
    payload.insert("status".into(), json!(d.status));
    payload.insert("vrf".into(), json!(vrf));
    payload.insert("tenant".into(), json!(tenant));
    if let Some(role) = &d.role {
        payload.insert("role".into(), json!(role));
    }
    let dns = d
        .dns_name
        .as_deref()
        .filter(|n| n.len() <= 255)
        .unwrap_or("");
    payload.insert("dns_name".into(), json!(dns));
    if let Some(description) = &d.description {
        payload.insert("description".into(), json!(description));
    }
    payload.insert("assigned_object_type".into(), json!(assigned.object_type()));
    payload.insert("assigned_object_id".into(), json!(iface));
    payload.insert("tags".into(), tag_ids(&d.tags, tags));
    if let Some(fields) = custom_fields(&d.custom_fields)? {
        payload.insert("custom_fields".into(), Value::Object(fields));
    }
    Ok(payload)
}

/// One owner's primary-IP question: its mapper context, who it is, and its candidates
/// (indexes into the wants, in interface order).
pub struct PrimaryAsk {
    /// NetBox id of the VM or device.
    pub owner: u64,
    /// Its report name.
    pub name: String,
    /// Mapper context.
    pub ctx: Context,
    /// Who it is, for the mapper.
    pub who: PrimaryOwner,
    /// Indexes of its wants.
    pub wants: Vec<usize>,
}

/// Set the primary IPs of `asks` per the mapper's choice (see the module doc); one
/// report line per owner whose primary IP changes (or fails to).
pub async fn set_primaries(
    run: &SyncRun,
    assigned: Assigned,
    wants: &[WantIp],
    result: &IpResult,
    asks: Vec<PrimaryAsk>,
) -> Result<Vec<(Item, Outcome)>, NetBoxError> {
    let netbox: &NetBoxClient = &run.netbox;
    let mut inputs = Vec::new();
    let mut asked = Vec::new();
    for ask in asks {
        let candidates: Vec<PrimaryCandidate> = ask
            .wants
            .iter()
            .filter(|i| {
                matches!(
                    result.wants.get(**i),
                    Some((
                        Outcome::Created | Outcome::Updated(_) | Outcome::Unchanged,
                        _
                    ))
                )
            })
            .filter_map(|i| candidate(&wants[*i]))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        inputs.push((
            ask.ctx.clone(),
            MapInput::PrimaryIp(ask.who.clone(), candidates),
        ));
        asked.push(ask);
    }
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    let choices = map_batch(run.mappers.clone(), Kind::IpAddress, inputs).await;
    let ids: BTreeSet<String> = asked.iter().map(|a| a.owner.to_string()).collect();
    let fields = [("fields", "id,primary_ip4,primary_ip6".to_string())];
    let current: BTreeMap<u64, (Option<u64>, Option<u64>)> =
        list_by(netbox, assigned.owner_path(), "id", &ids, &fields)
            .await?
            .iter()
            .map(|l| l.object())
            .filter_map(|o| {
                let id_of = |f: &str| o.get(f).map(normalise).and_then(|v| v.as_u64());
                Some((id_of("id")?, (id_of("primary_ip4"), id_of("primary_ip6"))))
            })
            .collect();
    let mut report = Vec::new();
    let mut patches: Vec<(usize, Value, Vec<String>)> = Vec::new();
    for (ask, choice) in asked.iter().zip(choices) {
        let item =
            Item::new(format!("{} primary IP", ask.name), "primary_ip").with_id(Some(ask.owner));
        let choice: PrimaryChoice = match choice {
            Ok(Some(MapOutput::PrimaryIp(choice))) => choice,
            Ok(_) => continue,
            Err(e) => {
                report.push((item, Outcome::Failed(e.to_string())));
                continue;
            }
        };
        let (ip4, ip6) = current.get(&ask.owner).copied().unwrap_or_default();
        let mut patch = Map::new();
        let mut changed = Vec::new();
        for (field, chosen, now) in [
            ("primary_ip4", &choice.ipv4, ip4),
            ("primary_ip6", &choice.ipv6, ip6),
        ] {
            let Some(chosen) = chosen else {
                continue;
            };
            let Some(position) = ask
                .wants
                .iter()
                .position(|i| wants[*i].desired.address == *chosen)
            else {
                continue;
            };
            let want = ask.wants[position];
            let id = result.wants.get(want).and_then(|(_, id)| *id);
            let now = now.filter(|id| !result.deleted_ids.contains(id));
            if id.is_some() && now == id {
                continue;
            }
            if now.is_some() && !choice.replace_others {
                continue;
            }
            match id {
                Some(id) => {
                    patch.insert(field.into(), json!(id));
                    changed.push(field.to_string());
                }
                None if run.options.dry_run => changed.push(field.to_string()),
                None => {}
            }
        }
        if changed.is_empty() {
            continue;
        }
        if run.options.dry_run || patch.is_empty() {
            report.push((item, Outcome::Updated(changed)));
            continue;
        }
        patch.insert("id".into(), json!(ask.owner));
        patches.push((report.len(), Value::Object(patch), changed));
        report.push((item, Outcome::Unchanged));
    }
    if !patches.is_empty() {
        let values: Vec<Value> = patches.iter().map(|(_, p, _)| p.clone()).collect();
        let results = netbox.bulk_update(assigned.owner_path(), values).await;
        for ((line, _, changed), result) in patches.into_iter().zip(results) {
            report[line].1 = match result {
                Ok(_) => Outcome::Updated(changed),
                Err(e) => Outcome::Failed(describe(&e)),
            };
        }
    }
    Ok(report)
}

/// The primary-IP candidate of a want.
fn candidate(want: &WantIp) -> Option<PrimaryCandidate> {
    let address = &want.desired.address;
    let ip: std::net::IpAddr = host(address).parse().ok()?;
    Some(PrimaryCandidate {
        interface_name: want.iface_name.clone(),
        address: address.clone(),
        family: if ip.is_ipv4() {
            IpFamily::Ipv4
        } else {
            IpFamily::Ipv6
        },
        scope: scope(ip),
    })
}
