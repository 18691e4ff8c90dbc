//! `/proxmox`: endpoint records (contract §3.5) and the JSON read routes the plugin's
//! passes use (§3.6).

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::netbox::page;
use crate::proxmox::ProxmoxError;
use crate::proxmox::models::ClusterStatusEntry;
use crate::server::AppState;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{Body, QueryParams, path_int};
use crate::server::sessions::{self, Selection, Session, version_json};
use crate::store::{ProxmoxEndpointCreate, ProxmoxEndpointPublic, ProxmoxEndpointUpdate, messages};

/// `POST /proxmox/endpoints`.
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<ProxmoxEndpointCreate>,
) -> ApiResult<Json<ProxmoxEndpointPublic>> {
    let created = state.store().create_proxmox_endpoint(body)?;
    tracing::info!(id = created.id, name = %created.name, "Proxmox endpoint created");
    Ok(Json(created))
}

/// `GET /proxmox/endpoints`.
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<Vec<ProxmoxEndpointPublic>>> {
    Ok(Json(state.store().list_proxmox_endpoints(page(&query)?)?))
}

/// `GET /proxmox/endpoints/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProxmoxEndpointPublic>> {
    state
        .store()
        .get_proxmox_endpoint(path_int("endpoint_id", &id)?)?
        .map(Json)
        .ok_or_else(|| ApiError::detail(StatusCode::NOT_FOUND, messages::PROXMOX_NOT_FOUND))
}

/// `PUT /proxmox/endpoints/{id}`: only the fields given change.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<ProxmoxEndpointUpdate>,
) -> ApiResult<Json<ProxmoxEndpointPublic>> {
    let id = path_int("endpoint_id", &id)?;
    let updated = state
        .store()
        .update_proxmox_endpoint(id, body)
        .map_err(ApiError::not_found_as(messages::PROXMOX_NOT_FOUND_UPDATE))?;
    tracing::info!(id, name = %updated.name, "Proxmox endpoint updated");
    Ok(Json(updated))
}

/// `DELETE /proxmox/endpoints/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = path_int("endpoint_id", &id)?;
    state
        .store()
        .delete_proxmox_endpoint(id)
        .map_err(ApiError::not_found_as(messages::PROXMOX_NOT_FOUND))?;
    tracing::info!(id, "Proxmox endpoint deleted");
    Ok(Json(json!({ "message": messages::PROXMOX_DELETED })))
}

/// Connect the endpoints the query selects.
pub(super) async fn open(state: &AppState, query: &QueryParams) -> ApiResult<Vec<Session>> {
    sessions::open(state.store(), &Selection::from_query(query)?).await
}

/// A 502 for a failed Proxmox read of `what` on `session`'s endpoint.
pub(super) fn upstream(session: &Session, what: &str, error: &ProxmoxError) -> ApiError {
    ApiError::proxbox(
        StatusCode::BAD_GATEWAY,
        format!("Error retrieving Proxmox {what}"),
        format!("endpoint '{}': {error}", session.endpoint.name),
    )
}

/// `GET /proxmox/sessions`: the connected endpoints.
pub async fn list_sessions(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let sessions = open(&state, &query).await?;
    Ok(Json(Value::Array(
        sessions
            .iter()
            .map(|s| {
                json!({
                    "ip_address": s.endpoint.ip_address,
                    "domain": s.endpoint.domain,
                    "http_port": s.endpoint.port,
                    "user": s.endpoint.username,
                    "name": s.name,
                    "mode": s.mode.as_str(),
                    "proxmox_version": version_json(&s.version),
                    "schema_release": s.version.release,
                    "schema_status": null,
                })
            })
            .collect(),
    )))
}

/// `GET /proxmox/version`: `[{"<session name>": version}]`; 404 with no endpoint.
pub async fn version(State(state): State<AppState>, query: QueryParams) -> ApiResult<Json<Value>> {
    let sessions = open(&state, &query).await?;
    if sessions.is_empty() {
        return Err(ApiError::detail(
            StatusCode::NOT_FOUND,
            "No Proxmox active connections found, not able to retrieve version information",
        ));
    }
    Ok(Json(Value::Array(
        sessions
            .iter()
            .map(|s| json!({ s.name.clone(): version_json(&s.version) }))
            .collect(),
    )))
}

/// `GET /proxmox/cluster/status`: one record per session with its `node_list`.
pub async fn cluster_status(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let sessions = open(&state, &query).await?;
    Ok(Json(Value::Array(
        sessions.iter().map(cluster_record).collect(),
    )))
}

