//! Typed payloads of every SSE frame the reference emits, in the reference's key order.
//!
//! Two families, as in the reference:
//! * pydantic-built frames ([`Discovery`], [`Substep`], [`ItemProgress`], [`PhaseSummary`],
//!   [`ErrorDetail`], [`DuplicateNameResolved`], [`HardwareDiscovery`]): `None` fields are
//!   omitted (`model_dump(exclude_none=True)`), `str` fields and the top-level keys of their
//!   dict fields are trimmed (`str_strip_whitespace=True`), and the `event` key comes first;
//! * hand-built dict frames ([`Step`], [`LegacyStep`], [`BootstrapDone`], [`ErrorFrame`],
//!   [`Complete`]): keys are present or absent by construction, `None` values are written as
//!   `null` where the reference writes them (`rowid`, `reason`, an `error.detail` of `None`).

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::json::round3;
use super::value::{Dict, Value};

mod strip {
    //! `serialize_with` helpers reproducing pydantic's `str_strip_whitespace` (Rust `trim`,
    //! which is what pydantic-core uses: Unicode `White_Space`, not Python's `str.isspace`).

    use std::borrow::Borrow;

    use serde::Serializer;
    use serde::ser::SerializeMap;

    use super::Dict;

    pub fn text<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.trim())
    }

    pub fn opt_text<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.trim()),
            None => s.serialize_none(),
        }
    }

    /// A `dict[str, Any]` field: keys are validated as `str` (trimmed), values are not.
    pub fn dict_keys<S: Serializer>(v: &Dict, s: S) -> Result<S::Ok, S::Error> {
        let trimmed: Dict = v
            .iter()
            .map(|(k, v)| (k.trim().to_owned(), v.clone()))
            .collect();
        let mut map = s.serialize_map(Some(trimmed.len()))?;
        for (k, v) in trimmed.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub fn opt_dict_keys<D: Borrow<Dict>, S: Serializer>(
        v: &Option<D>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => dict_keys(v.borrow(), s),
            None => s.serialize_none(),
        }
    }
}

/// `status` of a `step` frame (lifecycle: `started`/`completed`; legacy: `progress`/`completed`/`failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// A stage started.
    Started,
    /// A legacy frame reporting work in progress.
    Progress,
    /// A stage (or a legacy object) finished.
    Completed,
    /// A legacy frame whose `data.error` was set.
    Failed,
}

impl StepStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Progress => "progress",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
        }
    }
}

/// `substep.status` (the reference's `SubstepStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubstepStatus {
    /// `started`
    Started,
    /// `processing`
    Processing,
    /// `completed`
    Completed,
    /// `failed`
    Failed,
    /// `skipped`
    Skipped,
}

/// `item_progress.status` (a free string in the reference; these are the values it sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// `processing`
    Processing,
    /// `completed`
    Completed,
    /// `failed`
    Failed,
    /// `warning`
    Warning,
    /// `skipped`
    Skipped,
}

/// `item_progress.operation` (the reference's `ItemOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOperation {
    /// `created`
    Created,
    /// `updated`
    Updated,
    /// `deleted`
    Deleted,
    /// `would_delete` (dry-run orphan sweep)
    WouldDelete,
    /// `skipped`
    Skipped,
    /// `failed`
    Failed,
}

/// `error_detail.category` (the reference's `ErrorCategory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// `connection`
    Connection,
    /// `authentication`
    Authentication,
    /// `permission`
    Permission,
    /// `validation`
    Validation,
    /// `not_found`
    NotFound,
    /// `timeout`
    Timeout,
    /// `rate_limit`
    RateLimit,
    /// `internal`
    Internal,
    /// `unknown`
    Unknown,
}

/// The item a structured frame is about (`ItemInfo`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemInfo {
    /// Item name (the reference falls back to `str(id)` or `"unknown"`).
    #[serde(serialize_with = "strip::text")]
    pub name: String,
    /// NetBox object id, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netbox_id: Option<i64>,
    /// NetBox object URL, once known.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub netbox_url: Option<String>,
    /// Item type (`node`, `vm`, …); the reference copies it from the caller's `type` key.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub item_type: Option<String>,
    /// Free-form extra metadata.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_dict_keys"
    )]
    pub extra: Option<Dict>,
}

