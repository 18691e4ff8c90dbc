//! The legacy `step` mapping: how the reference's bridge turns an old WebSocket-style payload
//! (`{"object", "type", "data": {...}, "end"}`) into an SSE `step` frame.
//!
//! Python semantics are kept on purpose: `or` uses truthiness (a `rowid` of `0` falls back to
//! `name`), `end`/`completed` must be the JSON `true` (`is True`), and `str()` is applied to
//! non-string values. Payloads without `object` (the backups stage) therefore arrive as
//! `step:"sync", status:"progress", message:"sync progress"`.

use super::frames::{LegacyStep, StepStatus};
use super::value::{Dict, Value};

/// Python's `str.strip()` (its `isspace` adds U+001C..U+001F to Unicode `White_Space`).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

fn is_true(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
}

fn truthy(v: Option<&Value>) -> bool {
    v.is_some_and(Value::is_truthy)
}

impl LegacyStep {
    /// Maps a legacy payload the way the reference's `WebSocketSSEBridge.send_json` does:
    /// * `step` = `str(payload.object or "sync")`;
    /// * `rowid` = `str(data.rowid or data.name)` unless that is `None`/`""`;
    /// * `status` = `completed` if `end is True`, else with a `data` dict: `failed` if
    ///   `data.error`, `completed` if `data.completed is True`, else `progress`;
    /// * `message` = `"<object> stream completed"` on end, else `data.warning`, else
    ///   `data.error`, else `"Synced <object> <rowid>"` when completed, else
    ///   `"Processing <object> <rowid>"` with a rowid, else `"<object> <status>"`.
    pub fn from_payload(payload: Dict) -> Self {
        let step = match payload.get("object") {
            Some(v) if v.is_truthy() => v.py_str(),
            _ => "sync".to_owned(),
        };
        let data = payload.get("data").and_then(Value::as_dict);
        let rowid = data.and_then(|d| {
            let row = d
                .get("rowid")
                .filter(|v| v.is_truthy())
                .or_else(|| d.get("name"));
            match row {
                None | Some(Value::Null) => None,
                Some(Value::Str(s)) if s.is_empty() => None,
                Some(v) => Some(v.py_str()),
            }
        });
        let end = is_true(payload.get("end"));
        let status = if end {
            StepStatus::Completed
        } else {
            match data {
                Some(d) if truthy(d.get("error")) => StepStatus::Failed,
                Some(d) if is_true(d.get("completed")) => StepStatus::Completed,
                _ => StepStatus::Progress,
            }
        };
        let message = legacy_message(&step, end, data, rowid.as_deref(), status);
        LegacyStep {
            step,
            status,
            message,
            rowid,
            payload,
        }
    }
}

fn legacy_message(
    object: &str,
    end: bool,
    data: Option<&Dict>,
    rowid: Option<&str>,
    status: StepStatus,
) -> String {
    if end {
        return format!("{object} stream completed");
    }
    if let Some(d) = data {
        for key in ["warning", "error"] {
            if let Some(v) = d.get(key).filter(|v| v.is_truthy()) {
                return v.py_str();
            }
        }
        if status == StepStatus::Completed {
            return py_strip(&format!("Synced {object} {}", rowid.unwrap_or(""))).to_owned();
        }
        if let Some(r) = rowid.filter(|r| !r.is_empty()) {
            return format!("Processing {object} {r}");
        }
    }
    format!("{object} {}", status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(payload: Dict) -> (String, StepStatus, String, Option<String>) {
        let s = LegacyStep::from_payload(payload);
        (s.step, s.status, s.message, s.rowid)
    }

    #[test]
    fn backups_payload_without_object() {
        let p = Dict::new()
            .with("step", "backups")
            .with("status", "started");
        assert_eq!(
            map(p),
            (
                "sync".into(),
                StepStatus::Progress,
                "sync progress".into(),
                None
            )
        );
    }

    #[test]
    fn rowid_zero_falls_back_to_name_and_completed_must_be_true() {
        let data = Dict::new()
            .with("rowid", 0)
            .with("name", "vm1")
            .with("completed", 1);
        let p = Dict::new()
            .with("object", "virtual_machine")
            .with("data", data);
        assert_eq!(
            map(p),
            (
                "virtual_machine".into(),
                StepStatus::Progress,
                "Processing virtual_machine vm1".into(),
                Some("vm1".into())
            )
        );
    }

    #[test]
    fn end_and_error_and_warning() {
        let p = Dict::new().with("object", "device").with("end", true);
        assert_eq!(map(p).2, "device stream completed");
        let data = Dict::new()
            .with("rowid", 7)
            .with("error", "boom")
            .with("warning", "careful");
        let p = Dict::new().with("object", "device").with("data", data);
        assert_eq!(
            map(p),
            (
                "device".into(),
                StepStatus::Failed,
                "careful".into(),
                Some("7".into())
            )
        );
        let p = Dict::new()
            .with("object", "device")
            .with("data", Dict::new().with("completed", true));
        assert_eq!(
            map(p),
            (
                "device".into(),
                StepStatus::Completed,
                "Synced device".into(),
                None
            )
        );
    }
}
