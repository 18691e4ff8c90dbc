//! The Proxmox side of one run, read once and shared by its stages.
//!
//! A full update runs six stages; each needs the endpoints' inventories and most need
//! every guest's config. Reading them once per run halves the Proxmox requests of a
//! full update and gives every stage the same snapshot of the estate: a guest whose
//! config could not be read fails the same way in each stage instead of appearing in
//! one and missing from the next.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::OnceCell;

use crate::proxmox::inventory::{self, Completeness};
use crate::proxmox::models::{ClusterResource, GuestConfig};
use crate::proxmox::{Inventory, ProxmoxError};
use crate::server::sessions::Session;

/// Guest configs by `(endpoint id, VMID)`: compact JSON, or why the read failed.
type ConfigCache = HashMap<(i64, u32), Result<Box<str>, String>>;

/// What the run has read from Proxmox so far.
#[derive(Default)]
pub struct ProxmoxReads {
    /// Per session, in the run's session order: the inventory, or why it failed.
    inventories: OnceCell<Vec<Result<Inventory, String>>>,
    /// Guest configs by `(endpoint id, VMID)` as compact JSON (a fifth of their parsed
    /// size; each stage parses the ones it uses), or why the read failed.
    configs: Mutex<ConfigCache>,
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

    /// The configs of `inventory`'s guests, read through `session` only for the guests
    /// no earlier stage of the run asked for, and how completely they were read.
    pub async fn configs(
        &self,
        session: &Session,
        inventory: &Inventory,
    ) -> (Vec<(ClusterResource, GuestConfig)>, Completeness) {
        let endpoint = session.endpoint.id;
        let key = |g: &ClusterResource| (endpoint, g.vmid.unwrap_or_default());
        let missing: Vec<ClusterResource> = {
            let cache = self.lock();
            inventory
                .guests
                .iter()
                .filter(|g| !cache.contains_key(&key(g)))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let read = inventory::each_config(&session.client, &missing).await;
            let mut cache = self.lock();
            for (guest, result) in missing.iter().zip(read) {
                let entry = result
                    .map(|config| config.raw.to_string().into_boxed_str())
                    .map_err(|e: ProxmoxError| e.to_string());
                cache.insert(key(guest), entry);
            }
        }
        let cache = self.lock();
        let results: Vec<(&ClusterResource, Result<GuestConfig, String>)> = inventory
            .guests
            .iter()
            .map(|g| {
                let cached = match cache.get(&key(g)) {
                    Some(Ok(text)) => serde_json::from_str(text)
                        .map(|raw| GuestConfig { raw })
                        .map_err(|e| format!("its config could not be read back: {e}")),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err("its config was not read".into()),
                };
                (g, cached)
            })
            .collect();
        inventory::tally(inventory, results)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConfigCache> {
        self.configs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
