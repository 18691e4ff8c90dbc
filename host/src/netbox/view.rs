//! The NetBox view: the big list reads of a sync kept between runs and brought up to
//! date from NetBox's change log, so an estate that did not change is not re-read
//! object by object (NetBox spends 1–2 ms serialising each object it lists).
//!
//! How it stays exact:
//! - **What is kept**: lists of VMs, virtual disks, the plugin's VM and disk sync-state
//!   records, backups and snapshots ([`KEPT`]), per path and query, each object as its
//!   compact JSON. Other lists are always read from NetBox.
//! - **Our writes** are applied to the kept lists as NetBox answered them (projected to
//!   each list's `fields`/`exclude`); a created or updated object joins a list when the
//!   view can evaluate the list's filters on it ([`FILTERS`]), else it is re-read by id
//!   at the list's next use. Their change records are then recognised by NetBox's
//!   `X-Request-ID` and skipped, unless they touched objects we did not write (cascades).
//! - **Everyone else's writes** come from `/api/core/object-changes/` since the
//!   previous run (with a 5-minute overlap for late commits): each changed kept object
//!   is re-read by id at its list's next use; a deleted one disappears that way.
//! - **Writes NetBox makes without a change record of the object**: a virtual disk or VM
//!   interface changes its VM's `disk` and counters ([`DERIVED`]), so the VM is re-read;
//!   a foreign delete of any other type (NetBox may null references in SQL) or a change of
//!   a cluster, tag or custom field ([`RESHAPING`]) drops the whole view.
//! - A list not read from NetBox for `max_age` is read in full again, which bounds what a
//!   change outside the change log (raw SQL, a shell) can hide. An unreadable change log
//!   drops the view for the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::NetBoxClient;
use super::error::NetBoxError;
use super::listed::Listed;
use super::reconcile::normalise;

const VM_PATH: &str = "virtualization/virtual-machines/";
const CHANGES_PATH: &str = "core/object-changes/";

/// The lists the view keeps: `(change-record type, API path)`.
pub const KEPT: [(&str, &str); 6] = [
    ("virtualization.virtualmachine", VM_PATH),
    (
        "virtualization.virtualdisk",
        "virtualization/virtual-disks/",
    ),
    (
        "netbox_proxbox.proxboxvirtualmachinesyncstate",
        "plugins/proxbox/sync-state/virtual-machines/",
    ),
    (
        "netbox_proxbox.proxboxvirtualdisksyncstate",
        "plugins/proxbox/sync-state/virtual-disks/",
    ),
    ("netbox_proxbox.vmbackup", "plugins/proxbox/backups/"),
    ("netbox_proxbox.vmsnapshot", "plugins/proxbox/snapshots/"),
];

/// Objects whose writes change their parent in SQL, without a change record of the
/// parent (NetBox keeps a VM's `disk`, `virtual_disk_count` and `interface_count`):
/// `(child type, child path, parent field, parent path)`.
pub const DERIVED: [(&str, &str, &str, &str); 2] = [
    (
        "virtualization.virtualdisk",
        "virtualization/virtual-disks/",
        "virtual_machine",
        VM_PATH,
    ),
    (
        "virtualization.vminterface",
        "virtualization/interfaces/",
        "virtual_machine",
        VM_PATH,
    ),
];

/// Kept objects that others point at, with the field that points: deleting one deletes
/// (or changes) the objects pointing at it in the same request, which the view re-reads.
pub const REFERENCED: [(&str, &str); 2] = [
    (VM_PATH, "virtual_machine"),
    ("virtualization/virtual-disks/", "virtual_disk"),
];

/// Types whose foreign changes can change kept objects without a change record of them:
/// a cluster's site is copied to its VMs in SQL; tags and custom fields are part of
/// every object.
pub const RESHAPING: [&str; 4] = [
    "virtualization.cluster",
    "extras.tag",
    "extras.customfield",
    "extras.customfieldchoiceset",
];

/// List filters the view can evaluate on an object: `(query key, object field)`. The
/// plugin's `virtual_machine` filter takes a VM id.
pub const FILTERS: [(&str, &str); 5] = [
    ("id", "id"),
    ("cluster_id", "cluster"),
    ("virtual_machine_id", "virtual_machine"),
    ("virtual_machine", "virtual_machine"),
    ("virtual_disk_id", "virtual_disk"),
];

