//! Proxmox sessions for a request (contract §3.1): which stored endpoints a request
//! selects, and a connected client for each, with its cluster name and mode.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::QueryParams;
use crate::proxmox::models::{ClusterStatusEntry, Version};
use crate::proxmox::{Credentials, EndpointConfig, ProxmoxClient, ProxmoxError, TlsMode};
use crate::store::{ProxmoxEndpoint, ProxmoxEndpointPublic, Store, StoreError};

/// Which endpoints a request selects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// `proxmox_endpoint_ids` (or its alias `endpoint_ids`); `None` = every enabled one.
    pub endpoint_ids: Option<Vec<i64>>,
    /// Keep only the endpoint whose field equals the value: `("ip_address" | "domain" |
    /// "name", value)`, the first given in that order, as the reference.
    pub only: Option<(&'static str, String)>,
}

impl Selection {
    /// Read the selection parameters; invalid ones fail before anything is contacted.
    pub fn from_query(query: &QueryParams) -> ApiResult<Self> {
        let source = query.get("source").unwrap_or("database");
        match source {
            "database" => {}
            "netbox" => {
                return Err(ApiError::proxbox(
                    StatusCode::BAD_REQUEST,
                    "Invalid source parameter",
                    "source=netbox is not supported: this host reads Proxmox endpoints from \
                     its own database (the plugin pushes them there).",
                ));
            }
            _ => {
                return Err(ApiError::proxbox(
                    StatusCode::BAD_REQUEST,
                    "Invalid source parameter",
                    "source must be 'database' or 'netbox'.",
                ));
            }
        }
        let raw_ids = query
            .text("proxmox_endpoint_ids", 255)?
            .filter(|v| !v.trim().is_empty())
            .or(query.text("endpoint_ids", 255)?);
        let endpoint_ids = raw_ids.map(parse_endpoint_ids).transpose()?.flatten();
        let mut only = None;
        for (field, max) in [("ip_address", 45), ("domain", 255), ("name", 255)] {
            if let Some(value) = query.text(field, max)? {
                only = Some((field, value.to_string()));
                break;
            }
        }
        Ok(Selection { endpoint_ids, only })
    }
}

/// Parse `"1, 2,3"`: at most 255 characters and 100 ids, integers only.
pub fn parse_endpoint_ids(raw: &str) -> ApiResult<Option<Vec<i64>>> {
    let invalid = |detail: &str| {
        ApiError::proxbox(
            StatusCode::BAD_REQUEST,
            "Invalid Proxmox endpoint_ids query parameter",
            detail,
        )
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    if raw.chars().count() > 255 {
        return Err(invalid("endpoint_ids exceeds maximum length."));
    }
    let parts: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > 100 {
        return Err(invalid("Too many endpoint IDs specified."));
    }
    parts
        .iter()
        .map(|p| p.parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|_| invalid("endpoint_ids must be a comma-separated list of integers."))
}

/// How a session sees its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMode {
    /// Part of a cluster.
    Cluster,
    /// One node, not clustered.
    Standalone,
    /// `/cluster/status` was refused (403): the token lacks `Sys.Audit`.
    Restricted,
}

impl SessionMode {
    /// `cluster`, `standalone` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Cluster => "cluster",
            SessionMode::Standalone => "standalone",
            SessionMode::Restricted => "restricted",
        }
    }
}

/// A connected Proxmox endpoint.
#[derive(Clone, Debug)]
pub struct Session {
    /// The stored endpoint (no secrets).
    pub endpoint: ProxmoxEndpointPublic,
    /// The client.
    pub client: ProxmoxClient,
    /// Cluster name; a standalone node's own name; the host when restricted.
    pub name: String,
    /// Cluster, standalone or restricted.
    pub mode: SessionMode,
    /// `GET /version`.
    pub version: Version,
    /// `GET /cluster/status` (empty when restricted).
    pub status: Vec<ClusterStatusEntry>,
}

/// Connect every endpoint `selection` names. Any endpoint failing fails the request,
/// as the reference's strict session dependency does.
pub async fn open(store: &Store, selection: &Selection) -> ApiResult<Vec<Session>> {
    let endpoints = selected_endpoints(store, selection)?;
    if let Some((field, value)) = &selection.only {
        let chosen = endpoints.into_iter().find(|e| match *field {
            "ip_address" => &e.public.ip_address == value,
            "domain" => e.public.domain.as_deref() == Some(value.as_str()),
            _ => &e.public.name == value,
        });
        let Some(endpoint) = chosen else {
            return Err(ApiError::proxbox(
                StatusCode::BAD_REQUEST,
                format!("No result found for Proxmox Sessions based on the provided {field}"),
                "Check if the provided parameters are correct",
            ));
        };
        return Ok(vec![connect(endpoint).await.map_err(acquisition_error)?]);
    }
    let results = futures::future::join_all(endpoints.into_iter().map(connect)).await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(acquisition_error)
}

