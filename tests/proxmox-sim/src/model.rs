//! The simulated estate: endpoints, nodes, guests, storages, backups and snapshots.
//!
//! Everything here is plain data (`Serialize`/`Deserialize`), so an estate can be dumped to and
//! loaded from a JSON file. Guest configuration is kept as the raw Proxmox key → value map, so
//! the quirks of real configs (`memory` as string or integer, property strings, …) survive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object with Proxmox keys, exactly as the API returns it.
pub type PveObject = Map<String, Value>;

/// One or more Proxmox API endpoints (clusters or standalone nodes).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Estate {
    /// The seed the estate was generated from (informational for loaded estates).
    pub seed: u64,
    /// The endpoints; a [`crate::Simulator`] serves exactly one of them.
    pub endpoints: Vec<EndpointState>,
}

impl Estate {
    /// Loads an estate from a JSON file written by [`Estate::save`] (or by hand).
    pub fn load(path: impl AsRef<std::path::Path>) -> anyhow::Result<Estate> {
        let text = std::fs::read_to_string(path.as_ref())?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes the estate as pretty-printed JSON.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> anyhow::Result<()> {
        std::fs::write(path.as_ref(), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Total number of guests over all endpoints.
    pub fn guest_count(&self) -> usize {
        self.endpoints.iter().map(|e| e.guests.len()).sum()
    }
}

/// The Proxmox VE release an endpoint claims to run (`GET /version`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PveVersion {
    /// Full version, e.g. `8.4.1` (PVE 7 style: `7.4-19`).
    pub version: String,
    /// Release, e.g. `8.4`.
    pub release: String,
    /// 16 hex digit repository id; `/version` shows the first 8.
    pub repoid: String,
}

impl PveVersion {
    /// The major version number (7, 8, 9, …).
    pub fn major(&self) -> u32 {
        self.release
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(8)
    }
}

/// Secrets of one endpoint: API tokens, the root password and the ticket signing key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    /// Secret (UUID) of the full-access token `root@pam!proxbox`.
    pub token_secret: String,
    /// Secret (UUID) of the limited token `audit@pve!limited`.
    pub limited_token_secret: String,
    /// Password of `root@pam` for ticket authentication.
    pub root_password: String,
    /// Hex key used to sign tickets and CSRF tokens.
    pub ticket_key: String,
}

/// What the limited token (`audit@pve!limited`, role `PVEAuditor`) may see.
///
/// It holds `Sys.Audit`/`SDN.Audit` on `/`, `VM.Audit` on the listed pools and vmids,
/// `Datastore.Audit` on the listed storages and `Pool.Audit` on the listed pools.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LimitedAcl {
    /// Pools whose member guests are visible.
    pub pools: Vec<String>,
    /// Additional individually visible guests.
    pub vmids: Vec<u32>,
    /// Visible storages.
    pub storages: Vec<String>,
}

/// A firewall security group (`/cluster/firewall/groups`) with its rules.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FirewallGroup {
    /// Group name.
    pub group: String,
    /// Comment, if any.
    pub comment: Option<String>,
    /// Config digest.
    pub digest: String,
    /// Rules (`/cluster/firewall/groups/{group}`), in position order.
    pub rules: Vec<PveObject>,
}

/// A firewall IP set (`/cluster/firewall/ipset`) with its entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FirewallIpSet {
    /// IP set name.
    pub name: String,
    /// Comment, if any.
    pub comment: Option<String>,
    /// Config digest.
    pub digest: String,
    /// Entries (`/cluster/firewall/ipset/{name}`): `cidr`, `comment`, `nomatch`, `digest`.
    pub entries: Vec<PveObject>,
}

/// The datacenter firewall of an endpoint and its nodes' rules.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Firewall {
    /// Datacenter rules (`/cluster/firewall/rules`), in position order.
    pub rules: Vec<PveObject>,
    /// Security groups.
    pub groups: Vec<FirewallGroup>,
    /// IP sets.
    pub ipsets: Vec<FirewallIpSet>,
    /// Aliases (`/cluster/firewall/aliases`): `name`, `cidr`, `comment`, `digest`.
    pub aliases: Vec<PveObject>,
    /// Options (`/cluster/firewall/options`).
    pub options: PveObject,
    /// Host rules per node (`/nodes/{node}/firewall/rules`).
    pub node_rules: BTreeMap<String, Vec<PveObject>>,
}

