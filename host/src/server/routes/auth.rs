//! `/auth`: first-key bootstrap and key management (contract §3.3).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{Body, path_int};
use crate::store::{KeyId, messages};

/// Body of `POST /auth/register-key`.
#[derive(Debug, Deserialize)]
pub struct RegisterKey {
    api_key: String,
    #[serde(default)]
    label: String,
}

/// `GET /auth/bootstrap-status`.
pub async fn bootstrap_status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let store = state.store();
    Ok(Json(json!({
        "needs_bootstrap": !store.bootstrap_claimed()?,
        "has_db_keys": store.has_any_key_record()?,
    })))
}

/// `POST /auth/register-key`: the first key, once per database.
pub async fn register_key(
    State(state): State<AppState>,
    Body(body): Body<RegisterKey>,
) -> ApiResult<Response> {
    state
        .store()
        .register_first_key(&body.api_key, &body.label)?;
    tracing::info!("first API key registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "detail": messages::API_KEY_REGISTERED })),
    )
        .into_response())
}

/// `POST /auth/keys`: a new generated key, shown once.
pub async fn create_key(State(state): State<AppState>) -> ApiResult<Response> {
    let (info, raw) = state.store().create_key("")?;
    tracing::info!(id = info.id.0, "API key created");
    let mut body = serde_json::to_value(&info).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["raw_key"] = Value::String(raw.into_inner());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /auth/keys`: every key, newest first, without secrets.
pub async fn list_keys(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "keys": state.store().list_keys()? })))
}

fn key_id(raw: &str) -> ApiResult<KeyId> {
    path_int("key_id", raw).map(KeyId)
}

/// `DELETE /auth/keys/{id}`: 204; the last active key stays.
pub async fn delete_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = key_id(&id)?;
    state
        .store()
        .delete_key(id)
        .map_err(ApiError::not_found_as(messages::API_KEY_NOT_FOUND))?;
    tracing::info!(id = id.0, "API key deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /auth/keys/{id}/activate`.
pub async fn activate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let info = state
        .store()
        .activate_key(key_id(&id)?)
        .map_err(ApiError::not_found_as(messages::API_KEY_NOT_FOUND))?;
    Ok(Json(json!(info)))
}

/// `POST /auth/keys/{id}/deactivate`: the last active key stays active.
pub async fn deactivate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let info = state
        .store()
        .deactivate_key(key_id(&id)?)
        .map_err(ApiError::not_found_as(messages::API_KEY_NOT_FOUND))?;
    Ok(Json(json!(info)))
}
