//! The HTTP service the netbox-proxbox plugin talks to.
//!
//! - [`router`]: every route, behind the API-key middleware ([`auth`]) and the
//!   security headers.
//! - [`AppState`]: the configuration store, mappers, lockout book and run registry.
//! - [`serve`]: listen until Ctrl-C / SIGTERM, then drain.

pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod runs;
pub mod sessions;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::mapper::MapperSet;
use crate::netbox::NetBoxView;
use crate::store::{Clock, Lockout, LockoutPolicy, Store, SystemClock};
use auth::TrustedProxies;
use runs::RunRegistry;

/// The lockout book, on whatever clock the state was built with.
pub type SharedLockout = Lockout<Arc<dyn Clock>>;

/// Shared state of the service. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    mappers: Option<Arc<MapperSet>>,
    lockout: SharedLockout,
    trusted_proxies: TrustedProxies,
    runs: RunRegistry,
    stage_runner: Option<ws::SharedRunner>,
    mapper_params: Vec<(String, String)>,
    netbox_view_max_age: Duration,
    netbox_view: std::sync::Mutex<Option<(String, Arc<NetBoxView>)>>,
}

impl AppState {
    /// State around a store, with the reference's lockout policy on the system clock.
    pub fn new(store: Store) -> Self {
        AppStateBuilder::new(store).build()
    }

    /// A builder, for the optional parts.
    pub fn builder(store: Store) -> AppStateBuilder {
        AppStateBuilder::new(store)
    }

    /// The configuration store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The mappers, when loaded.
    pub fn mappers(&self) -> Option<&MapperSet> {
        self.inner.mappers.as_deref()
    }

    /// The mappers, shared (for work that outlives a borrow).
    pub fn mappers_shared(&self) -> Option<Arc<MapperSet>> {
        self.inner.mappers.clone()
    }

    /// Site parameters passed to every mapper in its context.
    pub fn mapper_params(&self) -> &[(String, String)] {
        &self.inner.mapper_params
    }

    /// The kept NetBox lists of the NetBox named by `fingerprint` (URL and token), shared
    /// by the syncs of this host; a new NetBox or token starts an empty view. `None` when
    /// the view is off.
    pub fn netbox_view(&self, fingerprint: &str) -> Option<Arc<NetBoxView>> {
        if self.inner.netbox_view_max_age.is_zero() {
            return None;
        }
        let mut slot = self
            .inner
            .netbox_view
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((f, view)) if f == fingerprint => Some(view.clone()),
            _ => {
                let view = Arc::new(NetBoxView::new(self.inner.netbox_view_max_age));
                *slot = Some((fingerprint.to_string(), view.clone()));
                Some(view)
            }
        }
    }

    /// Failed-authentication bookkeeping.
    pub fn lockout(&self) -> &SharedLockout {
        &self.inner.lockout
    }

    /// Who may set `X-Forwarded-For`.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }

    /// Runs in progress.
    pub fn runs(&self) -> &RunRegistry {
        &self.inner.runs
    }

    /// What runs a sync stage for a WebSocket command.
    pub fn stage_runner(&self) -> Option<&ws::SharedRunner> {
        self.inner.stage_runner.as_ref()
    }
}

/// Builds an [`AppState`].
pub struct AppStateBuilder {
    store: Store,
    mappers: Option<MapperSet>,
    policy: LockoutPolicy,
    clock: Arc<dyn Clock>,
    trusted_proxies: TrustedProxies,
    stage_runner: Option<ws::SharedRunner>,
    mapper_params: Vec<(String, String)>,
    netbox_view_max_age: Duration,
}

