//! The object kinds a mapper component can map.

use std::fmt;
use std::str::FromStr;

/// One kind of Proxmox object, and the WIT interface that maps it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Proxmox node -> NetBox device (and cluster).
    Device,
    /// Proxmox guest -> NetBox virtual machine.
    VirtualMachine,
    /// Guest disk -> NetBox virtual disk.
    VirtualDisk,
    /// Proxmox storage -> plugin storage record.
    Storage,
    /// Backup volume -> plugin backup record.
    Backup,
    /// Guest snapshot -> plugin snapshot record.
    Snapshot,
    /// Node network interface -> NetBox device interface (1.1).
    NodeInterface,
    /// Guest NIC -> NetBox VM interface (1.1).
    VmInterface,
    /// Guest address -> NetBox IP address, and the primary-IP choice (1.1).
    IpAddress,
}

impl Kind {
    /// Every kind, in sync order.
    pub const ALL: [Kind; 9] = [
        Kind::Device,
        Kind::Storage,
        Kind::VirtualMachine,
        Kind::VirtualDisk,
        Kind::Backup,
        Kind::Snapshot,
        Kind::NodeInterface,
        Kind::VmInterface,
        Kind::IpAddress,
    ];

    /// The WIT interface name (`device`, `virtual-machine`, ...), also the CLI spelling.
    pub fn interface(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::VirtualMachine => "virtual-machine",
            Kind::VirtualDisk => "virtual-disk",
            Kind::Storage => "storage",
            Kind::Backup => "backup",
            Kind::Snapshot => "snapshot",
            Kind::NodeInterface => "node-interface",
            Kind::VmInterface => "vm-interface",
            Kind::IpAddress => "ip-address",
        }
    }

    /// The kind whose WIT interface has this name.
    pub fn from_interface(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.interface() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::from_interface(s).ok_or_else(|| {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.interface()).collect();
            format!("unknown kind `{s}` (expected one of: {})", names.join(", "))
        })
    }
}
