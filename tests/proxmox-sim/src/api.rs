//! The `/api2/json` request pipeline (counting, faults, auth, routing, permissions, node
//! proxying, parameter checks) and the response bodies of every served route.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::auth::{self, AuthMethod, Principal, ROOT_USER};
use crate::faults::FaultKind;
use crate::model::{EndpointState, Guest, GuestStatus, GuestType, PveObject, Storage};
use crate::server::Shared;

/// Marker extension: the connection must be dropped without a response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DisconnectMarker;

/// An error response.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// JSON body `{"data":null,"message":…[,"errors":…]}`, reason = first line of message.
    Json {
        status: u16,
        message: String,
        errors: Option<Map<String, Value>>,
    },
    /// No body (authentication failures, proxy pseudo-statuses).
    Empty { status: u16, reason: String },
}

type ApiResult = Result<Value, ApiError>;

fn fail(status: u16, message: impl Into<String>) -> ApiError {
    ApiError::Json {
        status,
        message: message.into(),
        errors: None,
    }
}

/// A list of PVE objects as a JSON array.
fn objects(items: &[PveObject]) -> Value {
    Value::Array(items.iter().cloned().map(Value::Object).collect())
}

/// 500 with PVE's `die "…\n"` message style.
fn die(message: impl std::fmt::Display) -> ApiError {
    fail(500, format!("{message}\n"))
}

fn forbidden(path: &str, privs: &str) -> ApiError {
    fail(403, format!("Permission check failed ({path}, {privs})"))
}

fn param_errors(errors: Map<String, Value>) -> ApiError {
    ApiError::Json {
        status: 400,
        message: "Parameter verification failed.\n".into(),
        errors: Some(errors),
    }
}

fn param_error(name: &str, message: impl Into<String>) -> ApiError {
    let mut m = Map::new();
    m.insert(name.to_string(), Value::String(message.into()));
    param_errors(m)
}

#[derive(Serialize)]
struct Envelope<'a> {
    data: &'a Value,
}

fn base_response(status: u16, reason: Option<&str>, body: Vec<u8>, json: bool) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    let h = resp.headers_mut();
    if json {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
    }
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status >= 400 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(reason) = reason {
        let clean: String = reason
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| *c == '\t' || (' '..='~').contains(c))
            .collect();
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(clean) {
            resp.extensions_mut().insert(phrase);
        }
    }
    resp
}

fn ok_response(data: &Value) -> Response<Body> {
    let body = serde_json::to_vec(&Envelope { data }).unwrap_or_default();
    base_response(200, None, body, true)
}

pub(crate) fn error_response(err: ApiError) -> Response<Body> {
    match err {
        ApiError::Json {
            status,
            message,
            errors,
        } => {
            let mut body = Map::new();
            body.insert("data".into(), Value::Null);
            body.insert("message".into(), Value::String(message.clone()));
            if let Some(errors) = errors {
                body.insert("errors".into(), Value::Object(errors));
            }
            let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
            base_response(status, Some(&message), bytes, true)
        }
        ApiError::Empty { status, reason } => {
            base_response(status, Some(&reason), Vec::new(), false)
        }
    }
}

/// Entry point for every request outside `/_sim/`.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();

    let Some(rest) = path.strip_prefix("/api2/") else {
        return error_response(ApiError::Empty {
            status: 501,
            reason: format!("no such file '{path}'"),
        });
    };
    let (format, rel) = match rest.split_once('/') {
        Some((f, r)) => (f.to_string(), format!("/{r}")),
        None => (rest.to_string(), "/".to_string()),
    };
    let rel = normalize_path(&auth::percent_decode(&rel));
    shared.count(&rel);

    let faults = shared.faults.apply(&rel);
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let mut malformed = false;
    match &faults.terminal {
        Some(FaultKind::Hang) => std::future::pending::<()>().await,
        Some(FaultKind::Disconnect) => {
            let mut resp = Response::new(Body::empty());
            resp.extensions_mut().insert(DisconnectMarker);
            return resp;
        }
        Some(FaultKind::Status(code, reason)) => {
            let err = if *code >= 595 || *code < 400 {
                ApiError::Empty {
                    status: *code,
                    reason: reason.clone(),
                }
            } else {
                fail(*code, format!("{reason}\n"))
            };
            return error_response(err);
        }
        Some(FaultKind::MalformedJson) => malformed = true,
        _ => {}
    }

    if format != "json" {
        return error_response(ApiError::Empty {
            status: 501,
            reason: format!("no formatter for uri {rel}, {format}"),
        });
    }
    if ![Method::GET, Method::POST, Method::PUT, Method::DELETE].contains(&method) {
        return error_response(ApiError::Empty {
            status: 501,
            reason: format!("method '{method}' not available"),
        });
    }

    let no_auth = (rel == "/access/ticket" && (method == Method::GET || method == Method::POST))
        || (rel == "/access/domains" && method == Method::GET);
    let principal = if no_auth {
        None
    } else {
        let creds = shared.read().credentials.clone();
        let cookie = header_str(&headers, header::COOKIE);
        let authorization = header_str(&headers, header::AUTHORIZATION);
        match auth::authenticate(cookie, authorization, &creds, shared.config.ticket_lifetime) {
            Ok((principal, how)) => {
                if method != Method::GET && how == AuthMethod::Ticket {
                    let token = header_str(&headers, "CSRFPreventionToken").unwrap_or("");
                    if !auth::verify_csrf_token(token, ROOT_USER, &creds) {
                        return shared
                            .unauthorized("Permission denied - invalid csrf token")
                            .await;
                    }
                }
                Some(principal)
            }
            Err(reason) => return shared.unauthorized(&reason).await,
        }
    };

    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        params.insert(k.into_owned(), v.into_owned());
    }
    if method == Method::POST || method == Method::PUT {
        let is_json = header_str(&headers, header::CONTENT_TYPE)
            .is_some_and(|ct| ct.starts_with("application/json"));
        if is_json {
            if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) {
                for (k, v) in m {
                    let s = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    params.entry(k).or_insert(s);
                }
            }
        } else {
            for (k, v) in url::form_urlencoded::parse(&body) {
                params.entry(k.into_owned()).or_insert(v.into_owned());
            }
        }
    }
    params.remove("_dc");

    let route = parse_route(&rel);
    let allowed = match &route {
        Some(Route::AccessTicket) => method == Method::GET || method == Method::POST,
        Some(_) => method == Method::GET,
        None => false,
    };
    let Some(route) = route.filter(|_| allowed) else {
        return error_response(fail(
            501,
            format!("Method '{method} {rel}' not implemented"),
        ));
    };

    if let Route::AccessTicket = route {
        if method == Method::GET {
            return ok_response(&Value::Null);
        }
        return match create_ticket(&shared, &params) {
            Ok(v) => ok_response(&v),
            Err(reason) => {
                tokio::time::sleep(shared.config.auth_failure_delay).await;
                error_response(ApiError::Json {
                    status: 401,
                    message: format!("{reason}\n"),
                    errors: None,
                })
            }
        };
    }

    let principal = principal.unwrap_or(Principal::Limited);
    let result = {
        let state = shared.read();
        let mut offline: Vec<String> = state
            .nodes
            .iter()
            .filter(|n| !n.online)
            .map(|n| n.name.clone())
            .collect();
        offline.extend(faults.offline_nodes.iter().cloned());
        let ctx = Ctx {
            st: &state,
            principal,
            offline,
            drop_fraction: faults.drop_fraction,
            params,
        };
        ctx.dispatch(&route)
    };
    match result {
        Ok(value) => {
            let mut resp = ok_response(&value);
            if malformed {
                let full = serde_json::to_vec(&Envelope { data: &value }).unwrap_or_default();
                let mut cut = full[..full.len() / 2].to_vec();
                cut.extend_from_slice(b",{\"vmid\":");
                *resp.body_mut() = Body::from(cut);
            }
            resp
        }
        Err(e) => error_response(e),
    }
}

