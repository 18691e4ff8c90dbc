//! `X-Proxbox-API-Key` authentication (contract §2.3): exempt paths, per-client lockout,
//! the reference's messages and status codes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::AppState;
use super::error::ApiError;
use crate::store::{LockoutStatus, messages};

/// The request header carrying the key.
pub const API_KEY_HEADER: &str = "X-Proxbox-API-Key";

/// Paths served without a key (plus everything under `/static/`).
pub const EXEMPT_PATHS: [&str; 8] = [
    "/",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/health",
    "/meta",
    "/auth/register-key",
    "/auth/bootstrap-status",
];

/// WebSocket paths: they authenticate with their first message instead (contract §6).
pub const WEBSOCKET_PATHS: [&str; 2] = ["/ws", "/ws/virtual-machines"];

/// Whether `path` is served without a key.
pub fn is_exempt(path: &str) -> bool {
    EXEMPT_PATHS.contains(&path) || path.starts_with("/static/")
}

/// Which peers may name the client in `X-Forwarded-For` (`PROXBOX_TRUSTED_PROXIES`:
/// comma-separated addresses or CIDRs). Without any, the peer address is the client.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parse `10.0.0.1, 192.168.0.0/16`; entries that do not parse are reported.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("not an address or CIDR: `{entry}`"))?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// The client address: the peer, or — when the peer is a trusted proxy — the
    /// right-most untrusted address of `X-Forwarded-For`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .copied()
            .unwrap_or(peer)
    }
}

/// Why a key was refused.
#[derive(Debug)]
pub struct Refusal {
    /// 401 or 429.
    pub status: StatusCode,
    /// The reference's message.
    pub message: String,
    /// Seconds until a locked client may try again.
    pub retry_after: Option<u64>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        ApiError::Detail {
            status: self.status,
            detail: self.message.into(),
            retry_after: self.retry_after,
        }
        .into_response()
    }
}

/// Check `key` for a client, counting failures toward its lockout (also used by the
/// WebSocket routes, which authenticate with their first message).
pub fn authenticate(state: &AppState, client: IpAddr, key: Option<&str>) -> Result<(), Refusal> {
    let lockout = state.lockout();
    if let LockoutStatus::Locked { retry_after } = lockout.status(client) {
        return Err(locked(retry_after));
    }
    let store = state.store();
    let configured = store.has_any_key().map_err(internal)?;
    if !configured {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: messages::NO_API_KEY_CONFIGURED.into(),
            retry_after: None,
        });
    }
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        let failure = lockout.record_failure(client);
        tracing::warn!(%client, "request without an API key");
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: messages::api_key_required(failure.remaining_attempts),
            retry_after: None,
        });
    };
    match store.verify_key(key).map_err(internal)? {
        Some(_) => {
            lockout.record_success(client);
            Ok(())
        }
        None => {
            let failure = lockout.record_failure(client);
            tracing::warn!(%client, attempts = failure.attempts, "invalid API key");
            Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: messages::invalid_api_key(failure.remaining_attempts),
                retry_after: None,
            })
        }
    }
}

fn locked(retry_after: u64) -> Refusal {
    Refusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: messages::LOCKED_OUT.into(),
        retry_after: Some(retry_after),
    }
}

fn internal(error: crate::store::StoreError) -> Refusal {
    tracing::error!(%error, "API key check failed");
    Refusal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "Internal server error".into(),
        retry_after: None,
    }
}

/// The peer address of a request (unspecified when the server was not started with
/// connection info, e.g. in-process tests).
pub fn peer_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Middleware: refuse non-exempt requests without a valid key.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_exempt(path) || WEBSOCKET_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let client = state
        .trusted_proxies()
        .client_ip(peer_ip(&request), request.headers());
    let key = request
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match authenticate(&state, client, key.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}