impl ItemInfo {
    /// An item with only a name.
    pub fn new(name: impl Into<String>) -> Self {
        ItemInfo {
            name: name.into(),
            netbox_id: None,
            netbox_url: None,
            item_type: None,
            extra: None,
        }
    }

    /// With the NetBox id set.
    #[must_use]
    pub fn netbox_id(mut self, id: i64) -> Self {
        self.netbox_id = Some(id);
        self
    }

    /// With the NetBox URL set.
    #[must_use]
    pub fn netbox_url(mut self, url: impl Into<String>) -> Self {
        self.netbox_url = Some(url.into());
        self
    }

    /// With the item type set.
    #[must_use]
    pub fn item_type(mut self, item_type: impl Into<String>) -> Self {
        self.item_type = Some(item_type.into());
        self
    }

    /// With extra metadata set.
    #[must_use]
    pub fn extra(mut self, extra: Dict) -> Self {
        self.extra = Some(extra);
        self
    }
}

/// `progress` object: `{"current", "total", "percent"}` with `percent = current/total*100`
/// (float; `0.0` when `total` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Items done (1-based position of the current item in `item_progress`).
    pub current: u64,
    /// Items in the phase.
    pub total: u64,
}

impl Progress {
    /// `percent` as the reference computes it.
    pub fn percent(&self) -> f64 {
        if self.total > 0 {
            self.current as f64 / self.total as f64 * 100.0
        } else {
            0.0
        }
    }
}

impl Serialize for Progress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ProgressInfo", 3)?;
        st.serialize_field("current", &self.current)?;
        st.serialize_field("total", &self.total)?;
        st.serialize_field("percent", &self.percent())?;
        st.end()
    }
}

/// `timing` object (`TimingInfo`); the reference's builders set only `elapsed_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Timing {
    /// Elapsed milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<i64>,
    /// ISO start timestamp.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub started_at: Option<String>,
    /// ISO finish timestamp.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub finished_at: Option<String>,
}

impl Timing {
    /// `{"elapsed_ms": ms}`, what the reference's builders emit.
    pub fn elapsed(ms: i64) -> Self {
        Timing {
            elapsed_ms: Some(ms),
            ..Timing::default()
        }
    }
}

/// `discovery`: the items a phase is about to process. `count`, `progress` (`0/count`) and the
/// default message (`"Discovered <count> <phase> to process"`) are derived.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// Phase name (`devices`, `virtual-machines`, …).
    pub phase: String,
    /// Custom message; `None` or empty gives the default.
    pub message: Option<String>,
    /// Items discovered.
    pub items: Vec<ItemInfo>,
    /// Extra phase metadata.
    pub metadata: Option<Dict>,
}

impl Serialize for Discovery {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "event", rename = "discovery")]
        struct Wire<'a> {
            #[serde(serialize_with = "strip::text")]
            phase: &'a str,
            status: &'static str,
            #[serde(serialize_with = "strip::text")]
            message: &'a str,
            count: usize,
            items: &'a [ItemInfo],
            progress: Progress,
            #[serde(
                skip_serializing_if = "Option::is_none",
                serialize_with = "strip::opt_dict_keys"
            )]
            metadata: Option<&'a Dict>,
        }
        let count = self.items.len();
        let default;
        let message = match self.message.as_deref() {
            Some(m) if !m.is_empty() => m,
            _ => {
                default = format!("Discovered {count} {} to process", self.phase);
                &default
            }
        };
        Wire {
            phase: &self.phase,
            status: "discovered",
            message,
            count,
            items: &self.items,
            progress: Progress {
                current: 0,
                total: count as u64,
            },
            metadata: self.metadata.as_ref(),
        }
        .serialize(s)
    }
}

