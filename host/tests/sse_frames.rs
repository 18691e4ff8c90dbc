//! SSE frames: byte equality with frames produced by the reference's own Python code
//! (`tests/fixtures/sse/`, see its README), the plugin's way of reading a stream, keepalives.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use proxbox_host::events::{
    self, BootstrapDone, BootstrapWarning, Complete, Dict, Discovery, DuplicateNameResolved,
    ErrorCategory, ErrorDetail, Event, Failure, HardwareDiscovery, ItemInfo, ItemOperation,
    ItemProgress, ItemStatus, KEEPALIVE, PhaseCounts, PhaseSummary, Progress, Stage, Step,
    StreamGuard, Substep, SubstepStatus, Timing, Value,
};

const NAME: &str = "vm-ü-日本-😀";
const TRICKY: &str = "say \"hi\" \\ C:\\temp / <a href='x'>n</a>\nline2\ttab\u{1}\u{7f}\u{2028}end";

fn golden(name: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/sse/{name}.sse"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn encode_all(events: &[Event]) -> String {
    events.iter().map(events::encode).collect()
}

#[track_caller]
fn assert_golden(name: &str, events: &[Event]) {
    let ours = encode_all(events);
    let theirs = golden(name);
    assert!(
        ours == theirs,
        "{name}: bytes differ\n ours: {ours:?}\n ref:  {theirs:?}"
    );
}

fn item(name: &str) -> ItemInfo {
    ItemInfo::new(name)
}

#[test]
fn step_frames() {
    assert_golden("step_started", &[Step::started("devices").into()]);
    let meta = Dict::new()
        .with("operation_id", "op-1")
        .with("delete_orphans", false)
        .with("dry_run", true);
    assert_golden(
        "step_started_metadata",
        &[
            Step::started_with("sweep-orphans", "Previewing orphan virtual machine sweep.")
                .with_metadata(meta)
                .into(),
        ],
    );
    let result = Dict::new().with("created", 1).with("updated", 2);
    assert_golden(
        "step_completed_duration",
        &[Step::completed("replications", result)
            .with_duration(12.3456789)
            .into()],
    );

    // A `Serialize` struct converts in field order (`b` before `a`); floats as Python's repr.
    #[derive(serde::Serialize)]
    struct Nested {
        b: Vec<Value>,
        a: &'static str,
    }
    #[derive(serde::Serialize)]
    struct SweepResult {
        floats: Vec<f64>,
        ints: Vec<i64>,
        nested: Nested,
    }
    let result = events::to_value(&SweepResult {
        floats: vec![
            1e16,
            1.5e16,
            1234567890123456.0,
            1e-5,
            0.0001,
            0.1 + 0.2,
            1.0 / 3.0 * 100.0,
            -0.0,
            2.5e-7,
        ],
        ints: vec![0, -1, (1 << 53) + 1, i64::MAX],
        nested: Nested {
            b: vec![
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
                Value::Dict(Dict::new()),
                Value::List(vec![]),
            ],
            a: "",
        },
    })
    .unwrap();
    let step = Step::completed_with(
        "sweep-orphans",
        "Orphan virtual machine sweep finished.",
        result,
    );
    assert_golden(
        "step_completed_floats",
        &[step.with_duration(0.0625).into()],
    );
}

#[test]
fn discovery_frames() {
    let items = vec![
        item(NAME).netbox_id(42).item_type("qemu"),
        item("101"),
        item(TRICKY).netbox_url("https://nb/vm/1/").extra(
            Dict::new()
                .with(" k ", Value::Null)
                .with("v", vec![Value::Float(1.5), Value::Null]),
        ),
    ];
    let discovery = Discovery {
        phase: "virtual-machines".into(),
        message: None,
        items,
        metadata: Some(
            Dict::new()
                .with(" endpoint ", "pve-1")
                .with("n", Value::Null),
        ),
    };
    assert_golden("discovery", &[discovery.into()]);
    let custom = Discovery {
        phase: "devices".into(),
        message: Some("  Found nothing \n".into()),
        items: vec![],
        metadata: None,
    };
    assert_golden("discovery_custom_message", &[custom.into()]);
    assert_golden(
        "full_update_discovery",
        &[Event::full_update_discovery(
            "0b5c8f2e-8d7a-4a8e-9a55-3f1f6f0c2a11",
        )],
    );
}

