//! Host bindings for the `proxbox:mapper@1.0.0` WIT package.
//!
//! One module per supported WIT version (as Zed's extension host does): a later
//! `v1_1` module binds the next minor version and the runtime picks the module
//! that matches what a component exports.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "mapper",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

/// The WIT package version these bindings implement.
pub const VERSION: (u64, u64, u64) = (1, 0, 0);

pub use exports::proxbox::mapper::backup::{BackupInput, DesiredBackup};
pub use exports::proxbox::mapper::device::{
    ClusterInput, DesiredCluster, DesiredDevice, NodeInput,
};
pub use exports::proxbox::mapper::snapshot::{DesiredSnapshot, SnapshotInput};
pub use exports::proxbox::mapper::storage::{DesiredStorage, StorageInput};
pub use exports::proxbox::mapper::virtual_disk::DesiredVirtualDisk;
pub use exports::proxbox::mapper::virtual_machine::DesiredVirtualMachine;
pub use proxbox::mapper::types::{
    ClusterMode, Context, DiskBus, DiskInput, GuestInput, GuestType, MapperError, NicInput,
    RawSource,
};