/// How long the NetBox view trusts a kept list before reading it in full again.
pub const DEFAULT_NETBOX_VIEW_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl AppStateBuilder {
    fn new(store: Store) -> Self {
        AppStateBuilder {
            store,
            mappers: None,
            policy: LockoutPolicy::default(),
            clock: Arc::new(SystemClock),
            trusted_proxies: TrustedProxies::default(),
            stage_runner: None,
            mapper_params: Vec::new(),
            netbox_view_max_age: DEFAULT_NETBOX_VIEW_MAX_AGE,
        }
    }

    /// How long kept NetBox lists are trusted (zero: no view, every list is read).
    pub fn netbox_view_max_age(mut self, max_age: Duration) -> Self {
        self.netbox_view_max_age = max_age;
        self
    }

    /// Site parameters passed to every mapper (`context.params`).
    pub fn mapper_params(mut self, params: Vec<(String, String)>) -> Self {
        self.mapper_params = params;
        self
    }

    /// The mappers syncs run.
    pub fn mappers(mut self, mappers: MapperSet) -> Self {
        self.mappers = Some(mappers);
        self
    }

    /// Lockout threshold and window.
    pub fn lockout_policy(mut self, policy: LockoutPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The clock lockouts are timed with (tests move a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Peers trusted to set `X-Forwarded-For`.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// What runs sync stages for WebSocket commands.
    pub fn stage_runner(mut self, runner: ws::SharedRunner) -> Self {
        self.stage_runner = Some(runner);
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                store: self.store,
                mappers: self.mappers.map(Arc::new),
                lockout: Lockout::with_clock(self.policy, self.clock),
                trusted_proxies: self.trusted_proxies,
                runs: RunRegistry::default(),
                stage_runner: self.stage_runner,
                mapper_params: self.mapper_params,
                netbox_view_max_age: self.netbox_view_max_age,
                netbox_view: std::sync::Mutex::new(None),
            }),
        }
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    use routes::{auth as keys, firewall, individual, meta, netbox, proxmox, sync};
    Router::new()
        .route("/", get(meta::root))
        .route("/health", get(meta::health))
        .route("/version", get(meta::version))
        .route("/sync/active", get(meta::sync_active))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/docs", get(openapi::docs_page))
        .route("/auth/bootstrap-status", get(keys::bootstrap_status))
        .route("/auth/register-key", post(keys::register_key))
        .route("/auth/keys", get(keys::list_keys).post(keys::create_key))
        .route(
            "/auth/keys/{key_id}",
            axum::routing::delete(keys::delete_key),
        )
        .route("/auth/keys/{key_id}/activate", post(keys::activate_key))
        .route("/auth/keys/{key_id}/deactivate", post(keys::deactivate_key))
        .route("/netbox/endpoint", get(netbox::list).post(netbox::create))
        .route(
            "/netbox/endpoint/{netbox_id}",
            get(netbox::get).put(netbox::update).delete(netbox::delete),
        )
        .route("/netbox/status", get(netbox::status))
        .route(
            "/proxmox/endpoints",
            get(proxmox::list).post(proxmox::create),
        )
        .route(
            "/proxmox/endpoints/{endpoint_id}",
            get(proxmox::get)
                .put(proxmox::update)
                .delete(proxmox::delete),
        )
        .route("/proxmox/sessions", get(proxmox::list_sessions))
        .route("/proxmox/version", get(proxmox::version))
        .route("/proxmox/cluster/status", get(proxmox::cluster_status))
        .route(
            "/proxmox/cluster/resources",
            get(proxmox::cluster_resources),
        )
        .route("/proxmox/nodes/", get(proxmox::nodes))
        .route(
            "/proxmox/{node}/{kind}/{vmid}/config",
            get(proxmox::guest_config),
        )
        .route("/proxmox/api2/nodes/{node}/time", get(proxmox::node_time))
        .route("/proxmox/datacenter/cpu-models", get(proxmox::cpu_models))
        .route("/proxmox/firewall/summary", get(firewall::summary))
        .route(
            "/proxmox/firewall/nodes/{node}/rules",
            get(firewall::node_rules),
        )
        .route("/dcim/devices/create", get(sync::devices_json))
        .route("/dcim/devices/create/stream", get(sync::devices_stream))
        .route(
            "/virtualization/virtual-machines/create",
            get(sync::vms_json),
        )
        .route(
            "/virtualization/virtual-machines/create/stream",
            get(sync::vms_stream),
        )
        .route(
            "/virtualization/virtual-machines/storage/create",
            get(sync::storage_json),
        )
        .route(
            "/virtualization/virtual-machines/storage/create/stream",
            get(sync::storage_stream),
        )
        .route(
            "/virtualization/virtual-machines/virtual-disks/create",
            get(sync::disks_json),
        )
        .route(
            "/virtualization/virtual-machines/virtual-disks/create/stream",
            get(sync::disks_stream),
        )
        .route(
            "/virtualization/virtual-machines/backups/all/create",
            get(sync::backups_json),
        )
        .route(
            "/virtualization/virtual-machines/backups/all/create/stream",
            get(sync::backups_stream),
        )
        .route(
            "/virtualization/virtual-machines/snapshots/all/create",
            get(sync::snapshots_json),
        )
        .route(
            "/virtualization/virtual-machines/snapshots/all/create/stream",
            get(sync::snapshots_stream),
        )
        .route(
            "/dcim/devices/interfaces/create",
            get(sync::node_interfaces_json),
        )
        .route(
            "/dcim/devices/interfaces/create/stream",
            get(sync::node_interfaces_stream),
        )
        .route(
            "/virtualization/virtual-machines/interfaces/create",
            get(sync::vm_interfaces_json),
        )
        .route(
            "/virtualization/virtual-machines/interfaces/create/stream",
            get(sync::vm_interfaces_stream),
        )
        .route(
            "/virtualization/virtual-machines/interfaces/ip-address/create",
            get(sync::vm_ips_json),
        )
        .route(
            "/virtualization/virtual-machines/interfaces/ip-address/create/stream",
            get(sync::vm_ips_stream),
        )
        .route(
            "/virtualization/virtual-machines/{netbox_vm_id}/create",
            get(sync::vm_json),
        )
        .route(
            "/virtualization/virtual-machines/{netbox_vm_id}/create/stream",
            get(sync::vm_stream),
        )
        .route(
            "/virtualization/virtual-machines/{netbox_vm_id}/virtual-disks/create/stream",
            get(sync::vm_disks_stream),
        )
        .route(
            "/virtualization/virtual-machines/{netbox_vm_id}/backups/create/stream",
            get(sync::vm_backups_stream),
        )
        .route(
            "/virtualization/virtual-machines/{netbox_vm_id}/snapshots/create/stream",
            get(sync::vm_snapshots_stream),
        )
        .route(
            "/virtualization/virtual-machines/task-history/create",
            get(sync::task_history_json),
        )
        .route(
            "/virtualization/virtual-machines/task-history/create/stream",
            get(sync::task_history_stream),
        )
        .route(
            "/proxmox/replication/stream",
            get(sync::replications_stream),
        )
        .route(
            "/proxmox/cluster/backup/stream",
            get(sync::backup_routines_stream),
        )
        .route("/sync/individual/vm", get(individual::vm))
        .route(
            "/sync/individual/snapshot",
            get(individual::snapshot).post(individual::snapshot),
        )
        .route(
            "/sync/individual/backup",
            get(individual::backup).post(individual::backup),
        )
        .route("/full-update", get(sync::full_update_json))
        .route("/full-update/stream", get(sync::full_update_stream))
        .route("/ws", get(ws::commands))
        .route("/ws/virtual-machines", get(ws::virtual_machines))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn not_found() -> error::ApiError {
    error::ApiError::detail(axum::http::StatusCode::NOT_FOUND, "Not Found")
}

/// Headers the reference adds to every answer.
async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path() == "/docs";
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = if docs {
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' \
         'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
    } else {
        "default-src 'self'; frame-ancestors 'none'"
    };
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("content-security-policy", csp),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// One log line per request: method, path (never the query or headers), status, time.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Serve until Ctrl-C or SIGTERM, then let requests in flight finish.
pub async fn serve(addr: SocketAddr, state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    serve_on(listener, state, shutdown_signal()).await
}

/// Serve on a bound listener until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
