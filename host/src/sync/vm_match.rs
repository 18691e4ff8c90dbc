//! Matching guests to the NetBox VMs of their cluster before the VM reconcile
//! (contract §7.4, §8.1):
//!
//! - identity: the plugin's sync-state records tie a NetBox VM to `(endpoint, VMID,
//!   type)`; names are never selectors;
//! - adoption: a VM without a sync-state record but with the legacy custom fields
//!   (`proxmox_vm_id`, and `proxmox_vm_type` / `proxmox_endpoint_id` when set) is adopted
//!   when exactly one VM of the cluster fits the guest;
//! - the rename rule: a NetBox name that differs from the Proxmox name is an operator's
//!   edit, and kept, unless it still equals the name Proxmox reported at the last sync
//!   (the record's `proxmox_vm_name`), which makes it a rename in Proxmox;
//! - duplicate names: names equal ignoring case within one NetBox cluster get the
//!   smallest free `" (N)"` suffix, never taking a name another NetBox VM holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::vms::Guest;
use crate::events::{DuplicateNameResolved, EventSink};
use crate::mapper::v1::DesiredVirtualMachine;
use crate::netbox::vms::{IDENTITY_KEY, VmIdentity, identity_of};
use crate::netbox::{Existing, Listed};

/// A guest the mapper wants in NetBox.
pub struct Want {
    /// Index of the guest.
    pub guest: usize,
    /// NetBox cluster name.
    pub cluster: String,
    /// What the mapper decided (its name may be changed by the rules here).
    pub desired: DesiredVirtualMachine,
}

/// The NetBox VMs of one cluster, each with its identity (from its sync-state record)
/// under [`IDENTITY_KEY`] when it has one.
pub struct ClusterVms {
    /// NetBox cluster id.
    pub id: u64,
    /// The VMs as listed.
    pub vms: Vec<Listed>,
}

/// What the sync-state records say about the NetBox VMs.
#[derive(Default)]
pub struct Records {
    /// `(record id, identity)` by NetBox VM id.
    pub identities: BTreeMap<u64, (u64, VmIdentity)>,
    /// The Proxmox name at the last sync (`proxmox_vm_name`) by NetBox VM id.
    pub last_names: BTreeMap<u64, String>,
}

impl Records {
    /// From sync-state records as listed.
    pub fn from_records<E: Existing>(records: &[E]) -> Records {
        Records {
            identities: crate::netbox::vms::identities_from(records),
            last_names: records
                .iter()
                .map(Existing::parsed)
                .filter_map(|r| {
                    Some((
                        r.pointer("/virtual_machine/id")?.as_u64()?,
                        r.get("proxmox_vm_name")?.as_str()?.to_string(),
                    ))
                })
                .collect(),
        }
    }
}

/// What matching decided.
#[derive(Default)]
pub struct Matched {
    /// NetBox VM ids adopted through the legacy custom fields (they need a record).
    pub adopted: BTreeSet<u64>,
    /// NetBox VM id matched by each want (by want index).
    pub vm_of: BTreeMap<usize, u64>,
}

