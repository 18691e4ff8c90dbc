//! State changes between requests: the typed methods on [`EndpointState`] and the
//! JSON-friendly [`Mutation`] used by `POST /_sim/mutate`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    Backup, EndpointState, Guest, GuestStatus, GuestType, Snapshot, is_disk_key, is_mp_key,
    parse_size, prop_get, prop_set,
};

/// Errors of state mutations.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    /// No guest with this vmid.
    #[error("no such guest {0}")]
    UnknownGuest(u32),
    /// The vmid is already used.
    #[error("VM {0} already exists")]
    DuplicateVmid(u32),
    /// No node with this name.
    #[error("no such node '{0}'")]
    UnknownNode(String),
    /// No storage with this id.
    #[error("no such storage '{0}'")]
    UnknownStorage(String),
    /// No backup with this volid.
    #[error("no such backup '{0}'")]
    UnknownBackup(String),
    /// No snapshot with this name.
    #[error("no such snapshot '{1}' on guest {0}")]
    UnknownSnapshot(u32, String),
    /// A snapshot with this name exists already.
    #[error("snapshot '{1}' already exists on guest {0}")]
    DuplicateSnapshot(u32, String),
    /// The config key is not a resizable disk.
    #[error("guest {0} has no disk '{1}'")]
    UnknownDisk(u32, String),
    /// A size could not be parsed.
    #[error("invalid size '{0}'")]
    InvalidSize(String),
}

impl EndpointState {
    /// Looks up a guest.
    pub fn guest(&self, vmid: u32) -> Option<&Guest> {
        self.guests.get(&vmid)
    }

    /// Looks up a guest mutably.
    pub fn guest_mut(&mut self, vmid: u32) -> Result<&mut Guest, SimError> {
        self.guests
            .get_mut(&vmid)
            .ok_or(SimError::UnknownGuest(vmid))
    }

    /// Adds a guest; its node must exist and its vmid must be free.
    pub fn add_guest(&mut self, guest: Guest) -> Result<(), SimError> {
        if self.node(&guest.node).is_none() {
            return Err(SimError::UnknownNode(guest.node));
        }
        if self.guests.contains_key(&guest.vmid) {
            return Err(SimError::DuplicateVmid(guest.vmid));
        }
        self.guests.insert(guest.vmid, guest);
        Ok(())
    }

    /// Removes a guest (its backups stay, like on a real storage).
    pub fn remove_guest(&mut self, vmid: u32) -> Result<Guest, SimError> {
        self.guests
            .remove(&vmid)
            .ok_or(SimError::UnknownGuest(vmid))
    }

    /// Renames a guest (`name` for QEMU, `hostname` for LXC); an empty name removes it.
    pub fn rename_guest(&mut self, vmid: u32, name: &str) -> Result<(), SimError> {
        let guest = self.guest_mut(vmid)?;
        let key = match guest.guest_type {
            GuestType::Qemu => "name",
            GuestType::Lxc => "hostname",
        };
        if name.is_empty() {
            guest.config.remove(key);
        } else {
            guest.config.insert(key.to_string(), Value::from(name));
        }
        Ok(())
    }

    /// Sets the `size=` of a disk (`scsi0`, `rootfs`, `mp1`, …), e.g. `"64G"`.
    pub fn resize_disk(&mut self, vmid: u32, key: &str, size: &str) -> Result<(), SimError> {
        if parse_size(size).is_none() {
            return Err(SimError::InvalidSize(size.to_string()));
        }
        let guest = self.guest_mut(vmid)?;
        let resizable = match guest.guest_type {
            GuestType::Qemu => is_disk_key(key) || key == "efidisk0" || key == "tpmstate0",
            GuestType::Lxc => key == "rootfs" || is_mp_key(key),
        };
        let current = guest
            .config
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| resizable && prop_get(v, "media") != Some("cdrom"))
            .ok_or_else(|| SimError::UnknownDisk(vmid, key.to_string()))?;
        let updated = prop_set(current, "size", size);
        guest.config.insert(key.to_string(), Value::from(updated));
        Ok(())
    }

    /// Moves a guest to another node (keeps vmid, config and backups).
    pub fn migrate_guest(&mut self, vmid: u32, node: &str) -> Result<(), SimError> {
        if self.node(node).is_none() {
            return Err(SimError::UnknownNode(node.to_string()));
        }
        self.guest_mut(vmid)?.node = node.to_string();
        Ok(())
    }

    /// Changes a guest's power state.
    pub fn set_guest_status(&mut self, vmid: u32, status: GuestStatus) -> Result<(), SimError> {
        let guest = self.guest_mut(vmid)?;
        guest.status = status;
        if status.is_running() && guest.stats.uptime == 0 {
            guest.stats.uptime = 1;
        }
        Ok(())
    }

    /// Sets (`Some`) or deletes (`None`) a raw config key.
    pub fn set_guest_config(
        &mut self,
        vmid: u32,
        key: &str,
        value: Option<Value>,
    ) -> Result<(), SimError> {
        let guest = self.guest_mut(vmid)?;
        match value {
            Some(v) => {
                guest.config.insert(key.to_string(), v);
            }
            None => {
                guest.config.remove(key);
            }
        }
        Ok(())
    }

    /// Adds a backup to a storage.
    pub fn add_backup(&mut self, storage: &str, backup: Backup) -> Result<(), SimError> {
        let st = self
            .storages
            .iter_mut()
            .find(|s| s.storage == storage)
            .ok_or_else(|| SimError::UnknownStorage(storage.to_string()))?;
        st.backups.push(backup);
        Ok(())
    }

    /// Deletes a backup by volid (searched on all storages).
    pub fn delete_backup(&mut self, volid: &str) -> Result<Backup, SimError> {
        for st in &mut self.storages {
            if let Some(pos) = st.backups.iter().position(|b| b.volid == volid) {
                return Ok(st.backups.remove(pos));
            }
        }
        Err(SimError::UnknownBackup(volid.to_string()))
    }

    /// Adds a snapshot on top of the chain; a missing parent becomes the latest snapshot.
    pub fn add_snapshot(&mut self, vmid: u32, mut snapshot: Snapshot) -> Result<(), SimError> {
        let guest = self.guest_mut(vmid)?;
        if snapshot.name == "current" || guest.snapshots.iter().any(|s| s.name == snapshot.name) {
            return Err(SimError::DuplicateSnapshot(vmid, snapshot.name));
        }
        if snapshot.parent.is_none() {
            snapshot.parent = guest.snapshots.last().map(|s| s.name.clone());
        }
        if guest.guest_type == GuestType::Lxc {
            snapshot.vmstate = false;
        }
        guest.snapshots.push(snapshot);
        Ok(())
    }

    /// Deletes a snapshot; its children are re-parented to its parent.
    pub fn delete_snapshot(&mut self, vmid: u32, name: &str) -> Result<(), SimError> {
        let guest = self.guest_mut(vmid)?;
        let pos = guest
            .snapshots
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| SimError::UnknownSnapshot(vmid, name.to_string()))?;
        let removed = guest.snapshots.remove(pos);
        for s in &mut guest.snapshots {
            if s.parent.as_deref() == Some(name) {
                s.parent = removed.parent.clone();
            }
        }
        Ok(())
    }

    /// Marks a node online or offline.
    pub fn set_node_online(&mut self, node: &str, online: bool) -> Result<(), SimError> {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .ok_or_else(|| SimError::UnknownNode(node.to_string()))?;
        n.online = online;
        Ok(())
    }
}

