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
}

/// The runs of this process.
#[derive(Clone, Debug, Default)]
pub struct RunRegistry {
    runs: Arc<Mutex<Vec<RunInfo>>>,
}

impl RunRegistry {
    /// Register a run; it stays listed while the guard lives.
    pub fn start(&self, kind: &str, id: Option<&str>) -> RunGuard {
        let id = id
            .filter(|i| !i.is_empty())
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        let started_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.lock().push(RunInfo {
            id: id.clone(),
            kind: kind.to_string(),
            started_at,
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
}
