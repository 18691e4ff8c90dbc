//! proxbox-host: reads a Proxmox VE estate and writes it into NetBox; the per-object
//! mapping is done by WebAssembly components ([`mapper`]).
//!
//! Data flow: [`proxmox`] (read) -> [`normalize`] -> [`mapper`] -> desired NetBox records.

pub mod cases;
pub mod cli;
pub mod config;
mod error_chain;
pub mod events;
pub mod mapper;
pub mod netbox;
pub mod normalize;
pub mod proxmox;
mod py_repr;
pub mod server;
pub mod store;
pub mod sync;