fn header_str<K: header::AsHeaderName>(headers: &HeaderMap, key: K) -> Option<&str> {
    headers.get(key).and_then(|v| v.to_str().ok())
}

/// Collapses duplicate slashes and drops a trailing slash.
pub(crate) fn normalize_path(p: &str) -> String {
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segs.join("/"))
}

fn create_ticket(shared: &Shared, params: &BTreeMap<String, String>) -> Result<Value, String> {
    let failure = || "authentication failure".to_string();
    let state = shared.read();
    let creds = &state.credentials;
    let mut username = params.get("username").cloned().ok_or_else(failure)?;
    if !username.contains('@')
        && let Some(realm) = params.get("realm")
    {
        username = format!("{username}@{realm}");
    }
    let password = params.get("password").cloned().ok_or_else(failure)?;
    if username != ROOT_USER {
        return Err(failure());
    }
    let valid = password == creds.root_password
        || auth::verify_ticket(&password, creds, shared.config.ticket_lifetime).as_deref()
            == Ok(ROOT_USER);
    if !valid {
        return Err(failure());
    }
    let mut data = json!({
        "username": username,
        "ticket": auth::assemble_ticket(ROOT_USER, creds),
        "CSRFPreventionToken": auth::assemble_csrf_token(ROOT_USER, creds),
        "cap": auth::root_caps(),
    });
    if let Some(name) = &state.cluster_name {
        data["clustername"] = json!(name);
    }
    Ok(data)
}

/// Recognised API paths.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    Index,
    Version,
    ClusterIndex,
    ClusterStatus,
    ClusterResources,
    ClusterOptions,
    ClusterNextid,
    ClusterHaResources,
    ClusterBackup,
    ClusterSdnVnets,
    ClusterReplication,
    FirewallRules,
    FirewallGroups,
    FirewallGroup(String),
    FirewallIpSets,
    FirewallIpSet(String),
    FirewallAliases,
    FirewallOptions,
    Nodes,
    Pools,
    Pool(String),
    StorageList,
    StorageConfig(String),
    AccessTicket,
    Node(String, NodeRoute),
}

/// Routes below `/nodes/{node}` (all proxied to that node).
#[derive(Debug, Clone)]
pub(crate) enum NodeRoute {
    Index,
    Status,
    Version,
    Network,
    Time,
    Tasks,
    FirewallRules,
    QemuList,
    LxcList,
    StorageStatus,
    StorageContent(String),
    Guest(GuestType, String, GuestRoute),
}

/// Routes below `/nodes/{node}/{qemu|lxc}/{vmid}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum GuestRoute {
    Config,
    StatusCurrent,
    Snapshot,
    AgentNetwork,
    Interfaces,
}

pub(crate) fn parse_route(rel: &str) -> Option<Route> {
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let r = match segs.as_slice() {
        [] => Route::Index,
        ["version"] => Route::Version,
        ["cluster"] => Route::ClusterIndex,
        ["cluster", "status"] => Route::ClusterStatus,
        ["cluster", "resources"] => Route::ClusterResources,
        ["cluster", "options"] => Route::ClusterOptions,
        ["cluster", "nextid"] => Route::ClusterNextid,
        ["cluster", "ha", "resources"] => Route::ClusterHaResources,
        ["cluster", "backup"] => Route::ClusterBackup,
        ["cluster", "sdn", "vnets"] => Route::ClusterSdnVnets,
        ["cluster", "replication"] => Route::ClusterReplication,
        ["cluster", "firewall", "rules"] => Route::FirewallRules,
        ["cluster", "firewall", "groups"] => Route::FirewallGroups,
        ["cluster", "firewall", "groups", group] => Route::FirewallGroup(group.to_string()),
        ["cluster", "firewall", "ipset"] => Route::FirewallIpSets,
        ["cluster", "firewall", "ipset", name] => Route::FirewallIpSet(name.to_string()),
        ["cluster", "firewall", "aliases"] => Route::FirewallAliases,
        ["cluster", "firewall", "options"] => Route::FirewallOptions,
        ["nodes"] => Route::Nodes,
        ["pools"] => Route::Pools,
        ["pools", id] => Route::Pool(id.to_string()),
        ["storage"] => Route::StorageList,
        ["storage", id] => Route::StorageConfig(id.to_string()),
        ["access", "ticket"] => Route::AccessTicket,
        ["nodes", node, rest @ ..] => {
            let nr = match rest {
                [] => NodeRoute::Index,
                ["status"] => NodeRoute::Status,
                ["version"] => NodeRoute::Version,
                ["network"] => NodeRoute::Network,
                ["time"] => NodeRoute::Time,
                ["tasks"] => NodeRoute::Tasks,
                ["firewall", "rules"] => NodeRoute::FirewallRules,
                ["qemu"] => NodeRoute::QemuList,
                ["lxc"] => NodeRoute::LxcList,
                ["storage"] => NodeRoute::StorageStatus,
                ["storage", s, "content"] => NodeRoute::StorageContent(s.to_string()),
                [kind @ ("qemu" | "lxc"), vmid, sub @ ..] => {
                    let gt = if *kind == "qemu" {
                        GuestType::Qemu
                    } else {
                        GuestType::Lxc
                    };
                    let gr = match (gt, sub) {
                        (_, ["config"]) => GuestRoute::Config,
                        (_, ["status", "current"]) => GuestRoute::StatusCurrent,
                        (_, ["snapshot"]) => GuestRoute::Snapshot,
                        (GuestType::Qemu, ["agent", "network-get-interfaces"]) => {
                            GuestRoute::AgentNetwork
                        }
                        (GuestType::Lxc, ["interfaces"]) => GuestRoute::Interfaces,
                        _ => return None,
                    };
                    NodeRoute::Guest(gt, vmid.to_string(), gr)
                }
                _ => return None,
            };
            Route::Node(node.to_string(), nr)
        }
        _ => return None,
    };
    Some(r)
}

#[derive(Clone, Copy)]
enum P {
    Str,
    Bool,
    Int(i64, i64),
    Enum(&'static [&'static str]),
}

