//! Calling a mapper: one instance, reused across objects until it traps.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::Instance;

use super::Kind;
use super::component::MapperComponent;
use super::engine::GuestState;
use super::error::{FailReason, MapError};
use super::v1;
use super::v1::exports::proxbox::mapper as x;

/// The input of one mapping call.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum MapInput {
    /// A node.
    Device(v1::NodeInput),
    /// A guest.
    VirtualMachine(v1::GuestInput),
    /// One disk of a guest.
    VirtualDisk(v1::GuestInput, v1::DiskInput),
    /// A storage.
    Storage(v1::StorageInput),
    /// A backup.
    Backup(v1::BackupInput),
    /// A snapshot.
    Snapshot(v1::SnapshotInput),
    /// A node network interface.
    NodeInterface(v1::NodeInterfaceInput),
    /// One NIC of a guest.
    VmInterface(v1::GuestInput, v1::GuestNicInput),
    /// One address of one NIC of a guest.
    IpAddress(v1::GuestInput, v1::GuestNicInput, v1::AddressInput),
    /// The primary-IP candidates of a VM or device (the `ip-address` kind).
    PrimaryIp(v1::PrimaryOwner, Vec<v1::PrimaryCandidate>),
}

impl MapInput {
    /// The kind this input is for.
    pub fn kind(&self) -> Kind {
        match self {
            MapInput::Device(_) => Kind::Device,
            MapInput::VirtualMachine(_) => Kind::VirtualMachine,
            MapInput::VirtualDisk(..) => Kind::VirtualDisk,
            MapInput::Storage(_) => Kind::Storage,
            MapInput::Backup(_) => Kind::Backup,
            MapInput::Snapshot(_) => Kind::Snapshot,
            MapInput::NodeInterface(_) => Kind::NodeInterface,
            MapInput::VmInterface(..) => Kind::VmInterface,
            MapInput::IpAddress(..) | MapInput::PrimaryIp(..) => Kind::IpAddress,
        }
    }

    /// How errors and events name the object (`qemu/100 "web01"`, `storage local`, ...).
    pub fn describe(&self) -> String {
        let guest = |g: &v1::GuestInput| {
            let ty = match g.guest_type {
                v1::GuestType::Qemu => "qemu",
                v1::GuestType::Lxc => "lxc",
            };
            format!("{ty}/{} \"{}\" on {}", g.vmid, g.name, g.node)
        };
        match self {
            MapInput::Device(n) => format!("node {}", n.name),
            MapInput::VirtualMachine(g) => guest(g),
            MapInput::VirtualDisk(g, d) => format!("disk {} of {}", d.key, guest(g)),
            MapInput::Storage(s) => format!("storage {}", s.name),
            MapInput::Backup(b) => format!("backup {}", b.volid),
            MapInput::Snapshot(s) => format!("snapshot {} of {}", s.name, s.vmid),
            MapInput::NodeInterface(i) => format!("interface {} of node {}", i.name, i.node),
            MapInput::VmInterface(g, n) => format!("interface {} of {}", n.nic.key, guest(g)),
            MapInput::IpAddress(g, n, a) => {
                format!("address {} of {} of {}", a.address, n.nic.key, guest(g))
            }
            MapInput::PrimaryIp(v1::PrimaryOwner::Guest(g), _) => {
                format!("primary IP of {}", guest(g))
            }
            MapInput::PrimaryIp(v1::PrimaryOwner::Node(n), _) => format!("primary IP of node {n}"),
        }
    }
}

/// The desired NetBox record a mapper returned.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum MapOutput {
    /// A device (and its cluster).
    Device(v1::DesiredDevice),
    /// A virtual machine.
    VirtualMachine(v1::DesiredVirtualMachine),
    /// A virtual disk.
    VirtualDisk(v1::DesiredVirtualDisk),
    /// A storage record.
    Storage(v1::DesiredStorage),
    /// A backup record.
    Backup(v1::DesiredBackup),
    /// A snapshot record.
    Snapshot(v1::DesiredSnapshot),
    /// A device interface.
    NodeInterface(v1::DesiredNodeInterface),
    /// A VM interface.
    VmInterface(v1::DesiredVmInterface),
    /// An IP address.
    IpAddress(v1::DesiredIpAddress),
    /// The primary-IP choice.
    PrimaryIp(v1::PrimaryChoice),
}

