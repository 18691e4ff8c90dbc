//! `/sync/individual/{vm,backup,snapshot}` (contract §3.7): one object synced on demand — what the
//! plugin's Sync Now buttons and selected-objects jobs call. Each runs the same stage
//! pipeline as the streams (mapper, reconcile, ownership), narrowed to the one object,
//! and answers one JSON object in the reference's shape: `object_type`, `action`
//! (`created`, `updated`, `unchanged`, `dry_run` or `error`), `proxmox_resource`,
//! `netbox_object`, `dry_run`, `dependencies_synced` and `error`.
//!
//! Unlike the reference: a cluster or guest that is not there is a 404 with a message
//! (not a 200 the plugin's batch jobs count as a success); an unchanged VM is reported
//! `unchanged` and not written; a backup's storage link is set (the reference's storage
//! lookup always fails); and no dependency is reported, because the VM the backup
//! belongs to is synced in the same call when NetBox does not hold it yet.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::sync::{prepare_options, stage_events};
use crate::events::{Event, ItemOperation};
use crate::netbox::NetBoxClient;
use crate::server::AppState;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::QueryParams;
use crate::sync::StageKind;
use crate::sync::options::{OnlyGuest, SyncOptions};

/// A required query parameter, else FastAPI's 422.
fn required<'a>(query: &'a QueryParams, name: &str) -> ApiResult<&'a str> {
    query
        .get(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("missing", json!(["query", name]), "Field required"))
}

fn vmid(query: &QueryParams) -> ApiResult<u32> {
    required(query, "vmid")?
        .parse::<u32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "int_parsing",
                json!(["query", "vmid"]),
                "Input should be a valid integer, unable to parse string as an integer",
            )
        })
}

/// `type`: `qemu` or `lxc` (any case), else FastAPI's 422.
fn guest_type(query: &QueryParams) -> ApiResult<String> {
    let kind = required(query, "type")?.to_ascii_lowercase();
    if kind == "qemu" || kind == "lxc" {
        Ok(kind)
    } else {
        Err(ApiError::invalid(
            "enum",
            json!(["query", "type"]),
            "Input should be 'qemu' or 'lxc'",
        ))
    }
}

/// What happened to the one object of a narrowed stage.
struct Outcome {
    action: &'static str,
    netbox_id: Option<u64>,
    error: Option<String>,
}

/// Run `kind` narrowed by `options` to one object; its item's outcome (`None`: the
/// stage saw no such object) and the run's NetBox client, or the stage's failure.
async fn run_one(
    state: &AppState,
    options: SyncOptions,
    kind: StageKind,
    item_type: &str,
) -> ApiResult<(Option<Outcome>, NetBoxClient)> {
    let dry_run = options.dry_run;
    let (run, guard) = prepare_options(state, options, kind.name()).await?;
    let netbox = run.netbox.clone();
    let mut events = Box::pin(stage_events(kind, run, guard));
    let mut outcome = None;
    while let Some(event) = events.next().await {
        match event {
            Event::ItemProgress(item) if item.item.item_type.as_deref() == Some(item_type) => {
                let netbox_id = item.item.netbox_id.and_then(|id| u64::try_from(id).ok());
                let action = match item.operation {
                    ItemOperation::Created if dry_run => "dry_run",
                    ItemOperation::Updated if dry_run => "dry_run",
                    ItemOperation::Created => "created",
                    ItemOperation::Updated => "updated",
                    ItemOperation::Failed => "error",
                    _ if item.warning.is_some() => "error",
                    _ if item.message.ends_with(" unchanged") => "unchanged",
                    _ => "error",
                };
                let error = item
                    .error
                    .clone()
                    .or_else(|| (action == "error").then(|| item.message.clone()));
                outcome = Some(Outcome {
                    action,
                    netbox_id,
                    error,
                });
            }
            Event::Complete(complete) if !complete.ok => {
                let detail = complete
                    .errors
                    .first()
                    .map(|e| e.detail.py_str())
                    .unwrap_or_else(|| complete.message.clone());
                return Err(ApiError::proxbox(
                    StatusCode::BAD_GATEWAY,
                    complete.message,
                    detail,
                ));
            }
            _ => {}
        }
    }
    Ok((outcome, netbox))
}

/// Sync the guest `vm` names (its VM may be missing from NetBox), then run the child
/// `kind` narrowed by `child` again; the child's new outcome, or `None` when the VM
/// could not be synced.
async fn child_after_vm(
    state: &AppState,
    mut vm: SyncOptions,
    vm_only: OnlyGuest,
    child: SyncOptions,
    kind: StageKind,
    item_type: &str,
) -> ApiResult<Option<Option<Outcome>>> {
    vm.only_guest = Some(vm_only);
    let (synced, _) = run_one(state, vm, StageKind::VirtualMachines, "vm").await?;
    if synced.is_none_or(|vm| vm.action == "error") {
        return Ok(None);
    }
    Ok(Some(run_one(state, child, kind, item_type).await?.0))
}

/// The NetBox object `path{id}/`, or `null`.
async fn netbox_object(netbox: &NetBoxClient, path: &str, id: Option<u64>) -> Value {
    let Some(id) = id else {
        return Value::Null;
    };
    netbox
        .request(reqwest::Method::GET, &format!("{path}{id}/"), &[], None)
        .await
        .unwrap_or(Value::Null)
}

fn answer(
    object_type: &str,
    outcome: &Outcome,
    resource: Value,
    object: Value,
    dry_run: bool,
) -> Response {
    Json(json!({
        "object_type": object_type,
        "action": outcome.action,
        "proxmox_resource": resource,
        "netbox_object": object,
        "dry_run": dry_run,
        "dependencies_synced": [],
        "error": outcome.error,
    }))
    .into_response()
}

