//! Reading an endpoint's estate, and knowing how completely it was read.
//!
//! `/cluster/resources` never answers 403: a token without privileges silently sees
//! less. Every multi-request read therefore reports a [`Completeness`], and deletion
//! logic must refuse to act on a read that is incomplete or suspiciously smaller than
//! the last one.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;

use super::client::ProxmoxClient;
use super::error::ProxmoxError;
use super::models::{
    ClusterResource, ClusterStatusEntry, GuestConfig, GuestKind, Snapshot, StorageConfig,
    StorageContent,
};

/// What a read covered and what failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Completeness {
    /// Nodes the cluster reports.
    pub nodes_listed: BTreeSet<String>,
    /// Nodes that are offline or whose state is unknown (their guests may be missing or stale).
    pub nodes_offline: BTreeSet<String>,
    /// Nodes whose per-node reads all succeeded.
    pub nodes_read: BTreeSet<String>,
    /// Nodes with a failed per-node read, and why.
    pub nodes_failed: BTreeMap<String, String>,
    /// `(node, storage)` pairs read without error.
    pub storages_read: BTreeSet<(String, String)>,
    /// `(node, storage)` pairs that failed, and why.
    pub storages_failed: BTreeMap<(String, String), String>,
    /// Guests the inventory lists.
    pub guests_seen: usize,
    /// Guests whose per-guest read failed, and why.
    pub guests_failed: BTreeMap<u32, String>,
}

impl Completeness {
    /// Whether everything listed was read: no offline node and no failed read.
    pub fn is_complete(&self) -> bool {
        self.nodes_offline.is_empty()
            && self.nodes_failed.is_empty()
            && self.storages_failed.is_empty()
            && self.guests_failed.is_empty()
    }

    /// Whether the guest count fell by more than `max_drop` (a fraction, e.g. `0.5`)
    /// compared with a previous read of `previous_guests` — or to zero from anything.
    pub fn shrank_suspiciously(&self, previous_guests: usize, max_drop: f64) -> bool {
        if previous_guests == 0 {
            return false;
        }
        if self.guests_seen == 0 {
            return true;
        }
        let dropped = previous_guests.saturating_sub(self.guests_seen) as f64;
        dropped / previous_guests as f64 > max_drop
    }

    /// Whether the backups of `storage` on `node` were read (for a shared storage, on any node).
    pub fn storage_read(&self, node: &str, storage: &str) -> bool {
        self.storages_read
            .contains(&(node.to_string(), storage.to_string()))
    }
}

/// Cluster mode of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A cluster.
    Cluster,
    /// One node, not clustered.
    Standalone,
}

/// The base inventory of one endpoint: `/cluster/status` plus `/cluster/resources`.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// Cluster name (a standalone node's own name).
    pub name: String,
    /// Cluster or standalone.
    pub mode: Mode,
    /// `/cluster/status` entries.
    pub status: Vec<ClusterStatusEntry>,
    /// Guests (`qemu` and `lxc` resources).
    pub guests: Vec<ClusterResource>,
    /// Node resources.
    pub nodes: Vec<ClusterResource>,
    /// Storage resources (per node).
    pub storages: Vec<ClusterResource>,
    /// Coverage so far (offline nodes, guest count).
    pub completeness: Completeness,
}