/// `substep`: a granular operation inside a phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename = "substep")]
pub struct Substep {
    /// Phase name.
    #[serde(serialize_with = "strip::text")]
    pub phase: String,
    /// Substep identifier (`ensure_cluster`, `create_device`, …).
    #[serde(serialize_with = "strip::text")]
    pub substep: String,
    /// Substep status.
    pub status: SubstepStatus,
    /// Human-readable message.
    #[serde(serialize_with = "strip::text")]
    pub message: String,
    /// Item context (the reference drops an empty item dict, i.e. `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemInfo>,
    /// Timing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// Result data.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_dict_keys"
    )]
    pub result: Option<Dict>,
}

/// `item_progress`: one object processed (per-object failures use `status`/`operation`
/// `failed` plus `error`; the stream keeps going).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename = "item_progress")]
pub struct ItemProgress {
    /// Phase name.
    #[serde(serialize_with = "strip::text")]
    pub phase: String,
    /// Item status.
    pub status: ItemStatus,
    /// Human-readable message.
    #[serde(serialize_with = "strip::text")]
    pub message: String,
    /// The item.
    pub item: ItemInfo,
    /// What was done to it.
    pub operation: ItemOperation,
    /// Position in the phase.
    pub progress: Progress,
    /// Timing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// Error text, when failed.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub error: Option<String>,
    /// Warning text.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub warning: Option<String>,
}

/// Per-phase counts of a `phase_summary`; `total` is their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseCounts {
    /// Objects created.
    pub created: u64,
    /// Objects updated.
    pub updated: u64,
    /// Objects deleted.
    pub deleted: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Objects skipped.
    pub skipped: u64,
}

impl PhaseCounts {
    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.deleted + self.failed + self.skipped
    }
}

impl Serialize for PhaseCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("created", &self.created)?;
        map.serialize_entry("updated", &self.updated)?;
        map.serialize_entry("deleted", &self.deleted)?;
        map.serialize_entry("failed", &self.failed)?;
        map.serialize_entry("skipped", &self.skipped)?;
        map.serialize_entry("total", &self.total())?;
        map.end()
    }
}

/// `phase_summary`: end-of-phase tally. `status` is `completed`, or `completed_with_errors`
/// when `failed > 0`; the default message is
/// `"Phase <p> completed: <c> created, <u> updated, <f> failed"`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSummary {
    /// Phase name.
    pub phase: String,
    /// Custom message; `None` or empty gives the default.
    pub message: Option<String>,
    /// The counts.
    pub result: PhaseCounts,
    /// Timing.
    pub timing: Option<Timing>,
}

impl PhaseSummary {
    /// `status` as the reference derives it.
    pub fn status(&self) -> &'static str {
        if self.result.failed == 0 {
            "completed"
        } else {
            "completed_with_errors"
        }
    }
}

impl Serialize for PhaseSummary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "event", rename = "phase_summary")]
        struct Wire<'a> {
            #[serde(serialize_with = "strip::text")]
            phase: &'a str,
            status: &'static str,
            #[serde(serialize_with = "strip::text")]
            message: &'a str,
            result: PhaseCounts,
            #[serde(skip_serializing_if = "Option::is_none")]
            timing: Option<&'a Timing>,
        }
        let c = self.result;
        let default;
        let message = match self.message.as_deref() {
            Some(m) if !m.is_empty() => m,
            _ => {
                default = format!(
                    "Phase {} completed: {} created, {} updated, {} failed",
                    self.phase, c.created, c.updated, c.failed
                );
                &default
            }
        };
        Wire {
            phase: &self.phase,
            status: self.status(),
            message,
            result: c,
            timing: self.timing.as_ref(),
        }
        .serialize(s)
    }
}

/// `error_detail`: a categorised error with remediation hints (non-fatal by itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename = "error_detail")]
pub struct ErrorDetail {
    /// Phase where it happened.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub phase: Option<String>,
    /// Item concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemInfo>,
    /// Category.
    pub category: ErrorCategory,
    /// Human-readable message.
    #[serde(serialize_with = "strip::text")]
    pub message: String,
    /// Technical detail.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub detail: Option<String>,
    /// Suggested remediation.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub suggestion: Option<String>,
    /// Stack trace (debug only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub traceback: Option<String>,
}

