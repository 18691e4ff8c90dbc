//! Object files and golden cases for mapper authors (`mapper run`, `mapper test`).
//!
//! An object file holds raw Proxmox JSON for one object plus an optional context:
//!
//! ```json
//! { "kind": "virtual-machine",
//!   "context": { "cluster-name": "lab", "params": [["proxmox-url", "https://pve:8006"]] },
//!   "source": { "resource": { "vmid": 100, "type": "qemu", ... }, "config": { ... } } }
//! ```
//!
//! The host normalises the source exactly as a sync does, calls the mapper and prints an
//! [`Outcome`]. A golden case is `NAME.input.json` (an object file) next to
//! `NAME.expected.json` (the outcome).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mapper::v1::{ClusterMode, Context, GuestType, PrimaryCandidate, PrimaryOwner};
use crate::mapper::{FailReason, Kind, MapError, MapInput, MapperInstance};
use crate::normalize::{self, NormalizeError, as_str, as_u64, network};

/// `now` of a case whose context sets none, so golden outputs are reproducible.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

/// One object to map, as read from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ObjectFile {
    /// Kind of the object; may instead come from the command line.
    pub kind: Option<Kind>,
    /// Free text for humans: where the data came from, what it shows.
    #[serde(default)]
    pub description: Option<String>,
    /// Context overrides.
    #[serde(default)]
    pub context: ContextSpec,
    /// Raw Proxmox JSON, by kind (see the README).
    pub source: Value,
}

/// Context fields a file may set; the rest get defaults derived from the source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContextSpec {
    endpoint_id: Option<u64>,
    endpoint_name: Option<String>,
    cluster_name: Option<String>,
    cluster_mode: Option<String>,
    node: Option<String>,
    site_hint: Option<String>,
    tenant_hint: Option<String>,
    #[serde(default)]
    params: Vec<(String, String)>,
    now: Option<String>,
}

/// The printed result of mapping one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The mapper returned a record.
    Mapped {
        /// The desired record.
        value: Value,
    },
    /// The mapper chose not to sync the object.
    Skipped,
    /// The object failed.
    Failed {
        /// Machine-readable reason.
        reason: String,
        /// Human-readable message.
        message: String,
    },
}

