//! The physical floor of a sync: bulk-create, list-read and bulk-delete rates of a real
//! NetBox per object kind, through this project's client (chunked bulk writes, paginated
//! reads of 1000).
//!
//! Needs `NETBOX_URL` and `NETBOX_TOKEN_V2_HEADER` (`tests/netbox/netbox.sh up`, then source
//! its env file). `PROXBOX_BENCH_OBJECTS` sets the objects per kind (default 500).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use proxbox_host::netbox::prerequisites;
use proxbox_host::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken};
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
    filter: (&str, String),
    objects: Vec<Value>,
) -> (Row, Vec<u64>) {
    let n = objects.len();
    let started = Instant::now();
    let created: Vec<u64> = client
        .bulk_create(path, objects)
        .await
        .into_iter()
        .map(|r| r.expect("create")["id"].as_u64().expect("id"))
        .collect();
    let create = rate(n, started);
    let started = Instant::now();
    let listed = client
        .list(path, &[(filter.0, filter.1.clone())])
        .await
        .expect("list");
    assert_eq!(listed.len(), n);
    let list_full = rate(n, started);
    let started = Instant::now();
    client
        .list(path, &[(filter.0, filter.1), ("brief", "1".into())])
        .await
        .expect("list brief");
    let list_brief = rate(n, started);
    let row = Row {
        kind,
        objects: n,
        create,
        list_full,
        list_brief,
        delete: 0.0,
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
        ("cluster_id", cluster.to_string()),
        vms,
    )
    .await;
    let disks: Vec<Value> = vm_ids
        .iter()
        .map(|id| json!({"virtual_machine": id, "name": "scsi0", "size": 32768, "tags": [tag]}))
        .collect();
    let (mut disk_row, disk_ids) = measure(
        &client,
        "virtual disk",
        "virtualization/virtual-disks/",
        ("cluster_id", cluster.to_string()),
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
        ("cluster_id", cluster.to_string()),
        interfaces,
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
    for row in [vm_row, disk_row, nic_row] {
        println!(
            "| {} ({}) | {:.1} | {:.0} | {:.0} | {:.1} |",
            row.kind, row.objects, row.create, row.list_full, row.list_brief, row.delete
        );
    }
}
