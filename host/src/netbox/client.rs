//! The NetBox REST client: tokens, paginated list reads, chunked bulk writes, retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Semaphore;
use url::Url;

use super::error::NetBoxError;
use super::listed::Listed;
use super::view::NetBoxView;

/// Largest page NetBox serves (`MAX_PAGE_SIZE` default).
pub const PAGE_SIZE: usize = 1000;

/// Bulk request bodies are kept under this size (NetBox's default limit is 2.5 MiB).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most objects per bulk request.
pub const MAX_BULK_ITEMS: usize = 500;

/// A NetBox API token.
#[derive(Clone, PartialEq, Eq)]
pub enum NetBoxToken {
    /// v1: `Token <40 chars>`.
    V1(String),
    /// v2: `Bearer nbt_<key>.<token>`; holds `<key>.<token>` (with or without `nbt_`).
    V2(String),
}

impl std::fmt::Debug for NetBoxToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetBoxToken::V1(_) => f.write_str("NetBoxToken::V1(***)"),
            NetBoxToken::V2(_) => f.write_str("NetBoxToken::V2(***)"),
        }
    }
}

impl NetBoxToken {
    /// Parse a full header value (`Token …`, `Bearer nbt_…`) or a bare token
    /// (`nbt_…` or `<key>.<secret>` is v2, anything else v1).
    pub fn parse(text: &str) -> NetBoxToken {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("Bearer ") {
            return NetBoxToken::V2(rest.trim().to_string());
        }
        if let Some(rest) = text.strip_prefix("Token ") {
            return NetBoxToken::V1(rest.trim().to_string());
        }
        if text.starts_with("nbt_") || text.contains('.') {
            NetBoxToken::V2(text.to_string())
        } else {
            NetBoxToken::V1(text.to_string())
        }
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> String {
        match self {
            NetBoxToken::V1(t) => format!("Token {t}"),
            NetBoxToken::V2(t) if t.starts_with("nbt_") => format!("Bearer {t}"),
            NetBoxToken::V2(t) => format!("Bearer nbt_{t}"),
        }
    }
}

/// Settings of the NetBox endpoint.
#[derive(Clone, Debug)]
pub struct NetBoxConfig {
    /// `http(s)://host:port` (with or without `/api`).
    pub url: String,
    /// API token.
    pub token: NetBoxToken,
    /// Per-request timeout (bulk writes of hundreds of objects take tens of seconds).
    pub timeout: Duration,
    /// Retries of a safe request after 429/502/503/504 or a connection failure.
    pub max_retries: u32,
    /// First retry delay, doubling per retry.
    pub retry_backoff: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// NetBox branch (`X-NetBox-Branch`, netbox-branching plugin), if any.
    pub branch: Option<String>,
    /// Verify TLS certificates.
    pub verify_tls: bool,
}

impl NetBoxConfig {
    /// Defaults: 120 s timeout, 3 retries from 500 ms, 4 requests in flight.
    pub fn new(url: impl Into<String>, token: NetBoxToken) -> Self {
        NetBoxConfig {
            url: url.into(),
            token,
            timeout: Duration::from_secs(120),
            max_retries: 3,
            retry_backoff: Duration::from_millis(500),
            max_concurrency: 4,
            branch: None,
            verify_tls: true,
        }
    }
}

/// What `/api/status/` says about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetBoxStatus {
    /// `(major, minor, patch)`.
    pub version: (u32, u32, u32),
    /// Installed plugins by package name.
    pub plugins: Vec<String>,
}

impl NetBoxStatus {
    /// VM types (`/api/virtualization/virtual-machine-types/`) exist from 4.6.
    pub fn has_vm_types(&self) -> bool {
        self.version >= (4, 6, 0)
    }

    /// MAC addresses are separate objects from 4.2.
    pub fn has_mac_objects(&self) -> bool {
        self.version >= (4, 2, 0)
    }

    /// Whether the netbox-proxbox plugin is installed.
    pub fn has_proxbox_plugin(&self) -> bool {
        self.plugins.iter().any(|p| p == "netbox_proxbox")
    }
}