/// Attach identities to the listed VMs, adopt legacy VMs, apply the rename rule and
/// resolve duplicate names. `name_owned`: the sync may change VM names at all
/// (`overwrite_vm_name`).
pub fn match_guests(
    wants: &mut [Want],
    guests: &[Guest<'_>],
    clusters: &mut BTreeMap<String, ClusterVms>,
    records: &Records,
    name_owned: bool,
    sink: &EventSink,
) -> Matched {
    let mut matched = Matched::default();
    // Per NetBox cluster: listed VM position by identity (the first one wins) and by id,
    // so matching stays linear in the number of guests and VMs.
    // Listed VMs without an identity, by the VMID of their legacy custom field.
    let mut by_legacy: BTreeMap<String, HashMap<String, Vec<usize>>> = BTreeMap::new();
    let mut by_identity: BTreeMap<String, HashMap<String, usize>> = BTreeMap::new();
    let mut by_id: BTreeMap<String, HashMap<u64, usize>> = BTreeMap::new();
    for (name, cluster) in clusters.iter_mut() {
        let identities = by_identity.entry(name.clone()).or_default();
        let ids = by_id.entry(name.clone()).or_default();
        let legacy = by_legacy.entry(name.clone()).or_default();
        for (at, listed) in cluster.vms.iter_mut().enumerate() {
            let vm = attach_identity(listed, records);
            match vm.get(IDENTITY_KEY) {
                Some(identity) => {
                    identities.entry(identity.to_string()).or_insert(at);
                }
                None => {
                    if let Some(vmid) = legacy_field(&vm, "proxmox_vm_id") {
                        legacy.entry(vmid).or_default().push(at);
                    }
                }
            }
            if let Some(id) = listed.id() {
                ids.entry(id).or_insert(at);
            }
        }
    }
    for (index, want) in wants.iter().enumerate() {
        let Some(cluster) = clusters.get_mut(&want.cluster) else {
            continue;
        };
        let identities = by_identity.entry(want.cluster.clone()).or_default();
        let identity = Value::Array(identity_of(
            &json!(cluster.id),
            &guests[want.guest].identity,
        ));
        let found = identities.get(&identity.to_string()).copied();
        let found = found.or_else(|| {
            let guest = &guests[want.guest].identity;
            let candidates = by_legacy
                .get_mut(&want.cluster)?
                .get_mut(&guest.vmid.to_string())?;
            let at = adoptable_among(&cluster.vms, candidates, guest)?;
            candidates.retain(|c| *c != at);
            let mut vm = cluster.vms[at].value();
            vm.as_object_mut()?
                .insert(IDENTITY_KEY.into(), identity.clone());
            cluster.vms[at] = Listed::new(&vm);
            identities.insert(identity.to_string(), at);
            matched.adopted.extend(cluster.vms[at].id());
            Some(at)
        });
        if let Some(id) = found.and_then(|at| cluster.vms[at].id()) {
            matched.vm_of.insert(index, id);
        }
    }
    let mut kept = BTreeSet::new();
    if name_owned {
        for (index, want) in wants.iter_mut().enumerate() {
            let Some(vm) = matched.vm_of.get(&index) else {
                continue;
            };
            let Some(current) = clusters.get(&want.cluster).and_then(|c| {
                let at = *by_id.get(&want.cluster)?.get(vm)?;
                c.vms
                    .get(at)?
                    .value()
                    .get("name")?
                    .as_str()
                    .map(str::to_string)
            }) else {
                continue;
            };
            let current = current.as_str();
            let guest = &guests[want.guest];
            let proxmox = guest.name.clone().unwrap_or_default();
            if keeps_operator_name(
                current,
                &want.desired.name,
                &proxmox,
                records.last_names.get(vm).map(String::as_str),
            ) {
                sink.emit(DuplicateNameResolved {
                    cluster: want.cluster.clone(),
                    original_name: want.desired.name.clone(),
                    resolved_name: current.to_string(),
                    vmid: i64::from(guest.identity.vmid),
                    suffix_index: 1,
                    operator_renamed: true,
                });
                want.desired.name = current.to_string();
                kept.insert(index);
            }
        }
    }
    // Names held by NetBox VMs no guest of this run matched stay taken.
    let claimed: BTreeSet<u64> = matched.vm_of.values().copied().collect();
    let mut taken: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, cluster) in clusters.iter() {
        let names = taken.entry(name.clone()).or_default();
        for listed in &cluster.vms {
            if listed.id().is_some_and(|id| !claimed.contains(&id))
                && let Some(n) = listed.value().get("name").and_then(Value::as_str)
            {
                names.insert(n.to_lowercase());
            }
        }
    }
    if name_owned {
        for index in &kept {
            let want = &wants[*index];
            taken
                .entry(want.cluster.clone())
                .or_default()
                .insert(want.desired.name.to_lowercase());
        }
    }
    resolve_duplicate_names(wants, guests, &kept, taken, sink);
    matched
}

/// The listed VM, parsed, with its identity under [`IDENTITY_KEY`] when it has a
/// sync-state record (then `listed` is rewritten with it, for the reconcile to read).
fn attach_identity(listed: &mut Listed, records: &Records) -> Value {
    let mut vm = listed.value();
    let identity = listed.id().and_then(|id| records.identities.get(&id));
    if let (Some((_, identity)), Some(object)) = (identity, vm.as_object_mut())
        && let Some(c) = object.get("cluster").cloned()
    {
        object.insert(IDENTITY_KEY.into(), Value::Array(identity_of(&c, identity)));
        *listed = Listed::new(&vm);
    }
    vm
}

/// A legacy custom field of a listed VM (the plugin's fields before sync-state records),
/// as text.
fn legacy_field(vm: &Value, name: &str) -> Option<String> {
    match vm.get("custom_fields")?.get(name)? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The one VM without a sync-state record whose legacy custom fields name this guest.
#[cfg(test)]
fn adoptable<E: Existing>(vms: &[E], identity: &VmIdentity) -> Option<usize> {
    let candidates: Vec<usize> = (0..vms.len())
        .filter(|at| {
            let vm = vms[*at].parsed();
            vm.get(IDENTITY_KEY).is_none()
                && legacy_field(&vm, "proxmox_vm_id") == Some(identity.vmid.to_string())
        })
        .collect();
    adoptable_among(vms, &candidates, identity)
}

/// The one of `candidates` (positions in `vms` of VMs without an identity whose legacy
/// VMID is this guest's) whose other legacy fields do not name another guest.
fn adoptable_among<E: Existing>(
    vms: &[E],
    candidates: &[usize],
    identity: &VmIdentity,
) -> Option<usize> {
    let fits: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|at| {
            let vm = vms[*at].parsed();
            legacy_field(&vm, "proxmox_vm_type").is_none_or(|t| t == identity.kind)
                && legacy_field(&vm, "proxmox_endpoint_id")
                    .is_none_or(|e| e == identity.endpoint.to_string())
        })
        .collect();
    match fits.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Whether `name` is `base` or `base (N)` with N ≥ 2.
fn is_variant(name: &str, base: &str) -> bool {
    name == base
        || name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix(" ("))
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 2)
}