fn cluster_record(session: &Session) -> Value {
    let mut cluster = None;
    let mut nodes = Vec::new();
    for entry in &session.status {
        match entry {
            ClusterStatusEntry::Cluster { raw, .. } => cluster = Some(raw),
            ClusterStatusEntry::Node {
                name,
                online,
                nodeid,
                ip,
                local,
                raw,
            } => nodes.push(json!({
                "id": raw.get("id").and_then(Value::as_str).map_or_else(|| format!("node/{name}"), str::to_string),
                "name": name,
                "type": "node",
                "ip": ip.clone().unwrap_or_default(),
                "level": raw.get("level").and_then(Value::as_str),
                "local": local,
                "nodeid": nodeid.unwrap_or(0),
                "online": online,
            })),
            ClusterStatusEntry::Other(_) => {}
        }
    }
    let field = |key: &str| cluster.and_then(|c| c.get(key));
    let name = field("name")
        .and_then(Value::as_str)
        .unwrap_or(&session.name)
        .to_string();
    let node_count = field("nodes")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .unwrap_or(nodes.len() as u64);
    let quorate = field("quorate")
        .map(|q| {
            q.as_bool()
                .unwrap_or_else(|| q.as_u64().is_some_and(|n| n > 0))
        })
        .unwrap_or(!nodes.is_empty());
    let endpoint = &session.endpoint;
    json!({
        "id": field("id").and_then(Value::as_str).map_or_else(|| format!("cluster/{name}"), str::to_string),
        "name": name,
        "type": "cluster",
        "nodes": node_count,
        "quorate": quorate,
        "version": field("version").and_then(Value::as_u64).unwrap_or(0),
        "mode": session.mode.as_str(),
        "endpoint_name": endpoint.name,
        "node_device_name_template": if endpoint.node_device_name_template.is_empty() { "{node}" } else { endpoint.node_device_name_template.as_str() },
        "db_endpoint_id": endpoint.id,
        "endpoint_source": "database",
        "domain": endpoint.domain,
        "ip_address": endpoint.ip_address,
        "http_port": endpoint.port,
        "site_id": endpoint.site_id,
        "site_slug": endpoint.site_slug,
        "site_name": endpoint.site_name,
        "tenant_id": endpoint.tenant_id,
        "tenant_slug": endpoint.tenant_slug,
        "tenant_name": endpoint.tenant_name,
        "node_list": nodes,
    })
}

/// `GET /proxmox/cluster/resources[?type=vm|storage|node|sdn]`:
/// `[{"<cluster name>": [resources]}]`, deduplicated by resource id within each cluster
/// (several endpoints of one cluster list the same resources).
pub async fn cluster_resources(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let kind = query
        .get("type")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if let Some(kind) = &kind
        && !["vm", "storage", "node", "sdn"].contains(&kind.as_str())
    {
        return Err(ApiError::invalid(
            "enum",
            json!(["query", "type"]),
            "Input should be 'vm', 'storage', 'node' or 'sdn'",
        ));
    }
    let sessions = open(&state, &query).await?;
    let params: Vec<(&str, String)> = kind.iter().map(|k| ("type", k.clone())).collect();
    let answers = futures::future::join_all(
        sessions
            .iter()
            .map(|s| s.client.get("cluster/resources", &params)),
    )
    .await;
    let mut order: Vec<String> = Vec::new();
    let mut by_cluster: HashMap<String, (BTreeSet<String>, Vec<Value>)> = HashMap::new();
    for (session, answer) in sessions.iter().zip(answers) {
        let resources = answer.map_err(|e| upstream(session, "cluster resources", &e))?;
        let entry = by_cluster.entry(session.name.clone()).or_insert_with(|| {
            order.push(session.name.clone());
            Default::default()
        });
        for resource in resources.as_array().into_iter().flatten() {
            let id = resource
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if entry.0.insert(id.to_string()) {
                entry.1.push(resource.clone());
            }
        }
    }
    Ok(Json(Value::Array(
        order
            .into_iter()
            .map(|name| {
                let items = by_cluster.remove(&name).map(|(_, v)| v).unwrap_or_default();
                json!({ name: items })
            })
            .collect(),
    )))
}

