//! The sync end to end: the simulator as Proxmox, the real NetBox with the plugin
//! (`tests/netbox/netbox.sh up`), the host in between, driven through its routes and
//! read back from NetBox object by object.
//!
//! Needs `NETBOX_URL`, `NETBOX_TOKEN_V1` and `NETBOX_TOKEN_V2_HEADER` (the env file of
//! `netbox.sh`); without them each test says it is skipped, unless
//! `PROXBOX_REQUIRE_NETBOX=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::sse;
use common::world::{now_iso, operations, summary, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_vms_land_then_a_rerun_writes_nothing() {
    let Some(w) = world(31, 40).await else {
        return;
    };
    let state = w.sim.state();

    // Devices: one per node, in the cluster, with the node role.
    let frames = w.stream("/dcim/devices/create/stream", "").await;
    let complete = sse::complete(&frames);
    assert_eq!(complete["result"]["count"], state.nodes.len(), "{complete}");
    assert_eq!(
        summary(&frames, "devices")["result"]["created"],
        state.nodes.len()
    );
    let cluster = w.netbox_cluster().await;
    let cluster_id = cluster["id"].as_u64().unwrap();
    assert_eq!(cluster["type"]["slug"], "cluster");
    let devices =
        w.nb.client
            .list("dcim/devices/", &[("cluster_id", cluster_id.to_string())])
            .await
            .expect("devices");
    let names: BTreeSet<&str> = devices.iter().filter_map(|d| d["name"].as_str()).collect();
    let expected: BTreeSet<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, expected);
    for device in &devices {
        assert_eq!(device["role"]["slug"], "proxmox-node");
        assert_eq!(device["device_type"]["model"], "Proxmox Generic Device");
        let tags: Vec<&str> = device["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["slug"].as_str())
            .collect();
        assert!(tags.contains(&"proxbox"), "{tags:?}");
        let node = state
            .nodes
            .iter()
            .find(|n| n.name == device["name"])
            .unwrap();
        assert_eq!(
            device["status"]["value"],
            if node.online { "active" } else { "offline" }
        );
    }

    // VMs: every guest, with its fields.
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let complete = sse::complete(&frames);
    assert_eq!(
        complete["result"]["count"],
        state.guests.len(),
        "{complete}"
    );
    let vm_summary = summary(&frames, "virtual-machines");
    assert_eq!(vm_summary["result"]["failed"], 0, "{vm_summary}");
    let vms = w.netbox_vms(cluster_id).await;
    assert_eq!(vms.len(), state.guests.len());
    let device_ids: BTreeMap<&str, u64> = devices
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["id"].as_u64().unwrap()))
        .collect();
    for guest in state.guests.values() {
        let name = guest
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("vm-{}", guest.vmid));
        let vm = vms
            .get(&name)
            .or_else(|| {
                vms.values()
                    .find(|v| v["name"].as_str().unwrap_or_default().starts_with(&name))
            })
            .unwrap_or_else(|| panic!("VM {name} missing"));
        assert_eq!(
            vm["device"]["id"].as_u64(),
            device_ids.get(guest.node.as_str()).copied(),
            "{name}"
        );
        let memory_mib = guest.config.get("memory").and_then(|m| {
            m.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or(m.as_u64())
        });
        if let Some(memory) = memory_mib {
            assert_eq!(vm["memory"].as_u64(), Some(memory), "{name} memory");
        }
        let tags: Vec<&str> = vm["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["slug"].as_str())
            .collect();
        assert!(tags.contains(&"proxbox"), "{name}: {tags:?}");
    }

    // Re-run both: nothing is written, every item is reported unchanged.
    let since = now_iso();
    let frames = w.stream("/dcim/devices/create/stream", "").await;
    assert_eq!(
        operations(&frames, "devices"),
        BTreeMap::from([("skipped".to_string(), state.nodes.len())])
    );
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    assert_eq!(
        operations(&frames, "virtual-machines"),
        BTreeMap::from([("skipped".to_string(), state.guests.len())])
    );
    let s = &summary(&frames, "virtual-machines")["result"];
    assert_eq!(
        (s["created"].as_u64(), s["updated"].as_u64()),
        (Some(0), Some(0))
    );
    let changes = w.changes_since(&since).await;
    assert!(
        changes.is_empty(),
        "a no-op re-run changed NetBox: {changes:#?}"
    );
}
