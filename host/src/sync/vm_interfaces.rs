//! Stage `vm-interfaces` (contract §7.5): each NIC of a guest whose VM is in NetBox
//! becomes a NetBox VM interface, matched by `(VM, name)`, with its VLANs (found or
//! created) and its MAC address (a MAC object made the interface's primary MAC on NetBox
//! ≥ 4.2, the inline `mac_address` before). VM interfaces are never deleted (§8.3).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{list_by, list_fields, reconcile_kind};
use super::devices::tag_ids;
use super::guest_nics;
use super::guest_vms;
use super::ip_addresses::Assigned;
use super::macs::{self, WantMac};
use super::report::{Item, Outcome, Phase};
use super::resolve::ensure_tags;
use super::vlans::{self, Vlans};
use super::vms::read_guests;
use super::{StageSummary, SyncRun, custom_fields, read_inventories};
use crate::events::{EventSink, Failure};
use crate::mapper::v1::{DesiredVmInterface, VlanRef};
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::netbox::{Listed, NetBoxClient, NetBoxError};

/// Stage and phase name.
pub const PHASE: &str = "vm-interfaces";

/// NetBox VM interfaces.
pub const VM_INTERFACE_PATH: &str = "virtualization/interfaces/";

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let reads = read_inventories(run, sink, PHASE).await;
    let (vms_of, wanted) = guest_vms::vms_by_identity(run).await?;
    let guests = read_guests(run, &reads, wanted.as_ref()).await;
    let resolved = guest_vms::resolve(run, &guests, &vms_of).await?;
    let nics = guest_nics::read(run, &guests, &resolved.scopes).await;

    let refs: Vec<VlanRef> = nics
        .iter()
        .flat_map(|g| g.mapped.iter())
        .filter_map(|m| m.as_ref().ok().and_then(Option::as_ref))
        .flat_map(|d| d.untagged_vlan.iter().chain(d.tagged_vlans.iter()))
        .cloned()
        .collect();
    let vlans = vlans::ensure(netbox, &refs, run.prerequisites.ownership_tag(), dry_run).await?;
    let mut tag_names = BTreeSet::new();
    for d in nics
        .iter()
        .flat_map(|g| g.mapped.iter())
        .filter_map(|m| m.as_ref().ok().and_then(Option::as_ref))
    {
        tag_names.extend(d.tags.iter().cloned());
    }
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let inline_mac = !run.netbox_status.has_mac_objects();

    // Desired interfaces and the report lines, guest by guest.
    enum Line {
        Done(Item, Outcome),
        Iface(Item, usize),
    }
    let mut lines: Vec<(usize, Line)> = resolved
        .unsynced
        .into_iter()
        .map(|(guest, item, outcome)| (guest, Line::Done(item, outcome)))
        .collect();
    let mut desired: Vec<Desired> = Vec::new();
    let mut macs_of: Vec<Option<String>> = Vec::new();
    for entry in &nics {
        let vm_name = entry.vm_name(&resolved.vms);
        for (nic, mapped) in entry.nics.iter().zip(&entry.mapped) {
            let line = match mapped {
                Err(e) => Line::Done(
                    Item::new(format!("{vm_name}/{}", nic.nic.key), "interface"),
                    Outcome::Failed(e.clone()),
                ),
                Ok(None) => Line::Done(
                    Item::new(format!("{vm_name}/{}", nic.nic.key), "interface"),
                    Outcome::Skipped("the mapper does not sync it".into()),
                ),
                Ok(Some(d)) => {
                    let item = Item::new(format!("{vm_name}/{}", d.name), "interface");
                    match payload(d, entry.vm, &vlans, &tags, inline_mac) {
                        Ok(payload) => {
                            desired.push(Desired {
                                identity: Some(vec![json!(entry.vm), json!(d.name)]),
                                payload,
                            });
                            macs_of.push(d.mac.clone());
                            Line::Iface(item, desired.len() - 1)
                        }
                        Err(e) => Line::Done(item, Outcome::Failed(e)),
                    }
                }
            };
            lines.push((entry.guest, line));
        }
    }
    lines.sort_by_key(|(guest, _)| *guest);
    let mut items: Vec<Item> = vlans.created.iter().map(|(i, _)| i.clone()).collect();
    items.extend(lines.iter().map(|(_, line)| match line {
        Line::Done(item, _) | Line::Iface(item, _) => item.clone(),
    }));
    let mut phase = Phase::start(sink, PHASE, "vm_interface", &items, dry_run);
    for (item, outcome) in &vlans.created {
        phase.item(item, outcome.clone());
    }

    let vm_ids: BTreeSet<u64> = nics.iter().map(|g| g.vm).collect();
    let spec = spec(run, inline_mac);
    let fields = list_fields(
        &spec,
        &desired,
        &["virtual_machine", "name", "primary_mac_address"],
    );
    let existing = list_interfaces(netbox, &vm_ids, &[fields]).await?;
    let result = reconcile_kind(netbox, &spec, &desired, &existing, false, dry_run).await;

    // MAC objects of the interfaces that exist.
    let mut mac_results: BTreeMap<usize, Result<Vec<String>, String>> = BTreeMap::new();
    if !inline_mac && run.options.sync_vm_interface_macs {
        let primaries = primary_macs(&existing);
        let mut wants = Vec::new();
        let mut of = Vec::new();
        for (index, mac) in macs_of.iter().enumerate() {
            if let (Some(mac), (outcome, Some(iface))) = (mac, result.outcome(index))
                && !matches!(outcome, Outcome::Failed(_))
            {
                wants.push(WantMac {
                    iface,
                    mac: mac.clone(),
                    primary: primaries.get(&iface).copied(),
                });
                of.push(index);
            }
        }
        match macs::sync(
            netbox,
            Assigned::VmInterface,
            &wants,
            run.prerequisites.ownership_tag(),
            dry_run,
        )
        .await
        {
            Ok(outcomes) => mac_results.extend(of.into_iter().zip(outcomes)),
            Err(e) => {
                for index in of {
                    mac_results.insert(index, Err(format!("MAC address: {e}")));
                }
            }
        }
    }

    let mut count = 0;
    for (_, line) in lines {
        match line {
            Line::Done(item, outcome) => phase.item(&item, outcome),
            Line::Iface(item, index) => {
                let (outcome, id) = result.outcome(index);
                let outcome = with_mac(outcome, mac_results.remove(&index));
                if id.is_some() && !matches!(outcome, Outcome::Failed(_)) {
                    count += 1;
                }
                phase.item(&item.with_id(id), outcome);
            }
        }
    }
    let counts = phase.finish();
    Ok(StageSummary { counts, count })
}

