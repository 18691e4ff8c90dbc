//! The physical floor of a sync: bulk-create, list-read and bulk-delete rates of a real
//! NetBox per object kind, through this project's client (chunked bulk writes, paginated
//! reads of 1000), and the create rates of the plugin records a sync writes (VM and disk
//! sync-state records, backups, snapshots).
//!
//! Needs `NETBOX_URL` and `NETBOX_TOKEN_V2_HEADER` (`tests/netbox/netbox.sh up`, then source
//! its env file). `PROXBOX_BENCH_OBJECTS` sets the objects per kind (default 500).

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use proxbox_host::netbox::prerequisites;
use proxbox_host::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken};
use proxbox_host::sync::apply::list_by;
use serde_json::{Value, json};

struct Row {
    kind: &'static str,
    objects: usize,
    create: f64,
    list_full: f64,
    list_brief: f64,
    delete: f64,
}

fn rate(objects: usize, started: Instant) -> f64 {
    objects as f64 / started.elapsed().as_secs_f64()
}

async fn measure(
    client: &NetBoxClient,
    kind: &'static str,
    path: &str,
    filter: Option<(&str, BTreeSet<String>)>,
    objects: Vec<Value>,
) -> (Row, Vec<u64>) {
    let n = objects.len();
    let started = Instant::now();
    let created: Vec<u64> = client
        .bulk_create(path, objects)
        .await
        .into_iter()
        .map(|r| r.expect("create").expect("id"))
        .collect();
    let create = rate(n, started);
    let (mut list_full, mut list_brief) = (f64::NAN, f64::NAN);
    if let Some(filter) = filter {
        let started = Instant::now();
        let listed = list_by(client, path, filter.0, &filter.1, &[])
            .await
            .expect("list");
        assert_eq!(listed.len(), n);
        list_full = rate(n, started);
        let started = Instant::now();
        list_by(client, path, filter.0, &filter.1, &[("brief", "1".into())])
            .await
            .expect("list brief");
        list_brief = rate(n, started);
    }
    let row = Row {
        kind,
        objects: n,
        create,
        list_full,
        list_brief,
        delete: f64::NAN,
    };
    (row, created)
}

