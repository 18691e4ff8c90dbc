//! Lenient typed views of Proxmox answers. Each keeps the raw JSON it came from.
//!
//! Proxmox's types drift between versions (numbers as strings, `0`/`1`/`""` booleans,
//! keys that come and go), so fields are read leniently and anything a model does not
//! type stays reachable through `raw`.

use serde_json::{Map, Value};

use crate::normalize::{as_bool, as_i64, as_str, as_u64};

/// Build a model from one JSON value.
pub trait FromValue: Sized {
    /// Decode; the error says what is missing or malformed.
    fn from_value(value: Value) -> Result<Self, String>;
}

/// Decode a JSON list of models (`null` is an empty list).
pub fn list<T: FromValue>(value: Value) -> Result<Vec<T>, String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| T::from_value(item).map_err(|e| format!("item {i}: {e}")))
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("expected a list, got {}", kind_of(&other))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn object(value: &Value) -> Result<&Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("expected an object, got {}", kind_of(value)))
}

fn required(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    as_str(obj.get(key)).ok_or_else(|| format!("missing `{key}`"))
}

/// QEMU VM or LXC container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// QEMU/KVM.
    Qemu,
    /// LXC.
    Lxc,
}

impl GuestKind {
    /// The API path segment (`qemu`, `lxc`).
    pub fn path(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// `GET /version`.
#[derive(Clone, Debug)]
pub struct Version {
    /// `8.2.4` (PVE 6: `6.2-4`).
    pub version: String,
    /// `8.2`.
    pub release: Option<String>,
    /// Raw answer.
    pub raw: Value,
}

impl FromValue for Version {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(Version {
            version: required(obj, "version")?,
            release: as_str(obj.get("release")),
            raw,
        })
    }
}

/// One entry of `GET /cluster/status`: the cluster itself or a node.
#[derive(Clone, Debug)]
pub enum ClusterStatusEntry {
    /// The `type: cluster` entry.
    Cluster {
        /// Cluster name.
        name: String,
        /// Node count.
        nodes: Option<u64>,
        /// Quorate.
        quorate: Option<bool>,
        /// Raw entry.
        raw: Value,
    },
    /// A `type: node` entry.
    Node {
        /// Node name.
        name: String,
        /// Online.
        online: bool,
        /// Corosync node id.
        nodeid: Option<u64>,
        /// Address.
        ip: Option<String>,
        /// The node this answer came from.
        local: bool,
        /// Raw entry.
        raw: Value,
    },
    /// Anything else (future types).
    Other(Value),
}

impl FromValue for ClusterStatusEntry {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(match obj.get("type").and_then(Value::as_str) {
            Some("cluster") => ClusterStatusEntry::Cluster {
                name: required(obj, "name")?,
                nodes: as_u64(obj.get("nodes")),
                quorate: as_bool(obj.get("quorate")),
                raw,
            },
            Some("node") => ClusterStatusEntry::Node {
                name: required(obj, "name")?,
                online: as_bool(obj.get("online")).unwrap_or(false),
                nodeid: as_u64(obj.get("nodeid")),
                ip: as_str(obj.get("ip")),
                local: as_bool(obj.get("local")).unwrap_or(false),
                raw,
            },
            _ => ClusterStatusEntry::Other(raw),
        })
    }
}

/// One entry of `GET /cluster/resources`.
#[derive(Clone, Debug)]
pub struct ClusterResource {
    /// `qemu/100`, `node/pve1`, `storage/pve1/local`, ...
    pub id: String,
    /// `qemu`, `lxc`, `node`, `storage`, `sdn`, `pool`, ...
    pub kind: String,
    /// Node (for guests, node-local storages and nodes).
    pub node: Option<String>,
    /// Guest id.
    pub vmid: Option<u32>,
    /// Guest or node name.
    pub name: Option<String>,
    /// Storage id.
    pub storage: Option<String>,
    /// `running`, `stopped`, `online`, `unknown`, `available`, ...
    pub status: Option<String>,
    /// Template flag.
    pub template: bool,
    /// Raw entry.
    pub raw: Value,
}

impl ClusterResource {
    /// Guest kind, for `qemu`/`lxc` entries.
    pub fn guest_kind(&self) -> Option<GuestKind> {
        match self.kind.as_str() {
            "qemu" => Some(GuestKind::Qemu),
            "lxc" => Some(GuestKind::Lxc),
            _ => None,
        }
    }
}

