//! The default mapper components, compiled by `build.rs` from `mappers/` and embedded.

use super::Kind;

/// The embedded default component for `kind`: its name and its bytes.
pub fn default_component(kind: Kind) -> (&'static str, &'static [u8]) {
    macro_rules! embedded {
        ($file:literal) => {
            (
                concat!("builtin:", $file),
                include_bytes!(concat!(env!("PROXBOX_MAPPERS_DIR"), "/", $file)).as_slice(),
            )
        };
    }
    match kind {
        Kind::Device => embedded!("proxbox_mapper_device.wasm"),
        Kind::VirtualMachine => embedded!("proxbox_mapper_virtual_machine.wasm"),
        Kind::VirtualDisk => embedded!("proxbox_mapper_virtual_disk.wasm"),
        Kind::Storage => embedded!("proxbox_mapper_storage.wasm"),
        Kind::Backup => embedded!("proxbox_mapper_backup.wasm"),
        Kind::Snapshot => embedded!("proxbox_mapper_snapshot.wasm"),
        Kind::NodeInterface => embedded!("proxbox_mapper_node_interface.wasm"),
        Kind::VmInterface => embedded!("proxbox_mapper_vm_interface.wasm"),
        Kind::IpAddress => embedded!("proxbox_mapper_ip_address.wasm"),
    }
}
