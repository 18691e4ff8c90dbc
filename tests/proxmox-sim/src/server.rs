//! The listener, TLS, the `/_sim/` control API and the [`Simulator`] handle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::Service;

use crate::api::{self, DisconnectMarker};
use crate::auth::{LIMITED_TOKEN_ID, LIMITED_USER, ROOT_TOKEN_ID, ROOT_USER, TokenCredentials};
use crate::faults::{Fault, FaultHandle};
use crate::model::{Backup, EndpointState, Estate, Guest, Snapshot};
use crate::mutation::{Mutation, SimError};

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Serve HTTPS with a freshly generated self-signed certificate (like PVE) or plain HTTP.
    pub tls: bool,
    /// Delay before answering a failed authentication (PVE: 3 s).
    pub auth_failure_delay: Duration,
    /// Validity of tickets (PVE: 2 h).
    pub ticket_lifetime: Duration,
    /// Listen address; must be a loopback address (port 0 = ephemeral).
    pub bind: SocketAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tls: true,
            auth_failure_delay: Duration::from_secs(3),
            ticket_lifetime: Duration::from_secs(2 * 3600),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// State shared by all connections of one simulator.
pub(crate) struct Shared {
    state: RwLock<EndpointState>,
    pub(crate) faults: FaultHandle,
    counters: Mutex<BTreeMap<String, u64>>,
    pub(crate) config: SimConfig,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, EndpointState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, EndpointState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count(&self, path: &str) {
        *self.counters().entry(path.to_string()).or_insert(0) += 1;
    }

    /// 401 with PVE's reason phrase and no body, after the configured delay.
    pub(crate) async fn unauthorized(&self, reason: &str) -> Response<Body> {
        tokio::time::sleep(self.config.auth_failure_delay).await;
        api::error_response(api::ApiError::Empty {
            status: 401,
            reason: reason.to_string(),
        })
    }
}

struct TlsInfo {
    pem: String,
    der: Vec<u8>,
    fingerprint: String,
}

/// A running simulated Proxmox VE API endpoint. Dropping it stops the listener.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<TlsInfo>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Disconnected;

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Disconnected {}

fn fingerprint_of(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn make_certificate(node: &str) -> anyhow::Result<(TlsInfo, rustls::ServerConfig)> {
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        node.to_string(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{node}.sim.invalid"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "PVE Cluster Node");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "PVE Cluster Node");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = cert.der().to_vec();
    let info = TlsInfo {
        pem: cert.pem(),
        fingerprint: fingerprint_of(&der),
        der: der.clone(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(der)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((info, config))
}

impl Simulator {
    /// Serves endpoint `endpoint` of `estate` on its own listener.
    pub async fn start(
        estate: Estate,
        endpoint: usize,
        config: SimConfig,
    ) -> anyhow::Result<Simulator> {
        if !config.bind.ip().is_loopback() {
            bail!(
                "refusing to bind {}: the simulator only listens on loopback",
                config.bind
            );
        }
        let mut state = estate
            .endpoints
            .into_iter()
            .nth(endpoint)
            .with_context(|| format!("estate has no endpoint {endpoint}"))?;
        if state.nodes.is_empty() {
            bail!("endpoint {endpoint} has no nodes");
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let (tls, acceptor) = if config.tls {
            let (info, server_config) = make_certificate(&state.nodes[0].name)?;
            state.nodes[0].ssl_fingerprint = info.fingerprint.clone();
            (
                Some(info),
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(server_config))),
            )
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            faults: FaultHandle::default(),
            counters: Mutex::new(BTreeMap::new()),
            config,
        });
        let app = router(shared.clone());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, acceptor, app, rx));
        Ok(Simulator {
            shared,
            addr,
            tls,
            shutdown,
            task: Some(task),
        })
    }

    /// `https://127.0.0.1:PORT/api2/json` (or `http://…`).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/api2/json", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the served (self-signed) certificate, when TLS is on.
    pub fn certificate_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.pem.clone())
    }

    /// DER of the served certificate, when TLS is on.
    pub fn certificate_der(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(|t| t.der.clone())
    }

    /// SHA-256 of the certificate DER as upper-case colon hex (Proxmox `ssl_fingerprint`);
    /// also reported as the first node's `ssl_fingerprint` in `/nodes`.
    pub fn certificate_fingerprint(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.fingerprint.clone())
    }

    /// The full-access token `root@pam!proxbox`.
    pub fn token(&self) -> TokenCredentials {
        TokenCredentials {
            user: ROOT_USER.into(),
            token_id: ROOT_TOKEN_ID.into(),
            secret: self.shared.read().credentials.token_secret.clone(),
        }
    }

    /// The limited token `audit@pve!limited` (role PVEAuditor on part of the estate).
    pub fn limited_token(&self) -> TokenCredentials {
        TokenCredentials {
            user: LIMITED_USER.into(),
            token_id: LIMITED_TOKEN_ID.into(),
            secret: self.shared.read().credentials.limited_token_secret.clone(),
        }
    }

    /// `(username, password)` for ticket authentication (`root@pam`).
    pub fn password_user(&self) -> (String, String) {
        (
            ROOT_USER.into(),
            self.shared.read().credentials.root_password.clone(),
        )
    }

    /// The fault injection handle.
    pub fn faults(&self) -> FaultHandle {
        self.shared.faults.clone()
    }

    /// Runs `f` on the served endpoint state (a write lock is held meanwhile).
    pub fn mutate<R>(&self, f: impl FnOnce(&mut EndpointState) -> R) -> R {
        f(&mut self.shared.write())
    }

    /// A snapshot of the served endpoint state.
    pub fn state(&self) -> EndpointState {
        self.shared.read().clone()
    }

    /// Adds a guest.
    pub fn add_guest(&self, guest: Guest) -> Result<(), SimError> {
        self.mutate(|s| s.add_guest(guest))
    }

    /// Removes a guest.
    pub fn remove_guest(&self, vmid: u32) -> Result<Guest, SimError> {
        self.mutate(|s| s.remove_guest(vmid))
    }

    /// Renames a guest.
    pub fn rename_guest(&self, vmid: u32, name: &str) -> Result<(), SimError> {
        self.mutate(|s| s.rename_guest(vmid, name))
    }

    /// Sets a disk's size (`key` like `scsi0`/`rootfs`, `size` like `64G`).
    pub fn resize_disk(&self, vmid: u32, key: &str, size: &str) -> Result<(), SimError> {
        self.mutate(|s| s.resize_disk(vmid, key, size))
    }

    /// Moves a guest to another node.
    pub fn migrate_guest(&self, vmid: u32, node: &str) -> Result<(), SimError> {
        self.mutate(|s| s.migrate_guest(vmid, node))
    }

    /// Adds a backup to a storage.
    pub fn add_backup(&self, storage: &str, backup: Backup) -> Result<(), SimError> {
        self.mutate(|s| s.add_backup(storage, backup))
    }

    /// Deletes a backup by volid.
    pub fn delete_backup(&self, volid: &str) -> Result<Backup, SimError> {
        self.mutate(|s| s.delete_backup(volid))
    }

    /// Adds a snapshot to a guest.
    pub fn add_snapshot(&self, vmid: u32, snapshot: Snapshot) -> Result<(), SimError> {
        self.mutate(|s| s.add_snapshot(vmid, snapshot))
    }

    /// Deletes a snapshot.
    pub fn delete_snapshot(&self, vmid: u32, name: &str) -> Result<(), SimError> {
        self.mutate(|s| s.delete_snapshot(vmid, name))
    }

    /// Marks a node online or offline.
    pub fn set_node_online(&self, node: &str, online: bool) -> Result<(), SimError> {
        self.mutate(|s| s.set_node_online(node, online))
    }

    /// Requests seen for a concrete API path (with or without the `/api2/json` prefix,
    /// query ignored).
    pub fn request_count(&self, path: &str) -> u64 {
        let p = path.split('?').next().unwrap_or(path);
        let p = p.strip_prefix("/api2/json").unwrap_or(p);
        let p = api::normalize_path(p);
        self.shared.counters().get(&p).copied().unwrap_or(0)
    }

    /// All request counters by API path.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.counters().clone()
    }

    /// Resets all request counters.
    pub fn reset_counters(&self) {
        self.shared.counters().clear();
    }

    /// Stops the listener and all open connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                if !peer.ip().is_loopback() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve_connection(tls, app).await;
                            }
                        }
                        None => serve_connection(stream, app).await,
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

