//! Route handlers, one module per URL group.

pub mod auth;
pub mod firewall;
pub mod individual;
pub mod meta;
pub mod netbox;
pub mod proxmox;
pub mod sync;