/// One Proxmox API endpoint: a cluster of nodes, or a standalone node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EndpointState {
    /// Cluster name; `None` for a standalone node.
    pub cluster_name: Option<String>,
    /// Corosync config version (`/cluster/status` `version`).
    pub config_version: u32,
    /// Claimed Proxmox VE version.
    pub version: PveVersion,
    /// Nodes; the first one is the node the API client "talks to" (`local: 1`).
    pub nodes: Vec<Node>,
    /// Guests by vmid (unique per endpoint).
    pub guests: BTreeMap<u32, Guest>,
    /// Storage definitions with per-node status, backups and other volumes.
    pub storages: Vec<Storage>,
    /// Resource pools.
    pub pools: Vec<Pool>,
    /// `datacenter.cfg` as returned by `/cluster/options`.
    pub options: PveObject,
    /// Scheduled backup jobs (`/cluster/backup`).
    pub backup_jobs: Vec<PveObject>,
    /// SDN vnets (`/cluster/sdn/vnets`).
    pub sdn_vnets: Vec<PveObject>,
    /// The datacenter firewall (`/cluster/firewall/*`) and each node's rules.
    #[serde(default)]
    pub firewall: Firewall,
    /// Storage replication jobs (`/cluster/replication`).
    #[serde(default)]
    pub replication_jobs: Vec<PveObject>,
    /// Recent tasks; each entry carries its `node`.
    pub tasks: Vec<PveObject>,
    /// API secrets.
    pub credentials: Credentials,
    /// Visibility of the limited token.
    pub limited_acl: LimitedAcl,
}

impl EndpointState {
    /// Display name: the cluster name, or the node name for a standalone node.
    pub fn display_name(&self) -> String {
        match &self.cluster_name {
            Some(name) => name.clone(),
            None => self
                .nodes
                .first()
                .map(|n| n.name.clone())
                .unwrap_or_default(),
        }
    }

    /// Looks up a node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Looks up a storage by id.
    pub fn storage(&self, id: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.storage == id)
    }

    /// Whether the limited token may see (`VM.Audit`) this vmid.
    pub fn limited_sees_vmid(&self, vmid: u32) -> bool {
        if self.limited_acl.vmids.contains(&vmid) {
            return true;
        }
        self.guests
            .get(&vmid)
            .and_then(|g| g.pool.as_ref())
            .is_some_and(|p| self.limited_acl.pools.contains(p))
    }

    /// Whether the limited token may see (`Datastore.Audit`) this storage.
    pub fn limited_sees_storage(&self, storage: &str) -> bool {
        self.limited_acl.storages.iter().any(|s| s == storage)
    }
}

/// A cluster node (or the single node of a standalone endpoint).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Corosync node id (0 for standalone nodes).
    pub nodeid: u32,
    /// Cluster IP.
    pub ip: String,
    /// Whether the node is up; offline nodes answer proxied calls with 595.
    pub online: bool,
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU sockets.
    pub sockets: u32,
    /// CPU model string.
    pub cpu_model: String,
    /// Total memory in bytes.
    pub memory: u64,
    /// Used memory in bytes.
    pub memory_used: u64,
    /// Root filesystem size in bytes.
    pub rootfs_total: u64,
    /// Root filesystem usage in bytes.
    pub rootfs_used: u64,
    /// Uptime in seconds.
    pub uptime: u64,
    /// CPU usage fraction (0..1).
    pub cpu_usage: f64,
    /// Subscription level (`""`, `c`, `b`, `s`, `p`).
    pub level: String,
    /// SHA-256 fingerprint of the node certificate, upper-case colon hex.
    pub ssl_fingerprint: String,
    /// Kernel release, e.g. `6.8.12-9-pve`.
    pub kernel: String,
    /// Kernel build string, e.g. `#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9 (…)`.
    pub kernel_build: String,
    /// Boot mode: `efi` or `legacy-bios`.
    pub boot_mode: String,
    /// `/nodes/{node}/network` entries (the `lo` entry is stored but never listed, like PVE).
    pub network: Vec<PveObject>,
}

