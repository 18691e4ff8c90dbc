//! The sync routes (contract §3.7): each stage as an SSE stream (`…/stream`) and as a
//! JSON call, sharing one pipeline. Configuration problems (no NetBox endpoint, a
//! Proxmox endpoint that cannot be reached, bad parameters) are plain JSON errors
//! before the stream starts; a Proxmox endpoint already being synced is a 409.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;

use crate::events::{
    Complete, Dict, ErrorCategory, ErrorDetail, Event, EventSink, Stage, Step, StreamGuard,
    count_result, sse_response,
};
use crate::server::AppState;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::QueryParams;
use crate::server::runs::RunGuard;
use crate::sync::options::SyncOptions;
use crate::sync::{StageKind, SyncRun, full_update};

/// Prepare a run and claim its endpoints.
pub async fn prepare(
    state: &AppState,
    query: &QueryParams,
    kind: &str,
) -> ApiResult<(SyncRun, RunGuard)> {
    prepare_options(state, SyncOptions::from_query(query)?, kind).await
}

/// Prepare a run with `options` and claim its endpoints (a busy endpoint is a 409).
pub async fn prepare_options(
    state: &AppState,
    options: SyncOptions,
    kind: &str,
) -> ApiResult<(SyncRun, RunGuard)> {
    let run = SyncRun::prepare(state, options).await?;
    let guard = state
        .runs()
        .start_exclusive(kind, Some(&run.run_id), &run.endpoint_ids())
        .map_err(|busy| ApiError::Detail {
            status: StatusCode::CONFLICT,
            detail: format!(
                "A sync is already running for Proxmox endpoint(s) {:?} (run {}, {}); retry when it ends.",
                busy.endpoints, busy.run.id, busy.run.kind
            )
            .into(),
            retry_after: None,
        })?;
    Ok((run, guard))
}

/// Warnings about the request's options, as `error_detail` frames.
pub fn warn_options(run: &SyncRun, sink: &EventSink, phase: &str) {
    for warning in &run.options.warnings {
        let mut detail = ErrorDetail::new(ErrorCategory::Validation, warning.clone());
        detail.phase = Some(phase.to_string());
        sink.emit(detail);
    }
}

/// The events of one stage: `step` started, the stage's frames, `step` completed,
/// `complete` (or `error` + `complete ok:false`).
pub fn stage_events(
    kind: StageKind,
    run: SyncRun,
    guard: RunGuard,
) -> impl futures::Stream<Item = Event> + Send + 'static {
    Stage::new(kind.name()).run(move |sink| async move {
        let _guard = guard;
        warn_options(&run, &sink, kind.name());
        let summary = kind.run(&run, &sink).await?;
        Ok(count_result(summary.count))
    })
}

/// `GET <stage>/stream`.
pub async fn stream(state: AppState, query: QueryParams, kind: StageKind) -> ApiResult<Response> {
    let (run, guard) = prepare(&state, &query, kind.name()).await?;
    Ok(sse_response(stage_events(kind, run, guard)))
}

/// `GET <stage>`: the same work, answered with its result once done.
pub async fn json(state: AppState, query: QueryParams, kind: StageKind) -> ApiResult<Response> {
    let (run, guard) = prepare(&state, &query, kind.name()).await?;
    finish_json(Box::pin(stage_events(kind, run, guard)), false).await
}

/// Drive `events` to `complete` and answer with its result (or its failure).
async fn finish_json(
    mut events: std::pin::Pin<Box<dyn futures::Stream<Item = Event> + Send>>,
    with_status: bool,
) -> ApiResult<Response> {
    while let Some(event) = events.next().await {
        if let Event::Complete(complete) = event {
            let result = complete.result.unwrap_or_else(|| Dict::new().into());
            let mut body: Value = serde_json::to_value(&result).unwrap_or(Value::Null);
            if complete.ok {
                if with_status && let Value::Object(map) = &mut body {
                    map.insert("status".into(), "completed".into());
                }
                return Ok(Json(body).into_response());
            }
            let detail = complete
                .errors
                .first()
                .map(|e| e.detail.py_str())
                .unwrap_or(complete.message.clone());
            return Err(ApiError::proxbox(
                StatusCode::INTERNAL_SERVER_ERROR,
                complete.message,
                detail,
            ));
        }
    }
    Err(ApiError::Internal(
        "the stage ended without a result".into(),
    ))
}

/// Runs stages for WebSocket commands: every enabled endpoint, default options.
pub struct SyncStageRunner;

impl crate::server::ws::StageRunner for SyncStageRunner {
    fn run(
        &self,
        state: AppState,
        stage: crate::server::ws::WsStage,
    ) -> futures::stream::BoxStream<'static, Event> {
        let kind = match stage {
            crate::server::ws::WsStage::Devices => StageKind::Devices,
            crate::server::ws::WsStage::VirtualMachines => StageKind::VirtualMachines,
        };
        let start = async move {
            match prepare(&state, &QueryParams::default(), kind.name()).await {
                Ok((run, guard)) => stage_events(kind, run, guard).boxed(),
                Err(error) => {
                    let text = error.body()["detail"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| error.body().to_string());
                    let events = StreamGuard::new(kind.name())
                        .failure_events(crate::events::Failure::new(text));
                    futures::stream::iter(events).boxed()
                }
            }
        };
        futures::stream::once(start).flatten().boxed()
    }
}

