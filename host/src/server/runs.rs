//! Sync runs in progress, for `/sync/active`. A run is listed from [`RunRegistry::start`]
//! until its [`RunGuard`] is dropped, however the run ends.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One run in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunInfo {
    /// Run id (a UUID, or the `run_id` the plugin passed).
    pub id: String,
    /// `full-update`, or the stage name.
    pub kind: String,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// The Proxmox endpoints it syncs (each in at most one run at a time).
    pub proxmox_endpoint_ids: Vec<i64>,
}

/// A run refused because another holds one of its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy {
    /// The run in the way.
    pub run: RunInfo,
    /// The endpoints both want.
    pub endpoints: Vec<i64>,
}

/// The runs of this process.
#[derive(Clone, Debug, Default)]
pub struct RunRegistry {
    runs: Arc<Mutex<Vec<RunInfo>>>,
}

impl RunRegistry {
    /// Register a run that syncs `endpoints`, unless another run holds one of them.
    pub fn start_exclusive(
        &self,
        kind: &str,
        id: Option<&str>,
        endpoints: &[i64],
    ) -> Result<RunGuard, Busy> {
        let mut runs = self.lock();
        for run in runs.iter() {
            let overlap: Vec<i64> = run
                .proxmox_endpoint_ids
                .iter()
                .filter(|e| endpoints.contains(e))
                .copied()
                .collect();
            if !overlap.is_empty() {
                return Err(Busy {
                    run: run.clone(),
                    endpoints: overlap,
                });
            }
        }
        let guard = RunGuard {
            registry: self.clone(),
            id: new_id(id),
        };
        runs.push(RunInfo {
            id: guard.id.clone(),
            kind: kind.to_string(),
            started_at: now(),
            proxmox_endpoint_ids: endpoints.to_vec(),
        });
        Ok(guard)
    }

    /// Register a run; it stays listed while the guard lives.
    pub fn start(&self, kind: &str, id: Option<&str>) -> RunGuard {
        let id = new_id(id);
        self.lock().push(RunInfo {
            id: id.clone(),
            kind: kind.to_string(),
            started_at: now(),
            proxmox_endpoint_ids: Vec::new(),
        });
        RunGuard {
            registry: self.clone(),
            id,
        }
    }

    /// The runs in progress, oldest first.
    pub fn list(&self) -> Vec<RunInfo> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RunInfo>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn new_id(id: Option<&str>) -> String {
    id.filter(|i| !i.is_empty())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Keeps a run listed; dropping it ends the run.
#[derive(Debug)]
pub struct RunGuard {
    registry: RunRegistry,
    id: String,
}

impl RunGuard {
    /// The run id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut runs = self.registry.lock();
        if let Some(pos) = runs.iter().position(|r| r.id == self.id) {
            runs.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_listed_until_its_guard_drops() {
        let registry = RunRegistry::default();
        let first = registry.start("full-update", None);
        let second = registry.start("devices", Some("run-2"));
        let listed = registry.list();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].kind, "full-update");
        assert_eq!(listed[0].id, first.id());
        assert_eq!(listed[1].id, "run-2");
        assert!(
            listed[0].started_at.ends_with('Z'),
            "{}",
            listed[0].started_at
        );
        drop(first);
        assert_eq!(registry.list(), vec![listed[1].clone()]);
        drop(second);
        assert!(registry.list().is_empty());
    }

    #[test]
    fn an_endpoint_is_in_one_run_at_a_time() {
        let registry = RunRegistry::default();
        let first = registry
            .start_exclusive("devices", None, &[1, 2])
            .expect("free");
        let busy = registry
            .start_exclusive("virtual-machines", None, &[2, 3])
            .expect_err("endpoint 2 is busy");
        assert_eq!(busy.endpoints, vec![2]);
        assert_eq!(busy.run.id, first.id());
        let other = registry
            .start_exclusive("virtual-machines", None, &[3])
            .expect("3 is free");
        drop(first);
        registry
            .start_exclusive("storage", None, &[1, 2])
            .expect("free again");
        drop(other);
    }
}
