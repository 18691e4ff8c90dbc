//! What a sync request asks for: the query parameters the plugin sends (contract §3.7,
//! §3.8), read leniently (unknown parameters are ignored).

use axum::http::StatusCode;
use serde_json::json;

use crate::netbox::OverwriteFlags;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::QueryParams;
use crate::server::sessions::Selection;

/// The plugin's `sync_mode_*` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Sync.
    #[default]
    Always,
    /// Sync (the reference treats it as enabled for the backend's part).
    BootstrapOnly,
    /// Skip these objects.
    Disabled,
}

impl SyncMode {
    fn parse(raw: Option<&str>) -> (SyncMode, Option<String>) {
        match raw.map(str::trim) {
            None | Some("") | Some("always") => (SyncMode::Always, None),
            Some("bootstrap_only") => (SyncMode::BootstrapOnly, None),
            Some("disabled") => (SyncMode::Disabled, None),
            Some(other) => (
                SyncMode::Always,
                Some(format!("unknown sync mode `{other}`; using `always`")),
            ),
        }
    }

    /// Whether objects under this mode are synced.
    pub fn enabled(self) -> bool {
        self != SyncMode::Disabled
    }
}

/// Options of one sync request.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Which Proxmox endpoints.
    pub selection: Selection,
    /// The `overwrite_*` flags (absent = true).
    pub overwrite: OverwriteFlags,
    /// `sync_mode_vm` (non-template guests).
    pub sync_mode_vm: SyncMode,
    /// `sync_mode_vm_template` (templates).
    pub sync_mode_vm_template: SyncMode,
    /// `netbox_vm_ids`: only these NetBox VMs (absent = all).
    pub netbox_vm_ids: Option<Vec<u64>>,
    /// `delete_nonexistent_backup`.
    pub delete_nonexistent_backup: bool,
    /// `delete_nonexistent_snapshot`.
    pub delete_nonexistent_snapshot: bool,
    /// `fetch_max_concurrency`: Proxmox reads in flight per endpoint.
    pub fetch_max_concurrency: usize,
    /// `run_id` (the plugin's), else generated.
    pub run_id: Option<String>,
    /// `dry_run`: report the writes, make none.
    pub dry_run: bool,
    /// `delete_orphans`: delete our VMs whose guest is gone (only from completely read
    /// endpoints, only ownership-tagged VMs with our identity record).
    pub delete_orphans: bool,
    /// `ignore_ipv6_link_local_addresses`, if given (passed to the network mappers as
    /// the site parameter `keep-link-local`, negated).
    pub ignore_ipv6_link_local: Option<bool>,
    /// `primary_ip_preference` (`ipv4`/`ipv6`), if given (passed to the network mappers
    /// as `primary-ip-preference`).
    pub primary_ip_preference: Option<String>,
    /// `sync_vm_interface_macs` (default true): write VM interfaces' MAC addresses.
    pub sync_vm_interface_macs: bool,
    /// Warnings about the options themselves (reported in the stream).
    pub warnings: Vec<String>,
    /// One guest (and, for backups, one volume) only: set by `/sync/individual/*`.
    pub only_guest: Option<OnlyGuest>,
}

/// The one object an individual sync narrows a stage to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnlyGuest {
    /// Proxmox cluster name (a standalone node's name), compared case-insensitively.
    pub cluster: String,
    /// VMID.
    pub vmid: u32,
    /// `qemu` or `lxc`; `None`: either.
    pub kind: Option<String>,
    /// One backup volume (the backups stage).
    pub volid: Option<String>,
    /// One snapshot, by name (the snapshots stage).
    pub snapshot: Option<String>,
}

impl OnlyGuest {
    /// Whether guest `vmid` of type `kind` (`qemu`/`lxc`) is the one.
    pub fn is_guest(&self, vmid: Option<u32>, kind: &str) -> bool {
        vmid == Some(self.vmid) && self.kind.as_deref().is_none_or(|k| k == kind)
    }

    /// Whether a session named `name` is the one of the cluster.
    pub fn in_cluster(&self, name: &str) -> bool {
        self.cluster.eq_ignore_ascii_case(name)
    }
}

/// Default Proxmox reads in flight per endpoint.
pub const DEFAULT_FETCH_CONCURRENCY: usize = 8;