impl Inventory {
    /// Read `/cluster/status` and `/cluster/resources`. Either failing fails the read.
    pub async fn read(client: &ProxmoxClient) -> Result<Self, ProxmoxError> {
        let (status, resources) =
            tokio::try_join!(client.cluster_status(), client.cluster_resources(None))?;
        let mut completeness = Completeness::default();
        let mut node_names = Vec::new();
        let mut cluster_name = None;
        for entry in &status {
            match entry {
                ClusterStatusEntry::Cluster { name, .. } => cluster_name = Some(name.clone()),
                ClusterStatusEntry::Node { name, online, .. } => {
                    node_names.push(name.clone());
                    completeness.nodes_listed.insert(name.clone());
                    if !online {
                        completeness.nodes_offline.insert(name.clone());
                    }
                }
                ClusterStatusEntry::Other(_) => {}
            }
        }
        let (mut guests, mut nodes, mut storages) = (Vec::new(), Vec::new(), Vec::new());
        for resource in resources {
            match resource.kind.as_str() {
                "qemu" | "lxc" => guests.push(resource),
                "node" => {
                    if let Some(name) = &resource.node
                        && !matches!(resource.status.as_deref(), Some("online"))
                    {
                        completeness.nodes_offline.insert(name.clone());
                    }
                    nodes.push(resource);
                }
                "storage" => storages.push(resource),
                _ => {}
            }
        }
        completeness.guests_seen = guests.len();
        let (name, mode) = match (cluster_name, node_names.as_slice()) {
            (Some(name), _) => (name, Mode::Cluster),
            (None, [single]) => (single.clone(), Mode::Standalone),
            (None, _) => {
                return Err(ProxmoxError::Decode {
                    path: "cluster/status".into(),
                    message: format!("no cluster entry and {} nodes", node_names.len()),
                });
            }
        };
        Ok(Inventory {
            name,
            mode,
            status,
            guests,
            nodes,
            storages,
            completeness,
        })
    }

    /// Nodes that are online.
    pub fn online_nodes(&self) -> Vec<String> {
        self.completeness
            .nodes_listed
            .iter()
            .filter(|n| !self.completeness.nodes_offline.contains(*n))
            .cloned()
            .collect()
    }
}

/// A backup and where it was read.
#[derive(Clone, Debug)]
pub struct BackupRead {
    /// Node the content list was read from.
    pub node: String,
    /// Storage.
    pub storage: String,
    /// The entry.
    pub entry: StorageContent,
}

/// Read the backups of every backup-capable storage: a shared storage once (from its
/// first online node), a local one on every online node that has it. Failures are
/// recorded per `(node, storage)` in the returned completeness, never fatal.
pub async fn read_backups(
    client: &ProxmoxClient,
    inventory: &Inventory,
    storages: &[StorageConfig],
) -> (Vec<BackupRead>, Completeness) {
    let online = inventory.online_nodes();
    let mut targets = Vec::new();
    for storage in storages
        .iter()
        .filter(|s| s.holds_backups() && s.disable != Some(true))
    {
        let nodes: Vec<&String> = online.iter().filter(|n| storage.available_on(n)).collect();
        if storage.shared == Some(true) {
            targets.extend(
                nodes
                    .first()
                    .map(|n| ((*n).clone(), storage.storage.clone())),
            );
        } else {
            targets.extend(
                nodes
                    .into_iter()
                    .map(|n| (n.clone(), storage.storage.clone())),
            );
        }
    }
    let reads = join_all(
        targets
            .iter()
            .map(|(node, storage)| client.backups(node, storage, None)),
    )
    .await;
    let mut completeness = inventory.completeness.clone();
    let mut backups = Vec::new();
    let mut seen = BTreeSet::new();
    for ((node, storage), result) in targets.into_iter().zip(reads) {
        match result {
            Ok(entries) => {
                for entry in entries {
                    if seen.insert(entry.volid.clone()) {
                        backups.push(BackupRead {
                            node: node.clone(),
                            storage: storage.clone(),
                            entry,
                        });
                    }
                }
                completeness.storages_read.insert((node, storage));
            }
            Err(e) => {
                completeness
                    .storages_failed
                    .insert((node, storage), e.to_string());
            }
        }
    }
    (backups, completeness)
}

/// Read the config of each guest (bounded by the client's concurrency). Guests whose
/// read fails are recorded in the completeness and left out.
pub async fn read_configs(
    client: &ProxmoxClient,
    inventory: &Inventory,
) -> (Vec<(ClusterResource, GuestConfig)>, Completeness) {
    let results = each_config(client, &inventory.guests).await;
    tally(inventory, inventory.guests.iter().zip(results))
}

/// Read the snapshots of each guest; failures are recorded, not fatal. A guest whose
/// storage cannot snapshot (Proxmox answers 501 Not Implemented) has none.
pub async fn read_snapshots(
    client: &ProxmoxClient,
    inventory: &Inventory,
) -> (Vec<(ClusterResource, Vec<Snapshot>)>, Completeness) {
    per_guest(inventory, |node, kind, vmid| async move {
        match client.snapshots(&node, kind, vmid).await {
            Err(ProxmoxError::Status { status: 501, .. }) => Ok(Vec::new()),
            other => other,
        }
    })
    .await
}

