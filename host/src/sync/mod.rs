//! The sync: Proxmox snapshot → mapper → desired state → diff against NetBox → plan →
//! apply → events, one stage per object kind.
//!
//! - [`SyncRun`]: everything a request's stages share (NetBox client and prerequisites,
//!   Proxmox sessions, mappers, options), prepared before the stream starts so that
//!   configuration errors are plain JSON errors.
//! - [`options`]: the plugin's query parameters.
//! - [`proxmox_reads`]: the run's Proxmox reads, made once and shared by its stages.
//! - [`mapping`]: mappers over batches, off the async runtime.
//! - [`resolve`]: natural keys (slugs, names) to NetBox ids.
//! - [`report`]: per-object `item_progress`, `phase_summary` and legacy frames.
//! - [`guest_nics`], [`vlans`], [`macs`], [`ip_addresses`]: what the network stages share.
//! - [`devices`], [`vms`], [`storage`], [`disks`], [`backups`], [`snapshots`],
//!   [`node_interfaces`], [`vm_interfaces`], [`vm_ips`]: the stages.
//! - [`task_history`]: guests' archived tasks → the plugin's task-history records.
//! - [`cluster_jobs`] with [`replications`] and [`backup_routines`]: the stages that copy
//!   a cluster's scheduled jobs into the plugin's records ([`plugin_refs`] finds the
//!   plugin's endpoint, node and storage records they point at).

pub mod apply;
pub mod backup_routines;
pub mod backups;
pub mod cluster_jobs;
pub mod devices;
pub mod disks;
pub mod full_update;
pub mod guest_nics;
pub mod guest_vms;
pub mod ip_addresses;
pub mod macs;
pub mod mapping;
pub mod node_interfaces;
pub mod options;
pub mod plugin_refs;
pub mod proxmox_reads;
pub mod replications;
pub mod report;
pub mod resolve;
pub mod snapshots;
pub mod storage;
pub mod task_history;
pub mod vlans;
pub mod vm_interfaces;
pub mod vm_ips;
pub mod vm_match;
pub mod vms;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure, PhaseCounts};
use crate::mapper::MapperSet;
use crate::netbox::prerequisites::{self, Prerequisites};
use crate::netbox::view::Refresh;
use crate::netbox::vms::{self as vms_netbox, VmIdentity};
use crate::netbox::{Listed, NetBoxClient, NetBoxError, NetBoxStatus};
use crate::proxmox::Inventory;
use crate::server::AppState;
use crate::server::error::{ApiError, ApiResult};
use crate::server::sessions::{self, Session};
use options::SyncOptions;

/// What one request's stages share.
pub struct SyncRun {
    /// NetBox.
    pub netbox: NetBoxClient,
    /// NetBox version and plugins.
    pub netbox_status: NetBoxStatus,
    /// Ids of the objects every stage needs (tags, types, roles).
    pub prerequisites: Prerequisites,
    /// The selected Proxmox endpoints, connected.
    pub sessions: Vec<Session>,
    /// The mappers.
    pub mappers: Arc<MapperSet>,
    /// The request's options.
    pub options: SyncOptions,
    /// Site parameters passed to mappers.
    pub params: Vec<(String, String)>,
    /// Time of the run, RFC 3339 UTC.
    pub now: String,
    /// Run id.
    pub run_id: String,
    /// What bringing the NetBox view up to date found at the start of the run.
    pub view: Refresh,
    /// What the run read from Proxmox, shared by its stages.
    pub proxmox: proxmox_reads::ProxmoxReads,
    /// The VM sync-state records, read once per run and shared by its stages.
    vm_states: tokio::sync::Mutex<Option<Arc<Vec<Listed>>>>,
}