/// An interface's outcome with its MAC's: a MAC change makes an unchanged interface
/// updated; a MAC failure fails it.
pub fn with_mac(outcome: Outcome, mac: Option<Result<Vec<String>, String>>) -> Outcome {
    match (outcome, mac) {
        (Outcome::Failed(e), _) => Outcome::Failed(e),
        (_, Some(Err(e))) => Outcome::Failed(format!("MAC address: {e}")),
        (Outcome::Unchanged, Some(Ok(fields))) if !fields.is_empty() => Outcome::Updated(fields),
        (Outcome::Updated(mut changed), Some(Ok(fields))) => {
            changed.extend(fields);
            Outcome::Updated(changed)
        }
        (outcome, _) => outcome,
    }
}

/// The VM interfaces of `vms`.
pub async fn list_interfaces(
    netbox: &NetBoxClient,
    vms: &BTreeSet<u64>,
    extra: &[(&str, String)],
) -> Result<Vec<Listed>, NetBoxError> {
    let ids: BTreeSet<String> = vms.iter().map(u64::to_string).collect();
    list_by(netbox, VM_INTERFACE_PATH, "virtual_machine_id", &ids, extra).await
}

/// Each listed interface's `primary_mac_address` id.
pub fn primary_macs(existing: &[Listed]) -> BTreeMap<u64, u64> {
    existing
        .iter()
        .map(Listed::object)
        .filter_map(|o| {
            let id_of = |f: &str| o.get(f).map(normalise).and_then(|v| v.as_u64());
            Some((id_of("id")?, id_of("primary_mac_address")?))
        })
        .collect()
}