#[test]
fn substep_frames() {
    let full = Substep {
        phase: "devices".into(),
        substep: "ensure_cluster".into(),
        status: SubstepStatus::Completed,
        message: format!("Cluster {NAME} ready"),
        item: Some(item(NAME).netbox_id(3).item_type("cluster")),
        timing: Some(Timing::elapsed(1234)),
        result: Some(
            Dict::new()
                .with("cluster_id", 3)
                .with("created", false)
                .with("note", Value::Null),
        ),
    };
    assert_golden("substep", &[full.into()]);
    let minimal = Substep {
        phase: "devices".into(),
        substep: "create_device".into(),
        status: SubstepStatus::Processing,
        message: " spaced ".into(),
        item: None,
        timing: None,
        result: None,
    };
    assert_golden("substep_minimal", &[minimal.into()]);
}

#[test]
fn item_progress_frames() {
    let failed = ItemProgress {
        phase: "virtual-machines".into(),
        status: ItemStatus::Failed,
        message: format!("Failed to sync {NAME}"),
        item: item(NAME)
            .netbox_id(7)
            .item_type("lxc")
            .extra(Dict::new().with("vmid", 101)),
        operation: ItemOperation::Failed,
        progress: Progress {
            current: 1,
            total: 3,
        },
        timing: Some(Timing::elapsed(87)),
        error: Some(TRICKY.into()),
        warning: None,
    };
    assert_golden("item_progress", &[failed.into()]);
    let zero = ItemProgress {
        phase: "backups".into(),
        status: ItemStatus::Processing,
        message: "Would delete backup 9".into(),
        item: item("9"),
        operation: ItemOperation::WouldDelete,
        progress: Progress {
            current: 0,
            total: 0,
        },
        timing: None,
        error: None,
        warning: Some("dry run".into()),
    };
    assert_golden("item_progress_zero_total", &[zero.into()]);
}

#[test]
fn phase_summary_frames() {
    let counts = PhaseCounts {
        created: 2,
        updated: 1,
        deleted: 0,
        failed: 1,
        skipped: 4,
    };
    let summary = PhaseSummary {
        phase: "devices".into(),
        message: None,
        result: counts,
        timing: None,
    };
    assert_eq!(summary.status(), "completed_with_errors");
    assert_golden("phase_summary", &[summary.into()]);
    let custom = PhaseSummary {
        phase: "snapshots".into(),
        message: Some(format!("Snapshots done for {NAME}")),
        result: PhaseCounts::default(),
        timing: Some(Timing::elapsed(5000)),
    };
    assert_golden("phase_summary_custom", &[custom.into()]);
}

#[test]
fn error_detail_frames() {
    let full = ErrorDetail {
        phase: Some("virtual-machines".into()),
        item: Some(item(NAME).netbox_id(5)),
        detail: Some(TRICKY.into()),
        suggestion: Some("Check the VM's custom fields".into()),
        traceback: Some(
            "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad".into(),
        ),
        ..ErrorDetail::new(ErrorCategory::Validation, "NetBox rejected the VM")
    };
    assert_golden("error_detail", &[full.into()]);
    assert_golden(
        "error_detail_minimal",
        &[ErrorDetail::new(ErrorCategory::Timeout, "Proxmox timed out").into()],
    );
}

