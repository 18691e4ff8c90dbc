//! Host bindings for the `proxbox:mapper@1.x` WIT package (currently 1.1.0).
//!
//! Minor versions only add interfaces, and wasmtime resolves a component's exports by
//! semver (`…/device@1.1.0` finds a 1.0.0 component's `…/device@1.0.0`), so one module
//! binds every 1.x component: a 1.0 component simply exports none of the 1.1 kinds.
//! The frozen 1.0 contract is kept in `wit/frozen/1.0.0/` and a test component built
//! against it proves it keeps loading. A new major version gets its own module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "mapper",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

/// The WIT package version these bindings implement.
pub const VERSION: (u64, u64, u64) = (1, 1, 0);

pub use exports::proxbox::mapper::backup::{BackupInput, DesiredBackup};
pub use exports::proxbox::mapper::device::{
    ClusterInput, DesiredCluster, DesiredDevice, NodeInput,
};
pub use exports::proxbox::mapper::ip_address::{PrimaryCandidate, PrimaryChoice, PrimaryOwner};
pub use exports::proxbox::mapper::node_interface::{DesiredNodeInterface, NodeInterfaceInput};
pub use exports::proxbox::mapper::snapshot::{DesiredSnapshot, SnapshotInput};
pub use exports::proxbox::mapper::storage::{DesiredStorage, StorageInput};
pub use exports::proxbox::mapper::virtual_disk::DesiredVirtualDisk;
pub use exports::proxbox::mapper::virtual_machine::DesiredVirtualMachine;
pub use exports::proxbox::mapper::vm_interface::DesiredVmInterface;
pub use proxbox::mapper::network_types::{
    AddressInput, AddressScope, AddressSource, DesiredIpAddress, GuestNicInput, IpFamily,
    ObservedInterface, VlanRef,
};
pub use proxbox::mapper::types::{
    ClusterMode, Context, DiskBus, DiskInput, GuestInput, GuestType, MapperError, NicInput,
    RawSource,
};