/// The rename rule. `current`: the NetBox name; `desired`: the mapper's name; `proxmox`:
/// the name Proxmox reports now; `last`: the one it reported at the last sync. A mapper
/// that derives names from something else than the Proxmox name owns the name outright.
pub fn keeps_operator_name(
    current: &str,
    desired: &str,
    proxmox: &str,
    last: Option<&str>,
) -> bool {
    if is_variant(current, desired) || desired != proxmox {
        return false;
    }
    let renamed_in_proxmox = last
        .filter(|l| !l.is_empty())
        .is_some_and(|l| is_variant(current, l));
    !renamed_in_proxmox
}

/// Within each NetBox cluster, names equal ignoring case get `" (N)"` suffixes (N ≥ 2,
/// smallest free), ordered by `(Proxmox cluster name, VMID)` so the lowest VMID keeps
/// the bare name; `taken` holds names already in use. Wants in `kept` keep their name.
/// Each rename is announced with `duplicate_name_resolved`.
fn resolve_duplicate_names(
    wants: &mut [Want],
    guests: &[Guest<'_>],
    kept: &BTreeSet<usize>,
    mut taken: BTreeMap<String, BTreeSet<String>>,
    sink: &EventSink,
) {
    let mut order: Vec<usize> = (0..wants.len()).filter(|i| !kept.contains(i)).collect();
    order.sort_by_key(|i| {
        let g = &guests[wants[*i].guest];
        (
            wants[*i].cluster.clone(),
            g.read.inventory.name.to_lowercase(),
            g.identity.vmid,
            g.identity.kind.clone(),
        )
    });
    for i in &order {
        let cluster = wants[*i].cluster.clone();
        let names = taken.entry(cluster.clone()).or_default();
        let original = wants[*i].desired.name.clone();
        if names.insert(original.to_lowercase()) {
            continue;
        }
        let mut n = 2;
        let resolved = loop {
            let candidate = format!("{original} ({n})");
            if names.insert(candidate.to_lowercase()) {
                break candidate;
            }
            n += 1;
        };
        wants[*i].desired.name = resolved.clone();
        sink.emit(DuplicateNameResolved {
            cluster,
            original_name: original,
            resolved_name: resolved,
            vmid: i64::from(guests[wants[*i].guest].identity.vmid),
            suffix_index: n,
            operator_renamed: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rename_rule() {
        // Unchanged, or our own suffix: nothing to keep.
        assert!(!keeps_operator_name("web", "web", "web", Some("web")));
        assert!(!keeps_operator_name("web (2)", "web", "web", Some("web")));
        // Renamed in Proxmox: NetBox still shows the last Proxmox name.
        assert!(!keeps_operator_name("web", "app", "app", Some("web")));
        assert!(!keeps_operator_name("web (3)", "app", "app", Some("web")));
        // Renamed in NetBox by an operator: kept.
        assert!(keeps_operator_name("frontend", "web", "web", Some("web")));
        assert!(keeps_operator_name("frontend", "app", "app", Some("web")));
        // No evidence: kept, as the reference does.
        assert!(keeps_operator_name("frontend", "web", "web", None));
        assert!(keeps_operator_name("frontend", "web", "web", Some("")));
        // A mapper that makes its own names owns them.
        assert!(!keeps_operator_name(
            "frontend",
            "site-web",
            "web",
            Some("web")
        ));
    }

    #[test]
    fn variants() {
        assert!(is_variant("a (2)", "a"));
        assert!(!is_variant("a (1)", "a"));
        assert!(!is_variant("a (x)", "a"));
        assert!(!is_variant("ab", "a"));
    }

    #[test]
    fn adoption_needs_exactly_one_fitting_legacy_vm() {
        let identity = VmIdentity {
            endpoint: 1,
            vmid: 100,
            kind: "qemu".into(),
        };
        let legacy = |id: u64, cf: Value| json!({"id": id, "name": "x", "custom_fields": cf});
        let vms = vec![
            legacy(1, json!({"proxmox_vm_id": 100, "proxmox_vm_type": "lxc"})),
            legacy(2, json!({"proxmox_vm_id": "100"})),
            legacy(3, json!({"proxmox_vm_id": 101})),
        ];
        assert_eq!(adoptable(&vms, &identity), Some(1));
        let mut two = vms.clone();
        two.push(legacy(
            4,
            json!({"proxmox_vm_id": 100, "proxmox_endpoint_id": 1}),
        ));
        assert_eq!(adoptable(&two, &identity), None);
        let other_endpoint = vec![legacy(
            5,
            json!({"proxmox_vm_id": 100, "proxmox_endpoint_id": 2}),
        )];
        assert_eq!(adoptable(&other_endpoint, &identity), None);
        let mut recorded = vec![legacy(6, json!({"proxmox_vm_id": 100}))];
        recorded[0][IDENTITY_KEY] = json!([1, 9, 100, "qemu"]);
        assert_eq!(adoptable(&recorded, &identity), None);
    }
}