/// A successful call: the record (`None`: do not sync the object) and what it cost.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The desired record, or `None` when the mapper chose not to sync the object.
    pub output: Option<MapOutput>,
    /// Fuel the call used.
    pub fuel_used: u64,
}

/// A mapper instance for a series of calls.
///
/// The instance is created on first use and reused for later objects; after a
/// failed call (trap, limit hit) it is discarded so the next object gets a fresh one.
pub struct MapperInstance {
    component: Arc<MapperComponent>,
    live: Option<Live>,
}

struct Live {
    store: Store<GuestState>,
    instance: Instance,
    guests: Guests,
}

#[derive(Default)]
struct Guests {
    device: Option<x::device::Guest>,
    virtual_machine: Option<x::virtual_machine::Guest>,
    virtual_disk: Option<x::virtual_disk::Guest>,
    storage: Option<x::storage::Guest>,
    backup: Option<x::backup::Guest>,
    snapshot: Option<x::snapshot::Guest>,
    node_interface: Option<x::node_interface::Guest>,
    vm_interface: Option<x::vm_interface::Guest>,
    ip_address: Option<x::ip_address::Guest>,
}

/// Get (loading once per instance) the typed export handle of one kind.
macro_rules! guest {
    ($live:expr, $component:expr, $field:ident) => {{
        match &$live.guests.$field {
            Some(g) => g.clone(),
            None => {
                let indices = $component
                    .indices
                    .$field
                    .as_ref()
                    .ok_or(FailReason::NotExported)?;
                let g = indices
                    .load(&mut $live.store, &$live.instance)
                    .map_err(|e| FailReason::Instantiate {
                        message: format!("{e:#}"),
                    })?;
                $live.guests.$field = Some(g.clone());
                g
            }
        }
    }};
}

impl MapperInstance {
    /// An instance of `component` (instantiated lazily on the first call).
    pub fn new(component: Arc<MapperComponent>) -> Self {
        MapperInstance {
            component,
            live: None,
        }
    }

    /// The component this instance runs.
    pub fn component(&self) -> &Arc<MapperComponent> {
        &self.component
    }

    /// Map one object. A failure fails this object only; the next call starts fresh.
    pub fn map(&mut self, ctx: &v1::Context, input: &MapInput) -> Result<Mapped, MapError> {
        let kind = input.kind();
        let component = Arc::clone(&self.component);
        let fail = |reason| MapError {
            component: component.name().to_string(),
            kind,
            object: input.describe(),
            reason,
        };
        if !component.exports(kind) {
            return Err(fail(FailReason::NotExported));
        }
        let result = self.call(ctx, input);
        match result {
            Ok(mapped) => Ok(mapped),
            Err(reason) => {
                self.live = None;
                Err(fail(reason))
            }
        }
    }

    fn live(&mut self) -> Result<&mut Live, FailReason> {
        if self.live.is_none() {
            let engine = &self.component.engine;
            let mut store = engine.new_store();
            store
                .set_fuel(engine.limits().fuel)
                .map_err(|e| FailReason::Instantiate {
                    message: e.to_string(),
                })?;
            store.set_epoch_deadline(engine.deadline_ticks());
            let instance = self.component.pre.instantiate(&mut store).map_err(|e| {
                classify(&e, &store, engine.limits()).unwrap_or_else(|| FailReason::Instantiate {
                    message: format!("{e:#}"),
                })
            })?;
            self.live = Some(Live {
                store,
                instance,
                guests: Guests::default(),
            });
        }
        Ok(self.live.as_mut().expect("live instance"))
    }

