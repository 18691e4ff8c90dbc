//! The Proxmox VE API client: envelope, auth (token or ticket), retries, concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use super::credentials::{Credentials, Secret};
use super::error::ProxmoxError;
use super::models::{
    AgentInterface, ClusterResource, ClusterStatusEntry, FromValue, GuestConfig, GuestKind,
    LxcInterface, NetworkInterface, NodeEntry, NodeStatus, NodeStorage, Snapshot, StorageConfig,
    StorageContent, Version, list,
};
use super::tls::{TlsMode, client_config};

/// Settings of one Proxmox endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// `https://host:8006` (with or without `/api2/json`).
    pub url: String,
    /// Token or password.
    pub credentials: Credentials,
    /// Certificate checking.
    pub tls: TlsMode,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of a GET after a retryable failure.
    pub max_retries: u32,
    /// First retry delay; doubles per retry, capped at 30 s.
    pub retry_backoff: Duration,
    /// Requests in flight at once against this endpoint.
    pub max_concurrency: usize,
    /// Renew a ticket once it is this old (Proxmox tickets live 2 h).
    pub ticket_renew_after: Duration,
}

impl EndpointConfig {
    /// Defaults for an endpoint: verify TLS, 30 s timeout, 3 retries from 500 ms, 8 in flight.
    pub fn new(url: impl Into<String>, credentials: Credentials) -> Self {
        EndpointConfig {
            url: url.into(),
            credentials,
            tls: TlsMode::Verify { ca_pem: None },
            timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_backoff: Duration::from_millis(500),
            max_concurrency: 8,
            ticket_renew_after: Duration::from_secs(90 * 60),
        }
    }
}

/// A client for one Proxmox endpoint. Cheap to clone.
#[derive(Clone)]
pub struct ProxmoxClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: EndpointConfig,
    ticket: Mutex<Option<Ticket>>,
    permits: Semaphore,
}

struct Ticket {
    ticket: Secret,
    csrf: Secret,
    issued: Instant,
}

impl std::fmt::Debug for ProxmoxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxClient")
            .field("base", &self.inner.base.as_str())
            .field("user", &self.inner.config.credentials.user())
            .finish()
    }
}

