//! `/netbox`: the NetBox endpoint singleton (contract §3.4) and NetBox's status.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken};
use crate::server::AppState;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{Body, QueryParams, path_int};
use crate::store::{
    NetBoxEndpoint, NetBoxEndpointCreate, NetBoxEndpointPublic, NetBoxEndpointUpdate, Page,
    messages,
};

/// A list page from `offset` / `limit` (422 for a non-integer or a limit over 100).
pub fn page(query: &QueryParams) -> ApiResult<Page> {
    let offset = query.int("offset")?.unwrap_or(0);
    let limit = query.int("limit")?.unwrap_or(Page::MAX_LIMIT);
    Ok(Page::new(offset, limit)?)
}

/// `POST /netbox/endpoint`.
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<NetBoxEndpointCreate>,
) -> ApiResult<Json<NetBoxEndpointPublic>> {
    let created = state.store().create_netbox_endpoint(body)?;
    tracing::info!(id = created.id, name = %created.name, "NetBox endpoint created");
    Ok(Json(created))
}

/// `GET /netbox/endpoint`.
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<Vec<NetBoxEndpointPublic>>> {
    Ok(Json(state.store().list_netbox_endpoints(page(&query)?)?))
}

/// `GET /netbox/endpoint/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NetBoxEndpointPublic>> {
    state
        .store()
        .get_netbox_endpoint(path_int("netbox_id", &id)?)?
        .map(Json)
        .ok_or_else(|| ApiError::detail(StatusCode::NOT_FOUND, messages::NETBOX_NOT_FOUND))
}

/// `PUT /netbox/endpoint/{id}`: only the fields given change.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<NetBoxEndpointUpdate>,
) -> ApiResult<Json<NetBoxEndpointPublic>> {
    let id = path_int("netbox_id", &id)?;
    let updated = state
        .store()
        .update_netbox_endpoint(id, body)
        .map_err(ApiError::not_found_as(messages::NETBOX_NOT_FOUND_UPDATE))?;
    tracing::info!(id, name = %updated.name, "NetBox endpoint updated");
    Ok(Json(updated))
}

/// `DELETE /netbox/endpoint/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = path_int("netbox_id", &id)?;
    state
        .store()
        .delete_netbox_endpoint(id)
        .map_err(ApiError::not_found_as(messages::NETBOX_NOT_FOUND_DELETE))?;
    tracing::info!(id, "NetBox endpoint deleted");
    Ok(Json(json!({ "message": messages::NETBOX_DELETED })))
}

/// The client of the enabled NetBox endpoint; 400 `No NetBox endpoint found` without one.
pub fn client(state: &AppState) -> ApiResult<NetBoxClient> {
    let endpoint = state
        .store()
        .netbox_singleton()?
        .filter(|e| e.enabled)
        .ok_or_else(|| {
            ApiError::proxbox(
                StatusCode::BAD_REQUEST,
                "No NetBox endpoint found",
                "Please add a NetBox endpoint in the database",
            )
        })?;
    NetBoxClient::new(config(&endpoint)).map_err(|e| {
        ApiError::proxbox(
            StatusCode::BAD_REQUEST,
            "Invalid NetBox endpoint",
            e.to_string(),
        )
    })
}

/// The client a sync uses: [`client`] reading kept lists through the host's
/// [`crate::netbox::NetBoxView`] of this NetBox (URL and token).
pub fn sync_client(state: &AppState) -> ApiResult<NetBoxClient> {
    let plain = client(state)?;
    let endpoint = state.store().netbox_singleton()?.filter(|e| e.enabled);
    let Some(endpoint) = endpoint else {
        return Ok(plain);
    };
    let config = config(&endpoint);
    let fingerprint = {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(config.url.as_bytes());
        hash.update([0]);
        hash.update(config.token.header().as_bytes());
        hex::encode(hash.finalize())
    };
    NetBoxClient::with_view(config, state.netbox_view(&fingerprint)).map_err(|e| {
        ApiError::proxbox(
            StatusCode::BAD_REQUEST,
            "Invalid NetBox endpoint",
            e.to_string(),
        )
    })
}

/// The client settings of a stored NetBox endpoint.
pub fn config(endpoint: &NetBoxEndpoint) -> NetBoxConfig {
    let token = match (&endpoint.token_key, endpoint.token_version.as_str()) {
        (Some(key), "v2") => {
            NetBoxToken::V2(format!("{}.{}", key.expose(), endpoint.token.expose()))
        }
        _ => NetBoxToken::V1(endpoint.token.expose().to_string()),
    };
    let mut config = NetBoxConfig::new(endpoint.url(), token);
    config.verify_tls = endpoint.verify_ssl;
    config
}

/// `GET /netbox/status`: NetBox's `/api/status/`, as NetBox answered it.
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let client = client(&state)?;
    client
        .request(reqwest::Method::GET, "status/", &[], None)
        .await
        .map(Json)
        .map_err(|e| {
            ApiError::proxbox(
                StatusCode::BAD_GATEWAY,
                "Error fetching status from NetBox API.",
                e.to_string(),
            )
        })
}
