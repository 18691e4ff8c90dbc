//! Nodes: `/cluster/status` (+ optional `/nodes/{node}/status` and resource entry).

use serde_json::Value;

use super::lenient::{as_bool, as_str, as_u64};
use super::{NormalizeError, raw};
use crate::mapper::v1::{ClusterInput, ClusterMode, NodeInput};

/// Build the input for `node_name` from the `/cluster/status` list, the node's
/// `/nodes/{node}/status` and its `/cluster/resources` entry (both optional).
pub fn node(
    cluster_status: &Value,
    node_name: &str,
    status: Option<&Value>,
    resource: Option<&Value>,
) -> Result<NodeInput, NormalizeError> {
    let entries = cluster_status
        .as_array()
        .ok_or_else(|| NormalizeError::new("cluster status is not a list"))?;
    let entry = entries
        .iter()
        .find(|e| {
            e.get("type").and_then(Value::as_str) == Some("node")
                && as_str(e.get("name")).as_deref() == Some(node_name)
        })
        .ok_or_else(|| {
            NormalizeError::new(format!("node `{node_name}` is not in the cluster status"))
        })?;
    let cluster = cluster_input(entries, node_name);

    let online = as_bool(entry.get("online"))
        .or_else(|| {
            resource
                .and_then(|r| r.get("status"))
                .and_then(Value::as_str)
                .map(|s| s == "online")
        })
        .unwrap_or(false);
    let cpus = status
        .and_then(|s| s.pointer("/cpuinfo/cpus"))
        .and_then(|v| as_u64(Some(v)))
        .or_else(|| resource.and_then(|r| as_u64(r.get("maxcpu"))))
        .and_then(|n| u32::try_from(n).ok());
    let memory_bytes = status
        .and_then(|s| s.pointer("/memory/total"))
        .and_then(|v| as_u64(Some(v)))
        .or_else(|| resource.and_then(|r| as_u64(r.get("maxmem"))));
    let uptime_seconds = status
        .and_then(|s| as_u64(s.get("uptime")))
        .or_else(|| resource.and_then(|r| as_u64(r.get("uptime"))));

    let mut sources = vec![raw("cluster-status", entry)];
    if let Some(status) = status {
        sources.push(raw("status", status));
    }
    if let Some(resource) = resource {
        sources.push(raw("resource", resource));
    }
    Ok(NodeInput {
        name: node_name.to_string(),
        online,
        node_id: as_u64(entry.get("nodeid")).and_then(|n| u32::try_from(n).ok()),
        ip: as_str(entry.get("ip")),
        level: as_str(entry.get("level")),
        cpus,
        memory_bytes,
        uptime_seconds,
        cluster,
        raw: sources,
    })
}

/// The cluster from the `cluster` entry, or a standalone "cluster" named after the node.
pub fn cluster_input(entries: &[Value], node_name: &str) -> ClusterInput {
    let nodes = entries
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("node"))
        .count();
    match entries
        .iter()
        .find(|e| e.get("type").and_then(Value::as_str) == Some("cluster"))
    {
        Some(cluster) => ClusterInput {
            name: as_str(cluster.get("name")).unwrap_or_else(|| node_name.to_string()),
            mode: ClusterMode::Cluster,
            node_count: as_u64(cluster.get("nodes")).map_or(nodes as u32, |n| n as u32),
            quorate: as_bool(cluster.get("quorate")),
        },
        None => ClusterInput {
            name: node_name.to_string(),
            mode: ClusterMode::Standalone,
            node_count: 1,
            quorate: None,
        },
    }
}
