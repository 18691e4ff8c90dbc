//! NetBox: the REST client, the reconcile engine, and the objects every sync needs.
//!
//! - [`NetBoxClient`]: v1/v2 tokens, paginated list reads, chunked bulk writes with
//!   per-object outcomes, retries where safe, bounded concurrency, version detection.
//! - [`reconcile`]: desired vs existing for one kind -> create / update / unchanged /
//!   delete-candidate, applied in bulk; deletes only what carries our ownership tag.
//! - [`listed`]: list answers as compact JSON text, parsed one object at a time.
//! - [`view`]: big list reads kept between runs, brought up to date from the change log.
//! - [`prerequisites`]: tags, cluster types, manufacturer, device type and roles, ensured idempotently.

mod client;
mod error;
pub mod listed;
pub mod overwrite;
pub mod prerequisites;
pub mod reconcile;
pub mod view;
pub mod vms;

pub use client::{
    ItemResult, MAX_BODY_BYTES, MAX_BULK_ITEMS, NetBoxClient, NetBoxConfig, NetBoxStatus,
    NetBoxToken, PAGE_SIZE, RequestCounts,
};
pub use error::{NetBoxError, summary};
pub use listed::{Existing, Listed};
pub use overwrite::OverwriteFlags;
pub use view::NetBoxView;