    fn call(&mut self, ctx: &v1::Context, input: &MapInput) -> Result<Mapped, FailReason> {
        let component = Arc::clone(&self.component);
        let limits = component.engine.limits();
        let ticks = component.engine.deadline_ticks();
        let live = self.live()?;
        live.store
            .set_fuel(limits.fuel)
            .map_err(|e| FailReason::Instantiate {
                message: e.to_string(),
            })?;
        live.store.set_epoch_deadline(ticks);

        let outcome: wasmtime::Result<Result<Option<MapOutput>, v1::MapperError>> = match input {
            MapInput::Device(node) => {
                let g = guest!(live, component, device);
                g.call_map_node(&mut live.store, ctx, node)
                    .map(|r| r.map(|o| o.map(MapOutput::Device)))
            }
            MapInput::VirtualMachine(guest) => {
                let g = guest!(live, component, virtual_machine);
                g.call_map_guest(&mut live.store, ctx, guest)
                    .map(|r| r.map(|o| o.map(MapOutput::VirtualMachine)))
            }
            MapInput::VirtualDisk(guest, disk) => {
                let g = guest!(live, component, virtual_disk);
                g.call_map_disk(&mut live.store, ctx, guest, disk)
                    .map(|r| r.map(|o| o.map(MapOutput::VirtualDisk)))
            }
            MapInput::Storage(storage) => {
                let g = guest!(live, component, storage);
                g.call_map_storage(&mut live.store, ctx, storage)
                    .map(|r| r.map(|o| o.map(MapOutput::Storage)))
            }
            MapInput::Backup(backup) => {
                let g = guest!(live, component, backup);
                g.call_map_backup(&mut live.store, ctx, backup)
                    .map(|r| r.map(|o| o.map(MapOutput::Backup)))
            }
            MapInput::Snapshot(snapshot) => {
                let g = guest!(live, component, snapshot);
                g.call_map_snapshot(&mut live.store, ctx, snapshot)
                    .map(|r| r.map(|o| o.map(MapOutput::Snapshot)))
            }
            MapInput::NodeInterface(iface) => {
                let g = guest!(live, component, node_interface);
                g.call_map_node_interface(&mut live.store, ctx, iface)
                    .map(|r| r.map(|o| o.map(MapOutput::NodeInterface)))
            }
            MapInput::VmInterface(guest, nic) => {
                let g = guest!(live, component, vm_interface);
                g.call_map_vm_interface(&mut live.store, ctx, guest, nic)
                    .map(|r| r.map(|o| o.map(MapOutput::VmInterface)))
            }
            MapInput::IpAddress(guest, nic, address) => {
                let g = guest!(live, component, ip_address);
                g.call_map_vm_address(&mut live.store, ctx, guest, nic, address)
                    .map(|r| r.map(|o| o.map(MapOutput::IpAddress)))
            }
            MapInput::PrimaryIp(owner, candidates) => {
                let g = guest!(live, component, ip_address);
                g.call_choose_primary(&mut live.store, ctx, owner, candidates)
                    .map(|r| r.map(|c| Some(MapOutput::PrimaryIp(c))))
            }
        };
        let store = &live.store;
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let output = match outcome {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(FailReason::Rejected {
                    code: e.code,
                    message: e.message,
                });
            }
            Err(e) => {
                return Err(
                    classify(&e, store, limits).unwrap_or_else(|| FailReason::Trap {
                        message: trap_message(&e, store),
                    }),
                );
            }
        };
        if let Some(output) = &output {
            let size = json_size(output);
            if size > limits.output_bytes {
                return Err(FailReason::OutputTooLarge {
                    size_bytes: size,
                    limit_bytes: limits.output_bytes,
                });
            }
        }
        Ok(Mapped { output, fuel_used })
    }
}

/// Name the limit a failed call hit, if it hit one.
fn classify(
    error: &wasmtime::Error,
    store: &Store<GuestState>,
    limits: super::Limits,
) -> Option<FailReason> {
    if store.data().memory.hit {
        return Some(FailReason::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        });
    }
    match error.downcast_ref::<wasmtime::Trap>()? {
        wasmtime::Trap::OutOfFuel => Some(FailReason::OutOfFuel {
            budget: limits.fuel,
        }),
        wasmtime::Trap::Interrupt => Some(FailReason::Timeout {
            limit_ms: limits.wall_time.as_millis() as u64,
        }),
        _ => None,
    }
}

/// The trap, followed by the last lines the component wrote to stderr (its panic message).
fn trap_message(error: &wasmtime::Error, store: &Store<GuestState>) -> String {
    let trap = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    let stderr = store.data().stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        trap
    } else {
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{trap}; stderr: {}", tail.join(" | "))
    }
}

/// Size of a value serialised as JSON, without allocating it.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}