/// The reconcile spec: `(virtual machine, name)`; tags and custom fields per the
/// `overwrite_vm_interface_*` flags.
fn spec(run: &SyncRun, inline_mac: bool) -> KindSpec {
    interface_spec(
        run,
        VM_INTERFACE_PATH,
        "virtual_machine",
        &[],
        inline_mac,
        "overwrite_vm_interface",
    )
}

/// The reconcile spec of interfaces at `path`, matched by `(owner, name)`: the fields
/// every interface payload carries, `extra` ones, the inline MAC on old NetBox, and tags
/// and custom fields as the `<flags>_tags` / `<flags>_custom_fields` flags allow.
pub fn interface_spec(
    run: &SyncRun,
    path: &str,
    owner: &'static str,
    extra: &[&str],
    inline_mac: bool,
    flags: &str,
) -> KindSpec {
    let mut owned: BTreeSet<String> = [
        owner,
        "name",
        "enabled",
        "mtu",
        "description",
        "mode",
        "untagged_vlan",
        "tagged_vlans",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(String::from)
    .collect();
    if inline_mac {
        owned.insert("mac_address".into());
    }
    for field in ["tags", "custom_fields"] {
        if run.options.overwrite.allows(&format!("{flags}_{field}")) {
            owned.insert(field.into());
        }
    }
    KindSpec {
        path: path.into(),
        identity: Box::new(move |o: &Map<String, Value>| {
            Some(vec![o.get(owner).map(normalise)?, o.get("name").cloned()?])
        }),
        owned,
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    }
}

/// What every interface payload carries, as a mapper gave it.
pub struct InterfaceFields<'a> {
    /// Name.
    pub name: &'a str,
    /// Enabled.
    pub enabled: bool,
    /// MTU, if set.
    pub mtu: Option<u32>,
    /// Description, if set.
    pub description: Option<&'a str>,
    /// 802.1Q mode, if set.
    pub mode: Option<&'a str>,
    /// Untagged VLAN, if any.
    pub untagged: Option<&'a VlanRef>,
    /// Tagged VLANs.
    pub tagged: &'a [VlanRef],
    /// MAC, if set.
    pub mac: Option<&'a str>,
    /// Tag names.
    pub tags: &'a [String],
    /// Custom fields.
    pub custom_fields: &'a [(String, String)],
}

/// The payload of an interface of owner `owner` (`virtual_machine` or `device`, id
/// `owner_id`). Fields the mapper leaves unset are not sent; a VLAN that does not exist
/// (dry run) is left out; the MAC goes inline only on NetBox < 4.2.
pub fn interface_payload(
    owner: (&str, u64),
    f: &InterfaceFields<'_>,
    vlans: &Vlans,
    tags: &BTreeMap<String, u64>,
    inline_mac: bool,
) -> Result<Map<String, Value>, String> {
    if f.name.trim().is_empty() {
        return Err("the mapper gave the interface no name".into());
    }
    let mut payload = Map::new();
    payload.insert(owner.0.into(), json!(owner.1));
    payload.insert("name".into(), json!(f.name));
    payload.insert("enabled".into(), json!(f.enabled));
    if let Some(mtu) = f.mtu {
        payload.insert("mtu".into(), json!(mtu));
    }
    if let Some(description) = f.description {
        payload.insert("description".into(), json!(description));
    }
    vlan_fields(&mut payload, f.mode, f.untagged, f.tagged, vlans);
    if inline_mac && let Some(mac) = f.mac {
        payload.insert("mac_address".into(), json!(mac));
    }
    payload.insert("tags".into(), tag_ids(f.tags, tags));
    if let Some(fields) = custom_fields(f.custom_fields)? {
        payload.insert("custom_fields".into(), Value::Object(fields));
    }
    Ok(payload)
}

/// The NetBox payload of one VM interface of VM `vm`.
fn payload(
    d: &DesiredVmInterface,
    vm: u64,
    vlans: &Vlans,
    tags: &BTreeMap<String, u64>,
    inline_mac: bool,
) -> Result<Map<String, Value>, String> {
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
    interface_payload(("virtual_machine", vm), &fields, vlans, tags, inline_mac)
}

