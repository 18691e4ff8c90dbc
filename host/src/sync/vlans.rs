//! VLANs the network mappers refer to (`vlan-ref`), found or created in NetBox by
//! `(vid, site, group)` — a global VLAN has neither. Created VLANs carry the ownership
//! tag; existing ones are never changed or deleted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{describe, list_by};
use super::report::{Item, Outcome};
use super::resolve::ids_by;
use crate::mapper::v1::VlanRef;
use crate::netbox::reconcile::normalise;
use crate::netbox::{NetBoxClient, NetBoxError};

/// NetBox VLANs.
pub const VLAN_PATH: &str = "ipam/vlans/";

/// A VLAN by natural key: VLAN id, site slug, group slug.
pub type VlanKey = (u16, Option<String>, Option<String>);

/// The key of a reference.
pub fn key(vlan: &VlanRef) -> VlanKey {
    (vlan.vid, vlan.site.clone(), vlan.group.clone())
}

/// The VLANs a stage refers to, resolved.
#[derive(Debug, Default)]
pub struct Vlans {
    /// NetBox id by key (missing: not found and not created, e.g. on a dry run).
    pub ids: BTreeMap<VlanKey, u64>,
    /// The VLANs created (dry run: that would be), with their outcome, for the report.
    pub created: Vec<(Item, Outcome)>,
}

impl Vlans {
    /// The id of `vlan`, if it exists.
    pub fn id(&self, vlan: &VlanRef) -> Option<u64> {
        self.ids.get(&key(vlan)).copied()
    }
}

/// Find or create every VLAN of `refs` (the first reference of a key gives its name),
/// created ones tagged with `owner` (the ownership tag).
pub async fn ensure(
    netbox: &NetBoxClient,
    refs: &[VlanRef],
    owner: Option<u64>,
    dry_run: bool,
) -> Result<Vlans, NetBoxError> {
    let mut wanted: BTreeMap<VlanKey, &VlanRef> = BTreeMap::new();
    for vlan in refs {
        if (1..=4094).contains(&vlan.vid) {
            wanted.entry(key(vlan)).or_insert(vlan);
        }
    }
    let mut out = Vlans::default();
    if wanted.is_empty() {
        return Ok(out);
    }
    let site_slugs: BTreeSet<String> = wanted.keys().filter_map(|k| k.1.clone()).collect();
    let group_slugs: BTreeSet<String> = wanted.keys().filter_map(|k| k.2.clone()).collect();
    let sites = ids_by(netbox, "dcim/sites/", "slug", &site_slugs).await?;
    let groups = ids_by(netbox, "ipam/vlan-groups/", "slug", &group_slugs).await?;
    let vids: BTreeSet<String> = wanted.keys().map(|k| k.0.to_string()).collect();
    let fields = [("fields", "id,vid,site,group".to_string())];
    let existing = list_by(netbox, VLAN_PATH, "vid", &vids, &fields).await?;
    let mut found: BTreeMap<(u64, Option<u64>, Option<u64>), u64> = BTreeMap::new();
    for vlan in existing.iter().map(|l| l.object()) {
        let id_of = |field: &str| vlan.get(field).map(normalise).and_then(|v| v.as_u64());
        if let (Some(id), Some(vid)) = (id_of("id"), id_of("vid")) {
            found
                .entry((vid, id_of("site"), id_of("group")))
                .or_insert(id);
        }
    }
    let mut create: Vec<(VlanKey, Value)> = Vec::new();
    for (k, vlan) in &wanted {
        let site = match &k.1 {
            Some(slug) => match sites.get(slug) {
                Some(id) => Some(*id),
                None => {
                    out.created.push((
                        item(vlan),
                        Outcome::Failed(format!("site `{slug}` does not exist in NetBox")),
                    ));
                    continue;
                }
            },
            None => None,
        };
        let group = match &k.2 {
            Some(slug) => match groups.get(slug) {
                Some(id) => Some(*id),
                None => {
                    out.created.push((
                        item(vlan),
                        Outcome::Failed(format!("VLAN group `{slug}` does not exist in NetBox")),
                    ));
                    continue;
                }
            },
            None => None,
        };
        if let Some(id) = found.get(&(u64::from(k.0), site, group)) {
            out.ids.insert(k.clone(), *id);
            continue;
        }
        let mut payload = Map::new();
        payload.insert("vid".into(), json!(k.0));
        payload.insert("name".into(), json!(vlan.name));
        payload.insert("status".into(), json!("active"));
        payload.insert("site".into(), json!(site));
        payload.insert("group".into(), json!(group));
        payload.insert("tags".into(), json!(owner.into_iter().collect::<Vec<_>>()));
        create.push((k.clone(), Value::Object(payload)));
    }
    if dry_run {
        for (k, _) in &create {
            out.created.push((item(wanted[k]), Outcome::Created));
        }
        return Ok(out);
    }
    let (keys, payloads): (Vec<VlanKey>, Vec<Value>) = create.into_iter().unzip();
    for (k, result) in keys
        .into_iter()
        .zip(netbox.bulk_create(VLAN_PATH, payloads).await)
    {
        match result {
            Ok(id) => {
                if let Some(id) = id {
                    out.ids.insert(k.clone(), id);
                }
                out.created
                    .push((item(wanted[&k]).with_id(id), Outcome::Created));
            }
            Err(e) => out
                .created
                .push((item(wanted[&k]), Outcome::Failed(describe(&e)))),
        }
    }
    Ok(out)
}

fn item(vlan: &VlanRef) -> Item {
    let scope = match (&vlan.site, &vlan.group) {
        (Some(site), _) => format!(" ({site})"),
        (None, Some(group)) => format!(" ({group})"),
        (None, None) => String::new(),
    };
    Item::new(format!("{}{scope}", vlan.name), "vlan")
}
