//! Plan and apply one kind, or (dry run) only plan: the per-object outcome either way.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::report::Outcome;
use crate::netbox::reconcile::{self, Desired, KindSpec};
use crate::netbox::{Existing, Listed, NetBoxClient, NetBoxError};

/// The outcome of reconciling one kind.
#[derive(Debug, Default)]
pub struct KindResult {
    /// Per desired index: what happened and the NetBox id (when it exists).
    pub items: BTreeMap<usize, (Outcome, Option<u64>)>,
    /// Deleted ids (dry run: would be deleted), with their outcome.
    pub deleted: Vec<(u64, Outcome)>,
}

impl KindResult {
    /// The NetBox id of desired object `index`, if it exists.
    pub fn id(&self, index: usize) -> Option<u64> {
        self.items.get(&index).and_then(|(_, id)| *id)
    }

    /// What happened to desired object `index`, and its NetBox id.
    pub fn outcome(&self, index: usize) -> (Outcome, Option<u64>) {
        self.items.get(&index).cloned().unwrap_or((
            Outcome::Failed("missing from the reconcile result".into()),
            None,
        ))
    }
}

/// The spec of a plugin record that belongs to a VM, matched by `(virtual_machine, key)`.
pub fn per_vm_spec(path: &str, key: &'static str, owned: &[&str]) -> KindSpec {
    KindSpec {
        path: path.to_string(),
        identity: Box::new(move |o: &Map<String, Value>| {
            Some(vec![
                reconcile::normalise(o.get("virtual_machine")?),
                serde_json::json!(o.get(key)?.as_str()?),
            ])
        }),
        owned: owned.iter().map(|f| f.to_string()).collect(),
        merge_tags: true,
        ownership_tag: crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG.to_string(),
    }
}

/// The `fields` filter of a list read for reconciling `desired` under `spec`: `id`,
/// `tags`, the owned fields the payloads carry, and `also` (what the identity and the
/// stage read). NetBox then serialises only those (a third less work for VMs).
pub fn list_fields(spec: &KindSpec, desired: &[Desired], also: &[&str]) -> (&'static str, String) {
    let mut fields: BTreeSet<&str> = ["id", "tags"].into_iter().collect();
    fields.extend(also.iter().copied());
    for want in desired {
        fields.extend(
            want.payload
                .keys()
                .map(String::as_str)
                .filter(|k| spec.owned.contains(*k)),
        );
    }
    ("fields", fields.into_iter().collect::<Vec<_>>().join(","))
}

/// Reconcile `desired` against `existing`; deletes only owned delete candidates when
/// `scope_complete`. On `dry_run` nothing is written and the outcomes say what would be.
pub async fn reconcile_kind<E: Existing>(
    client: &NetBoxClient,
    spec: &KindSpec,
    desired: &[Desired],
    existing: &[E],
    scope_complete: bool,
    dry_run: bool,
) -> KindResult {
    let plan = reconcile::plan(spec, desired, existing);
    let mut result = KindResult::default();
    for index in &plan.duplicates {
        result.items.insert(
            *index,
            (
                Outcome::Failed("another object in this run has the same identity".into()),
                None,
            ),
        );
    }
    let changed: BTreeMap<usize, (Vec<String>, Option<u64>)> = plan
        .updates
        .iter()
        .map(|(i, patch)| {
            (
                *i,
                (
                    changed_fields(patch),
                    patch.get("id").and_then(Value::as_u64),
                ),
            )
        })
        .collect();
    for (index, id) in &plan.unchanged {
        result.items.insert(*index, (Outcome::Unchanged, Some(*id)));
    }
    if dry_run {
        for (index, _) in &plan.creates {
            result.items.insert(*index, (Outcome::Created, None));
        }
        for (index, (fields, id)) in changed {
            result.items.insert(index, (Outcome::Updated(fields), id));
        }
        for (id, owned) in &plan.delete_candidates {
            if *owned && scope_complete {
                result.deleted.push((*id, Outcome::Deleted));
            }
        }
        return result;
    }
    let creates: BTreeSet<usize> = plan.creates.iter().map(|(i, _)| *i).collect();
    let applied = reconcile::apply(client, spec, plan, scope_complete).await;
    for (index, error) in &applied.failed {
        let id = changed.get(index).and_then(|(_, id)| *id);
        result
            .items
            .insert(*index, (Outcome::Failed(describe(error)), id));
    }
    for (index, id) in applied.ids {
        if result.items.contains_key(&index) {
            continue;
        }
        let outcome = if creates.contains(&index) {
            Outcome::Created
        } else if let Some((fields, _)) = changed.get(&index) {
            Outcome::Updated(fields.clone())
        } else {
            Outcome::Unchanged
        };
        result.items.insert(index, (outcome, id));
    }
    result.deleted = applied
        .deleted
        .into_iter()
        .map(|id| (id, Outcome::Deleted))
        .collect();
    result
}

