//! A faithful Proxmox VE API simulator for proxbox-host's tests and benchmarks.
//!
//! * [`generate`] builds a deterministic, realistic [`Estate`] (clusters and standalone
//!   nodes with guests, storages, networks, backups and snapshots) from an [`EstateSpec`].
//! * [`Simulator::start`] serves one endpoint of an estate over HTTPS (self-signed,
//!   generated at start) or HTTP on loopback, with PVE's envelope, authentication (API
//!   tokens, tickets, 3 s delay on 401), error codes and field quirks.
//! * [`FaultHandle`] injects latency, error statuses, hangs, malformed JSON, dropped
//!   connections, partial inventories and offline nodes; the mutation methods change the
//!   estate between requests; request counters record what a client fetched.
//! * The same controls are available over HTTP below `/_sim/` for out-of-process use.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use proxmox_sim::{EstateSpec, Fault, FaultKind, SimConfig, Simulator, generate};
//!
//! let estate = generate(&EstateSpec { guests: 200, ..EstateSpec::default() });
//! let sim = Simulator::start(estate, 0, SimConfig::default()).await?;
//! let _url = sim.base_url(); // https://127.0.0.1:PORT/api2/json
//! let _auth = sim.token().header_value(); // PVEAPIToken=root@pam!proxbox=…
//! sim.faults().inject(Fault::new("/cluster/resources", FaultKind::Hang).times(1));
//! sim.set_node_online("pve2", false)?;
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod api;
mod auth;
mod faults;
mod generate;
mod model;
mod mutation;
mod server;

pub use auth::{LIMITED_TOKEN_ID, LIMITED_USER, ROOT_TOKEN_ID, ROOT_USER, TokenCredentials};
pub use faults::{Fault, FaultHandle, FaultKind, PathMatch};
pub use generate::{BASE_TIME, EstateSpec, generate};
pub use model::{
    Backup, Credentials, EndpointState, Estate, Firewall, FirewallGroup, FirewallIpSet, Guest,
    GuestStats, GuestStatus, GuestType, LimitedAcl, Node, Pool, PveObject, PveVersion, Snapshot,
    Storage, StorageStatus, StorageType, Verification, format_size, is_disk_key, is_mp_key,
    parse_size, prop_get, prop_set,
};
pub use mutation::{Mutation, SimError};
pub use server::{SimConfig, Simulator};
