//! Listed objects: what a NetBox list answered, kept as compact JSON text.
//!
//! A sync holds whole lists (every VM, disk, backup of an estate) while it diffs them.
//! As `serde_json::Value` trees an object costs about five times its JSON text; as text
//! it costs its length, and the [`NetBoxView`](super::NetBoxView) and the stage reading a
//! kept list share the same text. An object is parsed when it is looked at, one at a
//! time. NetBox's links (`url`, `display_url`) and `display` strings are dropped from
//! every object that has an `id` (nothing reads them), outside `custom_fields`.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

/// Keys of NetBox objects the sync never reads.
const LINKS: [&str; 3] = ["url", "display_url", "display"];

/// One object of a NetBox list, as compact JSON without NetBox's links, and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    id: Option<u64>,
    text: Arc<str>,
}

impl Listed {
    /// The listed form of `object`.
    pub fn new(object: &Value) -> Listed {
        let text = match slim(object) {
            Cow::Borrowed(object) => object.to_string(),
            Cow::Owned(object) => object.to_string(),
        };
        Listed {
            id: object.get("id").and_then(Value::as_u64),
            text: text.into(),
        }
    }

    /// The object's `id`, if it has one (known without parsing).
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The object, parsed (`Null` for text that is not JSON, which `new` never makes).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The object's fields, parsed (empty when it is not an object).
    pub fn object(&self) -> Map<String, Value> {
        match self.value() {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The compact JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A listed NetBox object, as the reconcile engine reads it: parsed [`Listed`] text or
/// an already parsed `Value`.
pub trait Existing {
    /// The object, parsed (borrowed when it already is).
    fn parsed(&self) -> Cow<'_, Value>;
}

impl Existing for Value {
    fn parsed(&self) -> Cow<'_, Value> {
        Cow::Borrowed(self)
    }
}

impl Existing for Listed {
    fn parsed(&self) -> Cow<'_, Value> {
        Cow::Owned(self.value())
    }
}

/// `value` without [`LINKS`] in the objects that carry an `id` (not below `custom_fields`).
fn slim(value: &Value) -> Cow<'_, Value> {
    if !needs_slimming(value) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(slimmed(value))
}

fn needs_slimming(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            (map.contains_key("id") && LINKS.iter().any(|k| map.contains_key(*k)))
                || map
                    .iter()
                    .any(|(k, v)| k != "custom_fields" && needs_slimming(v))
        }
        Value::Array(items) => items.iter().any(needs_slimming),
        _ => false,
    }
}

fn slimmed(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let identified = map.contains_key("id");
            Value::Object(
                map.iter()
                    .filter(|(k, _)| !(identified && LINKS.contains(&k.as_str())))
                    .map(|(k, v)| {
                        let v = if k == "custom_fields" {
                            v.clone()
                        } else {
                            slimmed(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(slimmed).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_are_dropped_from_identified_objects_but_not_from_custom_fields() {
        let disk = json!({
            "id": 7,
            "url": "http://nb/api/virtualization/virtual-disks/7/",
            "display": "scsi0",
            "virtual_machine": {"id": 3, "url": "http://nb/api/x/3/", "display": "vm", "name": "vm"},
            "tags": [{"id": 1, "url": "u", "display_url": "d", "slug": "proxbox"}],
            "custom_fields": {"url": "https://example.org", "display": "kept"},
            "links": {"url": "no id here, kept"},
        });
        let listed = Listed::new(&disk);
        assert_eq!(
            listed.value(),
            json!({
                "id": 7,
                "virtual_machine": {"id": 3, "name": "vm"},
                "tags": [{"id": 1, "slug": "proxbox"}],
                "custom_fields": {"url": "https://example.org", "display": "kept"},
                "links": {"url": "no id here, kept"},
            })
        );
        assert_eq!(listed.text(), listed.value().to_string(), "compact JSON");
    }

    #[test]
    fn objects_without_links_are_kept_as_they_are() {
        let record = json!({"id": 1, "virtual_machine": 3, "proxmox_vm_id": 100});
        assert_eq!(Listed::new(&record).value(), record);
        assert_eq!(Listed::new(&record).id(), Some(1));
        assert_eq!(Listed::new(&json!({"name": "x"})).id(), None);
        assert_eq!(Listed::new(&record).object().len(), 3);
        assert_eq!(Listed::new(&json!([1])).object().len(), 0);
    }

    #[test]
    fn existing_objects_read_the_same_from_text_and_values() {
        let object = json!({"id": 2, "name": "a"});
        let listed = Listed::new(&object);
        assert_eq!(listed.parsed(), object.parsed());
        assert!(matches!(object.parsed(), Cow::Borrowed(_)));
    }
}