impl ErrorDetail {
    /// An error detail with only category and message.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        ErrorDetail {
            phase: None,
            item: None,
            category,
            message: message.into(),
            detail: None,
            suggestion: None,
            traceback: None,
        }
    }
}

/// `duplicate_name_resolved`: the VM name-collision resolver renamed (or kept an operator's
/// rename of) a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "duplicate_name_resolved")]
pub struct DuplicateNameResolved {
    /// Proxmox cluster name.
    #[serde(serialize_with = "strip::text")]
    pub cluster: String,
    /// Candidate name from Proxmox.
    #[serde(serialize_with = "strip::text")]
    pub original_name: String,
    /// Name written to NetBox.
    #[serde(serialize_with = "strip::text")]
    pub resolved_name: String,
    /// Proxmox VMID.
    pub vmid: i64,
    /// 1 = operator rename kept; 2+ = `" (N)"` suffix applied.
    pub suffix_index: i64,
    /// Whether the NetBox record had been renamed by an operator.
    pub operator_renamed: bool,
}

/// `hardware_discovery`: SSH hardware discovery finished for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "hardware_discovery")]
pub struct HardwareDiscovery {
    /// Node name.
    #[serde(serialize_with = "strip::text")]
    pub node: String,
    /// Cluster name.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub cluster: Option<String>,
    /// Chassis serial.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub chassis_serial: Option<String>,
    /// Chassis manufacturer.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub chassis_manufacturer: Option<String>,
    /// System product name.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "strip::opt_text"
    )]
    pub chassis_product: Option<String>,
    /// NICs reflected onto NetBox.
    pub nic_count: i64,
    /// Discovery duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// A lifecycle `step` frame: `{"step", "status", "message"[, "metadata"][, "result"][, "duration_seconds"]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Stage name (`devices`, `virtual-machines`, `stream`, …).
    pub step: String,
    /// `started` or `completed`.
    pub status: StepStatus,
    /// Human-readable message.
    pub message: String,
    /// Start metadata (full-update orphan sweep only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Dict>,
    /// Stage result (on `completed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Stage wall time rounded to 3 decimals (full-update stages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

impl Step {
    /// `{"step", "status": "started", "message": "Starting <step> synchronization."}`.
    pub fn started(step: impl Into<String>) -> Self {
        let step = step.into();
        let message = format!("Starting {step} synchronization.");
        Step::started_with(step, message)
    }

    /// A `started` frame with a custom message.
    pub fn started_with(step: impl Into<String>, message: impl Into<String>) -> Self {
        Step {
            step: step.into(),
            status: StepStatus::Started,
            message: message.into(),
            metadata: None,
            result: None,
            duration_seconds: None,
        }
    }

    /// `{"step", "status": "completed", "message": "<step> synchronization finished.", "result"}`.
    pub fn completed(step: impl Into<String>, result: impl Into<Value>) -> Self {
        let step = step.into();
        let message = format!("{step} synchronization finished.");
        Step::completed_with(step, message, result)
    }

    /// A `completed` frame with a custom message.
    pub fn completed_with(
        step: impl Into<String>,
        message: impl Into<String>,
        result: impl Into<Value>,
    ) -> Self {
        Step {
            step: step.into(),
            status: StepStatus::Completed,
            message: message.into(),
            metadata: None,
            result: Some(result.into()),
            duration_seconds: None,
        }
    }

    /// With `duration_seconds` = Python's `round(seconds, 3)`.
    #[must_use]
    pub fn with_duration(mut self, seconds: f64) -> Self {
        self.duration_seconds = Some(round3(seconds));
        self
    }

    /// With start metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Dict) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// A legacy bridge `step` frame: `{"step", "status", "message", "rowid", "payload"}`
/// (`rowid` is `null` when absent). Build it with [`LegacyStep::from_payload`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegacyStep {
    /// `payload.object` (or `"sync"`).
    pub step: String,
    /// Derived status.
    pub status: StepStatus,
    /// Derived message.
    pub message: String,
    /// `str(data.rowid or data.name)`.
    pub rowid: Option<String>,
    /// The original legacy payload.
    pub payload: Dict,
}

