//! `/openapi.json` (OpenAPI 3.1 of this host's routes) and the `/docs` page.
//!
//! The document is built from [`ROUTES`]; a test requests every listed operation and
//! checks it is routed, so the table cannot drift from the router silently.

use axum::response::Html;
use serde_json::{Map, Value, json};

/// One documented operation.
#[derive(Clone, Copy, Debug)]
pub struct RouteDoc {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path template (`{name}` for path parameters).
    pub path: &'static str,
    /// Tag (URL group).
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Query parameters (all optional strings unless the name says otherwise).
    pub query: &'static [&'static str],
    /// Request body schema name in `components.schemas`, if any.
    pub body: Option<&'static str>,
    /// Whether `X-Proxbox-API-Key` is required.
    pub auth: bool,
}

const SESSION_PARAMS: &[&str] = &[
    "source",
    "proxmox_endpoint_ids",
    "endpoint_ids",
    "name",
    "domain",
    "ip_address",
];

const SYNC_PARAMS: &[&str] = &[
    "proxmox_endpoint_ids",
    "netbox_vm_ids",
    "dry_run",
    "delete_orphans",
    "delete_nonexistent_backup",
    "delete_nonexistent_snapshot",
    "sync_mode_vm",
    "sync_mode_vm_template",
    "fetch_max_concurrency",
    "run_id",
    "overwrite_vm_tags",
];

const FULL_UPDATE_PARAMS: &[&str] = &[
    "proxmox_endpoint_ids",
    "netbox_vm_ids",
    "dry_run",
    "delete_orphans",
    "delete_nonexistent_backup",
    "delete_nonexistent_snapshot",
    "sync_mode_vm",
    "sync_mode_vm_template",
    "fetch_max_concurrency",
    "run_id",
    "overwrite_vm_tags",
    "stages",
];

const INDIVIDUAL_VM_PARAMS: &[&str] = &[
    "cluster_name",
    "node",
    "type",
    "vmid",
    "dry_run",
    "proxmox_endpoint_ids",
];

const INDIVIDUAL_SNAPSHOT_PARAMS: &[&str] = &[
    "cluster_name",
    "node",
    "type",
    "vmid",
    "snapshot_name",
    "dry_run",
    "proxmox_endpoint_ids",
];

const INDIVIDUAL_BACKUP_PARAMS: &[&str] = &[
    "cluster_name",
    "node",
    "storage",
    "vmid",
    "volid",
    "dry_run",
    "proxmox_endpoint_ids",
];

macro_rules! route {
    ($method:literal, $path:literal, $tag:literal, $summary:literal) => {
        route!($method, $path, $tag, $summary, &[], None, true)
    };
    ($method:literal, $path:literal, $tag:literal, $summary:literal, $query:expr, $body:expr, $auth:expr) => {
        RouteDoc {
            method: $method,
            path: $path,
            tag: $tag,
            summary: $summary,
            query: $query,
            body: $body,
            auth: $auth,
        }
    };
}