impl ObjectFile {
    /// Read an object file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid object file: {e}", path.display()))
    }

    /// The kind to map: `--kind` if given (must agree with the file), else the file's.
    pub fn resolve_kind(&self, requested: Option<Kind>) -> anyhow::Result<Kind> {
        match (requested, self.kind) {
            (Some(a), Some(b)) if a != b => {
                anyhow::bail!("--kind {a} does not match the file's kind {b}")
            }
            (Some(k), _) | (None, Some(k)) => Ok(k),
            (None, None) => anyhow::bail!("the object file has no \"kind\"; pass --kind"),
        }
    }

    /// Normalise the source into the mapper's context and input.
    pub fn prepare(&self, kind: Kind) -> Result<(Context, MapInput), NormalizeError> {
        let src = &self.source;
        let field = |name: &str| src.get(name);
        let spec = &self.context;
        let mut cluster_name = spec.cluster_name.clone();
        let mut cluster_mode = spec.cluster_mode.clone();
        let mut node = spec.node.clone().or_else(|| as_str(field("node")));

        let input = match kind {
            Kind::Device => {
                let status = field("cluster-status")
                    .ok_or_else(|| NormalizeError::new("device source needs \"cluster-status\""))?;
                let name = node
                    .clone()
                    .ok_or_else(|| NormalizeError::new("device source needs \"node\""))?;
                let input = normalize::node(status, &name, field("status"), field("resource"))?;
                cluster_name.get_or_insert_with(|| input.cluster.name.clone());
                cluster_mode.get_or_insert_with(|| match input.cluster.mode {
                    ClusterMode::Cluster => "cluster".into(),
                    ClusterMode::Standalone => "standalone".into(),
                });
                MapInput::Device(input)
            }
            Kind::VirtualMachine | Kind::VirtualDisk => {
                let resource = field("resource").cloned().unwrap_or(Value::Null);
                let guest_type = parse_guest_type(field("type"))?;
                let guest =
                    normalize::guest(&resource, field("config"), guest_type, node.as_deref())?;
                node.get_or_insert_with(|| guest.node.clone());
                if kind == Kind::VirtualDisk {
                    let key = as_str(field("disk"))
                        .ok_or_else(|| NormalizeError::new("virtual-disk source needs \"disk\""))?;
                    let disk = guest
                        .disks
                        .iter()
                        .find(|d| d.key == key)
                        .cloned()
                        .ok_or_else(|| {
                            NormalizeError::new(format!("guest config has no disk `{key}`"))
                        })?;
                    MapInput::VirtualDisk(guest, disk)
                } else {
                    MapInput::VirtualMachine(guest)
                }
            }
            Kind::Storage => {
                let storage = field("storage")
                    .ok_or_else(|| NormalizeError::new("storage source needs \"storage\""))?;
                MapInput::Storage(normalize::storage(storage)?)
            }
            Kind::Backup => {
                let content = field("content")
                    .ok_or_else(|| NormalizeError::new("backup source needs \"content\""))?;
                MapInput::Backup(normalize::backup(content)?)
            }
            Kind::Snapshot => {
                let snapshot = field("snapshot")
                    .ok_or_else(|| NormalizeError::new("snapshot source needs \"snapshot\""))?;
                let vmid = as_u64(field("vmid"))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| NormalizeError::new("snapshot source needs \"vmid\""))?;
                let guest_type = parse_guest_type(field("type"))?.ok_or_else(|| {
                    NormalizeError::new("snapshot source needs \"type\" (qemu or lxc)")
                })?;
                let node_name = node
                    .clone()
                    .ok_or_else(|| NormalizeError::new("snapshot source needs \"node\""))?;
                MapInput::Snapshot(normalize::snapshot(snapshot, vmid, guest_type, &node_name)?)
            }
            Kind::NodeInterface => {
                let node_name = node
                    .clone()
                    .ok_or_else(|| NormalizeError::new("node-interface source needs \"node\""))?;
                let entries = field("network").and_then(Value::as_array).ok_or_else(|| {
                    NormalizeError::new("node-interface source needs \"network\" (a list)")
                })?;
                let wanted = as_str(field("iface"));
                let mut inputs = network::node_interfaces(&node_name, entries).into_iter();
                let input = match wanted {
                    Some(name) => inputs
                        .find(|r| r.as_ref().is_ok_and(|i| i.name == name))
                        .ok_or_else(|| {
                            NormalizeError::new(format!("\"network\" has no interface `{name}`"))
                        })??,
                    None if entries.len() == 1 => inputs.next().expect("one entry")?,
                    None => {
                        return Err(NormalizeError::new(
                            "node-interface source needs \"iface\" (the interface to map)",
                        ));
                    }
                };
                MapInput::NodeInterface(input)
            }
            Kind::VmInterface | Kind::IpAddress => {
                let resource = field("resource").cloned().unwrap_or(Value::Null);
                let guest_type = parse_guest_type(field("type"))?;
                let guest =
                    normalize::guest(&resource, field("config"), guest_type, node.as_deref())?;
                node.get_or_insert_with(|| guest.node.clone());
                let observed = match (field("agent"), field("interfaces")) {
                    (Some(agent), _) => network::agent_interfaces(agent),
                    (None, Some(list)) => network::container_interfaces(list),
                    (None, None) => None,
                };
                let nics = network::guest_nics(&guest, field("config"), observed.as_deref());
                if kind == Kind::IpAddress
                    && field("primary").and_then(Value::as_bool) == Some(true)
                {
                    let candidates = nics
                        .iter()
                        .flat_map(|nic| {
                            let name = nic.nic.name.clone().unwrap_or_else(|| nic.nic.key.clone());
                            network::nic_addresses(nic)
                                .into_iter()
                                .map(move |a| PrimaryCandidate {
                                    interface_name: name.clone(),
                                    address: a.address,
                                    family: a.family,
                                    scope: a.scope,
                                })
                        })
                        .collect();
                    MapInput::PrimaryIp(PrimaryOwner::Guest(guest), candidates)
                } else {
                    let key = as_str(field("nic")).ok_or_else(|| {
                        NormalizeError::new(format!("{kind} source needs \"nic\" (a config key)"))
                    })?;
                    let nic = nics.into_iter().find(|n| n.nic.key == key).ok_or_else(|| {
                        NormalizeError::new(format!("guest config has no `{key}`"))
                    })?;
                    if kind == Kind::VmInterface {
                        MapInput::VmInterface(guest, nic)
                    } else {
                        let addresses = network::nic_addresses(&nic);
                        let address = match as_str(field("address")) {
                            Some(text) => addresses
                                .into_iter()
                                .find(|a| {
                                    a.address == text || a.address.split('/').next() == Some(&text)
                                })
                                .ok_or_else(|| {
                                    NormalizeError::new(format!("`{key}` has no address `{text}`"))
                                })?,
                            None => addresses.into_iter().next().ok_or_else(|| {
                                NormalizeError::new(format!("`{key}` has no address"))
                            })?,
                        };
                        MapInput::IpAddress(guest, nic, address)
                    }
                }
            }
        };

        let ctx = Context {
            endpoint_id: spec.endpoint_id.unwrap_or(1),
            endpoint_name: spec.endpoint_name.clone().unwrap_or_else(|| "pve".into()),
            cluster_name: cluster_name.unwrap_or_else(|| "pve".into()),
            cluster_mode: match cluster_mode.as_deref() {
                None | Some("cluster") => ClusterMode::Cluster,
                Some("standalone") => ClusterMode::Standalone,
                Some(other) => {
                    return Err(NormalizeError::new(format!(
                        "unknown cluster-mode `{other}`"
                    )));
                }
            },
            node: node.unwrap_or_default(),
            site_hint: spec.site_hint.clone(),
            tenant_hint: spec.tenant_hint.clone(),
            params: spec.params.clone(),
            now: spec.now.clone().unwrap_or_else(|| DEFAULT_NOW.into()),
        };
        Ok((ctx, input))
    }
}