/// `mode`, `untagged_vlan` and `tagged_vlans` of an interface payload (tagged VLANs
/// only in `tagged` mode, as NetBox requires).
fn vlan_fields(
    payload: &mut Map<String, Value>,
    mode: Option<&str>,
    untagged: Option<&VlanRef>,
    tagged: &[VlanRef],
    vlans: &Vlans,
) {
    let Some(mode) = mode else {
        return;
    };
    payload.insert("mode".into(), json!(mode));
    if let Some(id) = untagged.and_then(|v| vlans.id(v)) {
        payload.insert("untagged_vlan".into(), json!(id));
    }
    if mode == "tagged" {
        let ids: Vec<u64> = tagged.iter().filter_map(|v| vlans.id(v)).collect();
        payload.insert("tagged_vlans".into(), json!(ids));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::v1::VlanRef;

    fn vlan(vid: u16) -> VlanRef {
        VlanRef {
            vid,
            name: format!("VLAN {vid}"),
            site: None,
            group: None,
        }
    }

    fn desired(mode: Option<&str>) -> DesiredVmInterface {
        DesiredVmInterface {
            name: "net0".into(),
            enabled: true,
            mtu: None,
            description: None,
            mac: Some("BC:24:11:00:00:01".into()),
            mode: mode.map(str::to_string),
            untagged_vlan: Some(vlan(10)),
            tagged_vlans: vec![vlan(20), vlan(30)],
            custom_fields: Vec::new(),
            tags: vec!["Proxbox".into()],
        }
    }

    fn vlans() -> Vlans {
        let mut v = Vlans::default();
        v.ids.insert(vlans::key(&vlan(10)), 110);
        v.ids.insert(vlans::key(&vlan(20)), 120);
        v
    }

    #[test]
    fn payload_sends_vlans_per_mode_and_the_mac_inline_only_on_old_netbox() {
        let tags = BTreeMap::from([("Proxbox".to_string(), 7)]);
        let tagged = payload(&desired(Some("tagged")), 5, &vlans(), &tags, false).unwrap();
        assert_eq!(tagged["mode"], json!("tagged"));
        assert_eq!(tagged["untagged_vlan"], json!(110));
        assert_eq!(tagged["tagged_vlans"], json!([120]), "VLAN 30 is unknown");
        assert!(!tagged.contains_key("mac_address"));
        assert!(!tagged.contains_key("mtu"), "unset fields are not sent");
        let access = payload(&desired(Some("access")), 5, &vlans(), &tags, true).unwrap();
        assert!(!access.contains_key("tagged_vlans"));
        assert_eq!(access["mac_address"], json!("BC:24:11:00:00:01"));
        let plain = payload(&desired(None), 5, &vlans(), &tags, false).unwrap();
        assert!(!plain.contains_key("mode") && !plain.contains_key("untagged_vlan"));
        let nameless = DesiredVmInterface {
            name: " ".into(),
            ..desired(None)
        };
        assert!(payload(&nameless, 5, &vlans(), &tags, false).is_err());
    }

    #[test]
    fn a_mac_change_updates_an_interface_and_a_mac_failure_fails_it() {
        let mac = |fields: &[&str]| Some(Ok(fields.iter().map(|f| f.to_string()).collect()));
        assert_eq!(
            with_mac(Outcome::Unchanged, mac(&["primary_mac_address"])),
            Outcome::Updated(vec!["primary_mac_address".into()])
        );
        assert_eq!(with_mac(Outcome::Unchanged, mac(&[])), Outcome::Unchanged);
        assert_eq!(
            with_mac(Outcome::Updated(vec!["mtu".into()]), mac(&["mac_address"])),
            Outcome::Updated(vec!["mtu".into(), "mac_address".into()])
        );
        assert_eq!(
            with_mac(Outcome::Created, mac(&["mac_address"])),
            Outcome::Created
        );
        assert_eq!(
            with_mac(Outcome::Created, Some(Err("refused".into()))),
            Outcome::Failed("MAC address: refused".into())
        );
    }
}