/// Counts of requests made, by method (for tests and benchmarks).
#[derive(Debug, Default)]
pub struct RequestCounts {
    gets: AtomicU64,
    writes: AtomicU64,
    listed: AtomicU64,
}

impl RequestCounts {
    /// GET requests made.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    /// POST, PATCH, PUT and DELETE requests made.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Objects NetBox serialised for list reads (what a read costs NetBox).
    pub fn listed(&self) -> u64 {
        self.listed.load(Ordering::Relaxed)
    }
}

/// One object's outcome in a bulk write: the id NetBox answered with (the view took in
/// the whole object; callers keep only ids, so a bulk write of an estate never holds its
/// answers).
pub type ItemResult = Result<Option<u64>, NetBoxError>;

/// A NetBox API client. Cheap to clone.
#[derive(Clone)]
pub struct NetBoxClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: NetBoxConfig,
    permits: Semaphore,
    counts: RequestCounts,
    view: Option<Arc<NetBoxView>>,
}

impl std::fmt::Debug for NetBoxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetBoxClient")
            .field("base", &self.inner.base.as_str())
            .finish()
    }
}

impl NetBoxClient {
    /// A client for `config`; no request is made yet.
    pub fn new(config: NetBoxConfig) -> Result<Self, NetBoxError> {
        Self::with_view(config, None)
    }