/// Every HTTP operation this host serves.
pub const ROUTES: &[RouteDoc] = &[
    route!(
        "get",
        "/",
        "meta",
        "What this service is and which mapper serves each kind",
        &[],
        None,
        false
    ),
    route!(
        "get",
        "/health",
        "meta",
        "Readiness: 200 once serving",
        &[],
        None,
        false
    ),
    route!("get", "/version", "meta", "Host version"),
    route!("get", "/sync/active", "meta", "Sync runs in progress"),
    route!(
        "get",
        "/openapi.json",
        "meta",
        "This document",
        &[],
        None,
        false
    ),
    route!(
        "get",
        "/docs",
        "meta",
        "Human-readable API documentation",
        &[],
        None,
        false
    ),
    route!(
        "get",
        "/auth/bootstrap-status",
        "auth",
        "Whether the first key may still be registered",
        &[],
        None,
        false
    ),
    route!(
        "post",
        "/auth/register-key",
        "auth",
        "Register the first API key (once per database)",
        &[],
        Some("RegisterKey"),
        false
    ),
    route!("get", "/auth/keys", "auth", "List API keys (no secrets)"),
    route!(
        "post",
        "/auth/keys",
        "auth",
        "Generate an API key; its value is shown once"
    ),
    route!(
        "delete",
        "/auth/keys/{key_id}",
        "auth",
        "Delete a key (not the last active one)"
    ),
    route!(
        "post",
        "/auth/keys/{key_id}/activate",
        "auth",
        "Re-activate a key"
    ),
    route!(
        "post",
        "/auth/keys/{key_id}/deactivate",
        "auth",
        "Deactivate a key (not the last active one)"
    ),
    route!(
        "get",
        "/netbox/endpoint",
        "netbox",
        "List NetBox endpoints (at most one)",
        &["offset", "limit"],
        None,
        true
    ),
    route!(
        "post",
        "/netbox/endpoint",
        "netbox",
        "Create the NetBox endpoint",
        &[],
        Some("NetBoxEndpointCreate"),
        true
    ),
    route!(
        "get",
        "/netbox/endpoint/{netbox_id}",
        "netbox",
        "Get the NetBox endpoint"
    ),
    route!(
        "put",
        "/netbox/endpoint/{netbox_id}",
        "netbox",
        "Update the NetBox endpoint (fields given only)",
        &[],
        Some("NetBoxEndpointUpdate"),
        true
    ),
    route!(
        "delete",
        "/netbox/endpoint/{netbox_id}",
        "netbox",
        "Delete the NetBox endpoint"
    ),
    route!(
        "get",
        "/netbox/status",
        "netbox",
        "NetBox's /api/status/, passed through"
    ),
    route!(
        "get",
        "/proxmox/endpoints",
        "proxmox",
        "List Proxmox endpoints",
        &["offset", "limit"],
        None,
        true
    ),
    route!(
        "post",
        "/proxmox/endpoints",
        "proxmox",
        "Create a Proxmox endpoint",
        &[],
        Some("ProxmoxEndpointCreate"),
        true
    ),
    route!(
        "get",
        "/proxmox/endpoints/{endpoint_id}",
        "proxmox",
        "Get a Proxmox endpoint"
    ),
    route!(
        "put",
        "/proxmox/endpoints/{endpoint_id}",
        "proxmox",
        "Update a Proxmox endpoint (fields given only)",
        &[],
        Some("ProxmoxEndpointUpdate"),
        true
    ),
    route!(
        "delete",
        "/proxmox/endpoints/{endpoint_id}",
        "proxmox",
        "Delete a Proxmox endpoint"
    ),
    route!(
        "get",
        "/proxmox/sessions",
        "proxmox",
        "Connect the selected endpoints and describe them",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/version",
        "proxmox",
        "Proxmox version per session",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/cluster/status",
        "proxmox",
        "Cluster status per session, with its nodes",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/cluster/resources",
        "proxmox",
        "Cluster resources per cluster, deduplicated",
        &[
            "type",
            "source",
            "proxmox_endpoint_ids",
            "endpoint_ids",
            "name",
            "domain",
            "ip_address"
        ],
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/nodes/",
        "proxmox",
        "Every node of every session",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/{node}/{kind}/{vmid}/config",
        "proxmox",
        "A guest's config (kind qemu or lxc)",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/firewall/summary",
        "proxmox",
        "Datacenter firewall of every cluster: rules, security groups, IP sets, aliases, options",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/firewall/nodes/{node}/rules",
        "proxmox",
        "A node's host firewall rules",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/api2/nodes/{node}/time",
        "proxmox",
        "A node's clock and time zone",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/datacenter/cpu-models",
        "proxmox",
        "Custom CPU models of every cluster (Proxmox VE 9.2+)",
        SESSION_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/dcim/devices/create",
        "sync",
        "Sync nodes to devices; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/dcim/devices/create/stream",
        "sync",
        "Sync nodes to devices; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/storage/create",
        "sync",
        "Sync storages; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/storage/create/stream",
        "sync",
        "Sync storages; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/create",
        "sync",
        "Sync guests to virtual machines; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/create/stream",
        "sync",
        "Sync guests to virtual machines; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/{netbox_vm_id}/create",
        "sync",
        "Sync one NetBox VM; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/{netbox_vm_id}/create/stream",
        "sync",
        "Sync one NetBox VM; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/virtual-disks/create",
        "sync",
        "Sync guest disks; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/virtual-disks/create/stream",
        "sync",
        "Sync guest disks; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/{netbox_vm_id}/virtual-disks/create/stream",
        "sync",
        "Sync one VM's disks; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/backups/all/create",
        "sync",
        "Sync backups; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/backups/all/create/stream",
        "sync",
        "Sync backups; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/{netbox_vm_id}/backups/create/stream",
        "sync",
        "Sync one VM's backups; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/snapshots/all/create",
        "sync",
        "Sync snapshots; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/snapshots/all/create/stream",
        "sync",
        "Sync snapshots; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/{netbox_vm_id}/snapshots/create/stream",
        "sync",
        "Sync one VM's snapshots; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/dcim/devices/interfaces/create",
        "sync",
        "Sync node network interfaces (VLANs, MACs, IPs); JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/dcim/devices/interfaces/create/stream",
        "sync",
        "Sync node network interfaces (VLANs, MACs, IPs); SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/interfaces/create",
        "sync",
        "Sync guest NICs to VM interfaces (VLANs, MACs); JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/interfaces/create/stream",
        "sync",
        "Sync guest NICs to VM interfaces (VLANs, MACs); SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/interfaces/ip-address/create",
        "sync",
        "Sync guest IP addresses and primary IPs; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/interfaces/ip-address/create/stream",
        "sync",
        "Sync guest IP addresses and primary IPs; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/task-history/create",
        "sync",
        "Sync guests' archived tasks into the plugin's task history; JSON result",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/virtualization/virtual-machines/task-history/create/stream",
        "sync",
        "Sync guests' archived tasks into the plugin's task history; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/replication/stream",
        "sync",
        "Sync storage replication jobs into the plugin's replication records; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/proxmox/cluster/backup/stream",
        "sync",
        "Sync scheduled backup jobs into the plugin's backup routines; SSE progress",
        SYNC_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/sync/individual/vm",
        "sync",
        "Sync one guest's VM (cluster_name, node, type, vmid)",
        INDIVIDUAL_VM_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/sync/individual/snapshot",
        "sync",
        "Sync one snapshot record (cluster_name, node, type, vmid, snapshot_name)",
        INDIVIDUAL_SNAPSHOT_PARAMS,
        None,
        true
    ),
    route!(
        "post",
        "/sync/individual/snapshot",
        "sync",
        "Sync one snapshot record (cluster_name, node, type, vmid, snapshot_name)",
        INDIVIDUAL_SNAPSHOT_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/sync/individual/backup",
        "sync",
        "Sync one backup record (cluster_name, node, storage, vmid, volid)",
        INDIVIDUAL_BACKUP_PARAMS,
        None,
        true
    ),
    route!(
        "post",
        "/sync/individual/backup",
        "sync",
        "Sync one backup record (cluster_name, node, storage, vmid, volid)",
        INDIVIDUAL_BACKUP_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/full-update",
        "sync",
        "Every stage in order (or those named by stages); JSON result",
        FULL_UPDATE_PARAMS,
        None,
        true
    ),
    route!(
        "get",
        "/full-update/stream",
        "sync",
        "Every stage in order (or those named by stages); SSE progress",
        FULL_UPDATE_PARAMS,
        None,
        true
    ),
];

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "integer" } })
        })
        .collect()
}

