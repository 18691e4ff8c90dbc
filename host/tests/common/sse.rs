//! Reading an SSE body the way the netbox-proxbox plugin does (contract §4.7).

#![allow(dead_code)]

use serde_json::Value;

/// Frames `(event, data)`: line based, `:` comments skipped, `data:` lines joined by
/// `\n` and parsed as JSON (else `{"raw": text}`), a missing event name is `message`.
pub fn frames(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let (mut event, mut data): (String, Vec<String>) = (String::new(), Vec::new());
    let mut flush = |event: &mut String, data: &mut Vec<String>| {
        if !data.is_empty() {
            let text = data.join("\n");
            let parsed = serde_json::from_str::<Value>(&text)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| serde_json::json!({ "raw": text }));
            let name = if event.is_empty() {
                "message".to_string()
            } else {
                event.clone()
            };
            out.push((name, parsed));
        }
        event.clear();
        data.clear();
    };
    for line in body.lines() {
        if line.is_empty() {
            flush(&mut event, &mut data);
        } else if line.starts_with(':') {
            continue;
        } else if let Some(name) = line.strip_prefix("event:") {
            flush(&mut event, &mut data);
            event = name.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.trim_start().to_string());
        } else {
            data.push(line.to_string());
        }
    }
    flush(&mut event, &mut data);
    out
}

/// The `complete` payload, asserting it is the last frame and the only one.
pub fn complete(frames: &[(String, Value)]) -> Value {
    let completes: Vec<&Value> = frames
        .iter()
        .filter(|(e, _)| e == "complete")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(completes.len(), 1, "exactly one complete: {frames:#?}");
    assert_eq!(frames.last().map(|(e, _)| e.as_str()), Some("complete"));
    completes[0].clone()
}

/// The data of every frame named `event`.
pub fn named<'a>(frames: &'a [(String, Value)], event: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|(e, _)| e == event)
        .map(|(_, d)| d)
        .collect()
}