/// A state change in JSON form, as accepted by `POST /_sim/mutate`
/// (e.g. `{"op":"rename-guest","vmid":100,"name":"x"}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Mutation {
    /// Adds a guest.
    AddGuest {
        /// The guest.
        guest: Box<Guest>,
    },
    /// Removes a guest.
    RemoveGuest {
        /// Guest id.
        vmid: u32,
    },
    /// Renames a guest.
    RenameGuest {
        /// Guest id.
        vmid: u32,
        /// New name (empty removes it).
        name: String,
    },
    /// Resizes a disk.
    ResizeDisk {
        /// Guest id.
        vmid: u32,
        /// Config key (`scsi0`, `rootfs`, …).
        key: String,
        /// New size, e.g. `64G`.
        size: String,
    },
    /// Moves a guest to another node.
    MigrateGuest {
        /// Guest id.
        vmid: u32,
        /// Target node.
        node: String,
    },
    /// Changes a guest's power state.
    SetGuestStatus {
        /// Guest id.
        vmid: u32,
        /// New state.
        status: GuestStatus,
    },
    /// Sets or deletes (`value: null`) a raw config key.
    SetGuestConfig {
        /// Guest id.
        vmid: u32,
        /// Config key.
        key: String,
        /// New value; `null` deletes the key.
        value: Option<Value>,
    },
    /// Adds a backup.
    AddBackup {
        /// Storage id.
        storage: String,
        /// The backup.
        backup: Backup,
    },
    /// Deletes a backup.
    DeleteBackup {
        /// Volume id.
        volid: String,
    },
    /// Adds a snapshot.
    AddSnapshot {
        /// Guest id.
        vmid: u32,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Deletes a snapshot.
    DeleteSnapshot {
        /// Guest id.
        vmid: u32,
        /// Snapshot name.
        name: String,
    },
    /// Marks a node online or offline.
    SetNodeOnline {
        /// Node name.
        node: String,
        /// New state.
        online: bool,
    },
}

impl Mutation {
    /// Applies the change to an endpoint.
    pub fn apply(self, state: &mut EndpointState) -> Result<(), SimError> {
        match self {
            Mutation::AddGuest { guest } => state.add_guest(*guest),
            Mutation::RemoveGuest { vmid } => state.remove_guest(vmid).map(|_| ()),
            Mutation::RenameGuest { vmid, name } => state.rename_guest(vmid, &name),
            Mutation::ResizeDisk { vmid, key, size } => state.resize_disk(vmid, &key, &size),
            Mutation::MigrateGuest { vmid, node } => state.migrate_guest(vmid, &node),
            Mutation::SetGuestStatus { vmid, status } => state.set_guest_status(vmid, status),
            Mutation::SetGuestConfig { vmid, key, value } => {
                state.set_guest_config(vmid, &key, value)
            }
            Mutation::AddBackup { storage, backup } => state.add_backup(&storage, backup),
            Mutation::DeleteBackup { volid } => state.delete_backup(&volid).map(|_| ()),
            Mutation::AddSnapshot { vmid, snapshot } => state.add_snapshot(vmid, snapshot),
            Mutation::DeleteSnapshot { vmid, name } => state.delete_snapshot(vmid, &name),
            Mutation::SetNodeOnline { node, online } => state.set_node_online(&node, online),
        }
    }
}
