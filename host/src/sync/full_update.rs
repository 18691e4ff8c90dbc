//! `/full-update/stream` (contract §4.6): every stage in one stream, in the reference's
//! execution order, each framed by `step` started/completed (with `duration_seconds`).
//! A stage that fails aborts the run: `error_detail`, `error`, `complete ok:false`.

use std::time::Instant;

use super::{StageKind, SyncRun};
use crate::events::{
    BootstrapDone, Dict, ErrorCategory, ErrorDetail, Event, EventSink, Failure, Step,
};

/// The stream's name in `step` and `error` frames.
pub const STEP: &str = "full-update";

/// The `bootstrap_done` frame: the prerequisite objects the run found or created.
pub fn bootstrap_done(run: &SyncRun) -> BootstrapDone {
    let p = &run.prerequisites;
    let mut unchanged = Vec::new();
    for (kind, ids) in [
        ("tag", &p.tags),
        ("cluster_type", &p.cluster_types),
        ("manufacturer", &p.manufacturers),
        ("device_type", &p.device_types),
        ("role", &p.roles),
        ("vm_type", &p.vm_types),
    ] {
        unchanged.extend(ids.keys().map(|slug| format!("{kind}:{slug}")));
    }
    BootstrapDone {
        ok: true,
        skipped: false,
        reason: None,
        warnings: Vec::new(),
        created: Vec::new(),
        patched: Vec::new(),
        unchanged,
    }
}

/// The `discovery` frame: the stages this run executes, in order.
pub fn discovery(operation_id: &str, stages: &[StageKind]) -> Event {
    let names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
    Event::full_update_discovery_of(operation_id, &names)
}

/// Run `stages` in order; the result dict holds, per stage, its counts under its key
/// and `<key>_count`.
pub async fn run(run: &SyncRun, sink: &EventSink, stages: &[StageKind]) -> Result<Dict, Failure> {
    let mut result = Dict::new();
    for stage in stages {
        let started = Instant::now();
        sink.emit(Step::started(stage.name()));
        let summary = stage.run(run, sink).await.map_err(|failure| {
            let mut detail = ErrorDetail::new(
                ErrorCategory::Internal,
                "Full update synchronization failed",
            );
            detail.phase = Some(STEP.into());
            detail.detail = Some(format!("{} stage: {}", stage.name(), failure.error));
            detail.suggestion = Some("Review backend logs and retry the full update".into());
            failure
                .with_message(format!("Full update failed in the {} stage.", stage.name()))
                .with_error_detail(detail)
        })?;
        let c = summary.counts;
        let stage_result = Dict::new()
            .with("count", summary.count)
            .with("created", c.created)
            .with("updated", c.updated)
            .with("deleted", c.deleted)
            .with("failed", c.failed)
            .with("skipped", c.skipped);
        sink.emit(
            Step::completed(stage.name(), Dict::new().with("count", summary.count))
                .with_duration(started.elapsed().as_secs_f64()),
        );
        result.insert(stage.result_key(), stage_result);
        result.insert(format!("{}_count", stage.result_key()), summary.count);
    }
    let counts = run.netbox.counts();
    result.insert(
        "netbox_requests",
        Dict::new()
            .with("gets", counts.gets())
            .with("writes", counts.writes())
            .with("objects_listed", counts.listed()),
    );
    result.insert(
        "netbox_view",
        Dict::new()
            .with("changes_read", run.view.changes as u64)
            .with("objects_reread", run.view.dirty as u64)
            .with(
                "dropped",
                run.view
                    .dropped
                    .clone()
                    .map_or(crate::events::Value::Null, crate::events::Value::Str),
            ),
    );
    Ok(result)
}
