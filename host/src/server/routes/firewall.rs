//! `/proxmox/firewall`: the read routes of the plugin's firewall pass — the datacenter
//! firewall of each selected cluster (`/proxmox/firewall/summary`) and one node's host
//! rules (`/proxmox/firewall/nodes/{node}/rules`).
//!
//! Two fixes against the reference, both because the plugin marks everything it was not
//! sent as stale: a Proxmox read that fails fails the request (502 naming the endpoint
//! and the read) instead of answering an empty list; and a summary entry carries the
//! datacenter rules, IP sets, aliases and options also under the keys the plugin reads
//! (`rules`, `ip_sets`, `aliases`, `options`), so they reach NetBox.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};

use super::proxmox::{node_segment, open, upstream};
use crate::proxmox::models::ClusterStatusEntry;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::QueryParams;
use crate::server::sessions::Session;

/// Rule keys copied from Proxmox as they are (`icmp-type` becomes `icmp_type`).
const RULE_KEYS: [&str; 12] = [
    "type", "action", "macro", "iface", "source", "dest", "proto", "dport", "sport", "log",
    "comment", "digest",
];

/// Where a rule lives.
struct Scope<'a> {
    cluster: &'a str,
    zone: &'a str,
    node: Option<&'a str>,
    group: Option<&'a str>,
}