const VMID: P = P::Int(100, 999_999_999);
const STORAGE_TYPES: &[&str] = &[
    "btrfs",
    "cephfs",
    "cifs",
    "dir",
    "esxi",
    "glusterfs",
    "iscsi",
    "iscsidirect",
    "lvm",
    "lvmthin",
    "nfs",
    "pbs",
    "rbd",
    "zfs",
    "zfspool",
];
const CONTENT_TYPES: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];
const NET_TYPES: &[&str] = &[
    "bridge",
    "bond",
    "eth",
    "alias",
    "vlan",
    "fabric",
    "OVSBridge",
    "OVSBond",
    "OVSPort",
    "OVSIntPort",
    "vnet",
    "any_bridge",
    "any_local_bridge",
    "include_sdn",
];

fn check_params(
    params: &BTreeMap<String, String>,
    uri: &[(&str, &str)],
    spec: &[(&str, P)],
) -> Result<(), ApiError> {
    let mut errors = Map::new();
    let check = |errors: &mut Map<String, Value>, name: &str, value: &str, p: P| {
        let msg = match p {
            P::Str => None,
            P::Bool => {
                let ok = matches!(
                    value.to_ascii_lowercase().as_str(),
                    "0" | "1" | "true" | "false" | "yes" | "no" | "on" | "off"
                );
                (!ok).then(|| format!("type check ('boolean') failed - got '{value}'"))
            }
            P::Int(min, max) => match value.parse::<i64>() {
                Err(_) => Some(format!("type check ('integer') failed - got '{value}'")),
                Ok(v) if v < min => Some(format!("value must have a minimum value of {min}")),
                Ok(v) if v > max => Some(format!("value must have a maximum value of {max}")),
                Ok(_) => None,
            },
            P::Enum(values) => (!values.contains(&value)).then(|| {
                format!(
                    "value '{value}' does not have a value in the enumeration '{}'",
                    values.join(", ")
                )
            }),
        };
        if let Some(m) = msg {
            errors.insert(name.to_string(), Value::String(m));
        }
    };
    for (name, value) in uri {
        if let Some((_, p)) = spec.iter().find(|(n, _)| n == name) {
            check(&mut errors, name, value, *p);
        }
    }
    for (name, value) in params {
        match spec.iter().find(|(n, _)| n == name) {
            Some((_, p)) => check(&mut errors, name, value, *p),
            None => {
                errors.insert(
                    name.clone(),
                    Value::String(
                        "property is not defined in schema and the schema does not allow additional properties"
                            .into(),
                    ),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(param_errors(errors))
    }
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn b(v: bool) -> Value {
    Value::from(u8::from(v))
}

/// A fraction as PVE prints it (`0` rather than `0.0` when idle).
fn frac(f: f64) -> Value {
    if f == 0.0 {
        Value::from(0)
    } else {
        Value::from(f)
    }
}

/// Stable pseudo-random value in 0..1 for a vmid (used by `PartialInventory`).
fn vmid_hash(vmid: u32) -> f64 {
    let mut x = u64::from(vmid).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x % 10_000) as f64 / 10_000.0
}

struct Ctx<'a> {
    st: &'a EndpointState,
    principal: Principal,
    offline: Vec<String>,
    drop_fraction: Option<f64>,
    params: BTreeMap<String, String>,
}

impl Ctx<'_> {
    fn is_root(&self) -> bool {
        self.principal == Principal::Root
    }

    fn node_online(&self, name: &str) -> bool {
        !self.offline.iter().any(|n| n == name)
    }

    fn sees_vm(&self, vmid: u32) -> bool {
        self.is_root() || self.st.limited_sees_vmid(vmid)
    }

    fn sees_storage(&self, id: &str) -> bool {
        self.is_root() || self.st.limited_sees_storage(id)
    }

    fn sees_pool(&self, id: &str) -> bool {
        self.is_root() || self.st.limited_acl.pools.iter().any(|p| p == id)
    }

    fn dropped(&self, vmid: u32) -> bool {
        self.drop_fraction.is_some_and(|f| vmid_hash(vmid) < f)
    }

    fn param(&self, name: &str) -> Option<&String> {
        self.params.get(name)
    }

    fn dispatch(&self, route: &Route) -> ApiResult {
        match route {
            Route::Index => {
                check_params(&self.params, &[], &[])?;
                Ok(json!([
                    {"subdir": "version"}, {"subdir": "cluster"}, {"subdir": "nodes"},
                    {"subdir": "storage"}, {"subdir": "access"}, {"subdir": "pools"}
                ]))
            }
            Route::Version => {
                check_params(&self.params, &[], &[])?;
                Ok(self.version())
            }
            Route::ClusterIndex => {
                check_params(&self.params, &[], &[])?;
                let subdirs = [
                    "log",
                    "options",
                    "resources",
                    "status",
                    "tasks",
                    "backup",
                    "ha",
                    "nextid",
                    "sdn",
                    "replication",
                    "firewall",
                ];
                Ok(Value::Array(
                    subdirs.iter().map(|s| json!({"name": s})).collect(),
                ))
            }
            Route::ClusterStatus => {
                check_params(&self.params, &[], &[])?;
                Ok(self.cluster_status())
            }
            Route::ClusterResources => {
                check_params(
                    &self.params,
                    &[],
                    &[("type", P::Enum(&["vm", "storage", "node", "sdn"]))],
                )?;
                Ok(self.resources(self.param("type").map(String::as_str)))
            }
            Route::ClusterOptions => {
                check_params(&self.params, &[], &[])?;
                let mut o = self.st.options.clone();
                o.insert("allowed-tags".into(), json!([]));
                Ok(Value::Object(o))
            }
            Route::ClusterNextid => {
                check_params(&self.params, &[], &[("vmid", VMID)])?;
                if let Some(v) = self.param("vmid") {
                    let id: u32 = v.parse().unwrap_or(0);
                    if self.st.guests.contains_key(&id) {
                        return Err(param_error("vmid", format!("VM {id} already exists")));
                    }
                    return Ok(Value::String(v.clone()));
                }
                let next = (100..1_000_000u32).find(|i| !self.st.guests.contains_key(i));
                next.map(Value::from)
                    .ok_or_else(|| die("unable to get any free VMID in range [100, 1000000]"))
            }
            Route::ClusterHaResources => {
                check_params(&self.params, &[], &[("type", P::Enum(&["ct", "vm"]))])?;
                Ok(self.ha_resources())
            }
            Route::ClusterBackup => {
                check_params(&self.params, &[], &[])?;
                Ok(Value::Array(
                    self.st
                        .backup_jobs
                        .iter()
                        .cloned()
                        .map(Value::Object)
                        .collect(),
                ))
            }
            Route::ClusterReplication => {
                check_params(
                    &self.params,
                    &[],
                    &[("guest", VMID), ("type", P::Enum(&["local"]))],
                )?;
                let guest = self.param("guest");
                Ok(Value::Array(
                    self.st
                        .replication_jobs
                        .iter()
                        .filter(|j| {
                            guest.is_none_or(|g| {
                                j.get("guest").map(Value::to_string).as_deref() == Some(g.as_str())
                            })
                        })
                        .cloned()
                        .map(Value::Object)
                        .collect(),
                ))
            }
            Route::FirewallRules => {
                check_params(&self.params, &[], &[])?;
                Ok(objects(&self.st.firewall.rules))
            }
            Route::FirewallGroups => {
                check_params(&self.params, &[], &[])?;
                Ok(Value::Array(
                    self.st
                        .firewall
                        .groups
                        .iter()
                        .map(|g| {
                            let mut out = json!({"group": g.group, "digest": g.digest});
                            if let Some(comment) = &g.comment {
                                out["comment"] = json!(comment);
                            }
                            out
                        })
                        .collect(),
                ))
            }
            Route::FirewallGroup(group) => {
                check_params(&self.params, &[("group", group)], &[])?;
                match self.st.firewall.groups.iter().find(|g| &g.group == group) {
                    Some(g) => Ok(objects(&g.rules)),
                    None => Err(die(format!("no such security group '{group}'"))),
                }
            }
            Route::FirewallIpSets => {
                check_params(&self.params, &[], &[])?;
                Ok(Value::Array(
                    self.st
                        .firewall
                        .ipsets
                        .iter()
                        .map(|set| {
                            let mut out = json!({"name": set.name, "digest": set.digest});
                            if let Some(comment) = &set.comment {
                                out["comment"] = json!(comment);
                            }
                            out
                        })
                        .collect(),
                ))
            }
            Route::FirewallIpSet(name) => {
                check_params(&self.params, &[("name", name)], &[])?;
                match self.st.firewall.ipsets.iter().find(|set| &set.name == name) {
                    Some(set) => Ok(objects(&set.entries)),
                    None => Err(die(format!("no such IPSet '{name}'"))),
                }
            }
            Route::FirewallAliases => {
                check_params(&self.params, &[], &[])?;
                Ok(objects(&self.st.firewall.aliases))
            }
            Route::FirewallOptions => {
                check_params(&self.params, &[], &[])?;
                Ok(Value::Object(self.st.firewall.options.clone()))
            }
            Route::ClusterSdnVnets => {
                check_params(
                    &self.params,
                    &[],
                    &[("pending", P::Bool), ("running", P::Bool)],
                )?;
                Ok(Value::Array(
                    self.st
                        .sdn_vnets
                        .iter()
                        .cloned()
                        .map(Value::Object)
                        .collect(),
                ))
            }
            Route::Nodes => {
                check_params(&self.params, &[], &[])?;
                Ok(Value::Array(
                    self.st
                        .nodes
                        .iter()
                        .map(|n| self.node_entry(n, true))
                        .collect(),
                ))
            }
            Route::Pools => {
                check_params(
                    &self.params,
                    &[],
                    &[
                        ("poolid", P::Str),
                        ("type", P::Enum(&["qemu", "lxc", "storage"])),
                    ],
                )?;
                Ok(self.pools())
            }
            Route::Pool(id) => {
                check_params(
                    &self.params,
                    &[],
                    &[("type", P::Enum(&["qemu", "lxc", "storage"]))],
                )?;
                if !self.sees_pool(id) {
                    return Err(forbidden(&format!("/pool/{id}"), "Pool.Audit"));
                }
                let pool = self
                    .st
                    .pools
                    .iter()
                    .find(|p| &p.poolid == id)
                    .ok_or_else(|| die(format!("pool '{id}' does not exist")))?;
                let mut o = Map::new();
                if let Some(c) = &pool.comment {
                    o.insert("comment".into(), json!(c));
                }
                o.insert("members".into(), Value::Array(self.pool_members(id)));
                Ok(Value::Object(o))
            }
            Route::StorageList => {
                check_params(&self.params, &[], &[("type", P::Enum(STORAGE_TYPES))])?;
                let filter = self.param("type");
                let mut list: Vec<&Storage> = self
                    .st
                    .storages
                    .iter()
                    .filter(|s| self.sees_storage(&s.storage))
                    .filter(|s| filter.is_none_or(|t| s.storage_type.as_str() == t))
                    .collect();
                list.sort_by(|a, b| a.storage.cmp(&b.storage));
                Ok(Value::Array(
                    list.into_iter().map(|s| self.storage_config(s)).collect(),
                ))
            }
            Route::StorageConfig(id) => {
                check_params(&self.params, &[], &[])?;
                if !self.is_root() {
                    return Err(forbidden(&format!("/storage/{id}"), "Datastore.Allocate"));
                }
                let s = self
                    .st
                    .storage(id)
                    .ok_or_else(|| die(format!("storage '{id}' does not exist")))?;
                Ok(self.storage_config(s))
            }
            Route::AccessTicket => Ok(Value::Null),
            Route::Node(node, nr) => self.node_route(node, nr),
        }
    }

    fn version(&self) -> Value {
        let v = &self.st.version;
        let mut o = json!({
            "version": v.version,
            "release": v.release,
            "repoid": v.repoid.chars().take(8).collect::<String>(),
        });
        if let Some(c) = self.st.options.get("console") {
            o["console"] = c.clone();
        }
        o
    }

    fn cluster_status(&self) -> Value {
        let st = self.st;
        let mut out = Vec::new();
        match &st.cluster_name {
            Some(name) => {
                let online = st
                    .nodes
                    .iter()
                    .filter(|n| self.node_online(&n.name))
                    .count();
                out.push(json!({
                    "type": "cluster", "id": "cluster", "name": name,
                    "nodes": st.nodes.len(), "version": st.config_version,
                    "quorate": b(online * 2 > st.nodes.len()),
                }));
                for (i, n) in st.nodes.iter().enumerate() {
                    out.push(json!({
                        "type": "node", "id": format!("node/{}", n.name), "name": n.name,
                        "nodeid": n.nodeid, "local": b(i == 0),
                        "online": b(self.node_online(&n.name)), "ip": n.ip, "level": n.level,
                    }));
                }
            }
            None => {
                if let Some(n) = st.nodes.first() {
                    out.push(json!({
                        "type": "node", "id": format!("node/{}", n.name), "name": n.name,
                        "ip": n.ip, "local": 1, "nodeid": 0, "online": 1, "level": n.level,
                    }));
                }
            }
        }
        Value::Array(out)
    }

    fn node_cpus(&self, node: &str) -> u32 {
        self.st.node(node).map(|n| n.cpus).unwrap_or(1)
    }

    fn vm_resource(&self, g: &Guest) -> Value {
        let mut o = Map::new();
        o.insert(
            "id".into(),
            json!(format!("{}/{}", g.guest_type.as_str(), g.vmid)),
        );
        o.insert("vmid".into(), json!(g.vmid));
        o.insert("node".into(), json!(g.node));
        o.insert("type".into(), json!(g.guest_type.as_str()));
        if self.node_online(&g.node) {
            let running = g.status.is_running();
            let s = if running {
                &g.stats
            } else {
                &Default::default()
            };
            o.insert("name".into(), json!(g.display_name()));
            o.insert(
                "status".into(),
                json!(if running { "running" } else { "stopped" }),
            );
            o.insert("template".into(), b(g.template));
            o.insert("uptime".into(), json!(s.uptime));
            o.insert("maxcpu".into(), json!(g.cpus(self.node_cpus(&g.node))));
            o.insert("cpu".into(), frac(s.cpu));
            o.insert("maxmem".into(), json!(g.memory_mib() << 20));
            o.insert("mem".into(), json!(s.mem));
            o.insert("maxdisk".into(), json!(g.boot_disk_size()));
            o.insert("disk".into(), json!(s.disk));
            o.insert("netin".into(), json!(s.netin));
            o.insert("netout".into(), json!(s.netout));
            o.insert("diskread".into(), json!(s.diskread));
            o.insert("diskwrite".into(), json!(s.diskwrite));
        } else {
            o.insert("status".into(), json!("unknown"));
        }
        if let Some(p) = &g.pool {
            o.insert("pool".into(), json!(p));
        }
        if let Some(t) = g.tags() {
            o.insert("tags".into(), json!(t));
        }
        if let Some(l) = g.config.get("lock") {
            o.insert("lock".into(), l.clone());
        }
        if let Some(h) = &g.ha_state {
            o.insert("hastate".into(), json!(h));
        }
        Value::Object(o)
    }

    fn node_entry(&self, n: &crate::model::Node, fingerprint: bool) -> Value {
        let online = self.node_online(&n.name);
        let mut o = Map::new();
        o.insert("id".into(), json!(format!("node/{}", n.name)));
        o.insert("node".into(), json!(n.name));
        o.insert("type".into(), json!("node"));
        o.insert(
            "status".into(),
            json!(if online { "online" } else { "offline" }),
        );
        o.insert("level".into(), json!(n.level));
        if fingerprint {
            o.insert("ssl_fingerprint".into(), json!(n.ssl_fingerprint));
        } else {
            o.insert("cgroup-mode".into(), json!(2));
        }
        o.insert("maxcpu".into(), json!(n.cpus));
        o.insert("maxmem".into(), json!(n.memory));
        o.insert("maxdisk".into(), json!(n.rootfs_total));
        if online {
            o.insert("uptime".into(), json!(n.uptime));
            o.insert("cpu".into(), json!(n.cpu_usage));
            o.insert("mem".into(), json!(n.memory_used));
            o.insert("disk".into(), json!(n.rootfs_used));
        }
        Value::Object(o)
    }

    fn storage_resource(&self, s: &Storage, node: &str) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(format!("storage/{node}/{}", s.storage)));
        o.insert("storage".into(), json!(s.storage));
        o.insert("node".into(), json!(node));
        o.insert("type".into(), json!("storage"));
        o.insert("plugintype".into(), json!(s.storage_type.as_str()));
        o.insert("shared".into(), b(s.is_shared()));
        o.insert("content".into(), json!(s.content));
        match s.status.get(node) {
            Some(ss) if ss.active && self.node_online(node) => {
                o.insert("status".into(), json!("available"));
                o.insert("maxdisk".into(), json!(ss.total));
                o.insert("disk".into(), json!(ss.used));
            }
            _ => {
                o.insert("status".into(), json!("unknown"));
            }
        }
        Value::Object(o)
    }

    fn resources(&self, filter: Option<&str>) -> Value {
        let st = self.st;
        let mut out: Vec<Value> = Vec::new();
        if filter.is_none() {
            for p in &st.pools {
                if self.sees_pool(&p.poolid) {
                    out.push(json!({"id": format!("/pool/{}", p.poolid), "pool": p.poolid, "type": "pool"}));
                }
            }
        }
        if filter.is_none() || filter == Some("vm") {
            let mut ids: Vec<String> = st.guests.keys().map(u32::to_string).collect();
            ids.sort();
            for id in ids {
                let vmid: u32 = id.parse().unwrap_or(0);
                if !self.sees_vm(vmid) || self.dropped(vmid) {
                    continue;
                }
                if let Some(g) = st.guests.get(&vmid) {
                    out.push(self.vm_resource(g));
                }
            }
        }
        if filter.is_none() || filter == Some("node") {
            for n in &st.nodes {
                out.push(self.node_entry(n, false));
            }
        }
        if filter.is_none() || filter == Some("storage") {
            for s in &st.storages {
                if !self.sees_storage(&s.storage) || s.disable {
                    continue;
                }
                for n in &st.nodes {
                    if s.available_on(&n.name) {
                        out.push(self.storage_resource(s, &n.name));
                    }
                }
            }
        }
        if filter.is_none() || filter == Some("sdn") {
            for n in &st.nodes {
                if !self.node_online(&n.name) {
                    continue;
                }
                let mut zones = vec!["localnetwork"];
                if !st.sdn_vnets.is_empty() {
                    zones.push("vlanzone");
                }
                for z in zones {
                    out.push(json!({
                        "id": format!("sdn/{}/{z}", n.name), "sdn": z, "node": n.name,
                        "type": "sdn", "status": "ok"
                    }));
                }
            }
        }
        Value::Array(out)
    }

    fn pool_members(&self, pool: &str) -> Vec<Value> {
        let filter = self.param("type").map(String::as_str);
        self.st
            .guests
            .values()
            .filter(|g| g.pool.as_deref() == Some(pool))
            .filter(|g| filter.is_none_or(|t| t == g.guest_type.as_str()))
            .map(|g| self.vm_resource(g))
            .collect()
    }

    fn pools(&self) -> Value {
        let wanted = self.param("poolid");
        let list: Vec<Value> = self
            .st
            .pools
            .iter()
            .filter(|p| self.sees_pool(&p.poolid))
            .filter(|p| wanted.is_none_or(|w| w == &p.poolid))
            .map(|p| {
                let mut o = Map::new();
                o.insert("poolid".into(), json!(p.poolid));
                if let Some(c) = &p.comment {
                    o.insert("comment".into(), json!(c));
                }
                if wanted.is_some() {
                    o.insert("members".into(), Value::Array(self.pool_members(&p.poolid)));
                }
                Value::Object(o)
            })
            .collect();
        Value::Array(list)
    }

    fn ha_resources(&self) -> Value {
        let filter = self.param("type").map(String::as_str);
        let list = self
            .st
            .guests
            .values()
            .filter_map(|g| g.ha_state.as_ref().map(|s| (g, s)))
            .filter(|(g, _)| self.sees_vm(g.vmid))
            .filter_map(|(g, state)| {
                let t = match g.guest_type {
                    GuestType::Qemu => "vm",
                    GuestType::Lxc => "ct",
                };
                if filter.is_some_and(|f| f != t) {
                    return None;
                }
                Some(json!({
                    "sid": format!("{t}:{}", g.vmid), "type": t, "state": state,
                    "max_restart": 1, "max_relocate": 1,
                    "digest": digest(&json!({"sid": g.vmid, "state": state}))
                }))
            })
            .collect();
        Value::Array(list)
    }

    fn storage_config(&self, s: &Storage) -> Value {
        let mut o = s.properties.clone();
        o.insert("storage".into(), json!(s.storage));
        o.insert("type".into(), json!(s.storage_type.as_str()));
        o.insert("content".into(), json!(s.content));
        o.insert("digest".into(), json!(self.storage_digest()));
        if s.is_shared() {
            o.insert("shared".into(), json!(1));
        }
        if s.disable {
            o.insert("disable".into(), json!(1));
        }
        if let Some(nodes) = &s.nodes {
            o.insert("nodes".into(), json!(nodes.join(",")));
        }
        Value::Object(o)
    }

    fn storage_digest(&self) -> String {
        let ids: Vec<&str> = self
            .st
            .storages
            .iter()
            .map(|s| s.storage.as_str())
            .collect();
        digest(&json!(ids))
    }

    fn node_route(&self, node: &str, nr: &NodeRoute) -> ApiResult {
        if let NodeRoute::Guest(_, vmid, gr) = nr {
            let privs = match (gr, self.st.version.major()) {
                (GuestRoute::AgentNetwork, m) if m >= 9 => {
                    "VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted"
                }
                (GuestRoute::AgentNetwork, _) => "VM.Monitor",
                _ => "VM.Audit",
            };
            let visible = match vmid.parse::<u32>() {
                Ok(id) => self.sees_vm(id),
                Err(_) => self.is_root(),
            };
            let auditor_lacks_monitor =
                *gr == GuestRoute::AgentNetwork && self.st.version.major() < 9 && !self.is_root();
            if !visible || auditor_lacks_monitor {
                return Err(forbidden(&format!("/vms/{vmid}"), privs));
            }
        }
        if let NodeRoute::StorageContent(s) = nr
            && !self.sees_storage(s)
        {
            return Err(forbidden(
                &format!("/storage/{s}"),
                "Datastore.Audit|Datastore.AllocateSpace",
            ));
        }
        let Some(n) = self.st.node(node) else {
            return Err(die(format!("no such cluster node '{node}'")));
        };
        if !self.node_online(node) {
            return Err(ApiError::Empty {
                status: 595,
                reason: "No route to host".into(),
            });
        }
        let uri_node = [("node", node)];
        match nr {
            NodeRoute::Index => {
                check_params(&self.params, &[], &[])?;
                let subdirs = [
                    "version", "status", "network", "tasks", "storage", "qemu", "lxc", "syslog",
                    "time", "firewall",
                ];
                Ok(Value::Array(
                    subdirs.iter().map(|s| json!({"name": s})).collect(),
                ))
            }
            NodeRoute::Status => {
                check_params(&self.params, &uri_node, &[])?;
                Ok(self.node_status(n))
            }
            NodeRoute::Version => {
                check_params(&self.params, &uri_node, &[])?;
                let v = &self.st.version;
                Ok(
                    json!({"version": v.version, "release": v.release, "repoid": v.repoid.chars().take(8).collect::<String>()}),
                )
            }
            NodeRoute::Time => {
                check_params(&self.params, &uri_node, &[])?;
                let now = crate::generate::BASE_TIME + i64::try_from(n.uptime).unwrap_or(0);
                Ok(json!({"time": now, "localtime": now, "timezone": "UTC"}))
            }
            NodeRoute::Network => {
                check_params(&self.params, &uri_node, &[("type", P::Enum(NET_TYPES))])?;
                let filter = self.param("type").map(String::as_str);
                let list = n
                    .network
                    .iter()
                    .filter(|e| e.get("iface").and_then(Value::as_str) != Some("lo"))
                    .filter(|e| {
                        let t = e.get("type").and_then(Value::as_str).unwrap_or("");
                        match filter {
                            None => true,
                            Some("any_bridge") | Some("any_local_bridge") => {
                                t == "bridge" || t == "OVSBridge"
                            }
                            Some(f) => f == t,
                        }
                    })
                    .cloned()
                    .map(Value::Object)
                    .collect();
                Ok(Value::Array(list))
            }
            NodeRoute::Tasks => {
                check_params(
                    &self.params,
                    &uri_node,
                    &[
                        ("errors", P::Bool),
                        ("limit", P::Int(0, i64::MAX)),
                        ("start", P::Int(0, i64::MAX)),
                        ("since", P::Int(0, i64::MAX)),
                        ("until", P::Int(0, i64::MAX)),
                        ("source", P::Enum(&["archive", "active", "all"])),
                        ("statusfilter", P::Str),
                        ("typefilter", P::Str),
                        ("userfilter", P::Str),
                        ("vmid", VMID),
                    ],
                )?;
                Ok(self.tasks(node))
            }
            NodeRoute::FirewallRules => {
                check_params(&self.params, &uri_node, &[])?;
                Ok(objects(
                    self.st
                        .firewall
                        .node_rules
                        .get(node)
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                ))
            }
            NodeRoute::QemuList => {
                check_params(&self.params, &uri_node, &[("full", P::Bool)])?;
                Ok(self.guest_list(node, GuestType::Qemu))
            }
            NodeRoute::LxcList => {
                check_params(&self.params, &uri_node, &[])?;
                Ok(self.guest_list(node, GuestType::Lxc))
            }
            NodeRoute::StorageStatus => {
                check_params(
                    &self.params,
                    &uri_node,
                    &[
                        ("content", P::Str),
                        ("enabled", P::Bool),
                        ("format", P::Bool),
                        ("storage", P::Str),
                        ("target", P::Str),
                    ],
                )?;
                Ok(self.node_storage(node))
            }
            NodeRoute::StorageContent(s) => {
                check_params(
                    &self.params,
                    &[("node", node), ("storage", s)],
                    &[("content", P::Enum(CONTENT_TYPES)), ("vmid", VMID)],
                )?;
                self.storage_content(node, s)
            }
            NodeRoute::Guest(gt, vmid, gr) => {
                let spec: &[(&str, P)] = match gr {
                    GuestRoute::Config => {
                        &[("vmid", VMID), ("current", P::Bool), ("snapshot", P::Str)]
                    }
                    _ => &[("vmid", VMID)],
                };
                check_params(&self.params, &[("node", node), ("vmid", vmid)], spec)?;
                let id: u32 = vmid.parse().unwrap_or(0);
                let guest = self
                    .st
                    .guests
                    .get(&id)
                    .filter(|g| g.guest_type == *gt && g.node == node)
                    .ok_or_else(|| {
                        die(format!(
                            "Configuration file 'nodes/{node}/{}/{id}.conf' does not exist",
                            gt.config_dir()
                        ))
                    })?;
                self.guest_route(guest, *gr, n.cpus)
            }
        }
    }

    fn node_status(&self, n: &crate::model::Node) -> Value {
        let v = &self.st.version;
        let pveversion = if v.major() >= 8 {
            format!("pve-manager/{}/{}", v.version, v.repoid)
        } else {
            format!(
                "pve-manager/{}/{}",
                v.version,
                &v.repoid[..8.min(v.repoid.len())]
            )
        };
        let load = n.cpu_usage * f64::from(n.cpus);
        let swap_total: u64 = 8 << 30;
        let mut boot = json!({"mode": n.boot_mode});
        if n.boot_mode == "efi" {
            boot["secureboot"] = json!(0);
        }
        json!({
            "cpu": n.cpu_usage,
            "cpuinfo": {
                "cores": (n.cpus / 2 / n.sockets.max(1)).max(1), "cpus": n.cpus,
                "sockets": n.sockets, "model": n.cpu_model, "mhz": "2400.000", "hvm": "1",
                "user_hz": 100,
                "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm abm svm"
            },
            "loadavg": [format!("{:.2}", load), format!("{:.2}", load * 0.9), format!("{:.2}", load * 0.8)],
            "memory": {
                "total": n.memory, "used": n.memory_used, "free": n.memory - n.memory_used,
                "available": n.memory - n.memory_used
            },
            "swap": {"total": swap_total, "used": 0, "free": swap_total},
            "rootfs": {
                "total": n.rootfs_total, "used": n.rootfs_used,
                "free": n.rootfs_total - n.rootfs_used, "avail": n.rootfs_total - n.rootfs_used
            },
            "ksm": {"shared": 0},
            "idle": 0,
            "wait": 0.000_7,
            "uptime": n.uptime,
            "kversion": format!("Linux {} {}", n.kernel, n.kernel_build),
            "current-kernel": {
                "sysname": "Linux", "release": n.kernel, "version": n.kernel_build,
                "machine": "x86_64"
            },
            "pveversion": pveversion,
            "boot-info": boot,
        })
    }

    fn tasks(&self, node: &str) -> Value {
        let p = |k: &str| self.param(k);
        let mut list: Vec<&PveObject> = self
            .st
            .tasks
            .iter()
            .filter(|t| t.get("node").and_then(Value::as_str) == Some(node))
            .filter(|t| {
                p("vmid").is_none_or(|v| t.get("id").and_then(Value::as_str) == Some(v.as_str()))
            })
            .filter(|t| {
                p("typefilter")
                    .is_none_or(|v| t.get("type").and_then(Value::as_str) == Some(v.as_str()))
            })
            .filter(|t| {
                p("userfilter").is_none_or(|v| {
                    t.get("user")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.contains(v.as_str()))
                })
            })
            .filter(|t| {
                !truthy(p("errors")) || t.get("status").and_then(Value::as_str) != Some("OK")
            })
            .collect();
        list.sort_by_key(|t| std::cmp::Reverse(t.get("starttime").and_then(Value::as_i64)));
        let start: usize = p("start").and_then(|s| s.parse().ok()).unwrap_or(0);
        let limit: usize = p("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
        Value::Array(
            list.into_iter()
                .skip(start)
                .take(limit)
                .cloned()
                .map(Value::Object)
                .collect(),
        )
    }

    fn guest_list(&self, node: &str, gt: GuestType) -> Value {
        let cpus = self.node_cpus(node);
        let string_vmid = gt == GuestType::Lxc && self.st.version.major() <= 7;
        let list = self
            .st
            .guests
            .values()
            .filter(|g| g.node == node && g.guest_type == gt)
            .filter(|g| self.sees_vm(g.vmid) && !self.dropped(g.vmid))
            .map(|g| {
                let mut o = vmstatus(g, cpus);
                if string_vmid {
                    o.insert("vmid".into(), json!(g.vmid.to_string()));
                }
                Value::Object(o)
            })
            .collect();
        Value::Array(list)
    }

    fn node_storage(&self, node: &str) -> Value {
        let p = |k: &str| self.param(k);
        let content_filter: Option<Vec<&str>> = p("content").map(|c| c.split(',').collect());
        let mut list: Vec<&Storage> = self
            .st
            .storages
            .iter()
            .filter(|s| self.sees_storage(&s.storage) && s.available_on(node))
            .filter(|s| p("storage").is_none_or(|id| id == &s.storage))
            .filter(|s| !truthy(p("enabled")) || !s.disable)
            .filter(|s| {
                content_filter
                    .as_ref()
                    .is_none_or(|c| c.iter().any(|k| s.has_content(k)))
            })
            .collect();
        list.sort_by(|a, b| a.storage.cmp(&b.storage));
        let out = list
            .into_iter()
            .map(|s| {
                let mut o = Map::new();
                o.insert("storage".into(), json!(s.storage));
                o.insert("type".into(), json!(s.storage_type.as_str()));
                o.insert("content".into(), json!(s.content));
                o.insert("shared".into(), b(s.is_shared()));
                o.insert("enabled".into(), b(!s.disable));
                let status = s.status.get(node).filter(|ss| ss.active && !s.disable);
                o.insert("active".into(), b(status.is_some()));
                if let Some(ss) = status {
                    o.insert("total".into(), json!(ss.total));
                    o.insert("used".into(), json!(ss.used));
                    o.insert("avail".into(), json!(ss.avail));
                    let frac = if ss.total > 0 {
                        ss.used as f64 / ss.total as f64
                    } else {
                        0.0
                    };
                    o.insert("used_fraction".into(), json!(frac));
                }
                Value::Object(o)
            })
            .collect();
        Value::Array(out)
    }

    fn storage_content(&self, node: &str, sid: &str) -> ApiResult {
        let s = self
            .st
            .storage(sid)
            .ok_or_else(|| die(format!("storage '{sid}' does not exist")))?;
        if !s.available_on(node) {
            return Err(die(format!(
                "storage '{sid}' is not available on node '{node}'"
            )));
        }
        if s.disable {
            return Err(die(format!("storage '{sid}' is disabled")));
        }
        if !s.status.get(node).is_some_and(|ss| ss.active) {
            return Err(die(format!("storage '{sid}' is not online")));
        }
        let content = self.param("content").map(String::as_str);
        let vmid: Option<u32> = self.param("vmid").and_then(|v| v.parse().ok());
        let want = |kind: &str| content.is_none_or(|c| c == kind);
        let mut out: Vec<Value> = Vec::new();
        if want("backup") {
            for bk in &s.backups {
                if !s.is_shared() && bk.node.as_deref().is_some_and(|n| n != node) {
                    continue;
                }
                if vmid.is_some() && bk.vmid != vmid {
                    continue;
                }
                let mut o = Map::new();
                o.insert("volid".into(), json!(bk.volid));
                o.insert("content".into(), json!("backup"));
                o.insert("format".into(), json!(bk.format));
                o.insert("size".into(), json!(bk.size));
                o.insert("ctime".into(), json!(bk.ctime));
                if let Some(v) = bk.vmid {
                    o.insert("vmid".into(), json!(v));
                }
                if let Some(st) = &bk.subtype {
                    o.insert("subtype".into(), json!(st));
                }
                if let Some(n) = &bk.notes {
                    o.insert("notes".into(), json!(n));
                }
                if bk.protected {
                    o.insert("protected".into(), json!(1));
                }
                if let Some(v) = &bk.verification {
                    o.insert(
                        "verification".into(),
                        json!({"state": v.state, "upid": v.upid}),
                    );
                }
                if let Some(e) = &bk.encrypted {
                    o.insert("encrypted".into(), json!(e));
                }
                out.push(Value::Object(o));
            }
        }
        if want("images") || want("rootdir") {
            for g in self.st.guests.values() {
                if !s.is_shared() && g.node != node {
                    continue;
                }
                if vmid.is_some_and(|v| v != g.vmid) {
                    continue;
                }
                let kind = match g.guest_type {
                    GuestType::Qemu => "images",
                    GuestType::Lxc => "rootdir",
                };
                if !want(kind) {
                    continue;
                }
                for (_, volume, size) in g.storage_volumes() {
                    if volume.split(':').next() != Some(sid) {
                        continue;
                    }
                    let format = if volume.ends_with(".qcow2") {
                        "qcow2"
                    } else if volume.contains(":subvol-") {
                        "subvol"
                    } else {
                        "raw"
                    };
                    let mut o = Map::new();
                    o.insert("volid".into(), json!(volume));
                    o.insert("content".into(), json!(kind));
                    o.insert("format".into(), json!(format));
                    o.insert("size".into(), json!(size));
                    o.insert("vmid".into(), json!(g.vmid));
                    if format != "raw" || s.storage_type != crate::model::StorageType::Rbd {
                        o.insert("used".into(), json!(size / 3));
                    }
                    out.push(Value::Object(o));
                }
            }
        }
        for v in &s.volumes {
            let kind = v.get("content").and_then(Value::as_str).unwrap_or("");
            if want(kind) && vmid.is_none() {
                out.push(Value::Object(v.clone()));
            }
        }
        out.sort_by(|a, b| {
            a.get("volid")
                .and_then(Value::as_str)
                .cmp(&b.get("volid").and_then(Value::as_str))
        });
        Ok(Value::Array(out))
    }

    fn guest_route(&self, g: &Guest, gr: GuestRoute, node_cpus: u32) -> ApiResult {
        match gr {
            GuestRoute::Config => {
                let mut c = g.config.clone();
                if let Some(last) = g.snapshots.last() {
                    c.insert("parent".into(), json!(last.name));
                }
                if let Some(name) = self.param("snapshot") {
                    let snap = g
                        .snapshots
                        .iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| die(format!("snapshot '{name}' does not exist")))?;
                    c.remove("parent");
                    if let Some(p) = &snap.parent {
                        c.insert("parent".into(), json!(p));
                    }
                    c.insert("snaptime".into(), json!(snap.snaptime));
                    if !snap.description.is_empty() {
                        c.insert("description".into(), json!(snap.description));
                    }
                }
                c.insert(
                    "digest".into(),
                    json!(digest(&Value::Object(g.config.clone()))),
                );
                Ok(Value::Object(c))
            }
            GuestRoute::StatusCurrent => {
                let mut o = vmstatus(g, node_cpus);
                let ha = match &g.ha_state {
                    Some(s) => json!({"managed": 1, "state": s}),
                    None => json!({"managed": 0}),
                };
                o.insert("ha".into(), ha);
                if g.guest_type == GuestType::Qemu {
                    let qmp = match g.status {
                        GuestStatus::Running => "running",
                        GuestStatus::Paused => "paused",
                        GuestStatus::Stopped => "stopped",
                    };
                    o.insert("qmpstatus".into(), json!(qmp));
                    if g.agent_enabled() {
                        o.insert("agent".into(), json!(1));
                    }
                    if g.status.is_running() {
                        let machine = g
                            .config
                            .get("machine")
                            .and_then(Value::as_str)
                            .map(|m| if m == "q35" { "pc-q35-9.0+pve0" } else { m })
                            .unwrap_or("pc-i440fx-9.0+pve0");
                        o.insert("running-machine".into(), json!(machine));
                        o.insert("running-qemu".into(), json!("9.0.2"));
                        o.insert(
                            "proxmox-support".into(),
                            json!({"backup-max-workers": true, "pbs-dirty-bitmap": true, "pbs-library-version": "1.4.1 (UNKNOWN)", "query-bitmap-info": true}),
                        );
                    }
                }
                Ok(Value::Object(o))
            }
            GuestRoute::Snapshot => {
                let mut out = Vec::new();
                for s in &g.snapshots {
                    let mut o = Map::new();
                    o.insert("name".into(), json!(s.name));
                    o.insert("snaptime".into(), json!(s.snaptime));
                    o.insert("description".into(), json!(s.description));
                    if g.guest_type == GuestType::Qemu {
                        o.insert("vmstate".into(), b(s.vmstate));
                    }
                    if let Some(p) = &s.parent {
                        o.insert("parent".into(), json!(p));
                    }
                    out.push(Value::Object(o));
                }
                let mut current = Map::new();
                current.insert("name".into(), json!("current"));
                current.insert("description".into(), json!("You are here!"));
                current.insert("running".into(), b(g.status.is_running()));
                current.insert(
                    "digest".into(),
                    json!(digest(&Value::Object(g.config.clone()))),
                );
                if let Some(last) = g.snapshots.last() {
                    current.insert("parent".into(), json!(last.name));
                }
                out.push(Value::Object(current));
                Ok(Value::Array(out))
            }
            GuestRoute::AgentNetwork => {
                if !g.agent_enabled() {
                    return Err(die("No QEMU guest agent configured"));
                }
                if !g.status.is_running() {
                    return Err(die(format!("VM {} is not running", g.vmid)));
                }
                match (&g.agent, g.status) {
                    (Some(data), GuestStatus::Running) => Ok(json!({"result": data})),
                    _ => Err(die("QEMU guest agent is not running")),
                }
            }
            GuestRoute::Interfaces => {
                if !g.status.is_running() {
                    return Ok(Value::Null);
                }
                Ok(Value::Array(g.interfaces.clone().unwrap_or_default()))
            }
        }
    }
}

