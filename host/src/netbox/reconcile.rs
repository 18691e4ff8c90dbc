//! Reconciling one object kind: desired records against what NetBox holds.
//!
//! `plan` is pure: it matches desired objects to existing ones by identity (never by
//! name alone), and sorts them into create / update (only the owned fields that
//! changed) / unchanged / delete candidates. `apply` turns a plan into bulk writes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::client::NetBoxClient;
use super::error::NetBoxError;
use super::listed::Existing;

/// An object's identity: the values that name it uniquely (e.g. endpoint, cluster,
/// VMID and type for a VM), as normalised JSON.
pub type Identity = Vec<Value>;

/// Extracts the identity of an object (desired payload or NetBox object).
pub type IdentityFn = Box<dyn Fn(&Map<String, Value>) -> Option<Identity> + Send + Sync>;

/// How one kind is matched and which fields of it we own.
pub struct KindSpec {
    /// List endpoint, e.g. `virtualization/virtual-machines/`.
    pub path: String,
    /// Identity of an existing NetBox object (as listed, possibly enriched with identity
    /// records); `None` = cannot be matched.
    pub identity: IdentityFn,
    /// Fields we may change on existing objects (after the plugin's `overwrite_*` flags).
    /// Creates always write the whole desired payload.
    pub owned: BTreeSet<String>,
    /// Merge tags (keep the operator's, add ours) rather than replace them.
    pub merge_tags: bool,
    /// Tag slug that marks objects we own; only such objects may be deleted.
    pub ownership_tag: String,
}

/// One desired object.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Its identity; `None` = cannot be matched, always created.
    pub identity: Option<Identity>,
    /// The payload to create it with (related objects already resolved to ids).
    pub payload: Map<String, Value>,
}

/// What to do with one kind.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Payloads to create, with the index of their desired object.
    pub creates: Vec<(usize, Map<String, Value>)>,
    /// Patches (with `id`) of changed objects, with the index of their desired object.
    pub updates: Vec<(usize, Map<String, Value>)>,
    /// Existing ids of desired objects that already match.
    pub unchanged: Vec<(usize, u64)>,
    /// Existing objects no desired object matched: `(id, carries our ownership tag)`.
    pub delete_candidates: Vec<(u64, bool)>,
    /// Desired objects that share an identity with an earlier one (skipped).
    pub duplicates: Vec<usize>,
}

impl Plan {
    /// Whether applying this plan writes nothing (deletes aside).
    pub fn is_noop(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty()
    }
}

/// Match desired objects against `existing` (NetBox objects as listed, parsed or as
/// [`Listed`](super::Listed) text) and compute the plan. Each existing object is parsed
/// once to index it and once more only when a desired object matched it, so a list held
/// as text is never parsed whole.
pub fn plan<E: Existing>(spec: &KindSpec, desired: &[Desired], existing: &[E]) -> Plan {
    let mut by_identity: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut all: Vec<(u64, bool)> = Vec::with_capacity(existing.len());
    for (position, object) in existing.iter().enumerate() {
        let object = object.parsed();
        let Some(object) = object.as_object() else {
            continue;
        };
        if let Some(identity) = (spec.identity)(object) {
            by_identity.entry(key(&identity)).or_insert(position);
        }
        if let Some(id) = object.get("id").and_then(Value::as_u64) {
            all.push((id, has_tag(object, &spec.ownership_tag)));
        }
    }
    let mut plan = Plan::default();
    let mut matched_ids = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (index, want) in desired.iter().enumerate() {
        let identity = want.identity.as_ref().map(key);
        if let Some(identity) = &identity
            && !seen.insert(identity.clone())
        {
            plan.duplicates.push(index);
            continue;
        }
        let current = identity
            .as_ref()
            .and_then(|i| by_identity.get(i))
            .map(|position| existing[*position].parsed());
        match current.as_deref().and_then(Value::as_object) {
            None => plan.creates.push((index, want.payload.clone())),
            Some(current) => {
                let id = current
                    .get("id")
                    .and_then(Value::as_u64)
                    .unwrap_or_default();
                matched_ids.insert(id);
                let patch = diff(spec, &want.payload, current);
                if patch.is_empty() {
                    plan.unchanged.push((index, id));
                } else {
                    let mut patch = patch;
                    patch.insert("id".into(), Value::from(id));
                    plan.updates.push((index, patch));
                }
            }
        }
    }
    plan.delete_candidates = all
        .into_iter()
        .filter(|(id, _)| !matched_ids.contains(id))
        .collect();
    plan
}