/// A Proxmox firewall rule in the reference's shape (every key present, `null` when
/// absent; `enable` as a boolean, `pos` as an integer).
fn rule(scope: &Scope<'_>, raw: &Value) -> Value {
    let mut out = Map::new();
    out.insert("cluster_name".into(), json!(scope.cluster));
    out.insert("zone".into(), json!(scope.zone));
    out.insert("node".into(), json!(scope.node));
    out.insert("vmid".into(), Value::Null);
    out.insert("security_group".into(), json!(scope.group));
    out.insert("pos".into(), json!(raw.get("pos").and_then(as_int)));
    for key in RULE_KEYS {
        out.insert(key.into(), text(raw.get(key)));
    }
    out.insert("enable".into(), json!(raw.get("enable").and_then(as_bool)));
    out.insert("icmp_type".into(), text(raw.get("icmp-type")));
    out.insert("status".into(), json!("ok"));
    out.insert("error".into(), Value::Null);
    Value::Object(out)
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn as_bool(v: &Value) -> Option<bool> {
    v.as_bool()
        .or_else(|| as_int(v).map(|n| n != 0))
        .or_else(|| match v.as_str()? {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        })
}

/// A string field as text (numbers rendered), `null` when absent or empty.
fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.is_empty() => json!(s),
        Some(Value::Number(n)) => json!(n.to_string()),
        _ => Value::Null,
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Read `path` of `session`, or a 502 naming the endpoint and the read.
async fn read(session: &Session, path: impl Into<String>) -> ApiResult<Value> {
    let path = path.into();
    session
        .client
        .get(&path, &[])
        .await
        .map_err(|e| upstream(session, &format!("firewall ({path})"), &e))
}

/// The summary entry of one session.
async fn summary_entry(session: &Session) -> ApiResult<Value> {
    let cluster = session.name.as_str();
    let (rules, groups, ipsets, aliases, options) = futures::try_join!(
        read(session, "cluster/firewall/rules"),
        read(session, "cluster/firewall/groups"),
        read(session, "cluster/firewall/ipset"),
        read(session, "cluster/firewall/aliases"),
        read(session, "cluster/firewall/options"),
    )?;
    let group_rules = futures::future::try_join_all(list(&groups).iter().map(|g| {
        let name = g.get("group").and_then(Value::as_str).unwrap_or_default();
        read(session, format!("cluster/firewall/groups/{name}"))
    }))
    .await?;
    let ipset_entries = futures::future::try_join_all(list(&ipsets).iter().map(|set| {
        let name = set.get("name").and_then(Value::as_str).unwrap_or_default();
        read(session, format!("cluster/firewall/ipset/{name}"))
    }))
    .await?;

    let datacenter = Scope {
        cluster,
        zone: "datacenter",
        node: None,
        group: None,
    };
    let datacenter_rules: Vec<Value> = list(&rules).iter().map(|r| rule(&datacenter, r)).collect();
    let security_groups: Vec<Value> = list(&groups)
        .iter()
        .zip(&group_rules)
        .map(|(g, rules)| {
            let name = g.get("group").and_then(Value::as_str);
            let scope = Scope {
                cluster,
                zone: "security_group",
                node: None,
                group: name,
            };
            json!({
                "cluster_name": cluster,
                "name": name,
                "comment": text(g.get("comment")),
                "digest": text(g.get("digest")),
                "rules": list(rules).iter().map(|r| rule(&scope, r)).collect::<Vec<_>>(),
                "status": "ok",
                "error": null,
            })
        })
        .collect();
    let ip_sets: Vec<Value> = list(&ipsets)
        .iter()
        .zip(&ipset_entries)
        .map(|(set, entries)| {
            let entries: Vec<Value> = list(entries)
                .iter()
                .map(|e| {
                    json!({
                        "cidr": text(e.get("cidr")),
                        "comment": text(e.get("comment")),
                        "nomatch": e.get("nomatch").and_then(as_bool),
                    })
                })
                .collect();
            json!({
                "cluster_name": cluster,
                "zone": "datacenter",
                "node": null,
                "vmid": null,
                "name": text(set.get("name")),
                "comment": text(set.get("comment")),
                "digest": text(set.get("digest")),
                "entries": entries,
                "status": "ok",
                "error": null,
            })
        })
        .collect();
    let alias_list: Vec<Value> = list(&aliases)
        .iter()
        .map(|a| {
            json!({
                "cluster_name": cluster,
                "zone": "datacenter",
                "node": null,
                "vmid": null,
                "name": text(a.get("name")),
                "cidr": text(a.get("cidr")),
                "comment": text(a.get("comment")),
                "digest": text(a.get("digest")),
                "status": "ok",
                "error": null,
            })
        })
        .collect();
    let raw_options = options.as_object().cloned().unwrap_or_default();
    let datacenter_options = (!raw_options.is_empty()).then(|| {
        let rest: Map<String, Value> = raw_options
            .iter()
            .filter(|(k, _)| {
                !["enable", "policy_in", "policy_out", "log_ratelimit"].contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        json!({
            "cluster_name": cluster,
            "zone": "datacenter",
            "node": null,
            "vmid": null,
            "enable": raw_options.get("enable").and_then(as_bool),
            "policy_in": text(raw_options.get("policy_in")),
            "policy_out": text(raw_options.get("policy_out")),
            "options": rest,
            "status": "ok",
            "error": null,
        })
    });
    Ok(json!({
        "cluster_name": cluster,
        "datacenter_rules": datacenter_rules,
        "security_groups": security_groups,
        "datacenter_ipsets": ip_sets,
        "datacenter_aliases": alias_list,
        "datacenter_options": datacenter_options,
        "node_rules": [],
        "node_options": [],
        "vm_rules": [],
        "vm_ipsets": [],
        "vm_aliases": [],
        "vm_options": [],
        "rules": datacenter_rules,
        "ip_sets": ip_sets,
        "aliases": alias_list,
        "options": (!raw_options.is_empty()).then_some(Value::Object(raw_options)),
        "status": "ok",
        "error": null,
    }))
}

/// `GET /proxmox/firewall/summary`: one entry per selected endpoint with its datacenter
/// rules, security groups (with their rules), IP sets (with their entries), aliases and
/// options.
pub async fn summary(State(state): State<AppState>, query: QueryParams) -> ApiResult<Json<Value>> {
    let sessions = open(&state, &query).await?;
    let entries = futures::future::try_join_all(sessions.iter().map(summary_entry)).await?;
    Ok(Json(Value::Array(entries)))
}

/// Whether `node` is one of the session's nodes (a restricted session lists none, so
/// it is asked).
fn has_node(session: &Session, node: &str) -> bool {
    session.status.is_empty()
        || session
            .status
            .iter()
            .any(|e| matches!(e, ClusterStatusEntry::Node { name, .. } if name == node))
}

/// `GET /proxmox/firewall/nodes/{node}/rules`: the node's host firewall rules, from
/// every selected endpoint that has the node.
pub async fn node_rules(
    State(state): State<AppState>,
    Path(node): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let node = node_segment(&node)?;
    let sessions = open(&state, &query).await?;
    let mut out = Vec::new();
    for session in sessions.iter().filter(|s| has_node(s, node)) {
        let rules = read(session, format!("nodes/{node}/firewall/rules")).await?;
        let scope = Scope {
            cluster: &session.name,
            zone: "node",
            node: Some(node),
            group: None,
        };
        out.extend(list(&rules).iter().map(|r| rule(&scope, r)));
    }
    Ok(Json(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_has_every_key_with_typed_pos_and_enable() {
        let scope = Scope {
            cluster: "pve",
            zone: "security_group",
            node: None,
            group: Some("web"),
        };
        let r = rule(
            &scope,
            &json!({"pos": "3", "type": "in", "action": "ACCEPT", "enable": 0,
                    "icmp-type": "echo-request", "dport": 22, "ipversion": 4}),
        );
        assert_eq!(r["pos"], json!(3));
        assert_eq!(r["enable"], json!(false));
        assert_eq!(r["icmp_type"], json!("echo-request"));
        assert_eq!(r["dport"], json!("22"));
        assert_eq!(r["security_group"], json!("web"));
        assert_eq!(r["macro"], Value::Null);
        assert!(r.get("ipversion").is_none());
        assert!(r.get("icmp-type").is_none());
    }

    #[test]
    fn a_rule_without_enable_has_null() {
        let scope = Scope {
            cluster: "pve",
            zone: "node",
            node: Some("pve1"),
            group: None,
        };
        let r = rule(&scope, &json!({"pos": 0, "type": "out", "action": "DROP"}));
        assert_eq!(r["enable"], Value::Null);
        assert_eq!(r["node"], json!("pve1"));
        assert_eq!(r["zone"], json!("node"));
    }
}
