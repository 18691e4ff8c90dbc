//! proxbox-host: reads a Proxmox VE estate and writes it into NetBox; the per-object
//! mapping is done by WebAssembly components ([`mapper`]).
//!
//! Data flow: Proxmox JSON -> [`normalize`] -> [`mapper`] -> desired NetBox records.

pub mod cases;
pub mod cli;
pub mod mapper;
pub mod normalize;
pub mod server;