async fn serve_connection<IO>(io: IO, app: Router)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut app = app.clone();
        async move {
            let resp = match app.call(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if resp.extensions().get::<DisconnectMarker>().is_some() {
                return Err(Disconnected);
            }
            Ok(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/_sim/counters",
            get(ctl_counters).delete(ctl_reset_counters),
        )
        .route(
            "/_sim/faults",
            get(ctl_list_faults)
                .post(ctl_add_fault)
                .delete(ctl_clear_faults),
        )
        .route("/_sim/mutate", post(ctl_mutate))
        .route("/_sim/estate", get(ctl_estate))
        .route("/_sim/credentials", get(ctl_credentials))
        .fallback(api_fallback)
        .with_state(shared)
}

async fn api_fallback(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    api::handle(shared, req).await
}

async fn ctl_counters(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<String, u64>> {
    Json(shared.counters().clone())
}

async fn ctl_reset_counters(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.counters().clear();
    Json(json!({"ok": true}))
}

async fn ctl_list_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(shared.faults.list())
}

async fn ctl_add_fault(State(shared): State<Arc<Shared>>, Json(fault): Json<Fault>) -> Json<Value> {
    shared.faults.inject(fault);
    Json(json!({"ok": true}))
}

async fn ctl_clear_faults(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.faults.clear();
    Json(json!({"ok": true}))
}

async fn ctl_mutate(
    State(shared): State<Arc<Shared>>,
    Json(m): Json<Mutation>,
) -> (StatusCode, Json<Value>) {
    match m.apply(&mut shared.write()) {
        Ok(()) => (StatusCode::OK, Json(json!({"ok": true}))),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": e.to_string()})),
        ),
    }
}

async fn ctl_estate(State(shared): State<Arc<Shared>>) -> Json<EndpointState> {
    Json(shared.read().clone())
}

async fn ctl_credentials(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let st = shared.read();
    let c = &st.credentials;
    let token = |user: &str, id: &str, secret: &str| TokenCredentials {
        user: user.into(),
        token_id: id.into(),
        secret: secret.into(),
    };
    let root = token(ROOT_USER, ROOT_TOKEN_ID, &c.token_secret);
    let limited = token(LIMITED_USER, LIMITED_TOKEN_ID, &c.limited_token_secret);
    Json(json!({
        "token": root.header_value(),
        "limited_token": limited.header_value(),
        "username": ROOT_USER,
        "password": c.root_password,
    }))
}