impl FromValue for ClusterResource {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        let kind = as_str(obj.get("type"))
            .or_else(|| {
                as_str(obj.get("id")).and_then(|id| id.split('/').next().map(str::to_string))
            })
            .ok_or("missing `type` and `id`")?;
        let is_guest = matches!(kind.as_str(), "qemu" | "lxc");
        let vmid = as_u64(obj.get("vmid"))
            .or_else(|| {
                is_guest
                    .then(|| {
                        as_str(obj.get("id")).and_then(|id| id.rsplit('/').next()?.parse().ok())
                    })
                    .flatten()
            })
            .map(|v| u32::try_from(v).map_err(|_| format!("vmid {v} is out of range")))
            .transpose()?;
        if is_guest && vmid.is_none() {
            return Err(format!("{kind} guest has no vmid"));
        }
        let node = as_str(obj.get("node"));
        let storage = as_str(obj.get("storage"));
        // Some answers (PVE 6.x) lack `id`; rebuild it the way Proxmox forms it.
        let id = match as_str(obj.get("id")) {
            Some(id) => id,
            None => match (kind.as_str(), vmid, &node, &storage) {
                (_, Some(vmid), _, _) => format!("{kind}/{vmid}"),
                ("node", _, Some(node), _) => format!("node/{node}"),
                ("storage", _, Some(node), Some(storage)) => format!("storage/{node}/{storage}"),
                _ => return Err(format!("{kind} resource has no `id`")),
            },
        };
        Ok(ClusterResource {
            name: as_str(obj.get("name")),
            status: as_str(obj.get("status")),
            template: as_bool(obj.get("template")).unwrap_or(false),
            node,
            storage,
            id,
            kind,
            vmid,
            raw,
        })
    }
}

/// One entry of `GET /nodes`.
#[derive(Clone, Debug)]
pub struct NodeEntry {
    /// Node name.
    pub node: String,
    /// `online`, `offline`, `unknown`.
    pub status: Option<String>,
    /// SHA-256 fingerprint of the node certificate.
    pub ssl_fingerprint: Option<String>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for NodeEntry {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(NodeEntry {
            node: required(obj, "node")?,
            status: as_str(obj.get("status")),
            ssl_fingerprint: as_str(obj.get("ssl_fingerprint")),
            raw,
        })
    }
}

/// `GET /nodes/{node}/status`.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// Logical CPUs.
    pub cpus: Option<u64>,
    /// Total memory, bytes.
    pub memory_total: Option<u64>,
    /// Uptime, seconds.
    pub uptime: Option<u64>,
    /// `pve-manager/8.2.4/...`.
    pub pveversion: Option<String>,
    /// Raw answer.
    pub raw: Value,
}

impl FromValue for NodeStatus {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(NodeStatus {
            cpus: raw.pointer("/cpuinfo/cpus").and_then(|v| as_u64(Some(v))),
            memory_total: raw.pointer("/memory/total").and_then(|v| as_u64(Some(v))),
            uptime: as_u64(obj.get("uptime")),
            pveversion: as_str(obj.get("pveversion")),
            raw,
        })
    }
}

/// One entry of `GET /nodes/{node}/network`.
#[derive(Clone, Debug)]
pub struct NetworkInterface {
    /// Interface name.
    pub iface: String,
    /// `bridge`, `bond`, `eth`, `vlan`, `loopback`, `OVSBridge`, ...
    pub kind: String,
    /// Active.
    pub active: Option<bool>,
    /// CIDR (IPv4).
    pub cidr: Option<String>,
    /// CIDR (IPv6).
    pub cidr6: Option<String>,
    /// VLAN id of a VLAN interface (`vlan-id`, a string in real answers).
    pub vlan_id: Option<u16>,
    /// Parent of a VLAN interface (`vlan-raw-device`).
    pub vlan_raw_device: Option<String>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for NetworkInterface {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(NetworkInterface {
            iface: required(obj, "iface")?,
            kind: as_str(obj.get("type")).unwrap_or_else(|| "unknown".into()),
            active: as_bool(obj.get("active")),
            cidr: as_str(obj.get("cidr")),
            cidr6: as_str(obj.get("cidr6")),
            vlan_id: as_u64(obj.get("vlan-id")).and_then(|v| u16::try_from(v).ok()),
            vlan_raw_device: as_str(obj.get("vlan-raw-device")),
            raw,
        })
    }
}

/// `GET /nodes/{node}/{qemu|lxc}/{vmid}/config`: the config map as Proxmox returned it.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    /// Raw config (an object).
    pub raw: Value,
}

impl FromValue for GuestConfig {
    fn from_value(raw: Value) -> Result<Self, String> {
        object(&raw)?;
        Ok(GuestConfig { raw })
    }
}

/// One IP address the guest agent reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAddress {
    /// Address.
    pub address: String,
    /// `ipv4` / `ipv6`.
    pub family: String,
    /// Prefix length.
    pub prefix: Option<u8>,
}