impl SyncRun {
    /// Connect NetBox and the selected Proxmox endpoints and ensure the prerequisite
    /// objects (read-only on a dry run).
    pub async fn prepare(state: &AppState, options: SyncOptions) -> ApiResult<SyncRun> {
        let mappers = state.mappers_shared().ok_or_else(|| {
            ApiError::proxbox(
                StatusCode::SERVICE_UNAVAILABLE,
                "Mappers are not loaded",
                "This host was started without mappers.",
            )
        })?;
        let netbox = crate::server::routes::netbox::sync_client(state)?;
        let upstream = |what: &str, e: crate::netbox::NetBoxError| {
            ApiError::proxbox(
                StatusCode::BAD_GATEWAY,
                format!("Error {what} NetBox"),
                e.to_string(),
            )
        };
        let netbox_status = netbox
            .status()
            .await
            .map_err(|e| upstream("reading the status of", e))?;
        let view = match netbox.view() {
            Some(view) => view.refresh(&netbox).await,
            None => Refresh::default(),
        };
        tracing::debug!(
            changes = view.changes,
            dirty = view.dirty,
            dropped = view.dropped.as_deref().unwrap_or(""),
            "NetBox view brought up to date"
        );
        let prerequisites =
            prerequisites::ensure_all_with(&netbox, &netbox_status, !options.dry_run)
                .await
                .map_err(|e| upstream("preparing", e))?;
        let sessions = sessions::open(state.store(), &options.selection).await?;
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let run_id = options
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(SyncRun {
            netbox,
            netbox_status,
            prerequisites,
            sessions,
            mappers,
            params: state.mapper_params().to_vec(),
            options,
            now,
            run_id,
            view,
            proxmox: proxmox_reads::ProxmoxReads::default(),
            vm_states: tokio::sync::Mutex::new(None),
        })
    }

    /// The VM sync-state records (the Proxmox identity of each NetBox VM), read on first
    /// use and then shared by the run's stages until [`SyncRun::forget_vm_states`].
    pub async fn vm_state_records(&self) -> Result<Arc<Vec<Listed>>, NetBoxError> {
        let mut memo = self.vm_states.lock().await;
        if let Some(records) = memo.as_ref() {
            return Ok(records.clone());
        }
        let records = Arc::new(vms_netbox::read_state_records(&self.netbox).await?);
        *memo = Some(records.clone());
        Ok(records)
    }

    /// The identities of the VM sync-state records by NetBox VM id (see
    /// [`SyncRun::vm_state_records`]).
    pub async fn vm_identities(&self) -> Result<BTreeMap<u64, (u64, VmIdentity)>, NetBoxError> {
        Ok(vms_netbox::identities_from(&self.vm_state_records().await?))
    }

    /// Drop the shared sync-state records after writing VMs or their records, so the
    /// next stage reads them afresh.
    pub async fn forget_vm_states(&self) {
        *self.vm_states.lock().await = None;
    }

    /// Ids of the selected endpoints.
    pub fn endpoint_ids(&self) -> Vec<i64> {
        self.sessions.iter().map(|s| s.endpoint.id).collect()
    }
}

/// A sync stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// Nodes → devices.
    Devices,
    /// Guests → virtual machines.
    VirtualMachines,
    /// Storages → the plugin's storage records.
    Storage,
    /// Guest disks → virtual disks.
    VirtualDisks,
    /// Backup volumes → the plugin's backup records.
    Backups,
    /// Guest snapshots → the plugin's snapshot records.
    Snapshots,
    /// Node network interfaces → device interfaces (with VLANs, MACs, IPs).
    NodeInterfaces,
    /// Guest NICs → VM interfaces (with VLANs, MACs).
    VmInterfaces,
    /// Guest addresses → IP addresses on VM interfaces, and primary IPs.
    VmIpAddresses,
    /// Storage replication jobs → the plugin's replication records.
    Replications,
    /// Scheduled backup jobs → the plugin's backup-routine records.
    BackupRoutines,
    /// Guests' archived tasks → the plugin's task-history records.
    TaskHistory,
}