async fn delete(client: &NetBoxClient, path: &str, ids: &[u64], row: &mut Row) {
    let started = Instant::now();
    for result in client.bulk_delete(path, ids).await {
        result.expect("delete");
    }
    row.delete = rate(ids.len(), started);
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measure only on demand.
    if !std::env::args().any(|a| a == "--bench") {
        println!("netbox bench: measured only by `cargo bench -p proxbox-host --bench netbox`");
        return;
    }
    let (Ok(url), Ok(token)) = (
        std::env::var("NETBOX_URL"),
        std::env::var("NETBOX_TOKEN_V2_HEADER"),
    ) else {
        eprintln!(
            "SKIPPED: set NETBOX_URL and NETBOX_TOKEN_V2_HEADER (tests/netbox/netbox.sh up; source its env file)"
        );
        return;
    };
    let n: usize = std::env::var("PROXBOX_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let client =
        NetBoxClient::new(NetBoxConfig::new(url, NetBoxToken::parse(&token))).expect("client");
    let status = client.status().await.expect("status");
    let prereqs = prerequisites::ensure_all(&client, &status)
        .await
        .expect("prerequisites");
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cluster = client
        .create(
            "virtualization/clusters/",
            json!({"name": format!("bench-{stamp}"), "type": prereqs.cluster_types["cluster"]}),
        )
        .await
        .expect("cluster")["id"]
        .as_u64()
        .unwrap();
    let tag = prereqs.ownership_tag().unwrap();

    let vms: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("bench-vm-{i}"), "cluster": cluster, "status": "active",
                        "vcpus": 2, "memory": 2048, "tags": [tag]})
        })
        .collect();
    let (mut vm_row, vm_ids) = measure(
        &client,
        "virtual machine",
        "virtualization/virtual-machines/",
        Some(("cluster_id", BTreeSet::from([cluster.to_string()]))),
        vms,
    )
    .await;
    let of_vms: BTreeSet<String> = vm_ids.iter().map(u64::to_string).collect();
    let disks: Vec<Value> = vm_ids
        .iter()
        .map(|id| json!({"virtual_machine": id, "name": "scsi0", "size": 32768, "tags": [tag]}))
        .collect();
    let (mut disk_row, disk_ids) = measure(
        &client,
        "virtual disk",
        "virtualization/virtual-disks/",
        Some(("virtual_machine_id", of_vms.clone())),
        disks,
    )
    .await;
    let interfaces: Vec<Value> = vm_ids
        .iter()
        .map(|id| json!({"virtual_machine": id, "name": "net0", "enabled": true, "tags": [tag]}))
        .collect();
    let (mut nic_row, nic_ids) = measure(
        &client,
        "VM interface",
        "virtualization/interfaces/",
        Some(("virtual_machine_id", of_vms.clone())),
        interfaces,
    )
    .await;

    // The plugin's records a sync writes besides (listed only by one VM at a time, so
    // only their writes are measured).
    let vm_states: Vec<Value> = vm_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"virtual_machine": {"id": id}, "proxmox_endpoint_raw_id": 1,
                   "proxmox_vm_id": 100 + i, "proxmox_vm_type": "qemu",
                   "proxmox_cluster_name": format!("bench-{stamp}"),
                   "proxmox_node_name": "pve1", "proxmox_vm_name": format!("bench-vm-{i}")})
        })
        .collect();
    let (vm_state_row, _) = measure(
        &client,
        "VM sync-state",
        "plugins/proxbox/sync-state/virtual-machines/",
        None,
        vm_states,
    )
    .await;
    let disk_states: Vec<Value> = disk_ids
        .iter()
        .map(|id| json!({"virtual_disk": id, "proxbox_storage": null}))
        .collect();
    let (disk_state_row, _) = measure(
        &client,
        "disk sync-state",
        "plugins/proxbox/sync-state/virtual-disks/",
        None,
        disk_states,
    )
    .await;
    let backups: Vec<Value> = vm_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"virtual_machine": id, "storage": "pbs", "subtype": "qemu", "format": "pbs-vm",
                   "volume_id": format!("pbs:backup/vm/{}/2025-10-07T00:00:00Z-{stamp}", 100 + i),
                   "vmid": 100 + i, "creation_time": "2025-10-07T00:00:00Z",
                   "size": 1_073_741_824u64, "tags": [tag]})
        })
        .collect();
    let (backup_row, backup_ids) =
        measure(&client, "backup", "plugins/proxbox/backups/", None, backups).await;
    let snapshots: Vec<Value> = vm_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"virtual_machine": id, "name": format!("bench-{stamp}"), "vmid": 100 + i,
                   "node": "pve1", "subtype": "qemu", "status": "active", "description": "",
                   "parent": null, "snaptime": "2025-10-08T00:00:00Z", "tags": [tag]})
        })
        .collect();
    let (snapshot_row, snapshot_ids) = measure(
        &client,
        "snapshot",
        "plugins/proxbox/snapshots/",
        None,
        snapshots,
    )
    .await;
    let (mut snapshot_row, mut backup_row) = (snapshot_row, backup_row);
    delete(
        &client,
        "plugins/proxbox/snapshots/",
        &snapshot_ids,
        &mut snapshot_row,
    )
    .await;
    delete(
        &client,
        "plugins/proxbox/backups/",
        &backup_ids,
        &mut backup_row,
    )
    .await;

    delete(
        &client,
        "virtualization/interfaces/",
        &nic_ids,
        &mut nic_row,
    )
    .await;
    delete(
        &client,
        "virtualization/virtual-disks/",
        &disk_ids,
        &mut disk_row,
    )
    .await;
    delete(
        &client,
        "virtualization/virtual-machines/",
        &vm_ids,
        &mut vm_row,
    )
    .await;
    client
        .bulk_delete("virtualization/clusters/", &[cluster])
        .await
        .into_iter()
        .for_each(|r| r.expect("delete cluster"));

    println!(
        "NetBox {}.{}.{} — objects per second, {n} objects per kind",
        status.version.0, status.version.1, status.version.2
    );
    println!("| kind | bulk create | list (full) | list (brief) | bulk delete |");
    println!("|---|---|---|---|---|");
    for row in [
        vm_row,
        disk_row,
        nic_row,
        vm_state_row,
        disk_state_row,
        backup_row,
        snapshot_row,
    ] {
        let cell = |v: f64, digits: usize| {
            if v.is_finite() {
                format!("{v:.digits$}")
            } else {
                "—".to_string()
            }
        };
        println!(
            "| {} ({}) | {} | {} | {} | {} |",
            row.kind,
            row.objects,
            cell(row.create, 1),
            cell(row.list_full, 0),
            cell(row.list_brief, 0),
            cell(row.delete, 1)
        );
    }
}
