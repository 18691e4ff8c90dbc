//! Progress events and their wire formats (SSE frames as the reference writes them).
//!
//! * [`Event`] and the payload types in [`frames`]: every frame the reference's sync streams
//!   send, keys in the reference's order, `None` omitted where pydantic omits it.
//! * [`encode`]: `event: <name>\ndata: <json.dumps(payload)>\n\n`, byte-exact ([`json`] is a
//!   Python-compatible JSON writer: `", "`/`": "` separators, `ensure_ascii` escaping, float `repr`).
//! * [`sse_response`]: the raw-byte HTTP response with the reference's headers and 15 s
//!   `: keepalive` comments.
//! * [`StreamGuard`] / [`Stage`]: streams that always end with exactly one `complete`, preceded by
//!   `error` when the stage failed.
//! * [`LegacyStep::from_payload`]: the bridge's legacy `send_json` → `step` mapping.

pub mod frames;
mod guard;
pub mod json;
mod legacy;
mod sse;
pub mod value;

pub use frames::{
    BootstrapDone, BootstrapWarning, Complete, CompleteError, Discovery, DuplicateNameResolved,
    ErrorCategory, ErrorDetail, ErrorFrame, Event, FULL_UPDATE_DISCOVERY_STAGES, HardwareDiscovery,
    ItemInfo, ItemOperation, ItemProgress, ItemStatus, LegacyStep, PhaseCounts, PhaseSummary,
    Progress, Step, StepStatus, Substep, SubstepStatus, Timing,
};
pub use guard::{CANCELLED_TEXT, EventSink, Failure, Stage, StreamGuard, count_result};
pub use sse::{
    CONTENT_TYPE, KEEPALIVE, KEEPALIVE_INTERVAL, encode, encode_into, frame_stream,
    frame_stream_with_timer, sse_response, sse_response_with_keepalive,
};
pub use value::{Dict, Value, to_value};