#[test]
fn other_structured_frames() {
    let dup = DuplicateNameResolved {
        cluster: "pve".into(),
        original_name: NAME.into(),
        resolved_name: format!("{NAME} (2)"),
        vmid: 101,
        suffix_index: 2,
        operator_renamed: false,
    };
    assert_golden("duplicate_name_resolved", &[dup.into()]);
    let hw = HardwareDiscovery {
        node: "pve-1".into(),
        cluster: None,
        chassis_serial: Some("SN-ü1".into()),
        chassis_manufacturer: None,
        chassis_product: None,
        nic_count: 4,
        duration_ms: Some(250),
    };
    assert_golden("hardware_discovery", &[hw.into()]);
    let boot = BootstrapDone {
        ok: true,
        skipped: false,
        reason: None,
        warnings: vec![BootstrapWarning {
            object: "tag proxbox".into(),
            error: TRICKY.into(),
        }],
        created: vec!["tag proxbox".into(), format!("role {NAME}")],
        patched: vec![],
        unchanged: vec!["manufacturer Proxmox".into()],
    };
    assert_golden("bootstrap_done", &[boot.into()]);
}

#[test]
fn legacy_step_mapping() {
    let payloads = vec![
        Dict::new()
            .with("object", "device")
            .with("type", "create")
            .with(
                "data",
                Dict::new()
                    .with("rowid", NAME)
                    .with("completed", true)
                    .with("sync_status", "<span>ok</span>"),
            ),
        Dict::new()
            .with("object", "virtual_machine")
            .with("type", "create")
            .with(
                "data",
                Dict::new()
                    .with("rowid", 0)
                    .with("name", format!("<a href='/vm/1'>{NAME}</a>")),
            ),
        Dict::new().with("object", "vm_interface").with(
            "data",
            Dict::new()
                .with("rowid", 3)
                .with("error", TRICKY)
                .with("completed", true),
        ),
        Dict::new().with("object", "storage").with(
            "data",
            Dict::new()
                .with("name", "local")
                .with("warning", "thin pool 95% full")
                .with("completed", true),
        ),
        Dict::new()
            .with("object", "snapshot")
            .with("data", Dict::new().with("completed", true)),
        Dict::new()
            .with("object", "task_history")
            .with("data", Dict::new().with("completed", 1)),
        Dict::new()
            .with("step", "backups")
            .with("status", "completed")
            .with("message", "Backups synced")
            .with("count", 2),
        Dict::new().with("object", "device").with("end", true),
        Dict::new().with("object", 7).with("data", "not a dict"),
    ];
    let events: Vec<Event> = payloads.into_iter().map(Event::legacy).collect();
    assert_golden("legacy_steps", &events);
}

#[test]
fn full_update_terminal_frames() {
    let guard = StreamGuard::new("full-update").cancelled_message("Full update sync cancelled.");
    let msg = "Error while syncing devices";
    let proxbox = Failure {
        detail: Value::Null,
        ..Failure::new(msg)
    }
    .with_message(msg)
    .with_error_detail(ErrorDetail {
        phase: Some("full-update".into()),
        detail: Some(msg.into()),
        suggestion: Some("Review backend logs and retry the full update".into()),
        ..ErrorDetail::new(
            ErrorCategory::Internal,
            "Full update synchronization failed",
        )
    });
    assert_golden("full_update_failed_proxbox", &guard.failure_events(proxbox));
    let text = format!("kaboom {NAME}");
    let unexpected = Failure::new(text.clone())
        .with_message("Full update sync failed.")
        .with_error_detail(ErrorDetail {
            phase: Some("full-update".into()),
            detail: Some(text),
            suggestion: Some("Check backend logs for stack trace and retry".into()),
            ..ErrorDetail::new(
                ErrorCategory::Internal,
                "Unexpected error during full update",
            )
        });
    assert_golden(
        "full_update_failed_unexpected",
        &guard.failure_events(unexpected),
    );
    assert_golden(
        "full_update_cancelled",
        &guard.failure_events(Failure::cancelled()),
    );
}

