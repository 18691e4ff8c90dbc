//! Progress of one phase: `discovery`, one `item_progress` plus a legacy `step` frame
//! per object, then `phase_summary` with accurate counts and the legacy end frame
//! (contract §4.3–4.5). Counts: created, updated, deleted, failed, and skipped
//! (unchanged objects and objects the mapper chose not to sync).

use std::time::Instant;

use crate::events::{
    Dict, Discovery, ErrorCategory, ErrorDetail, Event, EventSink, ItemInfo, ItemOperation,
    ItemProgress, ItemStatus, PhaseCounts, PhaseSummary, Progress, Timing,
};

/// What happened to one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Created (dry run: would be created).
    Created,
    /// Updated; the changed fields (dry run: would be updated).
    Updated(Vec<String>),
    /// Already as desired.
    Unchanged,
    /// Not synced (mapper said so, or filtered by a sync mode).
    Skipped(String),
    /// Deleted (dry run: would be deleted).
    Deleted,
    /// Failed, with the reason.
    Failed(String),
    /// Not written because it would take over what belongs to another object; a warning.
    Conflict(String),
}

/// One object's line in the report.
#[derive(Clone, Debug)]
pub struct Item {
    /// Name shown for it.
    pub name: String,
    /// `node`, `vm`, `disk`, `storage`, `backup`, `snapshot`.
    pub item_type: &'static str,
    /// NetBox id, once known.
    pub netbox_id: Option<u64>,
}

impl Item {
    /// An item without a NetBox id yet.
    pub fn new(name: impl Into<String>, item_type: &'static str) -> Self {
        Item {
            name: name.into(),
            item_type,
            netbox_id: None,
        }
    }

    /// With its NetBox id.
    #[must_use]
    pub fn with_id(mut self, id: Option<u64>) -> Self {
        self.netbox_id = id;
        self
    }

    fn info(&self) -> ItemInfo {
        let mut info = ItemInfo::new(self.name.clone()).item_type(self.item_type);
        if let Some(id) = self.netbox_id.and_then(|id| i64::try_from(id).ok()) {
            info = info.netbox_id(id);
        }
        info
    }
}

/// The reporter of one phase.
pub struct Phase {
    sink: EventSink,
    phase: String,
    legacy_object: &'static str,
    dry_run: bool,
    total: u64,
    current: u64,
    counts: PhaseCounts,
    started: Instant,
}

impl Phase {
    /// Start phase `phase` over `items` (sends `discovery`). `legacy_object` names the
    /// legacy frames' `object` (`device`, `virtual_machine`, ...).
    pub fn start(
        sink: &EventSink,
        phase: &str,
        legacy_object: &'static str,
        items: &[Item],
        dry_run: bool,
    ) -> Phase {
        sink.emit(Discovery {
            phase: phase.to_string(),
            message: None,
            items: items.iter().map(Item::info).collect(),
            metadata: dry_run.then(|| Dict::new().with("dry_run", true)),
        });
        Phase {
            sink: sink.clone(),
            phase: phase.to_string(),
            legacy_object,
            dry_run,
            total: items.len() as u64,
            current: 0,
            counts: PhaseCounts::default(),
            started: Instant::now(),
        }
    }

