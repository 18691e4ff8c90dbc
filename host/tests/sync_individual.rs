//! `/sync/individual/vm`, `/backup` and `/snapshot` against the simulator and the real
//! NetBox with the plugin: one object synced on demand, with the parameters the plugin
//! sends, writing exactly that object.
//!
//! Needs the NetBox env of `tests/netbox/netbox.sh` (skipped without it, unless
//! `PROXBOX_REQUIRE_NETBOX=1`).

mod common;

use common::world::{estate_with_unique_snapshots, now_iso, world_with};
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn query(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vm_and_one_backup_are_synced_on_demand_and_nothing_else() {
    let (estate, _) = estate_with_unique_snapshots(89, 10);
    let Some(w) = world_with(estate, |b| b).await else {
        return;
    };
    for stage in [
        "/dcim/devices/create/stream",
        "/virtualization/virtual-machines/storage/create/stream",
        "/virtualization/virtual-machines/create/stream",
        "/virtualization/virtual-machines/backups/all/create/stream",
    ] {
        w.stream(stage, "").await;
    }
    let state = w.sim.state();
    let guest = state
        .guests
        .values()
        .find(|g| {
            state
                .storages
                .iter()
                .any(|s| s.backups.iter().any(|b| b.vmid == Some(g.vmid)))
        })
        .expect("a guest with a backup")
        .clone();
    let call = |path: &str, pairs: Vec<(&str, String)>| {
        let mut pairs = pairs;
        pairs.push(("proxmox_endpoint_ids", w.endpoint.to_string()));
        format!("{path}?{}", query(&pairs))
    };
    let vm_query = |vmid: u32, kind: &str, cluster: &str| {
        call(
            "/sync/individual/vm",
            vec![
                ("cluster_name", cluster.to_string()),
                ("node", guest.node.clone()),
                ("type", kind.to_string()),
                ("vmid", vmid.to_string()),
            ],
        )
    };

    // The VM, renamed in Proxmox: updated, and nothing else written.
    let renamed = format!("{}-renamed", guest.name().unwrap_or("guest"));
    w.sim
        .mutate(|s| s.rename_guest(guest.vmid, &renamed))
        .expect("rename");
    let since = now_iso();
    let kind = guest.guest_type.as_str();
    let answer = w
        .server
        .call(Method::GET, &vm_query(guest.vmid, kind, &w.cluster), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["object_type"], "vm");
    assert_eq!(answer.json["action"], "updated", "{}", answer.text);
    assert_eq!(answer.json["error"], Value::Null);
    assert_eq!(answer.json["netbox_object"]["name"], renamed.as_str());
    let vm_id = answer.json["netbox_object"]["id"].as_u64().expect("VM id");
    let changes = w.changes_since(&since).await;
    let others: Vec<&Value> = changes
        .iter()
        .filter(|c| {
            let kind = c["changed_object_type"].as_str().unwrap_or_default();
            let ours = kind == "virtualization.virtualmachine" && c["changed_object_id"] == vm_id;
            !(ours || kind.contains("syncstate"))
        })
        .collect();
    assert!(others.is_empty(), "{others:#?}");

    // Again: unchanged, nothing written.
    let again = w
        .server
        .call(Method::GET, &vm_query(guest.vmid, kind, &w.cluster), None)
        .await;
    assert_eq!(again.json["action"], "unchanged", "{}", again.text);

    // Unknown guest, unknown cluster, missing parameter.
    let missing = w
        .server
        .call(Method::GET, &vm_query(999_999, kind, &w.cluster), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    assert!(missing.json["message"].as_str().unwrap().contains("999999"));
    let elsewhere = w
        .server
        .call(
            Method::GET,
            &vm_query(guest.vmid, kind, "no-such-cluster"),
            None,
        )
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        elsewhere.text
    );
    let incomplete = w
        .server
        .call(
            Method::GET,
            &call(
                "/sync/individual/vm",
                vec![("cluster_name", w.cluster.clone())],
            ),
            None,
        )
        .await;
    assert_eq!(incomplete.status, StatusCode::UNPROCESSABLE_ENTITY);

    // One backup whose notes changed in Proxmox: that record updated, nothing else.
    let (storage, backup) = state
        .storages
        .iter()
        .find_map(|s| {
            s.backups
                .iter()
                .find(|b| b.vmid == Some(guest.vmid))
                .map(|b| (s.storage.clone(), b.clone()))
        })
        .unwrap();
    w.sim.mutate(|s| {
        for st in &mut s.storages {
            for b in &mut st.backups {
                if b.volid == backup.volid {
                    b.notes = Some("changed in Proxmox".into());
                }
            }
        }
    });
    let since = now_iso();
    let answer = w
        .server
        .call(
            Method::GET,
            &call(
                "/sync/individual/backup",
                vec![
                    ("cluster_name", w.cluster.clone()),
                    ("node", guest.node.clone()),
                    ("storage", storage.clone()),
                    ("vmid", guest.vmid.to_string()),
                    ("volid", backup.volid.clone()),
                ],
            ),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["object_type"], "backup");
    assert_eq!(answer.json["action"], "updated", "{}", answer.text);
    assert_eq!(answer.json["netbox_object"]["notes"], "changed in Proxmox");
    let backup_id = answer.json["netbox_object"]["id"].as_u64().expect("id");
    let changes = w.changes_since(&since).await;
    let touched: Vec<(String, u64)> = changes
        .iter()
        .map(|c| {
            (
                c["changed_object_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["changed_object_id"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        touched,
        [("netbox_proxbox.vmbackup".to_string(), backup_id)],
        "{changes:#?}"
    );
    let gone = w
        .server
        .call(
            Method::GET,
            &call(
                "/sync/individual/backup",
                vec![
                    ("cluster_name", w.cluster.clone()),
                    ("node", guest.node.clone()),
                    ("storage", storage),
                    ("vmid", guest.vmid.to_string()),
                    ("volid", format!("{}-nope", backup.volid)),
                ],
            ),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);

    // A snapshot taken in Proxmox since: its record created, nothing else written.
    let name = format!("ondemand-{}", common::world::unique("s"));
    w.sim
        .mutate(|s| {
            s.add_snapshot(
                guest.vmid,
                proxmox_sim::Snapshot {
                    name: name.clone(),
                    description: "taken after the sync".into(),
                    snaptime: proxmox_sim::BASE_TIME + 60,
                    parent: None,
                    vmstate: false,
                },
            )
        })
        .expect("snapshot");
    let snapshot_query = |snapshot: &str| {
        call(
            "/sync/individual/snapshot",
            vec![
                ("cluster_name", w.cluster.clone()),
                ("node", guest.node.clone()),
                ("type", kind.to_string()),
                ("vmid", guest.vmid.to_string()),
                ("snapshot_name", snapshot.to_string()),
            ],
        )
    };
    let since = now_iso();
    let answer = w
        .server
        .call(Method::GET, &snapshot_query(&name), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["object_type"], "snapshot");
    assert_eq!(answer.json["action"], "created", "{}", answer.text);
    assert_eq!(answer.json["netbox_object"]["name"], name.as_str());
    let snapshot_id = answer.json["netbox_object"]["id"].as_u64().expect("id");
    let touched: Vec<(String, u64, String)> = w
        .changes_since(&since)
        .await
        .iter()
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
        .collect();
    assert_eq!(
        touched,
        [(
            "netbox_proxbox.vmsnapshot".to_string(),
            snapshot_id,
            "create".to_string()
        )]
    );
    let unknown = w
        .server
        .call(Method::GET, &snapshot_query("never-taken"), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
}