fn query_parameter(name: &str) -> Value {
    let schema = match name {
        "offset" => json!({ "type": "integer", "default": 0 }),
        "limit" => json!({ "type": "integer", "default": 100, "maximum": 100 }),
        "type" => json!({ "type": "string", "enum": ["vm", "storage", "node", "sdn"] }),
        "source" => json!({ "type": "string", "enum": ["database"], "default": "database" }),
        "dry_run"
        | "delete_orphans"
        | "delete_nonexistent_backup"
        | "delete_nonexistent_snapshot"
        | "overwrite_vm_tags" => json!({ "type": "boolean" }),
        "fetch_max_concurrency" => json!({ "type": "integer", "minimum": 1 }),
        "sync_mode_vm" | "sync_mode_vm_template" => {
            json!({ "type": "string", "enum": ["always", "bootstrap_only", "disabled"] })
        }
        _ => json!({ "type": "string" }),
    };
    json!({ "name": name, "in": "query", "required": false, "schema": schema })
}

fn operation(route: &RouteDoc) -> Value {
    let mut parameters = path_parameters(route.path);
    parameters.extend(route.query.iter().map(|q| query_parameter(q)));
    let mut op = json!({
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": format!("{}_{}", route.method, route.path.trim_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
        "responses": {
            "200": { "description": "Success", "content": { "application/json": {} } },
            "4XX": { "description": "Error: `{\"detail\": ...}`, or for 422 a list of field errors" },
        },
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = route.body {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } },
        });
    }
    if !route.auth {
        op["security"] = json!([]);
    }
    op
}

