//! The HTTP service the netbox-proxbox plugin talks to.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::mapper::{Kind, MapperSet};

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    mappers: Arc<MapperSet>,
}

impl AppState {
    /// State around the loaded mapper set.
    pub fn new(mappers: MapperSet) -> Self {
        AppState {
            mappers: Arc::new(mappers),
        }
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .with_state(state)
}

async fn root(State(state): State<AppState>) -> Json<Value> {
    let mappers: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .map(|kind| {
            (
                kind.to_string(),
                Value::String(state.mappers.component(*kind).name().to_string()),
            )
        })
        .collect();
    Json(json!({
        "name": "proxbox-host",
        "version": env!("CARGO_PKG_VERSION"),
        "mappers": mappers,
    }))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ready" }))
}

/// Serve until Ctrl-C or SIGTERM.
pub async fn serve(addr: SocketAddr, state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
