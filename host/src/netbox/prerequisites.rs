//! Objects every sync needs, ensured idempotently: the ownership and discovery tags,
//! cluster types, the Proxmox manufacturer, device type, node role, VM roles, and
//! (NetBox 4.6+) VM types. Existing objects are never modified: an operator may
//! have recoloured or renamed them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::client::{NetBoxClient, NetBoxStatus};
use super::error::NetBoxError;
use super::reconcile::{self, Desired, KindSpec};

/// Slug of the tag that marks objects the sync created and owns.
pub const OWNERSHIP_TAG_SLUG: &str = "proxbox";

/// Ids of the ensured objects, by kind and slug.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prerequisites {
    /// `extras/tags/` ids by slug.
    pub tags: BTreeMap<String, u64>,
    /// `virtualization/cluster-types/` ids by slug.
    pub cluster_types: BTreeMap<String, u64>,
    /// `dcim/manufacturers/` ids by slug.
    pub manufacturers: BTreeMap<String, u64>,
    /// `dcim/device-types/` ids by slug.
    pub device_types: BTreeMap<String, u64>,
    /// `dcim/device-roles/` ids by slug (node role and VM roles).
    pub roles: BTreeMap<String, u64>,
    /// `virtualization/virtual-machine-types/` ids by slug (empty before NetBox 4.6).
    pub vm_types: BTreeMap<String, u64>,
}

impl Prerequisites {
    /// Id of the ownership tag.
    pub fn ownership_tag(&self) -> Option<u64> {
        self.tags.get(OWNERSHIP_TAG_SLUG).copied()
    }
}

fn by_slug(path: &str) -> KindSpec {
    KindSpec {
        path: path.to_string(),
        identity: Box::new(|o: &Map<String, Value>| {
            o.get("slug")
                .and_then(Value::as_str)
                .map(|s| vec![json!(s)])
        }),
        owned: BTreeSet::new(),
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.to_string(),
    }
}

/// Ensure `objects` (payloads with `slug`) exist at `path`; return ids by slug.
async fn ensure(
    client: &NetBoxClient,
    path: &str,
    objects: Vec<Value>,
    write: bool,
) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let slugs: Vec<String> = objects
        .iter()
        .filter_map(|o| o.get("slug").and_then(Value::as_str).map(str::to_string))
        .collect();
    let query: Vec<(&str, String)> = slugs.iter().map(|s| ("slug", s.clone())).collect();
    let spec = by_slug(path);
    let desired: Vec<Desired> = objects
        .into_iter()
        .filter_map(|o| o.as_object().cloned())
        .map(|payload| Desired {
            identity: (spec.identity)(&payload),
            payload,
        })
        .collect();
    // A concurrent sync may create the same object between our read and our write:
    // NetBox then refuses ours as a duplicate, and a second read finds theirs.
    let mut retried = false;
    let applied = loop {
        let existing = client.list(path, &query).await?;
        let mut plan = reconcile::plan(&spec, &desired, &existing);
        if !write {
            plan.creates.clear();
            plan.updates.clear();
        }
        let applied = reconcile::apply(client, &spec, plan, false).await;
        match applied.failed.iter().next() {
            None => break applied,
            Some((_, error)) if !retried => {
                tracing::debug!(path, "re-reading after a failed ensure: {error}");
                retried = true;
            }
            Some((index, error)) => {
                let slug = slugs.get(*index).map(String::as_str);
                tracing::warn!(path, slug, "cannot ensure: {error}");
                return Err(error.clone());
            }
        }
    };
    let mut ids = BTreeMap::new();
    for (index, id) in applied.ids {
        if let (Some(slug), Some(id)) = (slugs.get(index), id) {
            ids.insert(slug.clone(), id);
        }
    }
    Ok(ids)
}

/// Ensure every prerequisite object; one list read per kind and no writes when all exist.
pub async fn ensure_all(
    client: &NetBoxClient,
    status: &NetBoxStatus,
) -> Result<Prerequisites, NetBoxError> {
    ensure_all_with(client, status, true).await
}

/// The ids of the prerequisite objects that exist, creating the missing ones only when
/// `write` (a dry run reads).
pub async fn ensure_all_with(
    client: &NetBoxClient,
    status: &NetBoxStatus,
    write: bool,
) -> Result<Prerequisites, NetBoxError> {
    let tags = ensure(
        client,
        "extras/tags/",
        vec![
            json!({"name": "Proxbox", "slug": OWNERSHIP_TAG_SLUG, "color": "ff5722",
                   "description": "Proxbox Identifier (used to identify the items the plugin created)"}),
            json!({"name": "Proxbox: Discovered QEMU VM", "slug": "proxbox-discovered-qemu", "color": "2196f3"}),
            json!({"name": "Proxbox: Discovered LXC Container", "slug": "proxbox-discovered-lxc", "color": "00bcd4"}),
            json!({"name": "Proxbox: Discovered Cluster", "slug": "proxbox-discovered-cluster", "color": "4caf50"}),
            json!({"name": "Proxbox: Discovered Node", "slug": "proxbox-discovered-node", "color": "9c27b0"}),
        ],
        write,
    )
    .await?;
    let owner: Vec<Value> = tags
        .get(OWNERSHIP_TAG_SLUG)
        .map(|id| json!(id))
        .into_iter()
        .collect();
    let cluster_types = ensure(
        client,
        "virtualization/cluster-types/",
        ["cluster", "standalone"]
            .iter()
            .map(|mode| {
                let mut name = mode.to_string();
                name[..1].make_ascii_uppercase();
                json!({"name": name, "slug": mode, "description": format!("Proxmox {mode} mode"), "tags": owner})
            })
            .collect(),
        write,
    )
    .await?;
    let manufacturers = ensure(
        client,
        "dcim/manufacturers/",
        vec![json!({"name": "Proxmox", "slug": "proxmox", "tags": owner})],
        write,
    )
    .await?;
    let device_types = ensure(
        client,
        "dcim/device-types/",
        vec![
            json!({"model": "Proxmox Generic Device", "slug": "proxmox-generic-device",
                    "manufacturer": manufacturers.get("proxmox"), "tags": owner}),
        ],
        write,
    )
    .await?;
    let roles = ensure(
        client,
        "dcim/device-roles/",
        vec![
            json!({"name": "Proxmox Node", "slug": "proxmox-node", "color": "00bcd4", "tags": owner}),
            json!({"name": "Virtual Machine (QEMU)", "slug": "virtual-machine-qemu", "color": "00ffff", "vm_role": true, "tags": owner}),
            json!({"name": "Container (LXC)", "slug": "container-lxc", "color": "7fffd4", "vm_role": true, "tags": owner}),
            json!({"name": "Unknown", "slug": "unknown", "color": "000000", "vm_role": true, "tags": owner}),
        ],
        write,
    )
    .await?;
    let vm_types = if status.has_vm_types() {
        ensure(
            client,
            "virtualization/virtual-machine-types/",
            vec![
                json!({"name": "QEMU Virtual Machine", "slug": "qemu-virtual-machine", "tags": owner}),
                json!({"name": "LXC Container", "slug": "lxc-container", "tags": owner}),
            ],
            write,
        )
        .await?
    } else {
        BTreeMap::new()
    };
    Ok(Prerequisites {
        tags,
        cluster_types,
        manufacturers,
        device_types,
        roles,
        vm_types,
    })
}