/// Guest type.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// A QEMU virtual machine.
    Qemu,
    /// An LXC container.
    Lxc,
}

impl GuestType {
    /// `qemu` or `lxc`, as in API paths and `/cluster/resources` ids.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        }
    }

    /// Directory of the config file below `nodes/<node>/`.
    pub fn config_dir(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu-server",
            GuestType::Lxc => "lxc",
        }
    }
}

/// Guest power state. `Paused` is a running QEMU guest with `qmpstatus: paused`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GuestStatus {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Paused (QEMU only; reported as `status: running`, `qmpstatus: paused`).
    Paused,
}

impl GuestStatus {
    /// Whether the guest has a process (running or paused).
    pub fn is_running(self) -> bool {
        !matches!(self, GuestStatus::Stopped)
    }
}

/// Runtime counters of a running guest (ignored while stopped).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GuestStats {
    /// Uptime in seconds.
    pub uptime: u64,
    /// CPU usage fraction.
    pub cpu: f64,
    /// Used memory in bytes.
    pub mem: u64,
    /// Used disk in bytes (LXC only; QEMU reports 0).
    pub disk: u64,
    /// Network bytes in.
    pub netin: u64,
    /// Network bytes out.
    pub netout: u64,
    /// Disk bytes read.
    pub diskread: u64,
    /// Disk bytes written.
    pub diskwrite: u64,
    /// Process id.
    pub pid: u32,
}

/// A guest (VM or container).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Guest {
    /// VM id, unique per endpoint.
    pub vmid: u32,
    /// `qemu` or `lxc`.
    #[serde(rename = "type")]
    pub guest_type: GuestType,
    /// Node the guest lives on.
    pub node: String,
    /// Power state.
    pub status: GuestStatus,
    /// Whether the guest is a template.
    pub template: bool,
    /// Pool membership.
    pub pool: Option<String>,
    /// HA state (`started`, `stopped`, …) when HA-managed.
    pub ha_state: Option<String>,
    /// The config as `GET …/config` returns it (without `digest`, which is computed).
    /// Name (`name`/`hostname`) and `tags` live here.
    pub config: PveObject,
    /// QEMU guest agent `network-get-interfaces` result (the value under `result`);
    /// `None` when the agent is not running inside the guest.
    pub agent: Option<Value>,
    /// LXC `/interfaces` entries (only served while running).
    pub interfaces: Option<Vec<Value>>,
    /// Snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Runtime counters.
    pub stats: GuestStats,
}

impl Guest {
    /// A minimal running QEMU guest with one SCSI disk and one virtio NIC.
    pub fn qemu(vmid: u32, node: &str, name: &str) -> Guest {
        let mut config = PveObject::new();
        config.insert("name".into(), Value::from(name));
        config.insert("memory".into(), Value::from("2048"));
        config.insert("cores".into(), Value::from(2));
        config.insert("sockets".into(), Value::from(1));
        config.insert("ostype".into(), Value::from("l26"));
        config.insert("scsihw".into(), Value::from("virtio-scsi-single"));
        config.insert(
            "scsi0".into(),
            Value::from(format!("local-lvm:vm-{vmid}-disk-0,iothread=1,size=32G")),
        );
        config.insert(
            "net0".into(),
            Value::from(format!(
                "virtio=BC:24:11:{:02X}:{:02X}:{:02X},bridge=vmbr0,firewall=1",
                (vmid >> 16) & 0xff,
                (vmid >> 8) & 0xff,
                vmid & 0xff
            )),
        );
        config.insert("boot".into(), Value::from("order=scsi0;net0"));
        config.insert(
            "smbios1".into(),
            Value::from(format!("uuid=00000000-0000-4000-8000-{vmid:012}")),
        );
        Guest {
            vmid,
            guest_type: GuestType::Qemu,
            node: node.to_string(),
            status: GuestStatus::Running,
            template: false,
            pool: None,
            ha_state: None,
            config,
            agent: None,
            interfaces: None,
            snapshots: Vec::new(),
            stats: GuestStats {
                uptime: 3600,
                cpu: 0.02,
                mem: 1 << 30,
                pid: 10000 + vmid,
                ..GuestStats::default()
            },
        }
    }