/// The per-guest entry of `/nodes/{node}/qemu|lxc` (PVE `vmstatus`).
fn vmstatus(g: &Guest, node_cpus: u32) -> Map<String, Value> {
    let running = g.status.is_running();
    let zero = Default::default();
    let s = if running { &g.stats } else { &zero };
    let mut o = Map::new();
    o.insert("vmid".into(), json!(g.vmid));
    let name = match g.guest_type {
        GuestType::Qemu => g.display_name(),
        GuestType::Lxc => g.display_name().split_whitespace().collect(),
    };
    o.insert("name".into(), json!(name));
    o.insert(
        "status".into(),
        json!(if running { "running" } else { "stopped" }),
    );
    o.insert("cpus".into(), json!(g.cpus(node_cpus)));
    o.insert("maxmem".into(), json!(g.memory_mib() << 20));
    o.insert("maxdisk".into(), json!(g.boot_disk_size()));
    o.insert("disk".into(), json!(s.disk));
    o.insert("mem".into(), json!(s.mem));
    o.insert("cpu".into(), frac(s.cpu));
    o.insert("uptime".into(), json!(s.uptime));
    o.insert("netin".into(), json!(s.netin));
    o.insert("netout".into(), json!(s.netout));
    o.insert("diskread".into(), json!(s.diskread));
    o.insert("diskwrite".into(), json!(s.diskwrite));
    if running {
        o.insert("pid".into(), json!(s.pid));
    }
    if g.guest_type == GuestType::Lxc {
        o.insert("type".into(), json!("lxc"));
        let swap = g.config.get("swap").and_then(Value::as_u64).unwrap_or(0);
        o.insert("maxswap".into(), json!(swap << 20));
        o.insert("swap".into(), json!(0));
    } else if g.config.keys().any(|k| k.starts_with("serial")) {
        o.insert("serial".into(), json!(1));
    }
    if g.template {
        o.insert("template".into(), json!(1));
    }
    if let Some(t) = g.tags() {
        o.insert("tags".into(), json!(t));
    }
    if let Some(l) = g.config.get("lock") {
        o.insert("lock".into(), l.clone());
    }
    o
}

/// 40 hex digits over the canonical JSON of a value (stands in for PVE's SHA-1 digests).
fn digest(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))[..40].to_string()
}
