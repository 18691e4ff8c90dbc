//! Stage `snapshots` (being written).

use super::{StageSummary, SyncRun};
use crate::events::{EventSink, Failure};

/// Stage and phase name.
pub const PHASE: &str = "snapshots";

/// Run the stage with its events.
pub async fn stage(_run: &SyncRun, _sink: &EventSink) -> Result<StageSummary, Failure> {
    Err(Failure::new("the snapshots stage is not available yet"))
}