fn devices_stage(fail: bool) -> impl futures::Stream<Item = Event> + Send + 'static {
    Stage::new("devices").run(move |sink| async move {
        sink.emit(Discovery {
            phase: "devices".into(),
            message: None,
            items: vec![item(NAME).item_type("node"), item("7")],
            metadata: None,
        });
        sink.emit(ItemProgress {
            phase: "devices".into(),
            status: ItemStatus::Completed,
            message: format!("Created {NAME}"),
            item: item(NAME).netbox_id(12),
            operation: ItemOperation::Created,
            progress: Progress {
                current: 1,
                total: 2,
            },
            timing: None,
            error: None,
            warning: None,
        });
        sink.legacy(
            Dict::new()
                .with("object", "device")
                .with("type", "create")
                .with(
                    "data",
                    Dict::new().with("rowid", NAME).with("completed", true),
                ),
        );
        if fail {
            return Err(Failure::new(
                "NetBox unreachable | HTTP 502: \"bad gateway\" \\ ü",
            ));
        }
        sink.emit(PhaseSummary {
            phase: "devices".into(),
            message: None,
            result: PhaseCounts {
                created: 1,
                failed: 1,
                ..PhaseCounts::default()
            },
            timing: None,
        });
        Ok(events::count_result(3))
    })
}

#[tokio::test]
async fn stage_streams_match_sse_stream_generator() {
    let ok: Vec<Event> = devices_stage(false).collect().await;
    assert_golden("stream_devices_ok", &ok);
    let failed: Vec<Event> = devices_stage(true).collect().await;
    assert_golden("stream_devices_failed", &failed);
}

// ---- the plugin's reader (netbox_proxbox/services/backend_proxy.py), re-implemented ----

/// `requests.Response.iter_lines(decode_unicode=True)` = `str.splitlines()` on the decoded body.
fn py_splitlines(text: &str) -> Vec<&str> {
    const BREAKS: &[char] = &[
        '\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
        '\u{2029}',
    ];
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(BREAKS) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") {
            2
        } else {
            rest[i..].chars().next().map_or(1, char::len_utf8)
        };
        rest = &rest[i + skip..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    lines
}

/// `_iter_sse_frames`: (event, data dict) pairs.
fn plugin_frames(body: &str) -> Vec<(String, Dict)> {
    fn flush(event: &mut String, data: &mut Vec<String>, out: &mut Vec<(String, Dict)>) {
        if !data.is_empty() {
            let text = data.join("\n");
            let parsed = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Dict(d)) => d,
                Ok(other) => Dict::new().with("raw", other),
                Err(_) => Dict::new().with("raw", text),
            };
            let name = if event.is_empty() {
                "message".to_owned()
            } else {
                event.clone()
            };
            out.push((name, parsed));
        }
        event.clear();
        data.clear();
    }
    let (mut event, mut data, mut out) = (String::new(), Vec::new(), Vec::new());
    for line in py_splitlines(body) {
        if line.is_empty() {
            flush(&mut event, &mut data, &mut out);
        } else if line.starts_with(':') {
            continue;
        } else if let Some(name) = line.strip_prefix("event:") {
            flush(&mut event, &mut data, &mut out);
            event = name.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.trim_start().to_owned());
        } else {
            data.push(line.to_owned());
        }
    }
    flush(&mut event, &mut data, &mut out);
    out
}

/// `SseCompletePayload.model_validate` + `_completed_stream_result`: (HTTP status, detail, payload).
fn plugin_outcome(body: &str) -> (u16, Option<String>, Option<Dict>) {
    let mut last_complete = None;
    for (event, data) in plugin_frames(body) {
        if event != "complete" {
            continue;
        }
        let ok = match data.get("ok") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return (502, Some("invalid complete event: ok".into()), None),
        };
        if !matches!(
            data.get("message"),
            None | Some(Value::Null | Value::Str(_))
        ) || !matches!(
            data.get("result"),
            None | Some(Value::Null | Value::Dict(_) | Value::List(_))
        ) {
            return (502, Some("invalid complete event".into()), None);
        }
        let errors = match data.get("errors") {
            None => vec![],
            Some(Value::List(items)) if items.iter().all(|e| e.as_dict().is_some()) => {
                items.clone()
            }
            Some(_) => return (502, Some("invalid complete event: errors".into()), None),
        };
        last_complete = Some((
            ok,
            data.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
            errors,
            data,
        ));
    }
    match last_complete {
        None => (
            502,
            Some("ProxBox backend stream ended without a complete event.".into()),
            None,
        ),
        Some((false, message, errors, data)) => {
            let first = errors
                .first()
                .and_then(|e| e.as_dict()?.get("detail"))
                .filter(|d| d.is_truthy());
            let detail = first
                .map(Value::py_str)
                .or(message)
                .unwrap_or_else(|| "Sync failed.".into());
            (503, Some(detail), Some(data))
        }
        Some((true, _, _, data)) => (200, None, Some(data)),
    }
}

