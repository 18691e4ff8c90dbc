//! Every real Proxmox response sample in `tests/fixtures/proxmox/endpoints/` decodes with
//! the client's models, and guest configs normalise into mapper inputs.

use std::path::Path;

use proxbox_host::normalize;
use proxbox_host::proxmox::models::{
    AgentInterface, ClusterResource, ClusterStatusEntry, FromValue, GuestConfig, LxcInterface,
    NetworkInterface, NodeEntry, NodeStatus, NodeStorage, Snapshot, StorageConfig, StorageContent,
    Version, list,
};
use serde_json::{Value, json};

fn samples(file: &str) -> Vec<(String, Value)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/proxmox/endpoints")
        .join(file);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    doc["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["http_status"] == json!(200))
        .map(|s| {
            (
                s["source"].as_str().unwrap_or("?").to_string(),
                s["body"]["data"].clone(),
            )
        })
        .collect()
}

fn decode_lists<T: FromValue>(file: &str) -> Vec<T> {
    let mut all = Vec::new();
    let samples = samples(file);
    assert!(!samples.is_empty(), "{file} has no samples");
    for (source, data) in samples {
        let items: Vec<T> = list(data).unwrap_or_else(|e| panic!("{file} from {source}: {e}"));
        all.extend(items);
    }
    all
}

fn decode_objects<T: FromValue>(file: &str) -> Vec<T> {
    samples(file)
        .into_iter()
        .filter(|(_, data)| !data.is_null())
        .map(|(source, data)| {
            T::from_value(data).unwrap_or_else(|e| panic!("{file} from {source}: {e}"))
        })
        .collect()
}

#[test]
fn cluster_and_node_samples_decode() {
    assert!(!decode_objects::<Version>("version.json").is_empty());
    let status: Vec<ClusterStatusEntry> = decode_lists("cluster_status.json");
    assert!(
        status
            .iter()
            .any(|e| matches!(e, ClusterStatusEntry::Cluster { .. }))
    );
    assert!(
        status
            .iter()
            .any(|e| matches!(e, ClusterStatusEntry::Node { online: true, .. }))
    );
    let resources: Vec<ClusterResource> = decode_lists("cluster_resources.json");
    let guests: Vec<_> = resources
        .iter()
        .filter(|r| r.guest_kind().is_some())
        .collect();
    assert!(guests.len() > 3 && guests.iter().all(|g| g.vmid.is_some()));
    assert!(!decode_lists::<NodeEntry>("nodes.json").is_empty());
    let statuses = decode_objects::<NodeStatus>("node_status.json");
    assert!(
        statuses
            .iter()
            .any(|s| s.cpus.is_some() && s.memory_total.is_some())
    );
    let network: Vec<NetworkInterface> = decode_lists("node_network.json");
    assert!(network.iter().any(|i| i.kind == "bridge"));
    assert!(
        network.iter().any(|i| i.vlan_id.is_some()),
        "vlan-id as a string decodes"
    );
}

#[test]
fn guest_samples_decode_and_normalise() {
    for (file, kind) in [("qemu_config.json", "qemu"), ("lxc_config.json", "lxc")] {
        let configs = decode_objects::<GuestConfig>(file);
        assert!(!configs.is_empty());
        for config in configs {
            let resource = json!({"vmid": 100, "type": kind, "node": "node1", "status": "running"});
            let guest = normalize::guest(&resource, Some(&config.raw), None, None)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(guest.raw.iter().any(|r| r.name == "config"));
        }
    }
    let agent_samples = samples("qemu_agent_network_get_interfaces.json");
    let mut agent_ifaces = 0;
    for (source, data) in agent_samples {
        let result = data.get("result").cloned().unwrap_or(data);
        if result.get("error").is_some() {
            continue;
        }
        let ifaces: Vec<AgentInterface> =
            list(result).unwrap_or_else(|e| panic!("agent from {source}: {e}"));
        agent_ifaces += ifaces.len();
    }
    assert!(agent_ifaces > 0);
    assert!(!decode_lists::<LxcInterface>("lxc_interfaces.json").is_empty());
    for file in ["qemu_snapshot.json", "lxc_snapshot.json"] {
        let snaps: Vec<Snapshot> = decode_lists(file);
        assert!(
            snaps.iter().any(|s| s.name == "current"),
            "{file} has the pseudo-entry"
        );
    }
}

#[test]
fn storage_samples_decode() {
    let storages: Vec<StorageConfig> = decode_lists("storage.json");
    assert!(storages.iter().any(|s| s.holds_backups()));
    assert!(!decode_lists::<NodeStorage>("node_storage.json").is_empty());
    let content: Vec<StorageContent> = decode_lists("storage_content.json");
    let backups: Vec<_> = content
        .iter()
        .filter(|c| c.content.as_deref() == Some("backup"))
        .collect();
    assert!(!backups.is_empty());
    for backup in backups {
        let normalised = normalize::backup(&backup.raw).expect("backup normalises");
        assert_eq!(normalised.volid, backup.volid);
    }
}
