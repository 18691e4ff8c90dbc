//! `/`, `/health`, `/version`, `/sync/active`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::mapper::Kind;
use crate::server::AppState;

/// `GET /`: what this service is, and which mapper serves each kind.
pub async fn root(State(state): State<AppState>) -> Json<Value> {
    let mappers: serde_json::Map<String, Value> = match state.mappers() {
        Some(set) => Kind::ALL
            .iter()
            .map(|kind| {
                (
                    kind.to_string(),
                    Value::String(set.component(*kind).name().to_string()),
                )
            })
            .collect(),
        None => serde_json::Map::new(),
    };
    Json(json!({
        "message": "proxbox-host: a Proxmox VE to NetBox sync backend for the netbox-proxbox plugin",
        "proxbox": {
            "name": "proxbox-host",
            "version": env!("CARGO_PKG_VERSION"),
            "docs": "/docs",
        },
        "mappers": mappers,
    }))
}

/// `GET /health`: ready once the store is open (which it is whenever we serve).
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ready", "init_ok": true }))
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /sync/active`: the runs in progress, oldest first.
pub async fn sync_active(State(state): State<AppState>) -> Json<Value> {
    let runs = state.runs().list();
    let first = runs.first();
    Json(json!({
        "active": first.is_some(),
        "started_at": first.map(|r| r.started_at.clone()),
        "id": first.map(|r| r.id.clone()),
        "kind": first.map(|r| r.kind.clone()),
        "runs": runs,
    }))
}