/// The targeted variants (`/virtualization/virtual-machines/{netbox_vm_id}/…`): the
/// stage limited to one NetBox VM, as with `netbox_vm_ids=<id>`.
pub async fn targeted(
    state: AppState,
    query: QueryParams,
    vm_id: &str,
    kind: StageKind,
    as_stream: bool,
) -> ApiResult<Response> {
    let id = crate::server::extract::path_int("netbox_vm_id", vm_id)?;
    let query = query.with("netbox_vm_ids", &id.to_string());
    if as_stream {
        stream(state, query, kind).await
    } else {
        json(state, query, kind).await
    }
}

macro_rules! targeted_routes {
    ($($name:ident => $kind:expr, $stream:expr;)*) => {$(
        /// A stage for one NetBox VM.
        pub async fn $name(
            State(state): State<AppState>,
            axum::extract::Path(vm_id): axum::extract::Path<String>,
            query: QueryParams,
        ) -> ApiResult<Response> {
            targeted(state, query, &vm_id, $kind, $stream).await
        }
    )*};
}

targeted_routes! {
    vm_json => StageKind::VirtualMachines, false;
    vm_stream => StageKind::VirtualMachines, true;
    vm_disks_stream => StageKind::VirtualDisks, true;
    vm_backups_stream => StageKind::Backups, true;
    vm_snapshots_stream => StageKind::Snapshots, true;
}

macro_rules! stage_routes {
    ($($stream:ident, $json:ident => $kind:expr;)*) => {$(
        /// SSE route of a stage.
        pub async fn $stream(State(state): State<AppState>, query: QueryParams) -> ApiResult<Response> {
            stream(state, query, $kind).await
        }
        /// JSON route of a stage.
        pub async fn $json(State(state): State<AppState>, query: QueryParams) -> ApiResult<Response> {
            json(state, query, $kind).await
        }
    )*};
}

stage_routes! {
    devices_stream, devices_json => StageKind::Devices;
    vms_stream, vms_json => StageKind::VirtualMachines;
    storage_stream, storage_json => StageKind::Storage;
    disks_stream, disks_json => StageKind::VirtualDisks;
    backups_stream, backups_json => StageKind::Backups;
    snapshots_stream, snapshots_json => StageKind::Snapshots;
    node_interfaces_stream, node_interfaces_json => StageKind::NodeInterfaces;
    vm_interfaces_stream, vm_interfaces_json => StageKind::VmInterfaces;
    vm_ips_stream, vm_ips_json => StageKind::VmIpAddresses;
    replications_stream, replications_json => StageKind::Replications;
    backup_routines_stream, backup_routines_json => StageKind::BackupRoutines;
    task_history_stream, task_history_json => StageKind::TaskHistory;
}

/// The events of a full update (contract §4.6).
pub fn full_update_events(
    run: SyncRun,
    guard: RunGuard,
    stages: Vec<StageKind>,
) -> impl futures::Stream<Item = Event> + Send + 'static {
    StreamGuard::new(full_update::STEP)
        .failed_message("Full update sync failed.")
        .run(move |sink| async move {
            let _guard = guard;
            let operation = run.run_id.clone();
            sink.emit(full_update::bootstrap_done(&run));
            sink.emit(Step::started_with(
                "stream",
                format!("Full update stream connected (operation_id={operation})"),
            ));
            sink.emit(full_update::discovery(&operation, &stages));
            warn_options(&run, &sink, full_update::STEP);
            let result = full_update::run(&run, &sink, &stages).await?;
            Ok(Complete::success("Full update sync completed.", result))
        })
}

/// `GET /full-update/stream`.
pub async fn full_update_stream(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Response> {
    let stages = full_update_stages(&query)?;
    let (run, guard) = prepare(&state, &query, full_update::STEP).await?;
    Ok(sse_response(full_update_events(run, guard, stages)))
}

/// `GET /full-update`: the same run, answered with its result (plus `"status"`).
pub async fn full_update_json(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Response> {
    let stages = full_update_stages(&query)?;
    let (run, guard) = prepare(&state, &query, full_update::STEP).await?;
    finish_json(Box::pin(full_update_events(run, guard, stages)), true).await
}

/// The stages a full update runs: every one, or those named by `stages` (comma-separated
/// result keys such as `devices,virtual_machines`; this host's extension), always in the
/// full update's order. An unknown name is a 422 naming the known ones.
fn full_update_stages(query: &QueryParams) -> ApiResult<Vec<StageKind>> {
    let Some(raw) = query.get("stages") else {
        return Ok(StageKind::ALL.to_vec());
    };
    let mut wanted = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(kind) = StageKind::ALL.into_iter().find(|k| k.result_key() == name) else {
            let known: Vec<&str> = StageKind::ALL.iter().map(|k| k.result_key()).collect();
            return Err(ApiError::Detail {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: format!(
                    "unknown stage {name:?} in stages; known: {}",
                    known.join(", ")
                )
                .into(),
                retry_after: None,
            });
        };
        wanted.push(kind);
    }
    if wanted.is_empty() {
        return Err(ApiError::Detail {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: "stages names no stage".into(),
            retry_after: None,
        });
    }
    Ok(StageKind::ALL
        .into_iter()
        .filter(|k| wanted.contains(k))
        .collect())
}