    /// A client whose kept list reads go through `view` (and whose writes update it).
    pub fn with_view(
        config: NetBoxConfig,
        view: Option<Arc<NetBoxView>>,
    ) -> Result<Self, NetBoxError> {
        let mut base = Url::parse(config.url.trim())
            .map_err(|e| NetBoxError::Config(format!("bad NetBox URL `{}`: {e}", config.url)))?;
        let path = base.path().trim_end_matches('/').to_string();
        let path = if path.ends_with("/api") {
            path
        } else {
            format!("{path}/api")
        };
        base.set_path(&format!("{path}/"));
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .danger_accept_invalid_certs(!config.verify_tls)
            .pool_max_idle_per_host(config.max_concurrency.max(1))
            .build()
            .map_err(|e| NetBoxError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(NetBoxClient {
            inner: Arc::new(Inner {
                http,
                base,
                permits: Semaphore::new(config.max_concurrency.max(1)),
                config,
                counts: RequestCounts::default(),
                view,
            }),
        })
    }

    /// The view this client reads kept lists through, if any.
    pub fn view(&self) -> Option<&Arc<NetBoxView>> {
        self.inner.view.as_ref()
    }

    /// Requests made so far.
    pub fn counts(&self) -> &RequestCounts {
        &self.inner.counts
    }

    /// `GET /api/status/`: version and plugins.
    pub async fn status(&self) -> Result<NetBoxStatus, NetBoxError> {
        let body = self.request(Method::GET, "status/", &[], None).await?;
        let version_text = body
            .get("netbox-version")
            .and_then(Value::as_str)
            .ok_or_else(|| NetBoxError::Decode("status/".into(), "no `netbox-version`".into()))?;
        let mut parts = version_text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        let plugins = body
            .get("plugins")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        Ok(NetBoxStatus { version, plugins })
    }

    /// Every object of a list endpoint matching `query` (`limit=1000` per page), parsed;
    /// a list the client's [`NetBoxView`] keeps comes from it. Big lists are better read
    /// with [`NetBoxClient::listed`].
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, NetBoxError> {
        Ok(self
            .listed(path, query)
            .await?
            .iter()
            .map(Listed::value)
            .collect())
    }

    /// Every object of a list endpoint matching `query` as [`Listed`] text (a fifth of
    /// its parsed size, and shared with the view for the lists it keeps).
    pub async fn listed(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Listed>, NetBoxError> {
        match &self.inner.view {
            Some(view) if NetBoxView::keeps(path, query) => view.list(self, path, query).await,
            _ => self.list_fresh(path, query).await,
        }
    }

    /// Every object of a list endpoint matching `query`, read from NetBox.
    ///
    /// Pages are read by id, not by offset, so objects that others create, rename or
    /// delete meanwhile cannot shift a page and hide one of ours: the first page is read
    /// in id order; when there are more, the id range up to the largest id is split into
    /// a few sub-ranges read concurrently (bounded by the client), each page of a range
    /// starting after the last id seen. A query with its own `ordering` or `offset`, or
    /// objects without `id`, follow `next` instead (rebuilt from its path and query, so a
    /// proxy's host or scheme in it does not matter).
    pub(super) async fn list_fresh(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Listed>, NetBoxError> {
        let mut query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if !query.iter().any(|(k, _)| k == "limit") {
            query.push(("limit".into(), PAGE_SIZE.to_string()));
        }
        let keyed = !query.iter().any(|(k, _)| k == "ordering" || k == "offset");
        if keyed {
            query.push(("ordering".into(), "id".into()));
        }
        let path = path.trim_start_matches('/').to_string();
        let first = self.page(&path, &query).await?;
        let next = first
            .get("next")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut results = page_results(&path, first)?;
        let Some(next) = next else {
            return Ok(results);
        };
        let last = first_page_last_id(&results);
        if keyed && let Some(last) = last {
            let mut newest = query.clone();
            newest.retain(|(k, _)| k != "ordering" && k != "limit");
            newest.extend([
                ("ordering".into(), "-id".into()),
                ("limit".into(), "1".into()),
                ("fields".into(), "id".into()),
            ]);
            let newest = page_results(&path, self.page(&path, &newest).await?)?;
            let Some(max) = newest.first().and_then(Listed::id) else {
                return Ok(results);
            };
            let ranges = id_ranges(last, max, self.inner.config.max_concurrency.max(1));
            let reads = futures::future::join_all(
                ranges
                    .into_iter()
                    .map(|(after, upto)| self.list_range(&path, &query, after, upto)),
            )
            .await;
            for read in reads {
                results.extend(read?);
            }
            return Ok(results);
        }
        let mut next = Some(next);
        while let Some(link) = next {
            let (api, query) = next_link(&path, &link)?;
            let page = self.page(&api, &query).await?;
            next = page.get("next").and_then(Value::as_str).map(str::to_string);
            results.extend(page_results(&path, page)?);
        }
        Ok(results)
    }

    /// The objects of `query` with ids in `(after, upto]`, in id order, page by page.
    async fn list_range(
        &self,
        path: &str,
        query: &[(String, String)],
        mut after: u64,
        upto: u64,
    ) -> Result<Vec<Listed>, NetBoxError> {
        let mut out = Vec::new();
        loop {
            let mut q = query.to_vec();
            q.push(("id__gt".into(), after.to_string()));
            q.push(("id__lte".into(), upto.to_string()));
            let page = self.page(path, &q).await?;
            let more = page.get("next").is_some_and(|n| !n.is_null());
            let objects = page_results(path, page)?;
            let last = objects.last().and_then(Listed::id);
            out.extend(objects);
            match last {
                Some(last) if more && last > after => after = last,
                _ => return Ok(out),
            }
        }
    }

    async fn page(&self, path: &str, query: &[(String, String)]) -> Result<Value, NetBoxError> {
        let q: Vec<(&str, String)> = query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let page = self.request(Method::GET, path, &q, None).await?;
        let listed = page
            .get("results")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        self.inner
            .counts
            .listed
            .fetch_add(listed as u64, Ordering::Relaxed);
        Ok(page)
    }

    /// Create objects with bulk POSTs (chunked by count and body size). NetBox rejects a
    /// whole chunk when one object is invalid; the valid ones are sent again without it,
    /// so every object gets its own outcome, in input order.
    pub async fn bulk_create(&self, path: &str, objects: Vec<Value>) -> Vec<ItemResult> {
        self.bulk_write(Method::POST, path, objects).await
    }

    /// Update objects (each with `id`) with bulk PATCHes; per-object outcomes as for creates.
    pub async fn bulk_update(&self, path: &str, patches: Vec<Value>) -> Vec<ItemResult> {
        self.bulk_write(Method::PATCH, path, patches).await
    }

    /// Delete objects by id with bulk DELETEs; per-object outcomes.
    pub async fn bulk_delete(&self, path: &str, ids: &[u64]) -> Vec<Result<(), NetBoxError>> {
        let objects: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({ "id": id }))
            .collect();
        self.bulk_write(Method::DELETE, path, objects)
            .await
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    /// Create one object.
    pub async fn create(&self, path: &str, object: Value) -> Result<Value, NetBoxError> {
        self.request(Method::POST, path, &[], Some(&object)).await
    }

    async fn bulk_write(&self, method: Method, path: &str, objects: Vec<Value>) -> Vec<ItemResult> {
        let mut outcomes: Vec<Option<ItemResult>> = (0..objects.len()).map(|_| None).collect();
        for chunk in chunks(&objects) {
            let mut pending: Vec<usize> = chunk;
            // Each round either lands the pending objects or removes at least one invalid one.
            while !pending.is_empty() {
                let body = Value::Array(pending.iter().map(|&i| objects[i].clone()).collect());
                match self.request(method.clone(), path, &[], Some(&body)).await {
                    Ok(answer) => {
                        let mut answers = match answer {
                            Value::Array(answers) => answers.into_iter(),
                            _ => Vec::new().into_iter(),
                        };
                        for &i in &pending {
                            let id = answers
                                .next()
                                .and_then(|answer| answer.get("id").and_then(Value::as_u64));
                            outcomes[i] = Some(Ok(id));
                        }
                        break;
                    }
                    Err(NetBoxError::Status {
                        status: 400, body, ..
                    }) if per_item_errors(&body, &ids_of(&objects, &pending)).is_some() => {
                        let errors =
                            per_item_errors(&body, &ids_of(&objects, &pending)).unwrap_or_default();
                        let mut still = Vec::new();
                        for (&i, error) in pending.iter().zip(errors) {
                            match error {
                                None => still.push(i),
                                Some(error) => {
                                    outcomes[i] = Some(Err(NetBoxError::Status {
                                        method: method.to_string(),
                                        path: path.to_string(),
                                        status: 400,
                                        body: error,
                                    }));
                                }
                            }
                        }
                        if still.len() == pending.len() {
                            let e = NetBoxError::Decode(
                                path.into(),
                                "400 without any per-object error".into(),
                            );
                            for &i in &still {
                                outcomes[i] = Some(Err(e.clone()));
                            }
                            break;
                        }
                        pending = still;
                    }
                    Err(e) => {
                        for &i in &pending {
                            outcomes[i] = Some(Err(e.clone()));
                        }
                        break;
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(NetBoxError::Decode(path.into(), "no outcome".into())))
            })
            .collect()
    }

    /// One request with retries where repeating it is safe.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, NetBoxError> {
        let path = path.trim_start_matches('/');
        let url = self
            .inner
            .base
            .join(path)
            .map_err(|e| NetBoxError::Config(format!("bad API path `{path}`: {e}")))?;
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = self.inner.permits.acquire().await.expect("semaphore open");
                let started = std::time::Instant::now();
                let result = self
                    .send(method.clone(), url.clone(), path, query, body)
                    .await
                    .map(|(answer, request_id)| {
                        if method != Method::GET
                            && let Some(view) = &self.inner.view
                        {
                            view.absorb(&method, path, body, &answer, request_id.as_deref());
                        }
                        answer
                    });
                tracing::debug!(
                    %method,
                    path,
                    ok = result.is_ok(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "NetBox request"
                );
                result
            };
            match result {
                Err(e) if attempt < self.inner.config.max_retries && e.is_retryable(&method) => {
                    let delay = self
                        .inner
                        .config
                        .retry_backoff
                        .saturating_mul(1 << attempt.min(16));
                    tracing::debug!(path, attempt, "retrying NetBox request after {e}");
                    attempt += 1;
                    tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
                }
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), NetBoxError> {
        if method == Method::GET {
            self.inner.counts.gets.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.counts.writes.fetch_add(1, Ordering::Relaxed);
        }
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .query(query)
            .header(
                reqwest::header::AUTHORIZATION,
                self.inner.config.token.header(),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(branch) = &self.inner.config.branch {
            request = request.header("X-NetBox-Branch", branch);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| NetBoxError::Transport {
            path: path.to_string(),
            message: crate::error_chain::error_chain(&e),
            timeout: e.is_timeout(),
            connect: e.is_connect(),
        })?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await.map_err(|e| NetBoxError::Transport {
            path: path.to_string(),
            message: crate::error_chain::error_chain(&e),
            timeout: e.is_timeout(),
            connect: false,
        })?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return if status.is_success() {
                Ok((Value::Null, request_id))
            } else {
                Err(NetBoxError::Status {
                    method: method.to_string(),
                    path: path.to_string(),
                    status: status.as_u16(),
                    body: Value::Null,
                })
            };
        }
        let json: Result<Value, _> = serde_json::from_slice(&bytes);
        match (status.is_success(), json) {
            (true, Ok(json)) => Ok((json, request_id)),
            (true, Err(e)) => Err(NetBoxError::Decode(path.to_string(), e.to_string())),
            (false, json) => Err(NetBoxError::Status {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                body: json.unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect())
                }),
            }),
        }
    }
}

/// The `results` of a list page.
/// The `results` of a list page, as [`Listed`] objects.
fn page_results(path: &str, mut page: Value) -> Result<Vec<Listed>, NetBoxError> {
    match page.get_mut("results").map(Value::take) {
        Some(Value::Array(results)) => Ok(results.iter().map(Listed::new).collect()),
        _ => Err(NetBoxError::Decode(
            path.to_string(),
            "a list answer without `results`".into(),
        )),
    }
}

/// The id of the last object of a first page, when every object on it has one (the
/// list can then be read by id ranges).
fn first_page_last_id(results: &[Listed]) -> Option<u64> {
    let mut last = None;
    for object in results {
        last = Some(object.id()?);
    }
    last
}

/// `(after, upto]` split into at most `parts` id ranges of equal width.
fn id_ranges(after: u64, upto: u64, parts: usize) -> Vec<(u64, u64)> {
    if upto <= after {
        return Vec::new();
    }
    let parts = u64::try_from(parts).unwrap_or(1).clamp(1, upto - after);
    let width = (upto - after).div_ceil(parts);
    (0..parts)
        .map(|i| (after + i * width, (after + (i + 1) * width).min(upto)))
        .filter(|(lo, hi)| lo < hi)
        .collect()
}

/// A list's `next` link as an API path and query.
fn next_link(path: &str, link: &str) -> Result<(String, Vec<(String, String)>), NetBoxError> {
    let next = Url::parse(link)
        .map_err(|e| NetBoxError::Decode(path.to_string(), format!("bad `next`: {e}")))?;
    let api = next
        .path()
        .split_once("/api/")
        .map(|(_, rest)| rest.to_string())
        .ok_or_else(|| {
            NetBoxError::Decode(path.to_string(), format!("`next` outside the API: {next}"))
        })?;
    let query = next
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((api, query))
}

/// Per-object errors of a rejected bulk request, in request order (`None` = that object
/// was valid). NetBox ≤ 4.6 answers a list of error dicts (`{}` for valid objects); 4.7
/// answers `{"detail": …, "errors": [{"index": n, "errors": {…}}]}` for the invalid ones,
/// naming an update's or delete's objects by `"id"` instead of `"index"`; `ids` are the
/// request's object ids.
fn per_item_errors(body: &Value, ids: &[Option<u64>]) -> Option<Vec<Option<Value>>> {
    let count = ids.len();
    match body {
        Value::Array(items) if items.len() == count => Some(
            items
                .iter()
                .map(|e| (!e.as_object().is_some_and(|o| o.is_empty())).then(|| e.clone()))
                .collect(),
        ),
        Value::Object(obj) => {
            let listed = obj.get("errors")?.as_array()?;
            let mut out = vec![None; count];
            for item in listed {
                let index = match (item.get("index"), item.get("id")) {
                    (Some(index), _) => usize::try_from(index.as_u64()?).ok()?,
                    (None, Some(id)) => ids.iter().position(|i| *i == id.as_u64())?,
                    (None, None) => return None,
                };
                *out.get_mut(index)? = Some(item.get("errors").cloned().unwrap_or(Value::Null));
            }
            Some(out)
        }
        _ => None,
    }
}

/// The `id`s of `objects[pending]` (bulk updates and deletes name their objects by id).
fn ids_of(objects: &[Value], pending: &[usize]) -> Vec<Option<u64>> {
    pending
        .iter()
        .map(|&i| objects[i].get("id").and_then(Value::as_u64))
        .collect()
}

/// Split objects into chunks by count and serialised size.
fn chunks(objects: &[Value]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 2;
    for (i, object) in objects.iter().enumerate() {
        let len = serde_json::to_vec(object).map(|v| v.len()).unwrap_or(0) + 1;
        if !current.is_empty() && (current.len() >= MAX_BULK_ITEMS || size + len > MAX_BODY_BYTES) {
            out.push(std::mem::take(&mut current));
            size = 2;
        }
        current.push(i);
        size += len;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_forms() {
        assert_eq!(NetBoxToken::parse("Token abc").header(), "Token abc");
        assert_eq!(NetBoxToken::parse("abc").header(), "Token abc");
        assert_eq!(
            NetBoxToken::parse("Bearer nbt_k.s").header(),
            "Bearer nbt_k.s"
        );
        assert_eq!(NetBoxToken::parse("nbt_k.s").header(), "Bearer nbt_k.s");
        assert_eq!(NetBoxToken::parse("k.s").header(), "Bearer nbt_k.s");
        assert!(!format!("{:?}", NetBoxToken::parse("Token secret")).contains("secret"));
    }

    #[test]
    fn per_item_errors_of_both_netbox_formats() {
        let v46 = json!([{}, {"cluster": ["Related object not found"]}]);
        let creates = [None, None];
        let parsed = per_item_errors(&v46, &creates).unwrap();
        assert!(parsed[0].is_none() && parsed[1].is_some());
        let v47 = json!({"detail": "1 of 2 objects could not be created.",
                         "errors": [{"index": 1, "errors": {"__all__": ["duplicate"]}}]});
        let parsed = per_item_errors(&v47, &creates).unwrap();
        assert_eq!(parsed[0], None);
        assert_eq!(parsed[1], Some(json!({"__all__": ["duplicate"]})));
        assert!(per_item_errors(&json!({"detail": "x"}), &creates).is_none());
        // 4.7 bulk updates name the failing object by id.
        let update = json!({"detail": "1 of 3 objects could not be updated.",
                            "errors": [{"id": 3725, "errors": {"disk": ["must match"]}}]});
        let parsed = per_item_errors(&update, &[Some(11), Some(3725), Some(12)]).unwrap();
        assert_eq!(
            parsed,
            vec![None, Some(json!({"disk": ["must match"]})), None]
        );
        assert!(
            per_item_errors(&update, &[Some(11)]).is_none(),
            "an unknown id"
        );
    }

    #[test]
    fn id_ranges_cover_exactly() {
        assert_eq!(id_ranges(1000, 1000, 4), vec![]);
        assert_eq!(id_ranges(10, 12, 4), vec![(10, 11), (11, 12)]);
        let ranges = id_ranges(1000, 5003, 4);
        assert_eq!(ranges.first().unwrap().0, 1000);
        assert_eq!(ranges.last().unwrap().1, 5003);
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(ranges.len(), 4);
    }

    #[test]
    fn chunks_respect_count_and_size() {
        let small: Vec<Value> = (0..1200).map(|i| json!({ "id": i })).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        let big: Vec<Value> = (0..5)
            .map(|_| json!({ "x": "y".repeat(900_000) }))
            .collect();
        let sizes: Vec<usize> = chunks(&big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }
}