async fn response_body(events: impl futures::Stream<Item = Event> + Send + 'static) -> String {
    let response = events::sse_response(events);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn plugin_reads_our_stream() {
    // Success: every frame parses as a JSON object with our name, keepalive comments are
    // ignored, and the `complete` payload is what the plugin stores as `response`.
    let ok: Vec<Event> = devices_stage(false).collect().await;
    let mut body = String::new();
    for event in &ok {
        body.push_str(KEEPALIVE);
        body.push_str(&events::encode(event));
    }
    let frames = plugin_frames(&body);
    let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "step",
            "discovery",
            "item_progress",
            "step",
            "phase_summary",
            "step",
            "complete"
        ]
    );
    assert!(
        frames.iter().all(|(_, d)| d.get("raw").is_none()),
        "a frame failed to parse: {frames:?}"
    );
    assert_eq!(
        frames[1].1.get("items").unwrap(),
        &Value::from(vec![
            Value::Dict(Dict::new().with("name", NAME).with("item_type", "node")),
            Value::Dict(Dict::new().with("name", "7")),
        ])
    );
    let (status, detail, complete) = plugin_outcome(&body);
    assert_eq!((status, detail), (200, None));
    let expected = Dict::new()
        .with("ok", true)
        .with("message", "devices sync completed.")
        .with("result", events::count_result(3));
    assert_eq!(complete.unwrap(), expected);

    // The same through the HTTP response body.
    assert_eq!(
        plugin_outcome(&response_body(devices_stage(false)).await).0,
        200
    );

    // Fatal error: `error` comes before the failing `complete`; the plugin reports 503 with
    // `errors[0].detail` (so it retries the stage, as with the reference).
    let body = response_body(devices_stage(true)).await;
    let names: Vec<String> = plugin_frames(&body).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[names.len() - 2..], ["error", "complete"]);
    let (status, detail, _) = plugin_outcome(&body);
    assert_eq!(
        (status, detail.as_deref()),
        (
            503,
            Some("NetBox unreachable | HTTP 502: \"bad gateway\" \\ ü")
        )
    );
}

#[tokio::test]
async fn guard_always_ends_with_one_complete() {
    // A raw stream that stops early would be a 502 for the plugin; the guard turns it into a
    // reported failure.
    let truncated = futures::stream::iter(vec![Event::from(Step::started("storage"))]);
    let raw_body: String = truncated
        .clone()
        .map(|e| events::encode(&e))
        .collect::<Vec<_>>()
        .await
        .concat();
    assert_eq!(plugin_outcome(&raw_body).0, 502);
    let guarded: Vec<Event> = StreamGuard::new("storage").wrap(truncated).collect().await;
    let names: Vec<&str> = guarded.iter().map(Event::name).collect();
    assert_eq!(names, ["step", "error", "complete"]);
    assert_eq!(plugin_outcome(&encode_all(&guarded)).0, 503);

    // Frames after `complete` are dropped; a failing `complete` gets its `error` first.
    let after = futures::stream::iter(vec![
        Event::from(Complete::failure("storage sync failed.", "disk gone")),
        Event::from(Step::started("storage")),
    ]);
    let guarded: Vec<Event> = StreamGuard::new("storage").wrap(after).collect().await;
    assert_eq!(
        guarded.iter().map(Event::name).collect::<Vec<_>>(),
        ["error", "complete"]
    );

    // Terminal frames sent through a sink are dropped; a panicking task still completes.
    let events: Vec<Event> = StreamGuard::new("snapshots")
        .run(|sink| async move {
            sink.emit(Complete::success("early", Dict::new()));
            sink.emit(Step::started("snapshots"));
            panic!("sync code bug");
        })
        .collect()
        .await;
    assert_eq!(
        events.iter().map(Event::name).collect::<Vec<_>>(),
        ["step", "error", "complete"]
    );
    let Event::Complete(complete) = events.last().unwrap() else {
        unreachable!()
    };
    assert!(!complete.ok);
    assert_eq!(complete.message, "snapshots sync failed.");
}