    /// A minimal running LXC container with a rootfs and one veth NIC.
    pub fn lxc(vmid: u32, node: &str, hostname: &str) -> Guest {
        let mut config = PveObject::new();
        config.insert("hostname".into(), Value::from(hostname));
        config.insert("arch".into(), Value::from("amd64"));
        config.insert("cores".into(), Value::from(1));
        config.insert("memory".into(), Value::from(512));
        config.insert("swap".into(), Value::from(512));
        config.insert("ostype".into(), Value::from("debian"));
        config.insert("unprivileged".into(), Value::from(1));
        config.insert(
            "rootfs".into(),
            Value::from(format!("local-lvm:vm-{vmid}-disk-0,size=8G")),
        );
        config.insert(
            "net0".into(),
            Value::from(format!(
                "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:{:02X}:{:02X}:{:02X},ip=dhcp,type=veth",
                (vmid >> 16) & 0xff,
                (vmid >> 8) & 0xff,
                vmid & 0xff
            )),
        );
        Guest {
            vmid,
            guest_type: GuestType::Lxc,
            node: node.to_string(),
            status: GuestStatus::Running,
            template: false,
            pool: None,
            ha_state: None,
            config,
            agent: None,
            interfaces: None,
            snapshots: Vec::new(),
            stats: GuestStats {
                uptime: 3600,
                cpu: 0.01,
                mem: 128 << 20,
                disk: 1 << 30,
                pid: 20000 + vmid,
                ..GuestStats::default()
            },
        }
    }

    /// The configured name (`name` for QEMU, `hostname` for LXC), if any.
    pub fn name(&self) -> Option<&str> {
        let key = match self.guest_type {
            GuestType::Qemu => "name",
            GuestType::Lxc => "hostname",
        };
        self.config.get(key).and_then(Value::as_str)
    }