fn not_found(what: String) -> ApiError {
    ApiError::proxbox(
        StatusCode::NOT_FOUND,
        what,
        "Check the object's Proxmox cluster, node and VMID, or run a full sync",
    )
}

/// `GET /sync/individual/vm?cluster_name&node&type&vmid[&dry_run]`: one guest's VM.
pub async fn vm(State(state): State<AppState>, query: QueryParams) -> ApiResult<Response> {
    let cluster = required(&query, "cluster_name")?.to_string();
    let node = required(&query, "node")?.to_string();
    let kind = guest_type(&query)?;
    let vmid = vmid(&query)?;
    let mut options = SyncOptions::from_query(&query)?;
    let dry_run = options.dry_run;
    options.only_guest = Some(OnlyGuest {
        cluster: cluster.clone(),
        vmid,
        kind: Some(kind.clone()),
        volid: None,
        snapshot: None,
    });
    let resource = json!({"cluster_name": cluster, "node": node, "type": kind, "vmid": vmid});
    let (outcome, netbox) = run_one(&state, options, StageKind::VirtualMachines, "vm").await?;
    let Some(outcome) = outcome else {
        return Err(not_found(format!(
            "Proxmox guest {kind}/{vmid} was not found in cluster '{cluster}'"
        )));
    };
    let object = netbox_object(
        &netbox,
        "virtualization/virtual-machines/",
        outcome.netbox_id,
    )
    .await;
    Ok(answer("vm", &outcome, resource, object, dry_run))
}

/// `GET /sync/individual/backup?cluster_name&node&storage&vmid&volid[&dry_run]`: one
/// backup record (its VM synced first when NetBox does not hold it).
pub async fn backup(State(state): State<AppState>, query: QueryParams) -> ApiResult<Response> {
    let cluster = required(&query, "cluster_name")?.to_string();
    let node = required(&query, "node")?.to_string();
    let storage = required(&query, "storage")?.to_string();
    let volid = required(&query, "volid")?.to_string();
    let vmid = vmid(&query)?;
    let options = SyncOptions::from_query(&query)?;
    let dry_run = options.dry_run;
    let kind = if volid.contains("vzdump-lxc-") {
        "lxc"
    } else {
        "qemu"
    };
    let only = |volid: Option<String>, kind: Option<String>| OnlyGuest {
        cluster: cluster.clone(),
        vmid,
        kind,
        volid,
        snapshot: None,
    };
    let resource = json!({
        "cluster_name": cluster, "node": node, "storage": storage, "vmid": vmid, "volid": volid
    });
    let mut backup_options = options.clone();
    backup_options.only_guest = Some(only(Some(volid.clone()), None));
    // A failure may be its VM missing from NetBox: then the VM first, the backup again.
    let (mut outcome, netbox) =
        run_one(&state, backup_options.clone(), StageKind::Backups, "backup").await?;
    if !dry_run
        && outcome.as_ref().is_some_and(|o| o.action == "error")
        && let Some(again) = child_after_vm(
            &state,
            options,
            only(None, Some(kind.to_string())),
            backup_options,
            StageKind::Backups,
            "backup",
        )
        .await?
    {
        outcome = again;
    }
    let Some(outcome) = outcome else {
        return Err(not_found(format!(
            "Backup '{volid}' of guest {vmid} was not found in cluster '{cluster}'"
        )));
    };
    let object = netbox_object(&netbox, "plugins/proxbox/backups/", outcome.netbox_id).await;
    Ok(answer("backup", &outcome, resource, object, dry_run))
}

/// `GET /sync/individual/snapshot?cluster_name&node&type&vmid&snapshot_name[&dry_run]`:
/// one snapshot record (its VM synced first when NetBox does not hold it).
pub async fn snapshot(State(state): State<AppState>, query: QueryParams) -> ApiResult<Response> {
    let cluster = required(&query, "cluster_name")?.to_string();
    let node = required(&query, "node")?.to_string();
    let kind = guest_type(&query)?;
    let vmid = vmid(&query)?;
    let name = required(&query, "snapshot_name")?.to_string();
    let options = SyncOptions::from_query(&query)?;
    let dry_run = options.dry_run;
    let only = |snapshot: Option<String>| OnlyGuest {
        cluster: cluster.clone(),
        vmid,
        kind: Some(kind.clone()),
        volid: None,
        snapshot,
    };
    let resource = json!({
        "cluster_name": cluster, "node": node, "type": kind, "vmid": vmid, "snapshot_name": name
    });
    let mut snapshot_options = options.clone();
    snapshot_options.only_guest = Some(only(Some(name.clone())));
    // No snapshot or a failure may be its VM missing from NetBox: then the VM first.
    let (mut outcome, netbox) = run_one(
        &state,
        snapshot_options.clone(),
        StageKind::Snapshots,
        "snapshot",
    )
    .await?;
    if !dry_run
        && outcome.as_ref().is_none_or(|o| o.action == "error")
        && let Some(again) = child_after_vm(
            &state,
            options,
            only(None),
            snapshot_options,
            StageKind::Snapshots,
            "snapshot",
        )
        .await?
    {
        outcome = again;
    }
    let Some(outcome) = outcome else {
        return Err(not_found(format!(
            "Snapshot '{name}' of guest {kind}/{vmid} was not found in cluster '{cluster}'"
        )));
    };
    let object = netbox_object(&netbox, "plugins/proxbox/snapshots/", outcome.netbox_id).await;
    Ok(answer("snapshot", &outcome, resource, object, dry_run))
}