// ---- keepalive ----

#[test]
fn keepalive_bytes_match_reference() {
    assert_eq!(KEEPALIVE, golden("keepalive"));
}

#[tokio::test]
async fn keepalive_only_when_the_timer_fires() {
    // The idle timer is a `Notify` the test fires by hand: fully deterministic.
    let tick = Arc::new(tokio::sync::Notify::new());
    let timer = {
        let tick = tick.clone();
        move || {
            let tick = tick.clone();
            async move { tick.notified().await }
        }
    };
    let (tx, rx) = futures::channel::mpsc::unbounded::<Event>();
    let mut bytes = Box::pin(events::frame_stream_with_timer(rx, timer));

    tx.unbounded_send(Step::started("devices").into()).unwrap();
    assert_eq!(
        bytes.next().await.unwrap(),
        events::encode(&Step::started("devices").into()).as_bytes()
    );
    // Nothing to send and the timer has not fired: no frame.
    assert!(bytes.next().now_or_never().is_none());
    // The timer fires: exactly one keepalive, then quiet again.
    tick.notify_one();
    assert_eq!(bytes.next().await.unwrap(), KEEPALIVE.as_bytes());
    assert!(bytes.next().now_or_never().is_none());
    // A ready frame wins over an expired timer.
    tx.unbounded_send(Complete::success("devices sync completed.", Dict::new()).into())
        .unwrap();
    tick.notify_one();
    assert!(
        bytes
            .next()
            .await
            .unwrap()
            .starts_with(b"event: complete\n")
    );
    assert_eq!(bytes.next().await.unwrap(), KEEPALIVE.as_bytes());
    drop(tx);
    assert!(bytes.next().await.is_none());
}

#[tokio::test]
async fn keepalive_interval_is_a_parameter() {
    let interval = Duration::from_millis(20);
    let start = tokio::time::Instant::now();
    let mut bytes = Box::pin(events::frame_stream(
        futures::stream::pending::<Event>(),
        interval,
    ));
    assert_eq!(bytes.next().await.unwrap(), KEEPALIVE.as_bytes());
    assert_eq!(bytes.next().await.unwrap(), KEEPALIVE.as_bytes());
    assert!(start.elapsed() >= interval * 2);
    assert_eq!(events::KEEPALIVE_INTERVAL, Duration::from_secs(15));
}

#[tokio::test]
async fn response_headers_match_reference() {
    let response = events::sse_response(futures::stream::iter(vec![Event::from(Step::started(
        "devices",
    ))]));
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body, golden("step_started").as_bytes());
}

/// A client that goes away mid-stream cancels the stage's work: the task is dropped.
#[tokio::test]
async fn a_disconnecting_client_cancels_the_work() {
    struct SignalOnDrop(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for SignalOnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
    let slot = Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
    let app = axum::Router::new().route(
        "/stream",
        axum::routing::get(move || {
            let slot = slot.clone();
            async move {
                let signal = SignalOnDrop(slot.lock().expect("lock").take());
                proxbox_host::events::sse_response(StreamGuard::new("devices").run(
                    move |sink| async move {
                        let _signal = signal;
                        sink.emit(Step::started("devices"));
                        std::future::pending::<()>().await;
                        Ok(Complete::success("never", Dict::new()))
                    },
                ))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut response = reqwest::get(format!("http://{addr}/stream"))
        .await
        .expect("get");
    let first = response.chunk().await.expect("read").expect("a frame");
    assert!(first.starts_with(b"event: step\n"), "{first:?}");
    drop(response);
    tokio::time::timeout(Duration::from_secs(10), dropped_rx)
        .await
        .expect("the work was cancelled after the client left")
        .expect("signal");
}