    /// The name PVE reports in lists: the configured name or `VM <id>` / `CT<id>`.
    pub fn display_name(&self) -> String {
        match self.name() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match self.guest_type {
                GuestType::Qemu => format!("VM {}", self.vmid),
                GuestType::Lxc => format!("CT{}", self.vmid),
            },
        }
    }

    /// The raw `tags` config value.
    pub fn tags(&self) -> Option<&str> {
        self.config.get("tags").and_then(Value::as_str)
    }

    /// Configured memory in MiB (`memory` may be an integer or a `[current=]<MiB>` string).
    pub fn memory_mib(&self) -> u64 {
        let default = 512;
        match self.config.get("memory") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(default),
            Some(Value::String(s)) => {
                let s = prop_get(s, "current").unwrap_or(s.split(',').next().unwrap_or(""));
                s.trim().parse().unwrap_or(default)
            }
            _ => default,
        }
    }

    /// Number of vCPUs PVE reports (`cpus`/`maxcpu`), capped by `node_cpus`.
    pub fn cpus(&self, node_cpus: u32) -> u32 {
        let get = |k: &str| {
            self.config.get(k).and_then(|v| match v {
                Value::Number(n) => n.as_u64().map(|n| n as u32),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
        };
        let n = match self.guest_type {
            GuestType::Qemu => {
                if let Some(v) = get("vcpus") {
                    v
                } else {
                    get("sockets").unwrap_or(1) * get("cores").unwrap_or(1)
                }
            }
            GuestType::Lxc => get("cores").unwrap_or(node_cpus),
        };
        n.clamp(1, node_cpus.max(1))
    }

    /// Whether the QEMU guest agent is enabled in the config.
    pub fn agent_enabled(&self) -> bool {
        match self.config.get("agent") {
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::String(s)) => {
                let first = s.split(',').next().unwrap_or("");
                match prop_get(s, "enabled") {
                    Some(v) => v == "1",
                    None => first == "1",
                }
            }
            _ => false,
        }
    }

    /// The boot disk size in bytes (`maxdisk`): first disk in the boot order for QEMU,
    /// the rootfs for LXC.
    pub fn boot_disk_size(&self) -> u64 {
        let value_of = |k: &str| self.config.get(k).and_then(Value::as_str);
        match self.guest_type {
            GuestType::Lxc => value_of("rootfs")
                .and_then(|v| prop_get(v, "size"))
                .and_then(parse_size)
                .unwrap_or(0),
            GuestType::Qemu => {
                let mut candidates: Vec<String> = Vec::new();
                if let Some(boot) = value_of("boot")
                    && let Some(order) = prop_get(boot, "order")
                {
                    candidates.extend(order.split(';').map(str::to_string));
                }
                if let Some(bd) = value_of("bootdisk") {
                    candidates.push(bd.to_string());
                }
                for bus in ["scsi", "virtio", "sata", "ide"] {
                    for i in 0..31 {
                        candidates.push(format!("{bus}{i}"));
                    }
                }
                for key in candidates {
                    if let Some(v) = value_of(&key)
                        && is_disk_key(&key)
                        && prop_get(v, "media") != Some("cdrom")
                    {
                        return prop_get(v, "size").and_then(parse_size).unwrap_or(0);
                    }
                }
                0
            }
        }
    }

    /// `(key, volume, size in bytes)` for every storage-backed disk (no CD-ROMs, no
    /// bind mounts, no pass-through devices).
    pub fn storage_volumes(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (k, v) in &self.config {
            let Some(v) = v.as_str() else { continue };
            let disk_like = match self.guest_type {
                GuestType::Qemu => {
                    is_disk_key(k) || k == "efidisk0" || k == "tpmstate0" || k.starts_with("unused")
                }
                GuestType::Lxc => k == "rootfs" || is_mp_key(k) || k.starts_with("unused"),
            };
            if !disk_like || prop_get(v, "media") == Some("cdrom") {
                continue;
            }
            let volume = v.split(',').next().unwrap_or("");
            let volume = volume.strip_prefix("file=").unwrap_or(volume);
            if volume.starts_with('/') || !volume.contains(':') {
                continue;
            }
            let size = prop_get(v, "size").and_then(parse_size).unwrap_or(0);
            out.push((k.clone(), volume.to_string(), size));
        }
        out
    }
}

/// Whether `key` is a QEMU disk slot (`scsiN`, `virtioN`, `sataN`, `ideN`).
pub fn is_disk_key(key: &str) -> bool {
    ["scsi", "virtio", "sata", "ide"].iter().any(|bus| {
        key.strip_prefix(bus)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether `key` is an LXC mount point (`mpN`).
pub fn is_mp_key(key: &str) -> bool {
    key.strip_prefix("mp")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// A snapshot of a guest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Snapshot name.
    pub name: String,
    /// Description (may be empty).
    pub description: String,
    /// Creation time (unix seconds).
    pub snaptime: i64,
    /// Parent snapshot name.
    pub parent: Option<String>,
    /// Whether RAM state was saved (QEMU only).
    pub vmstate: bool,
}

impl Snapshot {
    /// A snapshot taken now, without RAM state; the parent is filled in when added.
    pub fn new(name: &str, description: &str) -> Snapshot {
        Snapshot {
            name: name.to_string(),
            description: description.to_string(),
            snaptime: now_unix(),
            parent: None,
            vmstate: false,
        }
    }
}

/// A resource pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    /// Pool id.
    pub poolid: String,
    /// Optional comment.
    pub comment: Option<String>,
}

/// Storage plugin type.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// Directory.
    Dir,
    /// LVM.
    Lvm,
    /// LVM-thin.
    LvmThin,
    /// NFS.
    Nfs,
    /// CIFS/SMB.
    Cifs,
    /// Ceph RBD.
    Rbd,
    /// CephFS.
    CephFs,
    /// Proxmox Backup Server.
    Pbs,
    /// Local ZFS pool.
    ZfsPool,
}

impl StorageType {
    /// The plugin type string (`dir`, `lvmthin`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageType::Dir => "dir",
            StorageType::Lvm => "lvm",
            StorageType::LvmThin => "lvmthin",
            StorageType::Nfs => "nfs",
            StorageType::Cifs => "cifs",
            StorageType::Rbd => "rbd",
            StorageType::CephFs => "cephfs",
            StorageType::Pbs => "pbs",
            StorageType::ZfsPool => "zfspool",
        }
    }

    /// Whether PVE always marks this type as shared.
    pub fn always_shared(self) -> bool {
        matches!(
            self,
            StorageType::Nfs
                | StorageType::Cifs
                | StorageType::Rbd
                | StorageType::CephFs
                | StorageType::Pbs
        )
    }
}