impl SyncOptions {
    /// Read the options; malformed values fail before the stream starts (422/400).
    pub fn from_query(query: &QueryParams) -> ApiResult<Self> {
        let mut overwrite = OverwriteFlags::default();
        for name in OVERWRITE_FLAGS {
            if let Some(value) = query.bool(name)? {
                overwrite.0.insert(name.to_string(), value);
            }
        }
        let mut warnings = Vec::new();
        let (sync_mode_vm, w) = SyncMode::parse(query.get("sync_mode_vm"));
        warnings.extend(w);
        let (sync_mode_vm_template, w) = SyncMode::parse(query.get("sync_mode_vm_template"));
        warnings.extend(w);
        let fetch = query.int("fetch_max_concurrency")?;
        if fetch.is_some_and(|f| f < 1) {
            return Err(ApiError::invalid(
                "greater_than_equal",
                json!(["query", "fetch_max_concurrency"]),
                "Input should be greater than or equal to 1",
            ));
        }
        Ok(SyncOptions {
            selection: Selection::from_query(query)?,
            overwrite,
            sync_mode_vm,
            sync_mode_vm_template,
            netbox_vm_ids: parse_vm_ids(query.get("netbox_vm_ids"))?,
            delete_nonexistent_backup: query.bool("delete_nonexistent_backup")?.unwrap_or(false),
            delete_nonexistent_snapshot: query
                .bool("delete_nonexistent_snapshot")?
                .unwrap_or(false),
            fetch_max_concurrency: fetch
                .map_or(DEFAULT_FETCH_CONCURRENCY, |f| f.clamp(1, 64) as usize),
            run_id: query
                .get("run_id")
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            dry_run: query.bool("dry_run")?.unwrap_or(false),
            delete_orphans: query.bool("delete_orphans")?.unwrap_or(false),
            ignore_ipv6_link_local: query.bool("ignore_ipv6_link_local_addresses")?,
            primary_ip_preference: query
                .get("primary_ip_preference")
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| p == "ipv4" || p == "ipv6"),
            sync_vm_interface_macs: query.bool("sync_vm_interface_macs")?.unwrap_or(true),
            warnings,
            only_guest: None,
        })
    }
}

/// `netbox_vm_ids`: absent = all; present, it must be a comma-separated list of positive
/// integers (empty or malformed is a 422, as the reference).
fn parse_vm_ids(raw: Option<&str>) -> ApiResult<Option<Vec<u64>>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let invalid = || ApiError::Detail {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: "netbox_vm_ids must be a comma-separated list of positive integers".into(),
        retry_after: None,
    };
    let ids: Vec<u64> = raw
        .split(',')
        .map(str::trim)
        .map(|p| p.parse::<u64>().ok().filter(|id| *id > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)?;
    if ids.is_empty() {
        return Err(invalid());
    }
    Ok(Some(ids))
}

/// The plugin's 25 overwrite flags (`contracts/overwrite_flags.json`), in canonical order.
pub const OVERWRITE_FLAGS: [&str; 25] = [
    "overwrite_device_role",
    "overwrite_device_type",
    "overwrite_device_tags",
    "overwrite_device_status",
    "overwrite_device_description",
    "overwrite_device_custom_fields",
    "overwrite_vm_role",
    "overwrite_vm_type",
    "overwrite_vm_tags",
    "overwrite_vm_proxmox_tags",
    "overwrite_vm_description",
    "overwrite_vm_custom_fields",
    "overwrite_vm_cloudinit",
    "overwrite_cluster_tags",
    "overwrite_cluster_description",
    "overwrite_cluster_custom_fields",
    "overwrite_node_interface_tags",
    "overwrite_node_interface_custom_fields",
    "overwrite_storage_tags",
    "overwrite_vm_interface_tags",
    "overwrite_vm_interface_custom_fields",
    "overwrite_ip_status",
    "overwrite_ip_tags",
    "overwrite_ip_custom_fields",
    "overwrite_ip_address_dns_name",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_the_plugin_query() {
        let query = QueryParams::parse(
            "proxmox_endpoint_ids=3&overwrite_vm_tags=false&sync_mode_vm_template=disabled\
             &netbox_vm_ids=4,5&delete_nonexistent_backup=true&fetch_max_concurrency=2\
             &run_id=abc&dry_run=true&sync_mode_vm=sometimes&whatever=1",
        );
        let options = SyncOptions::from_query(&query).expect("options");
        assert_eq!(options.selection.endpoint_ids, Some(vec![3]));
        assert!(!options.overwrite.allows("overwrite_vm_tags"));
        assert!(options.overwrite.allows("overwrite_vm_role"));
        assert_eq!(options.sync_mode_vm_template, SyncMode::Disabled);
        assert_eq!(options.sync_mode_vm, SyncMode::Always);
        assert_eq!(options.warnings.len(), 1);
        assert_eq!(options.netbox_vm_ids, Some(vec![4, 5]));
        assert!(options.delete_nonexistent_backup && !options.delete_nonexistent_snapshot);
        assert_eq!(options.fetch_max_concurrency, 2);
        assert_eq!(options.run_id.as_deref(), Some("abc"));
        assert!(options.dry_run);
    }

    #[test]
    fn malformed_values_are_refused() {
        for query in [
            "netbox_vm_ids=",
            "netbox_vm_ids=0",
            "netbox_vm_ids=1,x",
            "fetch_max_concurrency=0",
            "overwrite_vm_tags=perhaps",
            "proxmox_endpoint_ids=a",
        ] {
            assert!(
                SyncOptions::from_query(&QueryParams::parse(query)).is_err(),
                "{query}"
            );
        }
    }
}
