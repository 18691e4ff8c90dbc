//! Fault injection: per-path latency, error statuses, hangs, broken JSON, partial
//! inventories and offline nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which API paths (relative to `/api2/json`, without query) a fault applies to.
///
/// JSON: `{"exact":"/cluster/resources"}`, `{"prefix":"/nodes/pve1/"}` or `"any"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum PathMatch {
    /// Exactly this path.
    Exact(String),
    /// Every path starting with this prefix.
    Prefix(String),
    /// Every API path.
    Any,
}

impl PathMatch {
    /// Matches exactly `path`.
    pub fn exact(path: &str) -> PathMatch {
        PathMatch::Exact(normalize(path))
    }

    /// Matches every path starting with `prefix`.
    pub fn prefix(prefix: &str) -> PathMatch {
        let p = prefix.strip_prefix("/api2/json").unwrap_or(prefix);
        PathMatch::Prefix(p.to_string())
    }

    /// Whether `path` (relative to `/api2/json`) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Any => true,
        }
    }
}

impl From<&str> for PathMatch {
    /// `"*"` → any, `"/nodes/pve1/*"` → prefix `/nodes/pve1/`, otherwise exact.
    fn from(s: &str) -> PathMatch {
        if s == "*" {
            PathMatch::Any
        } else if let Some(p) = s.strip_suffix('*') {
            PathMatch::prefix(p)
        } else {
            PathMatch::exact(s)
        }
    }
}

fn normalize(path: &str) -> String {
    let p = path.strip_prefix("/api2/json").unwrap_or(path);
    let p = p.split('?').next().unwrap_or(p);
    if p.len() > 1 {
        p.trim_end_matches('/').to_string()
    } else {
        p.to_string()
    }
}

/// What happens to a matching request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Delay the answer (JSON: milliseconds). Combines with other faults.
    Latency(#[serde(with = "millis")] Duration),
    /// Answer with this status and reason phrase. Statuses 400..595 get a PVE error body
    /// (`{"data":null,"message":…}`); others, e.g. the proxy pseudo-statuses 595/596, an
    /// empty body like pveproxy.
    Status(u16, String),
    /// Never answer; the client must time out.
    Hang,
    /// Answer 200 with a truncated, unparseable JSON body.
    MalformedJson,
    /// Drop the connection without any response.
    Disconnect,
    /// Silently omit this fraction of guests from guest lists (`/cluster/resources`,
    /// `/nodes/{node}/qemu|lxc`); the same guests are dropped every time.
    PartialInventory {
        /// Fraction of guests to omit (0..1).
        drop_fraction: f64,
    },
    /// Treat this node as offline for matching requests (estate unchanged).
    NodeOffline(String),
}

/// A fault rule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Paths the fault applies to.
    pub path: PathMatch,
    /// Effect.
    pub kind: FaultKind,
    /// How many matching requests it affects; `None` = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl Fault {
    /// A fault that stays until cleared.
    pub fn new(path: impl Into<PathMatch>, kind: FaultKind) -> Fault {
        Fault {
            path: path.into(),
            kind,
            times: None,
        }
    }

    /// Limits the fault to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }
}

/// Shared handle to a simulator's fault rules.
#[derive(Clone, Debug, Default)]
pub struct FaultHandle {
    inner: Arc<Mutex<Vec<Fault>>>,
}

/// The faults that apply to one request.
#[derive(Debug, Default)]
pub(crate) struct AppliedFaults {
    pub latency: Duration,
    pub terminal: Option<FaultKind>,
    pub drop_fraction: Option<f64>,
    pub offline_nodes: Vec<String>,
}

impl FaultHandle {
    /// Adds a fault rule.
    pub fn inject(&self, fault: Fault) {
        self.lock().push(fault);
    }

    /// Removes all fault rules.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The currently active rules.
    pub fn list(&self) -> Vec<Fault> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collects the faults matching `path`, consuming one use of each.
    pub(crate) fn apply(&self, path: &str) -> AppliedFaults {
        let mut applied = AppliedFaults::default();
        let mut faults = self.lock();
        for fault in faults.iter_mut() {
            if !fault.path.matches(path) || fault.times == Some(0) {
                continue;
            }
            match &fault.kind {
                FaultKind::Latency(d) => applied.latency += *d,
                FaultKind::PartialInventory { drop_fraction } => {
                    applied.drop_fraction = Some(drop_fraction.clamp(0.0, 1.0));
                }
                FaultKind::NodeOffline(node) => applied.offline_nodes.push(node.clone()),
                other => {
                    if applied.terminal.is_some() {
                        continue;
                    }
                    applied.terminal = Some(other.clone());
                }
            }
            if let Some(t) = fault.times.as_mut() {
                *t -= 1;
            }
        }
        faults.retain(|f| f.times != Some(0));
        applied
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_shapes() {
        let f: Fault = serde_json::from_str(
            r#"{"path":{"prefix":"/nodes/pve1/"},"kind":{"status":[503,"busy"]},"times":2}"#,
        )
        .unwrap();
        assert_eq!(f.kind, FaultKind::Status(503, "busy".into()));
        let f: Fault = serde_json::from_str(r#"{"path":"any","kind":{"latency":250}}"#).unwrap();
        assert_eq!(f.kind, FaultKind::Latency(Duration::from_millis(250)));
        assert_eq!(
            PathMatch::from("/nodes/pve1/*"),
            PathMatch::Prefix("/nodes/pve1/".into())
        );
    }

    #[test]
    fn times_are_consumed() {
        let h = FaultHandle::default();
        h.inject(Fault::new("/version", FaultKind::Hang).times(1));
        assert!(h.apply("/version").terminal.is_some());
        assert!(h.apply("/version").terminal.is_none());
        assert!(h.list().is_empty());
    }
}