/// Per-node status of a storage.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StorageStatus {
    /// Size in bytes.
    pub total: u64,
    /// Used bytes.
    pub used: u64,
    /// Available bytes.
    pub avail: u64,
    /// Whether the storage is active (reachable/mounted) on the node.
    pub active: bool,
}

/// A storage definition (`storage.cfg` entry) plus its per-node status and contents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Storage {
    /// Storage id.
    pub storage: String,
    /// Plugin type.
    #[serde(rename = "type")]
    pub storage_type: StorageType,
    /// Comma-separated content types (`images,rootdir`, `backup`, …).
    pub content: String,
    /// Node restriction (`nodes` property); `None` = all nodes.
    pub nodes: Option<Vec<String>>,
    /// Explicit `shared` flag (network types are always shared).
    pub shared: bool,
    /// `disable` flag.
    pub disable: bool,
    /// Type-specific properties (`path`, `server`, `export`, `pool`, `datastore`, …).
    pub properties: PveObject,
    /// Status per node name.
    pub status: BTreeMap<String, StorageStatus>,
    /// Backup volumes.
    pub backups: Vec<Backup>,
    /// Other volumes (ISO images, container templates) as content entries.
    pub volumes: Vec<PveObject>,
}

impl Storage {
    /// Whether the storage is shared (explicitly or by type).
    pub fn is_shared(&self) -> bool {
        self.shared || self.storage_type.always_shared()
    }

    /// Whether the storage is configured for `node` (ignores `disable`).
    pub fn available_on(&self, node: &str) -> bool {
        self.nodes
            .as_ref()
            .is_none_or(|nodes| nodes.iter().any(|n| n == node))
    }

    /// Whether `content` lists the given content type.
    pub fn has_content(&self, kind: &str) -> bool {
        self.content.split(',').any(|c| c == kind)
    }
}

/// Backup verification state (PBS).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    /// `ok` or `failed`.
    pub state: String,
    /// UPID of the verification task.
    pub upid: String,
}

/// A backup volume on a storage.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    /// Volume id (`storage:backup/…`).
    pub volid: String,
    /// Guest id; missing for files that are not guest backups.
    pub vmid: Option<u32>,
    /// `qemu` or `lxc`.
    pub subtype: Option<String>,
    /// Format (`vma.zst`, `tar.zst`, `pbs-vm`, `pbs-ct`, …).
    pub format: String,
    /// Size in bytes.
    pub size: u64,
    /// Creation time (unix seconds).
    pub ctime: i64,
    /// Notes.
    pub notes: Option<String>,
    /// Protected flag.
    pub protected: bool,
    /// Verification result (PBS).
    pub verification: Option<Verification>,
    /// Encryption key fingerprint (PBS).
    pub encrypted: Option<String>,
    /// For node-local storages: the node whose disk holds the file.
    pub node: Option<String>,
}

impl Backup {
    /// A vzdump archive (`vzdump-qemu-<id>-<date>.vma.zst` / `…lxc….tar.zst`).
    pub fn vzdump(
        storage: &str,
        vmid: u32,
        guest_type: GuestType,
        ctime: i64,
        size: u64,
    ) -> Backup {
        let (kind, ext) = match guest_type {
            GuestType::Qemu => ("qemu", "vma.zst"),
            GuestType::Lxc => ("lxc", "tar.zst"),
        };
        Backup {
            volid: format!(
                "{storage}:backup/vzdump-{kind}-{vmid}-{}.{ext}",
                format_time(ctime, TimeStyle::Vzdump)
            ),
            vmid: Some(vmid),
            subtype: Some(guest_type.as_str().to_string()),
            format: ext.to_string(),
            size,
            ctime,
            notes: None,
            protected: false,
            verification: None,
            encrypted: None,
            node: None,
        }
    }

