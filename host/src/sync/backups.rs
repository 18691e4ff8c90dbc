//! Stage `backups` (being written).

use super::{StageSummary, SyncRun};
use crate::events::{EventSink, Failure};

/// Stage and phase name.
pub const PHASE: &str = "backups";

/// Run the stage with its events.
pub async fn stage(_run: &SyncRun, _sink: &EventSink) -> Result<StageSummary, Failure> {
    Err(Failure::new("the backups stage is not available yet"))
}