/// The owned fields of `want` that differ from `current` (tags merged if the kind says so;
/// `tagged_vlans` compared as a set).
pub fn diff(
    spec: &KindSpec,
    want: &Map<String, Value>,
    current: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (field, value) in want {
        if field == "id" || !spec.owned.contains(field) {
            continue;
        }
        match field.as_str() {
            "tags" => {
                let wanted = tag_set(value);
                let have = current.get("tags").map(tag_set).unwrap_or_default();
                let target: BTreeSet<TagRef> = if spec.merge_tags {
                    have.union(&wanted).cloned().collect()
                } else {
                    wanted
                };
                if target != have {
                    patch.insert(
                        field.clone(),
                        Value::Array(target.into_iter().map(TagRef::into_value).collect()),
                    );
                }
            }
            "custom_fields" => {
                let empty = Map::new();
                let have = current
                    .get(field)
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                let differs = value.as_object().is_some_and(|want| {
                    want.iter().any(|(k, v)| match have.get(k) {
                        Some(h) => normalise(h) != normalise(v),
                        None => true,
                    })
                });
                if differs {
                    patch.insert(field.clone(), value.clone());
                }
            }
            "tagged_vlans" => {
                let ids = |v: Option<&Value>| -> BTreeSet<String> {
                    v.map(normalise)
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default()
                        .iter()
                        .map(Value::to_string)
                        .collect()
                };
                if ids(current.get(field)) != ids(Some(value)) {
                    patch.insert(field.clone(), value.clone());
                }
            }
            _ => {
                let have = current.get(field);
                if have.map(normalise) != Some(normalise(value)) {
                    patch.insert(field.clone(), value.clone());
                }
            }
        }
    }
    patch
}