impl StageKind {
    /// The stage (`step`) name.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Devices => devices::PHASE,
            StageKind::VirtualMachines => vms::PHASE,
            StageKind::Storage => storage::PHASE,
            StageKind::VirtualDisks => disks::PHASE,
            StageKind::Backups => backups::PHASE,
            StageKind::Snapshots => snapshots::PHASE,
            StageKind::NodeInterfaces => node_interfaces::PHASE,
            StageKind::VmInterfaces => vm_interfaces::PHASE,
            StageKind::VmIpAddresses => vm_ips::PHASE,
            StageKind::Replications => replications::PHASE,
            StageKind::BackupRoutines => backup_routines::PHASE,
            StageKind::TaskHistory => task_history::PHASE,
        }
    }

    /// Every stage, in the order a full update runs them.
    pub const ALL: [StageKind; 9] = [
        StageKind::Devices,
        StageKind::Storage,
        StageKind::VirtualMachines,
        StageKind::VirtualDisks,
        StageKind::Backups,
        StageKind::Snapshots,
        StageKind::NodeInterfaces,
        StageKind::VmInterfaces,
        StageKind::VmIpAddresses,
    ];

    /// Key of the stage in the full-update result (`virtual_machines`, ...).
    pub fn result_key(self) -> &'static str {
        match self {
            StageKind::Devices => "devices",
            StageKind::VirtualMachines => "virtual_machines",
            StageKind::Storage => "storage",
            StageKind::VirtualDisks => "virtual_disks",
            StageKind::Backups => "backups",
            StageKind::Snapshots => "snapshots",
            StageKind::NodeInterfaces => "node_interfaces",
            StageKind::VmInterfaces => "vm_interfaces",
            StageKind::VmIpAddresses => "vm_ip_addresses",
            StageKind::Replications => "replications",
            StageKind::BackupRoutines => "backup_routines",
            StageKind::TaskHistory => "task_history",
        }
    }

    /// Run the stage.
    pub async fn run(self, run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
        match self {
            StageKind::Devices => devices::stage(run, sink).await,
            StageKind::VirtualMachines => vms::stage(run, sink).await,
            StageKind::Storage => storage::stage(run, sink).await,
            StageKind::VirtualDisks => disks::stage(run, sink).await,
            StageKind::Backups => backups::stage(run, sink).await,
            StageKind::Snapshots => snapshots::stage(run, sink).await,
            StageKind::NodeInterfaces => node_interfaces::stage(run, sink).await,
            StageKind::VmInterfaces => vm_interfaces::stage(run, sink).await,
            StageKind::VmIpAddresses => vm_ips::stage(run, sink).await,
            StageKind::Replications => replications::stage(run, sink).await,
            StageKind::BackupRoutines => backup_routines::stage(run, sink).await,
            StageKind::TaskHistory => task_history::stage(run, sink).await,
        }
    }
}

/// What a stage reports at its end.
#[derive(Clone, Debug, Default)]
pub struct StageSummary {
    /// The phase counts.
    pub counts: PhaseCounts,
    /// Objects that now exist in NetBox as desired (the reference's `count`).
    pub count: usize,
}

/// One endpoint's base inventory (`/cluster/status` + `/cluster/resources`).
pub struct EndpointRead<'a> {
    /// The session it was read through.
    pub session: &'a Session,
    /// What was read (shared by the run's stages).
    pub inventory: &'a Inventory,
}

/// The inventory of every session (read once per run); an endpoint that cannot be read
/// is reported (`error_detail`) and left out, so its objects are neither written nor
/// deleted.
pub async fn read_inventories<'a>(
    run: &'a SyncRun,
    sink: &EventSink,
    phase: &str,
) -> Vec<EndpointRead<'a>> {
    let reads = run.proxmox.inventories(&run.sessions).await;
    let mut out = Vec::new();
    for (session, read) in run.sessions.iter().zip(reads) {
        match read {
            Ok(inventory) => out.push(EndpointRead { session, inventory }),
            Err(e) => {
                let mut detail = ErrorDetail::new(
                    ErrorCategory::Connection,
                    format!("Cannot read Proxmox endpoint '{}'", session.endpoint.name),
                );
                detail.phase = Some(phase.to_string());
                detail.detail = Some(e.clone());
                sink.emit(detail);
            }
        }
    }
    out
}

/// Parse a mapper's custom fields (`(name, JSON text)`) into NetBox's object.
pub fn custom_fields(fields: &[(String, String)]) -> Result<Option<Map<String, Value>>, String> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut out = Map::new();
    for (name, text) in fields {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("custom field `{name}` is not JSON ({e})"))?;
        out.insert(name.clone(), value);
    }
    Ok(Some(out))
}