async fn per_guest<'a, T, F, Fut>(
    inventory: &'a Inventory,
    read: F,
) -> (Vec<(ClusterResource, T)>, Completeness)
where
    F: Fn(String, GuestKind, u32) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<T, ProxmoxError>> + Send + 'a,
    T: Send + 'a,
{
    let results = each_guest(&inventory.guests, read).await;
    tally(inventory, inventory.guests.iter().zip(results))
}

/// Read the config of each of `guests` (bounded by the client's concurrency), one
/// result per guest in their order.
pub async fn each_config(
    client: &ProxmoxClient,
    guests: &[ClusterResource],
) -> Vec<Result<GuestConfig, ProxmoxError>> {
    each_guest(guests, |node, kind, vmid| async move {
        client.guest_config(&node, kind, vmid).await
    })
    .await
}

/// Every guest's config as compact JSON text, each turned to text as it arrives.
pub async fn each_config_text(
    client: &ProxmoxClient,
    guests: &[ClusterResource],
) -> Vec<Result<String, ProxmoxError>> {
    each_guest(guests, |node, kind, vmid| async move {
        client
            .guest_config(&node, kind, vmid)
            .await
            .map(|config| config.raw.to_string())
    })
    .await
}

/// Per-guest reads started ahead of the client's own concurrency limit: enough to keep
/// its permits busy, few enough that an estate's worth of request futures never exists
/// at once.
const READS_AHEAD: usize = 64;

async fn each_guest<'a, T, F, Fut>(
    guests: &'a [ClusterResource],
    read: F,
) -> Vec<Result<T, ProxmoxError>>
where
    F: Fn(String, GuestKind, u32) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<T, ProxmoxError>> + Send + 'a,
    T: Send + 'a,
{
    use futures::StreamExt;
    // Boxed: rustc cannot prove a stream of closures over borrowed data `Send` inside
    // the stages' futures (rust-lang/rust#110338).
    let reads: futures::stream::BoxStream<'a, Result<T, ProxmoxError>> =
        futures::stream::iter(guests.iter().map(move |g| {
            let node = g.node.clone().unwrap_or_default();
            let kind = g.guest_kind().unwrap_or(GuestKind::Qemu);
            read(node, kind, g.vmid.unwrap_or_default())
        }))
        .buffered(READS_AHEAD)
        .boxed();
    reads.collect().await
}

/// The per-guest results of a read of `inventory`'s guests as what was read and how
/// completely: a failed guest is recorded (and marks its node failed) and left out.
pub fn tally<'a, T, E: std::fmt::Display>(
    inventory: &Inventory,
    results: impl IntoIterator<Item = (&'a ClusterResource, Result<T, E>)>,
) -> (Vec<(ClusterResource, T)>, Completeness) {
    let mut completeness = inventory.completeness.clone();
    let mut out = Vec::new();
    for (guest, result) in results {
        match result {
            Ok(value) => out.push((guest.clone(), value)),
            Err(e) => {
                let vmid = guest.vmid.unwrap_or_default();
                if let Some(node) = &guest.node {
                    completeness
                        .nodes_failed
                        .entry(node.clone())
                        .or_insert_with(|| e.to_string());
                }
                completeness.guests_failed.insert(vmid, e.to_string());
            }
        }
    }
    for node in &completeness.nodes_listed {
        if !completeness.nodes_failed.contains_key(node)
            && !completeness.nodes_offline.contains(node)
        {
            completeness.nodes_read.insert(node.clone());
        }
    }
    (out, completeness)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinkage_guard() {
        let c = Completeness {
            guests_seen: 40,
            ..Default::default()
        };
        assert!(c.shrank_suspiciously(100, 0.5));
        assert!(!c.shrank_suspiciously(60, 0.5));
        assert!(!c.shrank_suspiciously(0, 0.5));
        let empty = Completeness::default();
        assert!(empty.shrank_suspiciously(1, 0.9));
        assert!(empty.is_complete());
    }
}