fn selected_endpoints(store: &Store, selection: &Selection) -> ApiResult<Vec<ProxmoxEndpoint>> {
    let mut out = Vec::new();
    for endpoint in store.enabled_proxmox_endpoints()? {
        let endpoint = endpoint.map_err(|e| match e {
            StoreError::Decrypt { .. } => ApiError::proxbox(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Could not return Proxmox Sessions",
                "A stored Proxmox credential cannot be decrypted with the configured \
                 encryption key.",
            ),
            other => ApiError::from(other),
        })?;
        let wanted = selection
            .endpoint_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&endpoint.public.id));
        if wanted {
            out.push(endpoint);
        }
    }
    Ok(out)
}

/// A failed connection: the upstream status when Proxmox answered with one, else 502.
fn acquisition_error(error: ProxmoxError) -> ApiError {
    let status = error
        .status()
        .filter(|s| (400..=599).contains(s))
        .unwrap_or(502);
    let mut detail = json!({
        "reason": "proxmox_session_acquisition_failed",
        "error": error.to_string(),
    });
    if status != 502 {
        detail["upstream_status"] = status.into();
    }
    ApiError::proxbox(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        "Could not return Proxmox Sessions",
        detail,
    )
}

/// The client settings of a stored endpoint.
pub fn endpoint_config(
    endpoint: &ProxmoxEndpoint,
    host: &str,
) -> Result<EndpointConfig, ProxmoxError> {
    let public = &endpoint.public;
    let credentials = Credentials::from_endpoint(
        Some(&public.username),
        endpoint.password.as_ref().map(|p| p.expose()),
        endpoint.token_name.as_deref(),
        endpoint.token_value.as_ref().map(|t| t.expose()),
    )
    .map_err(ProxmoxError::Config)?;
    let host = host.split('/').next().unwrap_or(host).trim();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut config = EndpointConfig::new(format!("https://{host}:{}", public.port), credentials);
    if !public.verify_ssl {
        config.tls = TlsMode::Insecure;
    }
    if let Some(timeout) = public.timeout {
        config.timeout = Duration::from_secs(u64::from(timeout));
    }
    if let Some(retries) = public.max_retries {
        config.max_retries = retries;
    }
    if let Some(backoff) = public.retry_backoff.filter(|b| b.is_finite() && *b >= 0.0) {
        config.retry_backoff = Duration::from_secs_f64(backoff);
    }
    Ok(config)
}

/// Connect one endpoint: the domain first, then the address; probe `/version`, then
/// read `/cluster/status` for the name and mode.
pub async fn connect(endpoint: ProxmoxEndpoint) -> Result<Session, ProxmoxError> {
    let mut hosts = Vec::new();
    if let Some(domain) = endpoint
        .public
        .domain
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        hosts.push(domain.to_string());
    }
    if !endpoint.public.ip_address.trim().is_empty() {
        hosts.push(endpoint.public.ip_address.clone());
    }
    let mut last_error = ProxmoxError::Config("the endpoint has no address".into());
    for host in hosts {
        let client = ProxmoxClient::new(endpoint_config(&endpoint, &host)?)?;
        match client.version().await {
            Ok(version) => return finish(endpoint, client, version, host).await,
            Err(e @ (ProxmoxError::Connect { .. } | ProxmoxError::Timeout { .. })) => {
                last_error = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error)
}

async fn finish(
    endpoint: ProxmoxEndpoint,
    client: ProxmoxClient,
    version: Version,
    host: String,
) -> Result<Session, ProxmoxError> {
    let (name, mode, status) = match client.cluster_status().await {
        Ok(status) => {
            let cluster = status.iter().find_map(|e| match e {
                ClusterStatusEntry::Cluster { name, .. } => Some(name.clone()),
                _ => None,
            });
            let nodes: Vec<&str> = status
                .iter()
                .filter_map(|e| match e {
                    ClusterStatusEntry::Node { name, .. } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            match (cluster, nodes.as_slice()) {
                (None, [single]) => (single.to_string(), SessionMode::Standalone, status),
                (Some(name), _) => (name, SessionMode::Cluster, status),
                (None, _) => (host, SessionMode::Cluster, status),
            }
        }
        Err(ProxmoxError::Forbidden { .. }) => (host, SessionMode::Restricted, Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(Session {
        endpoint: endpoint.public,
        client,
        name,
        mode,
        version,
        status,
    })
}

/// `{"version", "release", "repoid"}` of a session, as `/proxmox/sessions` shows it.
pub fn version_json(version: &Version) -> Value {
    match &version.raw {
        Value::Object(_) => version.raw.clone(),
        _ => json!({ "version": version.version, "release": version.release }),
    }
}