/// Query keys that shape the answer without filtering it.
const SHAPING: [&str; 2] = ["fields", "exclude"];

/// How far before the previous run's newest change record the next run reads the log
/// again: a change recorded in a transaction that committed late is still seen.
const OVERLAP: Duration = Duration::from_secs(300);

/// Change records read one by one at most; beyond, our own requests are counted first.
const READ_ALL: u64 = 20_000;

/// Ids per re-read request (they fit NetBox's request line).
const IDS_PER_READ: usize = 250;

/// The fields of a change record the view reads.
const CHANGE_FIELDS: &str = "id,time,request_id,action,changed_object_type,changed_object_id";

type Key = (String, Vec<(String, String)>);

/// Kept lists of one NetBox, shared by the runs of a host (see the module docs).
pub struct NetBoxView {
    max_age: Duration,
    state: Mutex<State>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The newest change record when the view was last brought up to date.
    mark: Option<Mark>,
    /// False after a failed refresh: nothing is kept until one succeeds.
    usable: bool,
    entries: HashMap<Key, Entry>,
    /// Our write requests by NetBox request id.
    own: HashMap<String, Own>,
    /// Writes applied per path, to tell a list read that raced one of ours.
    writes: HashMap<String, u64>,
    /// Change records already taken into account, with their time: the overlap of the
    /// next window reads them again, and only a late commit among them is new.
    processed: BTreeMap<u64, OffsetDateTime>,
}

#[derive(Clone, Debug)]
struct Mark {
    id: u64,
    time: OffsetDateTime,
    /// How many records the window of this mark (the `OVERLAP` before it, up to its id)
    /// held when the mark was read: the next refresh reads the window again only when
    /// that count grew (a late commit).
    window: Option<u64>,
}

#[derive(Default)]
struct Own {
    /// The kept objects this request wrote and the view applied.
    objects: BTreeSet<(String, u64)>,
    /// The newest change record at the first refresh after the request: its records
    /// are no newer than that.
    seen: Option<OffsetDateTime>,
}

struct Entry {
    read_at: Instant,
    objects: BTreeMap<u64, Listed>,
    /// Ids to re-read at the next use (changed since, or written with filters the view
    /// cannot evaluate).
    dirty: BTreeSet<u64>,
}

/// What bringing the view up to date found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Change records read.
    pub changes: usize,
    /// Kept objects marked for a re-read.
    pub dirty: usize,
    /// Why the whole view was dropped, if it was.
    pub dropped: Option<String>,
}