    /// A Proxmox Backup Server snapshot (`backup/vm/<id>/<RFC3339>`).
    pub fn pbs(storage: &str, vmid: u32, guest_type: GuestType, ctime: i64, size: u64) -> Backup {
        let (kind, format) = match guest_type {
            GuestType::Qemu => ("vm", "pbs-vm"),
            GuestType::Lxc => ("ct", "pbs-ct"),
        };
        Backup {
            volid: format!(
                "{storage}:backup/{kind}/{vmid}/{}",
                format_time(ctime, TimeStyle::Pbs)
            ),
            vmid: Some(vmid),
            subtype: Some(guest_type.as_str().to_string()),
            format: format.to_string(),
            size,
            ctime,
            notes: None,
            protected: false,
            verification: None,
            encrypted: None,
            node: None,
        }
    }
}

/// Timestamp layouts used in volume names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimeStyle {
    /// `2024_05_01-02_00_03`
    Vzdump,
    /// `2024-05-01T02:00:03Z`
    Pbs,
}

pub(crate) fn format_time(ts: i64, style: TimeStyle) -> String {
    let dt =
        time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d) = (dt.year(), u8::from(dt.month()), dt.day());
    let (h, mi, s) = (dt.hour(), dt.minute(), dt.second());
    match style {
        TimeStyle::Vzdump => format!("{y:04}_{mo:02}_{d:02}-{h:02}_{mi:02}_{s:02}"),
        TimeStyle::Pbs => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    }
}

/// Current unix time in seconds.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Returns the value of `key=value` in a Proxmox property string.
pub fn prop_get<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// Sets (or appends) `key=new` in a Proxmox property string.
pub fn prop_set(value: &str, key: &str, new: &str) -> String {
    let mut found = false;
    let mut parts: Vec<String> = value
        .split(',')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k == key => {
                found = true;
                format!("{key}={new}")
            }
            _ => part.to_string(),
        })
        .collect();
    if !found {
        parts.push(format!("{key}={new}"));
    }
    parts.join(",")
}

/// Parses a Proxmox size (`528K`, `32G`, `2T`, plain bytes) into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if let Ok(n) = num.parse::<u64>() {
        return Some(n * mult);
    }
    num.parse::<f64>().ok().map(|f| (f * mult as f64) as u64)
}

/// Formats bytes the way PVE writes `size=` (largest exact binary unit).
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= (1 << shift) && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("528K"), Some(528 * 1024));
        assert_eq!(parse_size("32G"), Some(32 << 30));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(format_size(32 << 30), "32G");
        assert_eq!(format_size(528 * 1024), "528K");
    }

    #[test]
    fn property_strings() {
        let v = "local-lvm:vm-100-disk-0,iothread=1,size=32G";
        assert_eq!(prop_get(v, "size"), Some("32G"));
        assert_eq!(
            prop_set(v, "size", "64G"),
            "local-lvm:vm-100-disk-0,iothread=1,size=64G"
        );
        assert_eq!(
            prop_set("none,media=cdrom", "size", "1G"),
            "none,media=cdrom,size=1G"
        );
    }

    #[test]
    fn guest_helpers() {
        let mut g = Guest::qemu(100, "pve1", "web");
        assert_eq!(g.memory_mib(), 2048);
        assert_eq!(g.boot_disk_size(), 32 << 30);
        g.config
            .insert("agent".into(), "1,fstrim_cloned_disks=1".into());
        assert!(g.agent_enabled());
        g.config.insert("agent".into(), "enabled=0".into());
        assert!(!g.agent_enabled());
        g.config.remove("name");
        assert_eq!(g.display_name(), "VM 100");
    }
}