/// One entry of `bootstrap_done.warnings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootstrapWarning {
    /// Object label that failed.
    pub object: String,
    /// Error text.
    pub error: String,
}

/// `bootstrap_done` (first frame of `/full-update/stream`): the NetBox bootstrap outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootstrapDone {
    /// Whether bootstrap succeeded.
    pub ok: bool,
    /// Whether it was skipped.
    pub skipped: bool,
    /// Skip/failure reason (`null` when none).
    pub reason: Option<String>,
    /// Per-object failures.
    pub warnings: Vec<BootstrapWarning>,
    /// Labels created.
    pub created: Vec<String>,
    /// Labels patched.
    pub patched: Vec<String>,
    /// Labels unchanged.
    pub unchanged: Vec<String>,
}

/// `error` (fatal): `{"step", "status": "failed", "error", "detail"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFrame {
    /// Stage name.
    pub step: String,
    /// Error text (`str(exc)`, or the exception message in full-update).
    pub error: String,
    /// Detail: usually the same text; `null` or an object where the reference's exception
    /// detail is `None` or a dict.
    pub detail: Value,
}

impl ErrorFrame {
    /// `error` and `detail` both `text` (what single-stage routes send).
    pub fn new(step: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        ErrorFrame {
            step: step.into(),
            detail: Value::Str(text.clone()),
            error: text,
        }
    }
}

impl Serialize for ErrorFrame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ErrorFrame", 4)?;
        st.serialize_field("step", &self.step)?;
        st.serialize_field("status", "failed")?;
        st.serialize_field("error", &self.error)?;
        st.serialize_field("detail", &self.detail)?;
        st.end()
    }
}

/// One entry of `complete.errors`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompleteError {
    /// Error text (or the exception's dict detail).
    pub detail: Value,
}

/// `complete` (always the last frame): `{"ok", "message"[, "result"][, "errors"]}`. The plugin
/// maps `ok:false` to HTTP 503 with `errors[0].detail` (else `message`) as the failure text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Complete {
    /// Whether the stage ran to the end (true even if every object failed).
    pub ok: bool,
    /// Human-readable message.
    pub message: String,
    /// Stage result (success only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Errors (failure only); omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<CompleteError>,
}

impl Complete {
    /// `{"ok": true, "message", "result"}`.
    pub fn success(message: impl Into<String>, result: impl Into<Value>) -> Self {
        Complete {
            ok: true,
            message: message.into(),
            result: Some(result.into()),
            errors: Vec::new(),
        }
    }

    /// `{"ok": false, "message", "errors": [{"detail"}]}`.
    pub fn failure(message: impl Into<String>, detail: impl Into<Value>) -> Self {
        Complete {
            ok: false,
            message: message.into(),
            result: None,
            errors: vec![CompleteError {
                detail: detail.into(),
            }],
        }
    }
}

/// Names of the twelve stages `/full-update/stream` announces in its `discovery` frame, in the
/// reference's (announcement, not execution) order.
pub const FULL_UPDATE_DISCOVERY_STAGES: [&str; 12] = [
    "devices",
    "storage",
    "virtual-machines",
    "virtual-disks",
    "task-history",
    "backups",
    "snapshots",
    "replications",
    "backup-routines",
    "node-interfaces",
    "vm-interfaces",
    "vm-ip-addresses",
];

/// One SSE frame: its event name plus payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `step` (stage lifecycle).
    Step(Step),
    /// `step` (legacy bridge frame).
    LegacyStep(LegacyStep),
    /// `discovery`.
    Discovery(Discovery),
    /// `substep`.
    Substep(Substep),
    /// `item_progress`.
    ItemProgress(ItemProgress),
    /// `phase_summary`.
    PhaseSummary(PhaseSummary),
    /// `error_detail`.
    ErrorDetail(ErrorDetail),
    /// `duplicate_name_resolved`.
    DuplicateNameResolved(DuplicateNameResolved),
    /// `hardware_discovery`.
    HardwareDiscovery(HardwareDiscovery),
    /// `bootstrap_done`.
    BootstrapDone(BootstrapDone),
    /// `error` (fatal).
    Error(ErrorFrame),
    /// `complete` (terminal).
    Complete(Complete),
    /// Any other frame, or a reference frame whose payload is a hand-built dict that differs
    /// from the typed shape (see [`Event::full_update_discovery`]).
    Raw {
        /// Event name.
        event: String,
        /// Payload, serialised in insertion order.
        data: Dict,
    },
}