fn string_props(names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| ((*n).to_string(), json!({ "type": "string" })))
        .collect()
}

fn schemas() -> Value {
    let mut netbox = string_props(&[
        "name",
        "ip_address",
        "domain",
        "token_version",
        "token_key",
        "token",
    ]);
    netbox.insert(
        "port".into(),
        json!({ "type": "integer", "minimum": 1, "maximum": 65535, "default": 443 }),
    );
    netbox.insert(
        "verify_ssl".into(),
        json!({ "type": "boolean", "default": true }),
    );
    netbox.insert(
        "enabled".into(),
        json!({ "type": "boolean", "default": true }),
    );
    let mut proxmox = string_props(&[
        "name",
        "ip_address",
        "domain",
        "username",
        "password",
        "token_name",
        "token_value",
        "site_slug",
        "site_name",
        "tenant_slug",
        "tenant_name",
        "node_device_name_template",
    ]);
    proxmox.insert(
        "port".into(),
        json!({ "type": "integer", "minimum": 1, "maximum": 65535 }),
    );
    proxmox.insert(
        "access_methods".into(),
        json!({ "type": "string", "enum": ["api", "api_ssh"], "default": "api" }),
    );
    for flag in ["verify_ssl", "enabled", "allow_writes"] {
        proxmox.insert(flag.into(), json!({ "type": "boolean" }));
    }
    for int in ["site_id", "tenant_id"] {
        proxmox.insert(int.into(), json!({ "type": ["integer", "null"] }));
    }
    proxmox.insert(
        "timeout".into(),
        json!({ "type": ["integer", "null"], "minimum": 1, "maximum": 3600 }),
    );
    proxmox.insert(
        "max_retries".into(),
        json!({ "type": ["integer", "null"], "minimum": 0, "maximum": 100 }),
    );
    proxmox.insert(
        "retry_backoff".into(),
        json!({ "type": ["number", "null"], "minimum": 0, "maximum": 300 }),
    );
    json!({
        "RegisterKey": {
            "type": "object",
            "required": ["api_key"],
            "properties": { "api_key": { "type": "string", "minLength": 32 }, "label": { "type": "string", "default": "" } },
        },
        "NetBoxEndpointCreate": { "type": "object", "required": ["name", "ip_address", "token"], "properties": netbox.clone() },
        "NetBoxEndpointUpdate": { "type": "object", "properties": netbox },
        "ProxmoxEndpointCreate": { "type": "object", "required": ["name", "ip_address", "port", "username"], "properties": proxmox.clone() },
        "ProxmoxEndpointUpdate": { "type": "object", "properties": proxmox },
    })
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "proxbox-host",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Backend of the netbox-proxbox NetBox plugin: reads Proxmox VE, writes NetBox. \
                Every route except the public ones needs the `X-Proxbox-API-Key` header. \
                WebSocket progress: `/ws` and `/ws/virtual-machines` (first message `{\"api_key\": ...}`).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "ApiKey": { "type": "apiKey", "in": "header", "name": super::auth::API_KEY_HEADER },
            },
        },
        "security": [{ "ApiKey": [] }],
    })
}

/// `GET /docs`: a self-contained page listing every operation (no external assets).
pub async fn docs_page() -> Html<String> {
    let mut rows = String::new();
    for route in ROUTES {
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
            route.method.to_uppercase(),
            escape(route.path),
            escape(route.summary),
            if route.auth { "API key" } else { "public" },
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>proxbox-host API</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}\
         tr:nth-child(even){{background:#f4f4f4}}</style></head><body>\
         <h1>proxbox-host {}</h1><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
         Authenticate with the <code>X-Proxbox-API-Key</code> header.</p>\
         <table><tr><th>Method</th><th>Path</th><th>What</th><th>Auth</th></tr>\n{rows}</table></body></html>",
        env!("CARGO_PKG_VERSION"),
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