/// One interface of `…/agent/network-get-interfaces`.
#[derive(Clone, Debug)]
pub struct AgentInterface {
    /// Name inside the guest.
    pub name: String,
    /// MAC, upper-case with colons.
    pub mac: Option<String>,
    /// Addresses (none when the key is absent).
    pub addresses: Vec<AgentAddress>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for AgentInterface {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        let addresses = obj
            .get("ip-addresses")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| {
                        Some(AgentAddress {
                            address: as_str(a.get("ip-address"))?,
                            family: as_str(a.get("ip-address-type")).unwrap_or_default(),
                            prefix: as_u64(a.get("prefix")).and_then(|p| u8::try_from(p).ok()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(AgentInterface {
            name: required(obj, "name")?,
            mac: as_str(obj.get("hardware-address")).map(|m| m.to_ascii_uppercase()),
            addresses,
            raw,
        })
    }
}

/// One interface of `GET /nodes/{node}/lxc/{vmid}/interfaces`.
#[derive(Clone, Debug)]
pub struct LxcInterface {
    /// Name inside the container.
    pub name: String,
    /// MAC, upper-case with colons.
    pub mac: Option<String>,
    /// IPv4 CIDR.
    pub inet: Option<String>,
    /// IPv6 CIDR.
    pub inet6: Option<String>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for LxcInterface {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(LxcInterface {
            name: required(obj, "name")?,
            mac: as_str(obj.get("hwaddr"))
                .or_else(|| as_str(obj.get("hardware-address")))
                .map(|m| m.to_ascii_uppercase()),
            inet: as_str(obj.get("inet")),
            inet6: as_str(obj.get("inet6")),
            raw,
        })
    }
}

/// One entry of `GET /storage` (cluster storage configuration).
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Storage id.
    pub storage: String,
    /// Storage type.
    pub kind: Option<String>,
    /// Content types.
    pub content: Vec<String>,
    /// Nodes it is restricted to (empty: all).
    pub nodes: Vec<String>,
    /// Shared.
    pub shared: Option<bool>,
    /// Disabled.
    pub disable: Option<bool>,
    /// Raw entry.
    pub raw: Value,
}

impl StorageConfig {
    /// Whether the entry lacks keys the sync needs, so `/storage/{id}` should be read too.
    pub fn is_sparse(&self) -> bool {
        let obj = self.raw.as_object();
        ["type", "content"]
            .iter()
            .any(|k| obj.is_none_or(|o| !o.contains_key(*k)))
    }

    /// Whether backups can live here.
    pub fn holds_backups(&self) -> bool {
        self.content.iter().any(|c| c == "backup")
    }

    /// Whether `node` can use this storage.
    pub fn available_on(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }
}

fn comma_list(value: Option<&Value>) -> Vec<String> {
    as_str(value)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl FromValue for StorageConfig {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(StorageConfig {
            storage: required(obj, "storage")?,
            kind: as_str(obj.get("type")),
            content: comma_list(obj.get("content")),
            nodes: comma_list(obj.get("nodes")),
            shared: as_bool(obj.get("shared")),
            disable: as_bool(obj.get("disable")),
            raw,
        })
    }
}

/// One entry of `GET /nodes/{node}/storage` (per-node storage status).
#[derive(Clone, Debug)]
pub struct NodeStorage {
    /// Storage id.
    pub storage: String,
    /// Active on this node.
    pub active: Option<bool>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Total bytes.
    pub total: Option<u64>,
    /// Used bytes.
    pub used: Option<u64>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for NodeStorage {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(NodeStorage {
            storage: required(obj, "storage")?,
            active: as_bool(obj.get("active")),
            enabled: as_bool(obj.get("enabled")),
            total: as_u64(obj.get("total")),
            used: as_u64(obj.get("used")),
            raw,
        })
    }
}

/// One entry of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Clone, Debug)]
pub struct StorageContent {
    /// Volume id.
    pub volid: String,
    /// `backup`, `iso`, `vztmpl`, `images`, ...
    pub content: Option<String>,
    /// Owning guest.
    pub vmid: Option<u32>,
    /// Creation time, Unix seconds.
    pub ctime: Option<i64>,
    /// Size, bytes.
    pub size: Option<u64>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for StorageContent {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(StorageContent {
            volid: required(obj, "volid")?,
            content: as_str(obj.get("content")),
            vmid: as_u64(obj.get("vmid")).and_then(|v| u32::try_from(v).ok()),
            ctime: as_i64(obj.get("ctime")),
            size: as_u64(obj.get("size")),
            raw,
        })
    }
}

/// One entry of `GET /nodes/{node}/{qemu|lxc}/{vmid}/snapshot`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Name (`current` is the "you are here" pseudo-entry).
    pub name: String,
    /// Parent snapshot.
    pub parent: Option<String>,
    /// Time, Unix seconds.
    pub snaptime: Option<i64>,
    /// Raw entry.
    pub raw: Value,
}

impl FromValue for Snapshot {
    fn from_value(raw: Value) -> Result<Self, String> {
        let obj = object(&raw)?;
        Ok(Snapshot {
            name: required(obj, "name")?,
            parent: as_str(obj.get("parent")),
            snaptime: as_i64(obj.get("snaptime")),
            raw,
        })
    }
}
