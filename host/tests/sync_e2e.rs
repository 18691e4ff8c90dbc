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
use serde_json::Value;

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

/// NetBox VMs of the world's cluster by VMID (through the plugin's sync-state records).
async fn vms_by_vmid(w: &common::world::World) -> BTreeMap<u32, Value> {
    let cluster_id = w.netbox_cluster().await["id"].as_u64().unwrap();
    let identities = proxbox_host::netbox::vms::read_identities(&w.nb.client)
        .await
        .expect("identities");
    w.netbox_vms(cluster_id)
        .await
        .into_values()
        .filter_map(|vm| {
            let (_, identity) = identities.get(&vm["id"].as_u64()?)?;
            (identity.endpoint == w.endpoint as u64).then_some((identity.vmid, vm))
        })
        .collect()
}

/// `(object type, object id, action)` of the changes since `since`.
async fn change_set(w: &common::world::World, since: &str) -> BTreeSet<(String, u64, String)> {
    w.changes_since(since)
        .await
        .into_iter()
        .map(|c| {
            (
                c["changed_object_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["changed_object_id"].as_u64().unwrap_or_default(),
                c["action"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// A disk key of a guest config that has a size (not a CD-ROM).
fn sized_disk(config: &serde_json::Map<String, Value>) -> Option<String> {
    let mut keys: Vec<&String> = config.keys().collect();
    keys.sort();
    keys.into_iter()
        .find(|k| {
            let bus = k.trim_end_matches(|c: char| c.is_ascii_digit());
            matches!(bus, "scsi" | "virtio" | "sata" | "rootfs")
                && config[*k]
                    .as_str()
                    .is_some_and(|v| v.contains("size=") && !v.contains("media=cdrom"))
        })
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_changes_land_exactly() {
    let Some(w) = common::world::world(32, 24).await else {
        return;
    };
    w.stream("/dcim/devices/create/stream", "").await;
    w.stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let before = vms_by_vmid(&w).await;
    let state = w.sim.state();
    let mut vmids = state.guests.keys().copied();
    let (renamed, removed) = (vmids.next().unwrap(), vmids.next().unwrap());
    let (resized, disk) = state
        .guests
        .values()
        .filter(|g| g.vmid != renamed && g.vmid != removed)
        .find_map(|g| sized_disk(&g.config).map(|d| (g.vmid, d)))
        .expect("a guest with a disk");
    let new_name = common::world::unique("renamed");
    w.sim.rename_guest(renamed, &new_name).unwrap();
    w.sim.remove_guest(removed).unwrap();
    w.sim.resize_disk(resized, &disk, "777G").unwrap();

    let since = now_iso();
    let frames = w
        .stream(
            "/virtualization/virtual-machines/create/stream",
            "&delete_orphans=true",
        )
        .await;
    let s = &summary(&frames, "virtual-machines")["result"];
    assert_eq!(
        (
            s["created"].as_u64(),
            s["updated"].as_u64(),
            s["deleted"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(0), Some(2), Some(1), Some(0)),
        "{s}"
    );
    let after = vms_by_vmid(&w).await;
    assert_eq!(after[&renamed]["name"], new_name.as_str());
    assert!(!after.contains_key(&removed));
    assert!(
        after[&resized]["disk"].as_u64() > before[&resized]["disk"].as_u64(),
        "the VM's disk total follows the resized disk"
    );
    let vm_changes: BTreeSet<(u64, String)> = change_set(&w, &since)
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "virtualization.virtualmachine")
        .map(|(_, id, action)| (id, action))
        .collect();
    let id = |vmid: u32| before[&vmid]["id"].as_u64().unwrap();
    assert_eq!(
        vm_changes,
        BTreeSet::from([
            (id(renamed), "update".to_string()),
            (id(resized), "update".to_string()),
            (id(removed), "delete".to_string()),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_fails_its_guests_and_loses_nothing() {
    use proxmox_sim::{Fault, FaultKind};
    let Some(w) = common::world::world(33, 24).await else {
        return;
    };
    w.stream("/dcim/devices/create/stream", "").await;
    w.stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let before = vms_by_vmid(&w).await;
    let state = w.sim.state();
    let node = state.guests.values().next().unwrap().node.clone();
    let on_node = state.guests.values().filter(|g| g.node == node).count();
    w.sim.faults().inject(Fault::new(
        format!("/nodes/{node}/*").as_str(),
        FaultKind::Status(500, "node unreachable".into()),
    ));

    let since = now_iso();
    let frames = w
        .stream(
            "/virtualization/virtual-machines/create/stream",
            "&delete_orphans=true",
        )
        .await;
    let s = &summary(&frames, "virtual-machines")["result"];
    assert_eq!(s["failed"].as_u64(), Some(on_node as u64), "{s}");
    assert_eq!(s["deleted"].as_u64(), Some(0));
    let failed: Vec<&Value> = sse::named(&frames, "item_progress")
        .into_iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), on_node);
    assert!(
        failed
            .iter()
            .all(|i| i["error"].as_str().unwrap().contains("config")),
        "{failed:?}"
    );
    assert_eq!(vms_by_vmid(&w).await.len(), before.len(), "nothing deleted");
    assert!(change_set(&w, &since).await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_the_writes_and_makes_none() {
    let Some(w) = common::world::world(34, 12).await else {
        return;
    };
    // Before anything exists: everything would be created, nothing is.
    let since = now_iso();
    let frames = w
        .stream("/dcim/devices/create/stream", "&dry_run=true")
        .await;
    let s = &summary(&frames, "devices")["result"];
    assert_eq!(
        s["created"].as_u64(),
        Some(w.sim.state().nodes.len() as u64),
        "{s}"
    );
    assert!(
        sse::named(&frames, "item_progress")
            .iter()
            .all(|i| i["item"]["extra"]["dry_run"] == true)
    );
    assert!(
        change_set(&w, &since).await.is_empty(),
        "a dry run wrote to NetBox"
    );

    w.stream("/dcim/devices/create/stream", "").await;
    w.stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let vmid = *w.sim.state().guests.keys().next().unwrap();
    w.sim.rename_guest(vmid, "dry-run-rename").unwrap();
    w.sim
        .remove_guest(*w.sim.state().guests.keys().nth(1).unwrap())
        .unwrap();
    let since = now_iso();
    let frames = w
        .stream(
            "/virtualization/virtual-machines/create/stream",
            "&dry_run=true&delete_orphans=true",
        )
        .await;
    let s = &summary(&frames, "virtual-machines")["result"];
    assert_eq!(
        (s["updated"].as_u64(), s["deleted"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    let updated: Vec<&Value> = sse::named(&frames, "item_progress")
        .into_iter()
        .filter(|i| i["operation"] == "updated")
        .collect();
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0]["item"]["extra"]["changed_fields"],
        serde_json::json!(["name"])
    );
    assert!(
        sse::named(&frames, "item_progress")
            .iter()
            .any(|i| i["operation"] == "would_delete")
    );
    assert!(
        change_set(&w, &since).await.is_empty(),
        "a dry run wrote to NetBox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_in_a_running_sync_is_refused() {
    let Some(w) = common::world::world(35, 4).await else {
        return;
    };
    let _busy = w
        .server
        .state
        .runs()
        .start_exclusive("full-update", Some("other-run"), &[w.endpoint])
        .expect("claim");
    let answer = w
        .server
        .call(
            reqwest::Method::GET,
            &format!(
                "/dcim/devices/create/stream?proxmox_endpoint_ids={}",
                w.endpoint
            ),
            None,
        )
        .await;
    assert_eq!(
        answer.status,
        reqwest::StatusCode::CONFLICT,
        "{}",
        answer.text
    );
    assert!(
        answer.json["detail"]
            .as_str()
            .unwrap()
            .contains("other-run")
    );
}

/// Ensure objects by slug (or name for custom fields) exist; idempotent across tests.
async fn ensure_objects(
    nb: &proxbox_host::netbox::NetBoxClient,
    path: &str,
    key: &str,
    objects: Vec<Value>,
) {
    for object in objects {
        let value = object[key].as_str().unwrap().to_string();
        let found = nb.list(path, &[(key, value.clone())]).await.expect("list");
        if found.is_empty() {
            // A concurrent test may create it first: a refused duplicate is fine.
            let _ = nb.create(path, object).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_mapper_replaces_the_vm_mapper_by_configuration() {
    use proxbox_host::mapper::{Kind, Limits, MapperEngine, MapperSet};
    let Some(nb) = common::world::netbox() else {
        return;
    };
    let estate = common::world::estate(36, 16);
    let cluster = estate.endpoints[0].cluster_name.clone().unwrap();
    let site = proxbox_host::sync::resolve::default_site(&cluster).0;
    // What the example mapper refers to must exist in NetBox.
    ensure_objects(&nb.client, "dcim/device-roles/", "slug", vec![
        serde_json::json!({"name": "Server", "slug": "server", "color": "9e9e9e", "vm_role": true}),
        serde_json::json!({"name": "Container", "slug": "container", "color": "607d8b", "vm_role": true}),
    ]).await;
    let platforms = [
        "linux",
        "windows",
        "solaris",
        "debian",
        "devuan",
        "ubuntu",
        "centos",
        "fedora",
        "opensuse",
        "archlinux",
        "alpine",
        "gentoo",
        "nixos",
    ];
    ensure_objects(
        &nb.client,
        "dcim/platforms/",
        "slug",
        platforms
            .iter()
            .map(|p| serde_json::json!({"name": p, "slug": p}))
            .collect(),
    )
    .await;
    ensure_objects(&nb.client, "extras/custom-fields/", "name", vec![serde_json::json!({
        "name": "proxmox_vmid", "type": "integer", "object_types": ["virtualization.virtualmachine"],
    })]).await;

    let engine = MapperEngine::new(
        Limits::default(),
        Some(std::env::temp_dir().join("proxbox-host-test-mappers")),
    )
    .expect("engine");
    let overrides = BTreeMap::from([(Kind::VirtualMachine, common::example_component())]);
    let site_mappers = MapperSet::load(&engine, &overrides).expect("site mapper");
    let params = vec![("default-site".to_string(), site.clone())];
    let Some(w) = common::world::world_with(estate, move |b| {
        b.mappers(site_mappers).mapper_params(params)
    })
    .await
    else {
        return;
    };
    let root = w.server.call(reqwest::Method::GET, "/", None).await;
    assert!(
        root.json["mappers"]["virtual-machine"]
            .as_str()
            .unwrap()
            .contains("site_vm_mapper"),
        "{}",
        root.text
    );
    w.stream("/dcim/devices/create/stream", "").await;
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let state = w.sim.state();
    let templates = state.guests.values().filter(|g| g.template).count();
    let s = &summary(&frames, "virtual-machines")["result"];
    assert_eq!(
        s["skipped"].as_u64(),
        Some(templates as u64),
        "templates are the site's skips: {s}"
    );
    let vms = vms_by_vmid(&w).await;
    for guest in state.guests.values() {
        let Some(vm) = vms.get(&guest.vmid) else {
            assert!(guest.template, "guest {} missing", guest.vmid);
            continue;
        };
        assert!(!guest.template);
        let expected = guest.name().unwrap_or_default().trim().to_lowercase();
        assert!(
            vm["name"].as_str().unwrap().starts_with(&expected),
            "{} vs {expected}",
            vm["name"]
        );
        assert_eq!(
            vm["description"],
            format!("{cluster}/{} vmid {}", guest.node, guest.vmid).as_str()
        );
        assert_eq!(vm["custom_fields"]["proxmox_vmid"], guest.vmid);
        let role = vm["role"]["slug"].as_str().unwrap();
        assert_eq!(
            role,
            if guest.guest_type == proxmox_sim::GuestType::Qemu {
                "server"
            } else {
                "container"
            }
        );
        assert_eq!(vm["site"]["slug"], site.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_commands_run_the_real_stages() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Some(w) = common::world::world(37, 6).await else {
        return;
    };
    let url = format!("ws://{}/ws", w.server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let key = w.server.key.clone().unwrap();
    socket
        .send(Message::Text(format!(r#"{{"api_key": "{key}"}}"#).into()))
        .await
        .expect("send");
    let mut next = async || loop {
        match socket.next().await.expect("open").expect("frame") {
            Message::Text(t) => return t.to_string(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    };
    assert_eq!(next().await, "Connected!");
    assert_eq!(next().await, "Connected 2!");
    socket
        .send(Message::Text("Sync Nodes".into()))
        .await
        .expect("send");
    let mut synced = BTreeSet::new();
    loop {
        let Message::Text(text) = socket.next().await.expect("open").expect("frame") else {
            continue;
        };
        if text.as_str() == "Sync Nodes" {
            continue;
        }
        let payload: Value = serde_json::from_str(text.as_str()).expect("JSON progress");
        assert_eq!(payload["object"], "device", "{payload}");
        if payload["end"] == true {
            break;
        }
        assert_eq!(payload["data"]["completed"], true, "{payload}");
        synced.insert(payload["data"]["name"].as_str().unwrap().to_string());
    }
    let nodes: BTreeSet<String> = w.sim.state().nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(synced, nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_update_runs_every_stage_in_order_then_writes_nothing() {
    // Snapshot records are unique by (vmid, name, node) across all of NetBox, and other
    // worlds reuse VMIDs and node names: give this world's snapshots names of their own.
    let mut estate = common::world::estate(38, 20);
    let suffix = common::world::unique("s");
    for guest in estate.endpoints[0].guests.values_mut() {
        for snapshot in &mut guest.snapshots {
            snapshot.name = format!("{}-{suffix}", snapshot.name);
            if let Some(parent) = snapshot.parent.as_mut() {
                *parent = format!("{parent}-{suffix}");
            }
        }
    }
    let Some(w) = common::world::world_with(estate, |b| b).await else {
        return;
    };
    let frames = w.stream("/full-update/stream", "").await;
    let names: Vec<&str> = frames.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(&names[..3], ["bootstrap_done", "step", "discovery"]);
    assert_eq!(frames[1].1["step"], "stream");
    let stages = [
        "devices",
        "storage",
        "virtual-machines",
        "virtual-disks",
        "backups",
        "snapshots",
        "node-interfaces",
        "vm-interfaces",
        "vm-ip-addresses",
    ];
    assert_eq!(frames[2].1["count"], stages.len());
    let lifecycle: Vec<(String, String)> = sse::named(&frames, "step")
        .into_iter()
        .filter(|s| s.get("payload").is_none() && s["step"] != "stream")
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = stages
        .iter()
        .flat_map(|s| {
            [
                (s.to_string(), "started".to_string()),
                (s.to_string(), "completed".to_string()),
            ]
        })
        .collect();
    assert_eq!(lifecycle, expected);
    let complete = sse::complete(&frames);
    let result = &complete["result"];
    assert_eq!(result["devices_count"], w.sim.state().nodes.len());
    assert_eq!(result["virtual_machines_count"], w.sim.state().guests.len());
    for key in [
        "storage",
        "virtual_disks",
        "backups",
        "snapshots",
        "node_interfaces",
        "vm_interfaces",
        "vm_ip_addresses",
    ] {
        assert_eq!(result[key]["failed"], 0, "{key}: {result}");
    }
    let active = w
        .server
        .call(reqwest::Method::GET, "/sync/active", None)
        .await;
    assert_eq!(active.json["active"], false, "the run left /sync/active");

    let since = now_iso();
    let frames = w.stream("/full-update/stream", "").await;
    for (event, data) in &frames {
        if event == "phase_summary" {
            let r = &data["result"];
            assert_eq!(
                (
                    r["created"].as_u64(),
                    r["updated"].as_u64(),
                    r["deleted"].as_u64()
                ),
                (Some(0), Some(0), Some(0)),
                "{data}"
            );
        }
    }
    let changes = w.changes_since(&since).await;
    assert!(
        changes.is_empty(),
        "a no-op full update changed NetBox: {changes:#?}"
    );
}

/// The `proxmox_vm_id` custom field on VMs (the legacy identity), created if missing.
async fn legacy_vmid_field(w: &common::world::World) {
    let existing =
        w.nb.client
            .list("extras/custom-fields/", &[("name", "proxmox_vm_id".into())])
            .await
            .expect("custom fields");
    if existing.is_empty() {
        w.nb.client
            .create(
                "extras/custom-fields/",
                serde_json::json!({
                    "name": "proxmox_vm_id",
                    "type": "integer",
                    "object_types": ["virtualization.virtualmachine"],
                }),
            )
            .await
            .expect("create the custom field");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_renames_stay_proxmox_renames_land_and_legacy_vms_are_adopted() {
    use proxbox_host::netbox::vms::{VM_PATH, VM_STATE_PATH};
    let Some(w) = common::world::world(34, 12).await else {
        return;
    };
    w.stream("/dcim/devices/create/stream", "").await;
    w.stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let before = vms_by_vmid(&w).await;
    let mut vmids = before.keys().copied();
    let (edited, renamed, legacy) = (
        vmids.next().unwrap(),
        vmids.next().unwrap(),
        vmids.next().unwrap(),
    );
    let id = |vmid: u32| before[&vmid]["id"].as_u64().unwrap();

    // An operator renames one VM in NetBox; another guest is renamed in Proxmox; a third
    // VM loses its sync-state record but carries the legacy `proxmox_vm_id` field.
    let operator_name = common::world::unique("operator");
    let proxmox_name = common::world::unique("proxmox");
    legacy_vmid_field(&w).await;
    let patches = vec![
        serde_json::json!({"id": id(edited), "name": operator_name}),
        serde_json::json!({"id": id(legacy), "custom_fields": {"proxmox_vm_id": legacy}}),
    ];
    for result in w.nb.client.bulk_update(VM_PATH, patches).await {
        result.expect("operator edits");
    }
    w.sim.rename_guest(renamed, &proxmox_name).unwrap();
    let records =
        w.nb.client
            .list(
                VM_STATE_PATH,
                &[("virtual_machine_id", id(legacy).to_string())],
            )
            .await
            .expect("records");
    let record_ids: Vec<u64> = records.iter().filter_map(|r| r["id"].as_u64()).collect();
    assert_eq!(record_ids.len(), 1);
    for result in w.nb.client.bulk_delete(VM_STATE_PATH, &record_ids).await {
        result.expect("drop the record");
    }

    let since = now_iso();
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    let s = &summary(&frames, "virtual-machines")["result"];
    assert_eq!(
        (
            s["created"].as_u64(),
            s["updated"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(0), Some(1), Some(0)),
        "{s}"
    );
    let kept: Vec<&Value> = sse::named(&frames, "duplicate_name_resolved")
        .into_iter()
        .filter(|e| e["vmid"] == edited)
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["operator_renamed"], true);
    assert_eq!(kept[0]["suffix_index"], 1);
    assert_eq!(kept[0]["resolved_name"], operator_name.as_str());

    let after = vms_by_vmid(&w).await;
    assert_eq!(after[&edited]["name"], operator_name.as_str());
    assert_eq!(after[&renamed]["name"], proxmox_name.as_str());
    assert_eq!(after[&legacy]["id"].as_u64(), Some(id(legacy)), "adopted");
    assert_eq!(after.len(), before.len());
    let vm_changes: BTreeSet<(u64, String)> = change_set(&w, &since)
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "virtualization.virtualmachine")
        .map(|(_, id, action)| (id, action))
        .collect();
    assert_eq!(
        vm_changes,
        BTreeSet::from([(id(renamed), "update".to_string())])
    );
    let record = |vm: u64| {
        let client = &w.nb.client;
        async move {
            client
                .list(VM_STATE_PATH, &[("virtual_machine_id", vm.to_string())])
                .await
                .expect("records")
        }
    };
    let adopted = record(id(legacy)).await;
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0]["proxmox_vm_id"], legacy);
    assert_eq!(
        record(id(renamed)).await[0]["proxmox_vm_name"],
        proxmox_name.as_str(),
        "the record holds the new Proxmox name"
    );

    // Renamed in Proxmox as well, the operator's name still stands; the VM is not written.
    w.sim
        .rename_guest(edited, &common::world::unique("again"))
        .unwrap();
    let since = now_iso();
    let frames = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    assert_eq!(
        operations(&frames, "virtual-machines"),
        BTreeMap::from([("skipped".to_string(), before.len())])
    );
    let changes: Vec<Value> = w
        .changes_since(&since)
        .await
        .into_iter()
        .filter(|c| c["changed_object_type"] == "virtualization.virtualmachine")
        .collect();
    assert!(changes.is_empty(), "{changes:#?}");
    assert_eq!(
        vms_by_vmid(&w).await[&edited]["name"],
        operator_name.as_str()
    );
}