impl Event {
    /// The `event:` name.
    pub fn name(&self) -> &str {
        match self {
            Event::Step(_) | Event::LegacyStep(_) => "step",
            Event::Discovery(_) => "discovery",
            Event::Substep(_) => "substep",
            Event::ItemProgress(_) => "item_progress",
            Event::PhaseSummary(_) => "phase_summary",
            Event::ErrorDetail(_) => "error_detail",
            Event::DuplicateNameResolved(_) => "duplicate_name_resolved",
            Event::HardwareDiscovery(_) => "hardware_discovery",
            Event::BootstrapDone(_) => "bootstrap_done",
            Event::Error(_) => "error",
            Event::Complete(_) => "complete",
            Event::Raw { event, .. } => event,
        }
    }

    /// Whether this is the terminal `complete` frame.
    pub fn is_complete(&self) -> bool {
        self.name() == "complete"
    }

    /// The legacy `step` frame for a payload sync code would have passed to `send_json`.
    pub fn legacy(payload: Dict) -> Self {
        Event::LegacyStep(LegacyStep::from_payload(payload))
    }

    /// The `discovery` frame `/full-update/stream` sends third. It is a hand-built dict in the
    /// reference, so unlike [`Discovery`] its items carry `type` (not `item_type`) and its
    /// `percent` is the integer `0`.
    pub fn full_update_discovery(operation_id: &str) -> Self {
        Event::full_update_discovery_of(operation_id, &FULL_UPDATE_DISCOVERY_STAGES)
    }

    /// The full-update `discovery` frame (shape as [`Event::full_update_discovery`]) for
    /// the given stage names.
    pub fn full_update_discovery_of(operation_id: &str, stages: &[&str]) -> Self {
        let count = stages.len();
        let items: Vec<Value> = stages
            .iter()
            .map(|name| Value::Dict(Dict::new().with("name", *name).with("type", "stage")))
            .collect();
        let data = Dict::new()
            .with("event", "discovery")
            .with("phase", "full-update")
            .with("status", "discovered")
            .with(
                "message",
                format!("Discovered {count} sync stage(s) for full update"),
            )
            .with("count", count)
            .with("items", items)
            .with(
                "progress",
                Dict::new()
                    .with("current", 0)
                    .with("total", count)
                    .with("percent", 0),
            )
            .with("metadata", Dict::new().with("operation_id", operation_id));
        Event::Raw {
            event: "discovery".to_owned(),
            data,
        }
    }
}

impl Serialize for Event {
    /// Serialises the payload (the `data:` JSON), not the event name.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Step(p) => p.serialize(s),
            Event::LegacyStep(p) => p.serialize(s),
            Event::Discovery(p) => p.serialize(s),
            Event::Substep(p) => p.serialize(s),
            Event::ItemProgress(p) => p.serialize(s),
            Event::PhaseSummary(p) => p.serialize(s),
            Event::ErrorDetail(p) => p.serialize(s),
            Event::DuplicateNameResolved(p) => p.serialize(s),
            Event::HardwareDiscovery(p) => p.serialize(s),
            Event::BootstrapDone(p) => p.serialize(s),
            Event::Error(p) => p.serialize(s),
            Event::Complete(p) => p.serialize(s),
            Event::Raw { data, .. } => data.serialize(s),
        }
    }
}

macro_rules! event_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Event {
            fn from(p: $t) -> Self {
                Event::$t(p)
            }
        }
    )*};
}
event_from!(
    Step,
    LegacyStep,
    Discovery,
    Substep,
    ItemProgress,
    PhaseSummary,
    ErrorDetail,
    DuplicateNameResolved,
    HardwareDiscovery,
    BootstrapDone,
    Complete
);

impl From<ErrorFrame> for Event {
    fn from(p: ErrorFrame) -> Self {
        Event::Error(p)
    }
}