fn changed_fields(patch: &Map<String, Value>) -> Vec<String> {
    patch.keys().filter(|k| *k != "id").cloned().collect()
}

/// Delete `ids` at `path` in bulk (dry run: only say so); per id, `Deleted` or why not.
pub async fn delete_ids(
    client: &NetBoxClient,
    path: &str,
    ids: &[u64],
    dry_run: bool,
) -> Vec<Outcome> {
    if dry_run || ids.is_empty() {
        return ids.iter().map(|_| Outcome::Deleted).collect();
    }
    client
        .bulk_delete(path, ids)
        .await
        .into_iter()
        .map(|r| r.map_or_else(|e| Outcome::Failed(describe(&e)), |()| Outcome::Deleted))
        .collect()
}

/// NetBox's complaint about one object, in one line.
pub fn describe(error: &NetBoxError) -> String {
    error.to_string()
}

/// Every object at `path` whose `field` is one of `values`, one list read per value
/// (concurrently): for the plugin's filters that take a single value (a repeated
/// `cluster=` or `virtual_machine=` keeps only the last).
pub async fn list_each(
    client: &NetBoxClient,
    path: &str,
    field: &str,
    values: &BTreeSet<String>,
    extra: &[(&str, String)],
) -> Result<Vec<Listed>, NetBoxError> {
    let queries: Vec<Vec<(&str, String)>> = values
        .iter()
        .map(|value| {
            let mut query = extra.to_vec();
            query.push((field, value.clone()));
            query
        })
        .collect();
    list_all(client, path, &queries).await
}

/// Every object of each of `queries` at `path`, read concurrently (bounded by the client).
async fn list_all(
    client: &NetBoxClient,
    path: &str,
    queries: &[Vec<(&str, String)>],
) -> Result<Vec<Listed>, NetBoxError> {
    let reads = futures::future::join_all(queries.iter().map(|q| client.listed(path, q))).await;
    let mut out = Vec::new();
    for read in reads {
        out.extend(read?);
    }
    Ok(out)
}

/// Characters of filter values one list request carries (NetBox's gunicorn takes
/// request lines of up to 4094 bytes; the rest is left for the path and other filters).
const FILTER_BUDGET: usize = 2500;

/// Every object at `path` whose `field` is one of `values`: the values are split into
/// requests that fit in a request line, read concurrently (bounded by the client).
pub async fn list_by(
    client: &NetBoxClient,
    path: &str,
    field: &str,
    values: &BTreeSet<String>,
    extra: &[(&str, String)],
) -> Result<Vec<Listed>, NetBoxError> {
    let mut chunks: Vec<Vec<(&str, String)>> = Vec::new();
    let mut used = FILTER_BUDGET;
    for value in values {
        let encoded: usize = url::form_urlencoded::byte_serialize(value.as_bytes())
            .map(str::len)
            .sum();
        let cost = field.len() + encoded + 2;
        if used + cost > FILTER_BUDGET {
            chunks.push(extra.to_vec());
            used = 0;
        }
        used += cost;
        if let Some(chunk) = chunks.last_mut() {
            chunk.push((field, value.clone()));
        }
    }
    list_all(client, path, &chunks).await
}