/// NetBox's representation reduced to what a desired payload says: related objects to
/// their id, choice fields to their value, integral numbers to integers, lists of tags
/// to a sorted set.
pub fn normalise(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        Value::Object(obj) => {
            if let Some(id) = obj.get("id") {
                return normalise(id);
            }
            if let (Some(v), true) = (obj.get("value"), obj.contains_key("label")) {
                return normalise(v);
            }
            Value::Object(obj.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// A tag reference: by id, or by name/slug when no id is known.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TagRef {
    Id(u64),
    Name(String),
}

impl TagRef {
    fn into_value(self) -> Value {
        match self {
            TagRef::Id(id) => Value::from(id),
            TagRef::Name(name) => serde_json::json!({ "name": name }),
        }
    }
}

fn tag_set(value: &Value) -> BTreeSet<TagRef> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|t| match t {
                    Value::Number(n) => n.as_u64().map(TagRef::Id),
                    Value::Object(o) => o
                        .get("id")
                        .and_then(Value::as_u64)
                        .map(TagRef::Id)
                        .or_else(|| {
                            o.get("name")
                                .and_then(Value::as_str)
                                .map(|n| TagRef::Name(n.to_string()))
                        }),
                    Value::String(s) => Some(TagRef::Name(s.clone())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a listed object carries the tag with `slug`.
pub fn has_tag(object: &Map<String, Value>, slug: &str) -> bool {
    object
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| {
            tags.iter()
                .any(|t| t.get("slug").and_then(Value::as_str) == Some(slug))
        })
}

fn key(identity: &Identity) -> Vec<String> {
    identity.iter().map(|v| normalise(v).to_string()).collect()
}

/// The outcome of applying a plan.
#[derive(Debug, Default)]
pub struct Applied {
    /// NetBox id of each desired index that now exists (created, updated or unchanged);
    /// `None` when NetBox's answer carried none. The answers themselves are not kept.
    pub ids: BTreeMap<usize, Option<u64>>,
    /// Desired index -> why it failed (NetBox's message).
    pub failed: BTreeMap<usize, NetBoxError>,
    /// Created count.
    pub created: usize,
    /// Updated count.
    pub updated: usize,
    /// Unchanged count.
    pub unchanged: usize,
    /// Deleted ids.
    pub deleted: Vec<u64>,
    /// Delete candidates kept because they lack our ownership mark or the scope was incomplete.
    pub kept: Vec<u64>,
}

/// Apply `plan` with bulk writes. Delete candidates are deleted only when
/// `scope_complete` (the source scope was read completely) and they carry our ownership
/// tag; all others are kept.
pub async fn apply(
    client: &NetBoxClient,
    spec: &KindSpec,
    plan: Plan,
    scope_complete: bool,
) -> Applied {
    let mut applied = Applied {
        unchanged: plan.unchanged.len(),
        ..Applied::default()
    };
    for (index, id) in &plan.unchanged {
        applied.ids.insert(*index, Some(*id));
    }
    if !plan.creates.is_empty() {
        let (indices, payloads): (Vec<usize>, Vec<Value>) = plan
            .creates
            .into_iter()
            .map(|(i, p)| (i, Value::Object(p)))
            .unzip();
        for (index, result) in indices
            .into_iter()
            .zip(client.bulk_create(&spec.path, payloads).await)
        {
            match result {
                Ok(id) => {
                    applied.created += 1;
                    applied.ids.insert(index, id);
                }
                Err(e) => {
                    applied.failed.insert(index, e);
                }
            }
        }
    }
    if !plan.updates.is_empty() {
        let (indices, patches): (Vec<usize>, Vec<Value>) = plan
            .updates
            .into_iter()
            .map(|(i, p)| (i, Value::Object(p)))
            .unzip();
        for (index, result) in indices
            .into_iter()
            .zip(client.bulk_update(&spec.path, patches).await)
        {
            match result {
                Ok(id) => {
                    applied.updated += 1;
                    applied.ids.insert(index, id);
                }
                Err(e) => {
                    applied.failed.insert(index, e);
                }
            }
        }
    }
    let mut ids = Vec::new();
    for (id, owned) in plan.delete_candidates {
        if owned && scope_complete {
            ids.push(id);
        } else {
            applied.kept.push(id);
        }
    }
    if !ids.is_empty() {
        for (id, result) in ids.iter().zip(client.bulk_delete(&spec.path, &ids).await) {
            match result {
                Ok(()) => applied.deleted.push(*id),
                Err(e) => tracing::warn!(id, "delete failed: {e}"),
            }
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalise_reduces_netbox_representations() {
        assert_eq!(normalise(&json!({"id": 3, "name": "x"})), json!(3));
        assert_eq!(
            normalise(&json!({"value": "active", "label": "Active"})),
            json!("active")
        );
        assert_eq!(normalise(&json!(2.0)), json!(2));
        assert_eq!(normalise(&json!(2.5)), json!(2.5));
    }

    #[test]
    fn tagged_vlans_compare_as_a_set() {
        let spec = KindSpec {
            path: "virtualization/interfaces/".into(),
            identity: Box::new(|_| None),
            owned: BTreeSet::from(["tagged_vlans".to_string()]),
            merge_tags: true,
            ownership_tag: "proxbox".into(),
        };
        let want = |ids: Value| json!({"tagged_vlans": ids}).as_object().unwrap().clone();
        let have = want(json!([{"id": 30, "vid": 3}, {"id": 20, "vid": 2}]));
        assert!(diff(&spec, &want(json!([20, 30])), &have).is_empty());
        assert_eq!(
            diff(&spec, &want(json!([20])), &have)["tagged_vlans"],
            json!([20])
        );
    }
}