impl NetBoxView {
    /// An empty view whose lists are read in full again after `max_age`.
    pub fn new(max_age: Duration) -> Self {
        NetBoxView {
            max_age,
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the view keeps the list at `path` with `query`.
    pub fn keeps(path: &str, query: &[(&str, String)]) -> bool {
        let path = path.trim_start_matches('/');
        KEPT.iter().any(|(_, p)| *p == path)
            && query.iter().all(|(k, _)| {
                SHAPING.contains(k) || FILTERS.iter().any(|(f, _)| f == k) || *k == "limit"
            })
            && query
                .iter()
                .all(|(k, v)| *k != "limit" || v.parse::<usize>().ok() == Some(super::PAGE_SIZE))
    }

    /// Bring the view up to date with the change log since the previous refresh.
    pub async fn refresh(&self, client: &NetBoxClient) -> Refresh {
        let _one = self.refreshing.lock().await;
        match self.read_changes(client).await {
            Ok((head, changes)) => self.apply_changes(client, head, changes).await,
            Err(e) => {
                let reason = format!("cannot read NetBox's change log: {e}");
                tracing::warn!("NetBox view dropped: {reason}");
                let mut state = self.lock();
                state.entries.clear();
                state.usable = false;
                state.mark = None;
                Refresh {
                    dropped: Some(reason),
                    ..Refresh::default()
                }
            }
        }
    }

    /// The newest change record and the records since the previous mark (none when
    /// there is nothing kept to check).
    async fn read_changes(
        &self,
        client: &NetBoxClient,
    ) -> Result<(Option<Mark>, Vec<Value>), NetBoxError> {
        let head = client
            .request(
                reqwest::Method::GET,
                CHANGES_PATH,
                &[
                    ("ordering", "-id".into()),
                    ("limit", "1".into()),
                    ("fields", "id,time".into()),
                ],
                None,
            )
            .await?;
        let mut head = head
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(mark_of);
        // Counted before anything else is read, so every record it counts is visible to
        // the reads below and taken into account by this refresh.
        if let Some(head) = head.as_mut() {
            head.window = Some(count(client, &window_of(head)).await?);
        }
        let (previous, kept) = {
            let state = self.lock();
            (state.mark.clone(), !state.entries.is_empty())
        };
        let previous = match (kept, previous, &head) {
            // Nothing kept yet: what is in NetBox now is read fresh, and the window count
            // of the head lets the next refresh skip the overlap.
            (false, _, _) => return Ok((head, Vec::new())),
            (true, previous, _) => previous,
        };
        // Lists are kept only after a refresh succeeded; no mark then means the log was empty.
        let newer: Vec<(&str, String)> = previous
            .iter()
            .map(|p| ("id__gt", p.id.to_string()))
            .collect();
        let mut changes = self.read_newer(client, &newer).await?;
        // A record older than the mark that was not visible then (its transaction
        // committed late): the overlap holds more records than were taken into account.
        if let Some(previous) = previous {
            let window = window_of(&previous);
            let now = count(client, &window).await?;
            let known = {
                let start = previous.time - OVERLAP;
                let state = self.lock();
                state
                    .processed
                    .range(..=previous.id)
                    .filter(|(_, t)| **t >= start)
                    .count() as u64
            };
            if previous.window != Some(now) && now != known {
                let mut query = window.to_vec();
                query.push(("fields", CHANGE_FIELDS.into()));
                changes.extend(values(client.list_fresh(CHANGES_PATH, &query).await?));
            }
        }
        Ok((head, changes))
    }

    /// The change records matching `filter` (those after the mark). Many records are most
    /// likely our own (a cold sync): each of our requests is counted, and when they add up
    /// to all, only the requests that touched more than we wrote are read.
    async fn read_newer(
        &self,
        client: &NetBoxClient,
        filter: &[(&'static str, String)],
    ) -> Result<Vec<Value>, NetBoxError> {
        let with = |extra: &[(&'static str, String)]| {
            let mut q = filter.to_vec();
            q.extend_from_slice(extra);
            q
        };
        let total = count(client, filter).await?;
        if total == 0 {
            return Ok(Vec::new());
        }
        if total <= READ_ALL {
            return client
                .list_fresh(CHANGES_PATH, &with(&[("fields", CHANGE_FIELDS.into())]))
                .await
                .map(values);
        }
        let requests: Vec<(String, usize)> = {
            let state = self.lock();
            state
                .own
                .iter()
                .map(|(r, own)| (r.clone(), own.objects.len()))
                .collect()
        };
        let queries: Vec<Vec<(&str, String)>> = requests
            .iter()
            .map(|(r, _)| with(&[("request_id", r.clone())]))
            .collect();
        let counts = futures::future::join_all(queries.iter().map(|q| count(client, q))).await;
        let mut ours = 0;
        let mut read = Vec::new();
        for ((request, written), counted) in requests.iter().zip(counts) {
            let counted = counted?;
            ours += counted;
            if counted as usize != *written {
                read.push(request.clone());
            }
        }
        if ours != total {
            return client
                .list_fresh(CHANGES_PATH, &with(&[("fields", CHANGE_FIELDS.into())]))
                .await
                .map(values);
        }
        let reads = futures::future::join_all(read.iter().map(|r| {
            let query = with(&[("request_id", r.clone()), ("fields", CHANGE_FIELDS.into())]);
            async move { client.list_fresh(CHANGES_PATH, &query).await }
        }))
        .await;
        let mut changes = Vec::new();
        for r in reads {
            changes.extend(values(r?));
        }
        Ok(changes)
    }

    async fn apply_changes(
        &self,
        client: &NetBoxClient,
        head: Option<Mark>,
        changes: Vec<Value>,
    ) -> Refresh {
        let mut report = Refresh::default();
        let mut dirty: Vec<(&'static str, u64)> = Vec::new();
        let mut parents_of: Vec<u64> = Vec::new();
        let mut deleted_parents: Vec<(&'static str, u64)> = Vec::new();
        {
            let mut state = self.lock();
            let noting = state.entries.is_empty();
            let mut new = Vec::new();
            for change in &changes {
                let (Some(id), Some(time)) = (
                    change.get("id").and_then(Value::as_u64),
                    change
                        .get("time")
                        .and_then(Value::as_str)
                        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
                ) else {
                    continue;
                };
                if state.processed.insert(id, time).is_none() && !noting {
                    new.push(change);
                }
            }
            report.changes = new.len();
            for change in new {
                let kind = change
                    .get("changed_object_type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(id) = change.get("changed_object_id").and_then(Value::as_u64) else {
                    continue;
                };
                let action = change
                    .get("action")
                    .map(normalise)
                    .and_then(|a| a.as_str().map(str::to_string))
                    .unwrap_or_default();
                let own = change
                    .get("request_id")
                    .and_then(Value::as_str)
                    .and_then(|r| state.own.get(r));
                let kept = KEPT.iter().find(|(t, _)| *t == kind).map(|(_, p)| *p);
                let absorbed = match (own, kept) {
                    (Some(own), Some(path)) => own.objects.contains(&(path.to_string(), id)),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if absorbed {
                    continue;
                }
                if let Some(path) = kept {
                    dirty.push((path, id));
                    if action == "delete" {
                        deleted_parents.push((path, id));
                    }
                }
                if DERIVED.iter().any(|(t, ..)| *t == kind) {
                    if let Some(change_id) = change.get("id").and_then(Value::as_u64) {
                        parents_of.push(change_id);
                    }
                } else if kept.is_none() && (action == "delete" || RESHAPING.contains(&kind)) {
                    report.dropped = Some(format!("{action} of a {kind} in NetBox"));
                }
            }
        }
        if report.dropped.is_none() && !parents_of.is_empty() {
            match parents(client, &parents_of).await {
                Ok(found) => dirty.extend(found),
                Err(e) => report.dropped = Some(format!("cannot read NetBox's change log: {e}")),
            }
        }
        let mut state = self.lock();
        state.usable = true;
        if let Some(reason) = &report.dropped {
            tracing::info!("NetBox view dropped: {reason}");
            state.entries.clear();
        }
        let max_age = self.max_age;
        state.entries.retain(|_, e| e.read_at.elapsed() < max_age);
        for (path, id) in deleted_parents {
            mark_referencing(&mut state, path, &[id]);
        }
        for (path, id) in dirty {
            let mut marked = false;
            for ((p, _), entry) in state.entries.iter_mut() {
                if p == path {
                    entry.dirty.insert(id);
                    marked = true;
                }
            }
            report.dirty += usize::from(marked);
        }
        let window_start = head.as_ref().map(|h| h.time - OVERLAP);
        for own in state.own.values_mut() {
            if own.seen.is_none() {
                own.seen = head.as_ref().map(|h| h.time);
            }
        }
        state.own.retain(|_, own| match (own.seen, window_start) {
            (Some(seen), Some(start)) => seen >= start,
            _ => true,
        });
        if let Some(start) = window_start {
            state.processed.retain(|_, time| *time >= start);
        }
        if let (Some(new), Some(old)) = (&head, &state.mark)
            && new.id < old.id
        {
            report.dropped = Some("NetBox's change log went back".into());
            state.entries.clear();
        }
        state.mark = head;
        report
    }

    /// The list at `path` with `query`: kept objects, with those marked dirty re-read by
    /// id, or (not kept yet, too old, or the view unusable) read from NetBox in full.
    pub async fn list(
        &self,
        client: &NetBoxClient,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Listed>, NetBoxError> {
        let key = key(path, query);
        let (kept, dirty, writes) = {
            let state = self.lock();
            let writes = state.writes.get(&key.0).copied().unwrap_or(0);
            match state.entries.get(&key) {
                Some(e) if state.usable && e.read_at.elapsed() < self.max_age => {
                    (true, e.dirty.clone(), writes)
                }
                _ => (false, BTreeSet::new(), writes),
            }
        };
        if !kept {
            let objects = client.list_fresh(path, query).await?;
            let mut state = self.lock();
            if state.usable && state.writes.get(&key.0).copied().unwrap_or(0) == writes {
                let entry = Entry {
                    read_at: Instant::now(),
                    objects: objects
                        .iter()
                        .filter_map(|o| Some((o.id()?, o.clone())))
                        .collect(),
                    dirty: BTreeSet::new(),
                };
                if entry.objects.len() == objects.len() {
                    state.entries.insert(key, entry);
                }
            }
            return Ok(objects);
        }
        let mut fresh = Vec::new();
        for query in reread_queries(query, &dirty) {
            let query: Vec<(&str, String)> =
                query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            fresh.extend(client.list_fresh(path, &query).await?);
        }
        let merged = self.merge(&key, &dirty, &fresh, writes);
        match merged {
            Some(objects) => Ok(objects),
            None => client.list_fresh(path, query).await,
        }
    }

    /// Put the re-read `fresh` objects (for the `dirty` ids) into the kept list `key`
    /// and return the list; `None` when it is no longer kept.
    fn merge(
        &self,
        key: &Key,
        dirty: &BTreeSet<u64>,
        fresh: &[Listed],
        writes: u64,
    ) -> Option<Vec<Listed>> {
        let mut state = self.lock();
        let raced = state.writes.get(&key.0).copied().unwrap_or(0) != writes;
        let entry = state.entries.get_mut(key)?;
        for id in dirty {
            entry.objects.remove(id);
            if !raced {
                entry.dirty.remove(id);
            }
        }
        for object in fresh {
            if let Some(id) = object.id() {
                entry.objects.insert(id, object.clone());
            }
        }
        Some(entry.objects.values().cloned().collect())
    }

    /// Apply one of our successful writes (`method` on `path`, with the request `body`
    /// and NetBox's `answer`) to the kept lists, and remember its request id.
    pub fn absorb(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
        answer: &Value,
        request_id: Option<&str>,
    ) {
        let (collection, detail) = split_path(path);
        let mut written: Vec<&serde_json::Map<String, Value>> = Vec::new();
        let mut deleted: Vec<u64> = Vec::new();
        if *method == reqwest::Method::DELETE {
            deleted.extend(detail);
            if let Some(items) = body.and_then(Value::as_array) {
                deleted.extend(items.iter().filter_map(|i| i.get("id")?.as_u64()));
            }
        } else {
            match answer {
                Value::Array(items) => written.extend(items.iter().filter_map(Value::as_object)),
                Value::Object(object) => written.push(object),
                _ => {}
            }
        }
        let mut state = self.lock();
        *state.writes.entry(collection.clone()).or_default() += 1;
        let is_kept = KEPT.iter().any(|(_, p)| *p == collection);
        let mut touched = BTreeSet::new();
        let mut parents: BTreeSet<u64> = BTreeSet::new();
        let mut unknown_parent = false;
        let derived = DERIVED.iter().find(|(_, p, ..)| *p == collection);
        if let Some((_, _, field, _)) = derived {
            for object in &written {
                match object.get(*field).map(normalise).and_then(|v| v.as_u64()) {
                    Some(parent) => {
                        parents.insert(parent);
                    }
                    None => unknown_parent = true,
                }
            }
            for id in &deleted {
                let parent = state
                    .entries
                    .iter()
                    .filter(|((p, _), _)| *p == collection)
                    .find_map(|(_, e)| {
                        let object = e.objects.get(id)?.value();
                        object.get(*field).map(normalise)?.as_u64()
                    });
                match parent {
                    Some(parent) => {
                        parents.insert(parent);
                    }
                    None => unknown_parent = true,
                }
            }
        }
        for ((p, query), entry) in state.entries.iter_mut() {
            if *p != collection {
                continue;
            }
            for object in &written {
                let Some(id) = object.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                match holds(query, object) {
                    Some(true) => {
                        entry
                            .objects
                            .insert(id, Listed::new(&project(query, object)));
                        entry.dirty.remove(&id);
                    }
                    Some(false) => {
                        entry.objects.remove(&id);
                    }
                    None => {
                        entry.dirty.insert(id);
                    }
                }
            }
            for id in &deleted {
                entry.objects.remove(id);
                entry.dirty.remove(id);
            }
        }
        if !deleted.is_empty() {
            mark_referencing(&mut state, &collection, &deleted);
        }
        if is_kept {
            touched.extend(
                written
                    .iter()
                    .filter_map(|o| o.get("id").and_then(Value::as_u64))
                    .chain(deleted.iter().copied())
                    .map(|id| (collection.clone(), id)),
            );
        }
        if let Some((.., parent_path)) = derived {
            *state.writes.entry(parent_path.to_string()).or_default() += 1;
            for ((p, _), entry) in state.entries.iter_mut() {
                if p != parent_path {
                    continue;
                }
                entry
                    .dirty
                    .extend(parents.iter().filter(|id| entry.objects.contains_key(id)));
            }
            if unknown_parent {
                state.entries.retain(|(p, _), _| p != parent_path);
            }
        }
        if let Some(request) = request_id {
            state
                .own
                .entry(request.to_string())
                .or_default()
                .objects
                .extend(touched);
        }
    }

    /// Objects kept, over all lists (for tests and reports).
    pub fn kept_objects(&self) -> usize {
        self.lock().entries.values().map(|e| e.objects.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Mark for a re-read every kept object that points (by a [`REFERENCED`] field) at one
/// of the `deleted` objects at `path`.
fn mark_referencing(state: &mut State, path: &str, deleted: &[u64]) {
    let Some((_, field)) = REFERENCED.iter().find(|(p, _)| *p == path) else {
        return;
    };
    let needle = format!("\"{field}\":");
    for ((p, _), entry) in state.entries.iter_mut() {
        if p == path {
            continue;
        }
        let pointing: Vec<u64> = entry
            .objects
            .iter()
            .filter(|(_, listed)| listed.text().contains(&needle))
            .filter_map(|(id, listed)| {
                let object = listed.value();
                let target = object.get(*field).map(normalise)?.as_u64()?;
                deleted.contains(&target).then_some(*id)
            })
            .collect();
        entry.dirty.extend(pointing);
    }
}

/// The start of the window that reads again the records of `OVERLAP` before `time`.
fn after(time: OffsetDateTime) -> String {
    (time - OVERLAP).format(&Rfc3339).unwrap_or_default()
}

fn mark_of(record: &Value) -> Option<Mark> {
    let id = record.get("id")?.as_u64()?;
    let time = OffsetDateTime::parse(record.get("time")?.as_str()?, &Rfc3339).ok()?;
    Some(Mark {
        id,
        time,
        window: None,
    })
}

/// The filter of the records in the `OVERLAP` before `mark`, up to its id.
fn window_of(mark: &Mark) -> [(&'static str, String); 2] {
    [
        ("time_after", after(mark.time)),
        ("id__lte", mark.id.to_string()),
    ]
}

/// The number of change records matching `query`.
async fn count(client: &NetBoxClient, query: &[(&str, String)]) -> Result<u64, NetBoxError> {
    let mut query = query.to_vec();
    query.extend([("limit", "1".to_string()), ("fields", "id".to_string())]);
    let page = client
        .request(reqwest::Method::GET, CHANGES_PATH, &query, None)
        .await?;
    page.get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| NetBoxError::Decode(CHANGES_PATH.into(), "no `count`".into()))
}

/// The parents (`(path, id)`) of the objects of the change records `ids`, from their
/// data before and after the change.
async fn parents(
    client: &NetBoxClient,
    ids: &[u64],
) -> Result<Vec<(&'static str, u64)>, NetBoxError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_READ) {
        let mut query: Vec<(&str, String)> =
            chunk.iter().map(|id| ("id", id.to_string())).collect();
        query.push((
            "fields",
            "id,changed_object_type,prechange_data,postchange_data".into(),
        ));
        for change in values(client.list_fresh(CHANGES_PATH, &query).await?) {
            let kind = change
                .get("changed_object_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some((_, _, field, path)) = DERIVED.iter().find(|(t, ..)| *t == kind) else {
                continue;
            };
            for data in ["prechange_data", "postchange_data"] {
                if let Some(parent) = change
                    .get(data)
                    .and_then(|d| d.get(*field))
                    .map(normalise)
                    .and_then(|v| v.as_u64())
                {
                    out.push((*path, parent));
                }
            }
        }
    }
    Ok(out)
}

fn key(path: &str, query: &[(&str, String)]) -> Key {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| *k != "limit")
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    pairs.sort();
    (path.trim_start_matches('/').to_string(), pairs)
}

/// `(collection path, id of a detail path)`.
fn split_path(path: &str) -> (String, Option<u64>) {
    let path = path.trim_start_matches('/');
    let trimmed = path.trim_end_matches('/');
    if let Some((head, last)) = trimmed.rsplit_once('/')
        && let Ok(id) = last.parse::<u64>()
    {
        return (format!("{head}/"), Some(id));
    }
    (path.to_string(), None)
}

/// Whether the list `query` holds `object`; `None` when it has a filter the view cannot
/// evaluate.
fn holds(query: &[(String, String)], object: &serde_json::Map<String, Value>) -> Option<bool> {
    let mut wanted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (k, v) in query {
        if SHAPING.contains(&k.as_str()) {
            continue;
        }
        wanted.entry(k.as_str()).or_default().insert(v.as_str());
    }
    for (k, values) in wanted {
        let field = FILTERS.iter().find(|(f, _)| *f == k)?.1;
        let value = object.get(field).map(normalise)?;
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::Null => return Some(false),
            _ => return None,
        };
        if !values.contains(text.as_str()) {
            return Some(false);
        }
    }
    Some(true)
}

/// `object` as the list `query` serialises it (`fields` kept, `exclude` removed).
fn project(query: &[(String, String)], object: &serde_json::Map<String, Value>) -> Value {
    let mut out = object.clone();
    for (k, v) in query {
        let names: BTreeSet<&str> = v.split(',').map(str::trim).collect();
        match k.as_str() {
            "fields" => out.retain(|name, _| names.contains(name.as_str())),
            "exclude" => out.retain(|name, _| !names.contains(name.as_str())),
            _ => {}
        }
    }
    Value::Object(out)
}

/// The queries that re-read `dirty` objects of the list `query`: its filters with `id`
/// limited to the dirty ids (intersected with its own `id` filter, if it has one).
fn reread_queries(query: &[(&str, String)], dirty: &BTreeSet<u64>) -> Vec<Vec<(String, String)>> {
    let own_ids: Option<BTreeSet<u64>> = query.iter().any(|(k, _)| *k == "id").then(|| {
        query
            .iter()
            .filter(|(k, _)| *k == "id")
            .filter_map(|(_, v)| v.parse().ok())
            .collect()
    });
    let targets: Vec<u64> = dirty
        .iter()
        .copied()
        .filter(|id| own_ids.as_ref().is_none_or(|own| own.contains(id)))
        .collect();
    let base: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| *k != "id" && *k != "limit")
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    targets
        .chunks(IDS_PER_READ)
        .map(|chunk| {
            let mut q = base.clone();
            q.extend(chunk.iter().map(|id| ("id".to_string(), id.to_string())));
            q
        })
        .collect()
}

/// The parsed objects of a list read (change records, read once).
fn values(listed: Vec<Listed>) -> Vec<Value> {
    listed.iter().map(Listed::value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lists_kept_only_with_filters_the_view_understands() {
        let vm = "virtualization/virtual-machines/";
        assert!(NetBoxView::keeps(vm, &[("cluster_id", "3".into())]));
        assert!(NetBoxView::keeps(vm, &[("fields", "id,name".into())]));
        assert!(!NetBoxView::keeps(vm, &[("name", "web".into())]));
        assert!(!NetBoxView::keeps(vm, &[("ordering", "-id".into())]));
        assert!(!NetBoxView::keeps(vm, &[("limit", "1".into())]));
        assert!(!NetBoxView::keeps("dcim/devices/", &[]));
    }

    #[test]
    fn holds_evaluates_id_filters_on_nested_and_plain_values() {
        let disk = json!({"id": 7, "virtual_machine": {"id": 3, "name": "a"}, "name": "scsi0"});
        let disk = disk.as_object().unwrap();
        assert_eq!(holds(&q(&[("virtual_machine_id", "3")]), disk), Some(true));
        assert_eq!(
            holds(
                &q(&[("virtual_machine_id", "4"), ("virtual_machine_id", "3")]),
                disk
            ),
            Some(true)
        );
        assert_eq!(holds(&q(&[("virtual_machine_id", "4")]), disk), Some(false));
        assert_eq!(
            holds(&q(&[("id", "7"), ("fields", "id")]), disk),
            Some(true)
        );
        assert_eq!(holds(&q(&[("name", "scsi0")]), disk), None);
        let unassigned = json!({"id": 8, "virtual_machine": null});
        assert_eq!(
            holds(
                &q(&[("virtual_machine_id", "3")]),
                unassigned.as_object().unwrap()
            ),
            Some(false)
        );
    }

    #[test]
    fn project_keeps_the_list_fields() {
        let vm = json!({"id": 1, "name": "a", "config_context": {}, "tags": []});
        let vm = vm.as_object().unwrap();
        assert_eq!(
            project(&q(&[("fields", "id,tags")]), vm),
            json!({"id": 1, "tags": []})
        );
        assert_eq!(
            project(&q(&[("exclude", "config_context")]), vm),
            json!({"id": 1, "name": "a", "tags": []})
        );
    }

    #[test]
    fn rereads_intersect_a_list_own_id_filter() {
        let dirty: BTreeSet<u64> = [2, 5, 9].into();
        let query = [
            ("id", "5".to_string()),
            ("id", "6".to_string()),
            ("fields", "id".to_string()),
        ];
        assert_eq!(
            reread_queries(&query, &dirty),
            vec![q(&[("fields", "id"), ("id", "5")])]
        );
        let query = [("cluster_id", "1".to_string())];
        assert_eq!(
            reread_queries(&query, &dirty),
            vec![q(&[
                ("cluster_id", "1"),
                ("id", "2"),
                ("id", "5"),
                ("id", "9")
            ])]
        );
        let many: BTreeSet<u64> = (0..600).collect();
        assert_eq!(reread_queries(&query, &many).len(), 3);
    }

    #[test]
    fn detail_paths_split_into_collection_and_id() {
        assert_eq!(
            split_path("virtualization/virtual-disks/12/"),
            ("virtualization/virtual-disks/".to_string(), Some(12))
        );
        assert_eq!(
            split_path("/virtualization/virtual-disks/"),
            ("virtualization/virtual-disks/".to_string(), None)
        );
    }

    #[test]
    fn our_writes_update_kept_lists_and_mark_parent_vms() {
        let view = NetBoxView::new(Duration::from_secs(3600));
        {
            let mut state = view.lock();
            state.usable = true;
            let entry = |objects: &[(u64, Value)]| Entry {
                read_at: Instant::now(),
                objects: objects
                    .iter()
                    .map(|(id, o)| (*id, Listed::new(o)))
                    .collect(),
                dirty: BTreeSet::new(),
            };
            state.entries.insert(
                key(
                    "virtualization/virtual-disks/",
                    &[
                        ("virtual_machine_id", "3".into()),
                        ("fields", "id,virtual_machine,size".into()),
                    ],
                ),
                entry(&[(
                    7,
                    json!({"id": 7, "virtual_machine": {"id": 3}, "size": 10}),
                )]),
            );
            state.entries.insert(
                key(VM_PATH, &[("cluster_id", "1".into())]),
                entry(&[(3, json!({"id": 3, "cluster": {"id": 1}, "disk": 10}))]),
            );
        }
        view.absorb(
            &reqwest::Method::POST,
            "virtualization/virtual-disks/",
            None,
            &json!([
                {"id": 8, "virtual_machine": {"id": 3}, "size": 5, "name": "scsi1"},
                {"id": 9, "virtual_machine": {"id": 4}, "size": 5, "name": "scsi0"}
            ]),
            Some("req-1"),
        );
        let state = view.lock();
        let disks = state
            .entries
            .iter()
            .find(|((p, _), _)| p == "virtualization/virtual-disks/")
            .unwrap()
            .1;
        assert_eq!(
            disks.objects.keys().copied().collect::<Vec<_>>(),
            vec![7, 8]
        );
        assert_eq!(
            disks.objects[&8].text(),
            r#"{"id":8,"size":5,"virtual_machine":{"id":3}}"#
        );
        let vms = state
            .entries
            .iter()
            .find(|((p, _), _)| p == VM_PATH)
            .unwrap()
            .1;
        assert_eq!(vms.dirty, BTreeSet::from([3]));
        let own = &state.own["req-1"];
        assert!(
            own.objects
                .contains(&("virtualization/virtual-disks/".into(), 9))
        );
    }
}
