//! The Proxmox side of one run, read once and shared by its stages.
//!
//! A full update runs six stages; each needs the endpoints' inventories and most need
//! every guest's config. Reading them once per run halves the Proxmox requests of a
//! full update and gives every stage the same snapshot of the estate: a guest whose
//! config could not be read fails the same way in each stage instead of appearing in
//! one and missing from the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::mapper::v1::{GuestType, ObservedInterface};
use crate::normalize::network;
use crate::proxmox::inventory;
use crate::proxmox::models::{ClusterResource, GuestConfig};
use crate::proxmox::{Inventory, ProxmoxClient, ProxmoxError};
use crate::server::sessions::Session;

/// Guest configs by `(endpoint id, VMID)`: compact JSON, or why the read failed.
type ConfigCache = HashMap<(i64, u32), Result<ConfigText, String>>;

/// A guest config as the run keeps it: compact JSON, a fifth of its parsed size, shared
/// with the stages and parsed by each only while it uses the guest.
#[derive(Clone, Debug)]
pub struct ConfigText(Arc<str>);

impl ConfigText {
    /// The config, parsed.
    pub fn parse(&self) -> Result<GuestConfig, String> {
        serde_json::from_str(&self.0)
            .map(|raw| GuestConfig { raw })
            .map_err(|e| format!("its config could not be read back: {e}"))
    }
}

/// What guests report about their interfaces, by `(endpoint id, VMID)` (none: no answer).
type ObservedCache = HashMap<(i64, u32), Option<Vec<ObservedInterface>>>;

/// A guest to ask about its interfaces.
#[derive(Clone, Debug)]
pub struct Ask {
    /// Node it runs on.
    pub node: String,
    /// VMID.
    pub vmid: u32,
    /// QEMU (the guest agent) or LXC (the container's interfaces).
    pub guest_type: GuestType,
}

/// What the run has read from Proxmox so far.
#[derive(Default)]
pub struct ProxmoxReads {
    /// Per session, in the run's session order: the inventory, or why it failed.
    inventories: OnceCell<Vec<Result<Inventory, String>>>,
    /// Guest configs by `(endpoint id, VMID)` as compact JSON (a fifth of their parsed
    /// size; each stage parses the ones it uses), or why the read failed.
    configs: Mutex<ConfigCache>,
    /// What the guests asked so far reported about their interfaces.
    observed: Mutex<ObservedCache>,
}

impl ProxmoxReads {
    /// The inventory of each of `sessions` (read on first use).
    pub async fn inventories(&self, sessions: &[Session]) -> &[Result<Inventory, String>] {
        self.inventories
            .get_or_init(|| async {
                futures::future::join_all(sessions.iter().map(|s| Inventory::read(&s.client)))
                    .await
                    .into_iter()
                    .map(|read| read.map_err(|e| e.to_string()))
                    .collect()
            })
            .await
    }

    /// The config of each of `guests` (in their order), or why it could not be read;
    /// read through `session` only for the guests no earlier stage of the run asked for.
    /// Each config is kept as text from the moment it arrives, so a run never holds the
    /// parsed configs of a whole estate.
    pub async fn configs(
        &self,
        session: &Session,
        guests: &[&ClusterResource],
    ) -> Vec<Result<ConfigText, String>> {
        let endpoint = session.endpoint.id;
        let key = |g: &ClusterResource| (endpoint, g.vmid.unwrap_or_default());
        let missing: Vec<ClusterResource> = {
            let cache = self.lock();
            guests
                .iter()
                .filter(|g| !cache.contains_key(&key(g)))
                .map(|g| (*g).clone())
                .collect()
        };
        if !missing.is_empty() {
            let read = inventory::each_config_text(&session.client, &missing).await;
            let mut cache = self.lock();
            for (guest, result) in missing.iter().zip(read) {
                let entry = result
                    .map(|text| ConfigText(text.into()))
                    .map_err(|e: ProxmoxError| e.to_string());
                cache.insert(key(guest), entry);
            }
        }
        let cache = self.lock();
        guests
            .iter()
            .map(|g| match cache.get(&key(g)) {
                Some(Ok(text)) => Ok(text.clone()),
                Some(Err(e)) => Err(format!("cannot read its config: {e}")),
                None => Err("its config was not read".into()),
            })
            .collect()
    }

    /// What each of `asks` reports about its interfaces (the QEMU guest agent with its own
    /// time limit and one retry, a container's `/interfaces`), asked through `session` at
    /// most `concurrency` at a time and only once per run; none where it did not answer.
    pub async fn observed(
        &self,
        session: &Session,
        asks: &[Ask],
        concurrency: usize,
    ) -> Vec<Option<Vec<ObservedInterface>>> {
        use futures::StreamExt;
        let endpoint = session.endpoint.id;
        let missing: Vec<Ask> = {
            let cache = self.observed_lock();
            asks.iter()
                .filter(|a| !cache.contains_key(&(endpoint, a.vmid)))
                .cloned()
                .collect()
        };
        let client = session.client.clone();
        let read: Vec<(u32, Option<Vec<ObservedInterface>>)> = futures::stream::iter(missing)
            .map(move |ask| observe(client.clone(), ask))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut cache = self.observed_lock();
        for (vmid, seen) in read {
            cache.insert((endpoint, vmid), seen);
        }
        asks.iter()
            .map(|a| cache.get(&(endpoint, a.vmid)).cloned().flatten())
            .collect()
    }

    fn observed_lock(&self) -> std::sync::MutexGuard<'_, ObservedCache> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConfigCache> {
        self.configs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ask one guest about its interfaces; none when it does not answer.
async fn observe(client: ProxmoxClient, ask: Ask) -> (u32, Option<Vec<ObservedInterface>>) {
    let entries = match ask.guest_type {
        GuestType::Qemu => client
            .qemu_agent_interfaces(&ask.node, ask.vmid)
            .await
            .map(|list| list.into_iter().map(|i| i.raw).collect::<Vec<_>>()),
        GuestType::Lxc => client
            .lxc_interfaces(&ask.node, ask.vmid)
            .await
            .map(|list| list.into_iter().map(|i| i.raw).collect::<Vec<_>>()),
    };
    let seen = match entries {
        Ok(entries) => {
            let entries = serde_json::Value::Array(entries);
            match ask.guest_type {
                GuestType::Qemu => network::agent_interfaces(&entries),
                GuestType::Lxc => network::container_interfaces(&entries),
            }
        }
        Err(e) => {
            tracing::debug!(vmid = ask.vmid, "no interfaces from the guest: {e}");
            None
        }
    };
    (ask.vmid, seen)
}