impl ProxmoxClient {
    /// A client for `config`. No request is made yet.
    pub fn new(config: EndpointConfig) -> Result<Self, ProxmoxError> {
        let mut base = Url::parse(config.url.trim())
            .map_err(|e| ProxmoxError::Config(format!("bad URL `{}`: {e}", config.url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ProxmoxError::Config(format!(
                "unsupported scheme in `{}`",
                config.url
            )));
        }
        let path = base.path().trim_end_matches('/').to_string();
        let path = if path.ends_with("/api2/json") {
            path
        } else {
            format!("{path}/api2/json")
        };
        base.set_path(&format!("{path}/"));
        let tls = client_config(&config.tls).map_err(ProxmoxError::Config)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(config.max_concurrency.max(1))
            .build()
            .map_err(|e| ProxmoxError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(ProxmoxClient {
            inner: Arc::new(Inner {
                http,
                base,
                permits: Semaphore::new(config.max_concurrency.max(1)),
                config,
                ticket: Mutex::new(None),
            }),
        })
    }

    /// The API base URL (`…/api2/json/`).
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// GET `path` (relative to `/api2/json`) and return its `data`, retrying where safe.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ProxmoxError> {
        let path = path.trim_start_matches('/');
        let mut attempt = 0u32;
        let mut relogged = false;
        loop {
            let result = {
                let _permit = self.inner.permits.acquire().await.expect("semaphore open");
                let started = std::time::Instant::now();
                let result = self.get_once(path, query).await;
                tracing::debug!(
                    path,
                    ok = result.is_ok(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "Proxmox GET"
                );
                result
            };
            match result {
                Ok(data) => return Ok(data),
                Err(ProxmoxError::Unauthorized { .. })
                    if !relogged
                        && matches!(
                            self.inner.config.credentials,
                            Credentials::Password { .. }
                        ) =>
                {
                    // The ticket may have expired on the server: log in again, once.
                    relogged = true;
                    *self.inner.ticket.lock().await = None;
                }
                Err(e) if e.is_retryable() && attempt < self.inner.config.max_retries => {
                    let delay = self
                        .inner
                        .config
                        .retry_backoff
                        .saturating_mul(1 << attempt.min(16))
                        .min(Duration::from_secs(30));
                    tracing::debug!(path, attempt, "retrying after {e}");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// GET `path` with its own time limit per attempt and at most `retries` retries after
    /// a retryable failure (the guest agent: a hung agent must not hold a run for the
    /// client's full timeout and retries).
    pub async fn get_bounded(
        &self,
        path: &str,
        timeout: Duration,
        retries: u32,
    ) -> Result<Value, ProxmoxError> {
        let path = path.trim_start_matches('/');
        let mut attempt = 0u32;
        loop {
            let result = {
                let _permit = self.inner.permits.acquire().await.expect("semaphore open");
                match tokio::time::timeout(timeout, self.get_once(path, &[])).await {
                    Ok(result) => result,
                    Err(_) => Err(ProxmoxError::Timeout {
                        path: path.to_string(),
                        seconds: timeout.as_secs(),
                    }),
                }
            };
            match result {
                Err(e) if e.is_retryable() && attempt < retries => {
                    tracing::debug!(path, attempt, "retrying after {e}");
                    attempt += 1;
                    tokio::time::sleep(self.inner.config.retry_backoff).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ProxmoxError> {
        let url = self.url(path)?;
        let request = self.inner.http.get(url).query(query);
        let request = self.authorize(request, false).await?;
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(path, e))?;
        self.decode(path, "GET", response).await
    }

    fn url(&self, path: &str) -> Result<Url, ProxmoxError> {
        self.inner
            .base
            .join(path)
            .map_err(|e| ProxmoxError::Config(format!("bad API path `{path}`: {e}")))
    }

    /// Add the token header, or a valid ticket cookie (logging in or renewing as needed).
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        write: bool,
    ) -> Result<reqwest::RequestBuilder, ProxmoxError> {
        match &self.inner.config.credentials {
            Credentials::Token { .. } => {
                let header = self.inner.config.credentials.token_header().expect("token");
                Ok(request.header(reqwest::header::AUTHORIZATION, header))
            }
            Credentials::Password { user, password } => {
                let mut guard = self.inner.ticket.lock().await;
                let renew = guard
                    .as_ref()
                    .is_none_or(|t| t.issued.elapsed() >= self.inner.config.ticket_renew_after);
                if renew {
                    let renewed = match guard.as_ref() {
                        Some(old) => self.login(user, old.ticket.expose()).await.ok(),
                        None => None,
                    };
                    *guard = Some(match renewed {
                        Some(ticket) => ticket,
                        None => self.login(user, password.expose()).await?,
                    });
                }
                let ticket = guard.as_ref().expect("ticket");
                let mut request = request.header(
                    reqwest::header::COOKIE,
                    format!("PVEAuthCookie={}", encode_cookie(ticket.ticket.expose())),
                );
                if write {
                    request = request.header("CSRFPreventionToken", ticket.csrf.expose());
                }
                Ok(request)
            }
        }
    }

    /// `POST /access/ticket`; `password` may be a valid ticket (renewal).
    async fn login(&self, user: &str, password: &str) -> Result<Ticket, ProxmoxError> {
        let path = "access/ticket";
        let response = self
            .inner
            .http
            .post(self.url(path)?)
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .map_err(|e| self.transport_error(path, e))?;
        let data = self.decode(path, "POST", response).await?;
        let field = |name: &str| {
            data.get(name)
                .and_then(Value::as_str)
                .map(Secret::new)
                .ok_or_else(|| ProxmoxError::Decode {
                    path: path.to_string(),
                    message: format!("the ticket answer has no `{name}`"),
                })
        };
        Ok(Ticket {
            ticket: field("ticket")?,
            csrf: field("CSRFPreventionToken")?,
            issued: Instant::now(),
        })
    }

    fn transport_error(&self, path: &str, error: reqwest::Error) -> ProxmoxError {
        if error.is_timeout() {
            return ProxmoxError::Timeout {
                path: path.to_string(),
                seconds: self.inner.config.timeout.as_secs(),
            };
        }
        let message = crate::error_chain::error_chain(&error);
        ProxmoxError::Connect {
            path: path.to_string(),
            message,
        }
    }

    async fn decode(
        &self,
        path: &str,
        method: &'static str,
        response: reqwest::Response,
    ) -> Result<Value, ProxmoxError> {
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .and_then(|r| std::str::from_utf8(r.as_bytes()).ok().map(str::to_string))
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(path, e))?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            let mut json = json.ok_or_else(|| ProxmoxError::Decode {
                path: path.to_string(),
                message: format!("the body is not JSON ({} bytes)", body.len()),
            })?;
            return match json.get_mut("data") {
                Some(data) => Ok(data.take()),
                None => Err(ProxmoxError::Decode {
                    path: path.to_string(),
                    message: "the body has no `data` member".into(),
                }),
            };
        }
        let body_message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        let message = match body_message {
            Some(m) if !reason.contains(&m) => m,
            _ => reason,
        };
        Err(match status {
            StatusCode::UNAUTHORIZED => ProxmoxError::Unauthorized {
                path: path.to_string(),
                message,
            },
            StatusCode::FORBIDDEN => ProxmoxError::Forbidden {
                path: path.to_string(),
                message,
            },
            _ => ProxmoxError::Status {
                method,
                path: path.to_string(),
                status: status.as_u16(),
                message,
                errors: json
                    .as_ref()
                    .and_then(|j| j.get("errors"))
                    .and_then(Value::as_object)
                    .map(|errors| {
                        errors
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        })
    }

    async fn get_as<T: FromValue>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ProxmoxError> {
        let data = self.get(path, query).await?;
        T::from_value(data).map_err(|message| ProxmoxError::Decode {
            path: path.to_string(),
            message,
        })
    }

    async fn get_list<T: FromValue>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, ProxmoxError> {
        let data = self.get(path, query).await?;
        list(data).map_err(|message| ProxmoxError::Decode {
            path: path.to_string(),
            message,
        })
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, ProxmoxError> {
        self.get_as("version", &[]).await
    }

    /// `GET /cluster/status`.
    pub async fn cluster_status(&self) -> Result<Vec<ClusterStatusEntry>, ProxmoxError> {
        self.get_list("cluster/status", &[]).await
    }

    /// `GET /cluster/resources[?type=vm|storage|node]`.
    pub async fn cluster_resources(
        &self,
        kind: Option<&str>,
    ) -> Result<Vec<ClusterResource>, ProxmoxError> {
        let query: Vec<(&str, String)> =
            kind.map(|k| ("type", k.to_string())).into_iter().collect();
        self.get_list("cluster/resources", &query).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, ProxmoxError> {
        self.get_list("nodes", &[]).await
    }

    /// `GET /nodes/{node}/status`.
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, ProxmoxError> {
        self.get_as(&format!("nodes/{}/status", seg(node)), &[])
            .await
    }

    /// `GET /nodes/{node}/network`.
    pub async fn node_network(&self, node: &str) -> Result<Vec<NetworkInterface>, ProxmoxError> {
        self.get_list(&format!("nodes/{}/network", seg(node)), &[])
            .await
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/config`.
    pub async fn guest_config(
        &self,
        node: &str,
        kind: GuestKind,
        vmid: u32,
    ) -> Result<GuestConfig, ProxmoxError> {
        self.get_as(
            &format!("nodes/{}/{}/{vmid}/config", seg(node), kind.path()),
            &[],
        )
        .await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces` (the agent's `result` list).
    pub async fn qemu_agent_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<AgentInterface>, ProxmoxError> {
        let path = format!(
            "nodes/{}/qemu/{vmid}/agent/network-get-interfaces",
            seg(node)
        );
        let data = self
            .get_bounded(&path, AGENT_TIMEOUT, AGENT_RETRIES)
            .await?;
        // Old PVE answered 200 with the agent's error inside `result`.
        let result = match data.get("result") {
            Some(Value::Object(obj)) if obj.contains_key("error") => {
                let desc = obj["error"]
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("guest agent error");
                return Err(ProxmoxError::Status {
                    method: "GET",
                    path,
                    status: 500,
                    message: desc.to_string(),
                    errors: Default::default(),
                });
            }
            Some(result) => result.clone(),
            None => data,
        };
        list(result).map_err(|message| ProxmoxError::Decode { path, message })
    }

    /// `GET /nodes/{node}/lxc/{vmid}/interfaces`.
    pub async fn lxc_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<LxcInterface>, ProxmoxError> {
        self.get_list(&format!("nodes/{}/lxc/{vmid}/interfaces", seg(node)), &[])
            .await
    }

    /// `GET /storage`.
    pub async fn storages(&self) -> Result<Vec<StorageConfig>, ProxmoxError> {
        self.get_list("storage", &[]).await
    }

    /// `GET /storage/{storage}`.
    pub async fn storage(&self, storage: &str) -> Result<StorageConfig, ProxmoxError> {
        self.get_as(&format!("storage/{}", seg(storage)), &[]).await
    }

    /// `GET /nodes/{node}/storage`.
    pub async fn node_storages(&self, node: &str) -> Result<Vec<NodeStorage>, ProxmoxError> {
        self.get_list(&format!("nodes/{}/storage", seg(node)), &[])
            .await
    }

    /// `GET /nodes/{node}/storage/{storage}/content?content=backup[&vmid=]`.
    pub async fn backups(
        &self,
        node: &str,
        storage: &str,
        vmid: Option<u32>,
    ) -> Result<Vec<StorageContent>, ProxmoxError> {
        let mut query = vec![("content", "backup".to_string())];
        if let Some(vmid) = vmid {
            query.push(("vmid", vmid.to_string()));
        }
        let entries: Vec<StorageContent> = self
            .get_list(
                &format!("nodes/{}/storage/{}/content", seg(node), seg(storage)),
                &query,
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter(|e| e.content.as_deref() == Some("backup"))
            .collect())
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/snapshot`, without the `current` pseudo-entry.
    pub async fn snapshots(
        &self,
        node: &str,
        kind: GuestKind,
        vmid: u32,
    ) -> Result<Vec<Snapshot>, ProxmoxError> {
        let entries: Vec<Snapshot> = self
            .get_list(
                &format!("nodes/{}/{}/{vmid}/snapshot", seg(node), kind.path()),
                &[],
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter(|s| s.name != "current")
            .collect())
    }
}

/// Percent-encode one path segment (node and storage names are plain, but be safe).
fn seg(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Time limit of one guest-agent read (`network-get-interfaces`).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Retries of a guest-agent read after a timeout or transport failure.
pub const AGENT_RETRIES: u32 = 1;

/// Tickets contain `:` and `=`, which are fine in a cookie; encode what is not.
fn encode_cookie(ticket: &str) -> String {
    url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect()
}