/// `GET /proxmox/nodes/`: `[{"<session name>": node}]` — every node of every session
/// (the reference returns only the first node of each; see the README).
pub async fn nodes(State(state): State<AppState>, query: QueryParams) -> ApiResult<Json<Value>> {
    let sessions = open(&state, &query).await?;
    let answers =
        futures::future::join_all(sessions.iter().map(|s| s.client.get("nodes", &[]))).await;
    let mut out = Vec::new();
    for (session, answer) in sessions.iter().zip(answers) {
        let nodes = answer.map_err(|e| upstream(session, "nodes", &e))?;
        for node in nodes.as_array().into_iter().flatten() {
            out.push(json!({ session.name.clone(): node }));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// A node name as Proxmox allows it (letters, digits, `-`, `.`), else a 400.
pub(super) fn node_segment(node: &str) -> ApiResult<&str> {
    let ok = !node.is_empty()
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(node)
    } else {
        Err(ApiError::detail(
            StatusCode::BAD_REQUEST,
            format!("Invalid node name '{node}'"),
        ))
    }
}

/// The first answer to `path` among `sessions` (the node may be in any of them), or the
/// last failure.
async fn first_answer(sessions: &[Session], path: &str, what: &str) -> ApiResult<Value> {
    let mut last = None;
    for session in sessions {
        match session.client.get(path, &[]).await {
            Ok(value) => return Ok(value),
            Err(e) => last = Some(upstream(session, what, &e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        ApiError::detail(StatusCode::NOT_FOUND, "No Proxmox active connections found")
    }))
}

/// `GET /proxmox/{node}/{type}/{vmid}/config`: a guest's config as Proxmox returns it
/// (the plugin's VM-template phase and VM config tab).
pub async fn guest_config(
    State(state): State<AppState>,
    Path((node, kind, vmid)): Path<(String, String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let node = node_segment(&node)?;
    if kind != "qemu" && kind != "lxc" {
        return Err(ApiError::detail(
            StatusCode::BAD_REQUEST,
            format!("Invalid guest type '{kind}': expected qemu or lxc"),
        ));
    }
    let vmid = path_int("vmid", &vmid)?;
    let sessions = open(&state, &query).await?;
    let path = format!("nodes/{node}/{kind}/{vmid}/config");
    Ok(Json(first_answer(&sessions, &path, "VM config").await?))
}

/// `GET /proxmox/api2/nodes/{node}/time`: the node's clock and time zone.
pub async fn node_time(
    State(state): State<AppState>,
    Path(node): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let node = node_segment(&node)?;
    let sessions = open(&state, &query).await?;
    let path = format!("nodes/{node}/time");
    Ok(Json(first_answer(&sessions, &path, "node time").await?))
}

/// `GET /proxmox/datacenter/cpu-models`: the custom CPU models of every selected cluster
/// (`/cluster/qemu/custom-cpu-models`, Proxmox VE 9.2+). A cluster whose Proxmox does not
/// know the call (501) has none; one that fails gets an entry with `status: "error"`.
pub async fn cpu_models(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let sessions = open(&state, &query).await?;
    let answers = futures::future::join_all(
        sessions
            .iter()
            .map(|s| s.client.get("cluster/qemu/custom-cpu-models", &[])),
    )
    .await;
    let mut out = Vec::new();
    for (session, answer) in sessions.iter().zip(answers) {
        match answer {
            Ok(rows) => {
                for row in rows.as_array().into_iter().flatten() {
                    out.push(cpu_model(&session.name, row));
                }
            }
            Err(e) if e.status() == Some(501) => {}
            Err(e) => out.push(json!({
                "cluster_name": session.name,
                "status": "error",
                "error": format!("endpoint '{}': {e}", session.endpoint.name),
            })),
        }
    }
    Ok(Json(Value::Array(out)))
}

/// One custom CPU model in the reference's shape (`None`-valued keys left out).
fn cpu_model(cluster: &str, row: &Value) -> Value {
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| row.get(*k).filter(|v| !v.is_null()))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    let mut out = serde_json::Map::new();
    out.insert("cluster_name".into(), json!(cluster));
    for (field, keys) in [
        ("cputype", &["cputype", "name"][..]),
        ("base_cputype", &["base-cputype", "base_cputype"][..]),
        ("flags", &["flags"][..]),
        ("vendor_id", &["vendor_id", "vendor-id"][..]),
        ("description", &["description"][..]),
    ] {
        if let Some(value) = text(keys) {
            out.insert(field.into(), json!(value));
        }
    }
    if let Some(level) = row
        .get("level")
        .and_then(|l| l.as_i64().or_else(|| l.as_str()?.parse().ok()))
    {
        out.insert("level".into(), json!(level));
    }
    out.insert("status".into(), json!("ok"));
    Value::Object(out)
}