    /// Report one object.
    pub fn item(&mut self, item: &Item, outcome: Outcome) {
        self.current += 1;
        if self.current > self.total {
            self.total = self.current;
        }
        let would = if self.dry_run { "would be " } else { "" };
        let (status, operation, message, error, warning) = match &outcome {
            Outcome::Created => {
                self.counts.created += 1;
                (
                    ItemStatus::Completed,
                    ItemOperation::Created,
                    format!("{} {}{}", item.name, would, "created"),
                    None,
                    None,
                )
            }
            Outcome::Updated(fields) => {
                self.counts.updated += 1;
                (
                    ItemStatus::Completed,
                    ItemOperation::Updated,
                    format!("{} {}updated: {}", item.name, would, fields.join(", ")),
                    None,
                    None,
                )
            }
            Outcome::Unchanged => {
                self.counts.skipped += 1;
                (
                    ItemStatus::Completed,
                    ItemOperation::Skipped,
                    format!("{} unchanged", item.name),
                    None,
                    None,
                )
            }
            Outcome::Skipped(why) => {
                self.counts.skipped += 1;
                (
                    ItemStatus::Completed,
                    ItemOperation::Skipped,
                    format!("{} skipped: {why}", item.name),
                    None,
                    None,
                )
            }
            Outcome::Conflict(why) => {
                self.counts.skipped += 1;
                (
                    ItemStatus::Completed,
                    ItemOperation::Skipped,
                    format!("{} skipped: {why}", item.name),
                    None,
                    Some(why.clone()),
                )
            }
            Outcome::Deleted => {
                self.counts.deleted += 1;
                let operation = if self.dry_run {
                    ItemOperation::WouldDelete
                } else {
                    ItemOperation::Deleted
                };
                (
                    ItemStatus::Completed,
                    operation,
                    format!("{} {}deleted", item.name, would),
                    None,
                    None,
                )
            }
            Outcome::Failed(why) => {
                self.counts.failed += 1;
                (
                    ItemStatus::Failed,
                    ItemOperation::Failed,
                    format!("{} failed", item.name),
                    Some(why.clone()),
                    None::<String>,
                )
            }
        };
        let mut info = item.info();
        if let (true, Outcome::Updated(fields)) = (self.dry_run, &outcome) {
            info = info.extra(
                Dict::new().with("dry_run", true).with(
                    "changed_fields",
                    crate::events::Value::List(
                        fields
                            .iter()
                            .map(|f| crate::events::Value::Str(f.clone()))
                            .collect(),
                    ),
                ),
            );
        } else if self.dry_run {
            info = info.extra(Dict::new().with("dry_run", true));
        }
        self.sink.emit(ItemProgress {
            phase: self.phase.clone(),
            status,
            message: message.clone(),
            item: info,
            operation,
            progress: Progress {
                current: self.current,
                total: self.total,
            },
            timing: None,
            error: error.clone(),
            warning,
        });
        let mut data = Dict::new()
            .with("completed", error.is_none())
            .with("rowid", item.name.clone())
            .with("name", item.name.clone());
        if let Some(id) = item.netbox_id {
            data.insert("netbox_id", id);
        }
        if let Some(error) = error {
            data.insert("error", error);
        }
        self.sink.legacy(
            Dict::new()
                .with("object", self.legacy_object)
                .with("type", "create")
                .with("data", data),
        );
    }

    /// A phase-level problem that is not about one object (e.g. an endpoint that could
    /// not be read); the stream goes on.
    pub fn problem(
        &self,
        category: ErrorCategory,
        message: impl Into<String>,
        detail: Option<String>,
    ) {
        let mut event = ErrorDetail::new(category, message);
        event.phase = Some(self.phase.clone());
        event.detail = detail;
        self.sink.emit(event);
    }

    /// The counts so far.
    pub fn counts(&self) -> PhaseCounts {
        self.counts
    }

    /// End the phase: `phase_summary` and the legacy end frame; returns the counts.
    pub fn finish(self) -> PhaseCounts {
        let c = self.counts;
        let message = if self.dry_run {
            Some(format!(
                "Phase {} (dry run): {} would be created, {} updated, {} deleted, {} failed",
                self.phase, c.created, c.updated, c.deleted, c.failed
            ))
        } else {
            None
        };
        self.sink.emit(Event::PhaseSummary(PhaseSummary {
            phase: self.phase.clone(),
            message,
            result: c,
            timing: Some(Timing::elapsed(
                i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            )),
        }));
        self.sink.legacy(
            Dict::new()
                .with("object", self.legacy_object)
                .with("end", true),
        );
        c
    }
}