fn parse_guest_type(value: Option<&Value>) -> Result<Option<GuestType>, NormalizeError> {
    match value.and_then(Value::as_str) {
        None => Ok(None),
        Some("qemu") => Ok(Some(GuestType::Qemu)),
        Some("lxc") => Ok(Some(GuestType::Lxc)),
        Some(other) => Err(NormalizeError::new(format!("unknown guest type `{other}`"))),
    }
}

/// Map one object file with `instance`: the outcome and the fuel it used.
pub fn run(instance: &mut MapperInstance, file: &ObjectFile, kind: Kind) -> (Outcome, Option<u64>) {
    let (ctx, input) = match file.prepare(kind) {
        Ok(prepared) => prepared,
        Err(e) => {
            let reason = FailReason::BadInput { message: e.0 };
            return (Outcome::failed(&reason), None);
        }
    };
    match instance.map(&ctx, &input) {
        Ok(mapped) => {
            let outcome = match mapped.output {
                Some(output) => Outcome::Mapped {
                    value: serde_json::to_value(&output).expect("mapper output serialises"),
                },
                None => Outcome::Skipped,
            };
            (outcome, Some(mapped.fuel_used))
        }
        Err(MapError { reason, .. }) => (Outcome::failed(&reason), None),
    }
}

impl Outcome {
    fn failed(reason: &FailReason) -> Self {
        Outcome::Failed {
            reason: reason.code().to_string(),
            message: reason.to_string(),
        }
    }
}

/// A golden case on disk.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    /// Case name (file stem, relative to the case directory).
    pub name: String,
    /// The object file.
    pub input: PathBuf,
    /// The expected outcome file.
    pub expected: PathBuf,
}

/// All golden cases under `dir` (recursively), sorted by name.
pub fn discover(dir: &Path) -> anyhow::Result<Vec<GoldenCase>> {
    let mut cases = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", current.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path.to_str().and_then(|p| p.strip_suffix(".input.json")) {
                let expected = PathBuf::from(format!("{stem}.expected.json"));
                let name = Path::new(stem)
                    .strip_prefix(dir)
                    .unwrap_or(Path::new(stem))
                    .display()
                    .to_string();
                cases.push(GoldenCase {
                    name,
                    input: path,
                    expected,
                });
            }
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}
