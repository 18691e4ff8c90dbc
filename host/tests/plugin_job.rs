//! The real netbox-proxbox plugin (0.0.29.post6) drives this host end to end: its own
//! sync job (`netbox proxbox_sync --wait`, sync type `all`, run by NetBox's RQ worker)
//! against the host in this process and a simulated Proxmox cluster.
//!
//! The plugin's records are created through NetBox's REST API as an operator would: the
//! backend endpoint (with the host's API key), the NetBox endpoint (v2 token) and the
//! Proxmox endpoint (API token), whose connection targets are then approved. The job
//! pushes the NetBox and Proxmox endpoints to the host itself.
//!
//! 1. First run: the Job ends `completed`, every stage's `result_summary.ok` is true, every
//!    local phase (cluster/nodes, firewall, CPU models, VM templates) succeeded, and NetBox
//!    holds the cluster's VMs, the plugin's firewall, replication and backup-routine
//!    records.
//! 2. Second run: the Job completes and NetBox's change log records no change.
//! 3. A backup's Sync Now button (the plugin's view, through Django's test client in
//!    `netbox shell`) calls `/sync/individual/backup`: only that backup record changes.
//! 4. A VM's Sync Now button queues the plugin's targeted job: only that VM (and its
//!    sync-state record) changes.
//!
//! Needs the NetBox env of `tests/netbox/netbox.sh` (`NETBOX_ROOT`, `NETBOX_VENV` for the
//! management command; its RQ worker running); skipped without it, unless
//! `PROXBOX_REQUIRE_NETBOX=1`.

mod common;

use std::collections::BTreeSet;

use common::server::{BOOTSTRAP_KEY, TestServer};
use common::world::{NetBox, estate, mappers, netbox, now_iso, unique};
use proxbox_host::netbox::NetBoxClient;
use proxbox_host::server::AppState;
use proxbox_host::store::Store;
use proxmox_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const ENDPOINTS: &str = "plugins/proxbox/endpoints/";

/// Disable every enabled plugin endpoint record of `kind` (`fastapi`, `netbox`,
/// `proxmox`): the plugin's job syncs every enabled Proxmox endpoint and uses the first
/// backend and every NetBox endpoint.
async fn disable_all(client: &NetBoxClient, kind: &str) {
    let path = format!("{ENDPOINTS}{kind}/");
    let enabled = client
        .list(&path, &[("enabled", "true".into())])
        .await
        .expect("endpoint records");
    let patches: Vec<Value> = enabled
        .iter()
        .map(|e| json!({"id": e["id"], "enabled": false}))
        .collect();
    if !patches.is_empty() {
        for result in client.bulk_update(&path, patches).await {
            result.expect("disable");
        }
    }
}

/// Approve the connection target of plugin endpoint record `kind`/`pk`, as a superuser
/// does in the plugin's UI.
async fn approve(client: &NetBoxClient, kind: &str, pk: u64) {
    let path = format!("{ENDPOINTS}{kind}/{pk}/connection-authority/");
    let review = client
        .request(reqwest::Method::GET, &path, &[], None)
        .await
        .expect("connection authority");
    let fingerprint = review["target_fingerprint"].as_str().expect("fingerprint");
    let approved = client
        .request(
            reqwest::Method::PUT,
            &path,
            &[],
            Some(&json!({"target_fingerprint": fingerprint})),
        )
        .await
        .expect("approve");
    assert_eq!(approved["approved"], true, "{approved}");
}

/// Run NetBox's command line (`netbox <args>`) in its root, as the test instance's
/// configuration expects.
async fn netbox_cli(args: &[&str]) -> std::process::Output {
    let root = std::env::var("NETBOX_ROOT").expect("NETBOX_ROOT");
    let venv = std::env::var("NETBOX_VENV").expect("NETBOX_VENV");
    tokio::process::Command::new(format!("{venv}/bin/netbox"))
        .args(args)
        .current_dir(&root)
        .env("NETBOX_ROOT", &root)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output()
        .await
        .expect("netbox command line")
}

/// Run the plugin's management command `proxbox_sync --wait`; returns its exit success
/// and output.
async fn proxbox_sync() -> (bool, String) {
    let output = netbox_cli(&[
        "proxbox_sync",
        "--wait",
        "--timeout",
        "1500",
        "--poll-interval",
        "1",
    ])
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Run Python in NetBox's shell (`netbox shell -c`); its standard output.
async fn netbox_shell(code: &str) -> String {
    let output = netbox_cli(&["shell", "-c", code]).await;
    assert!(
        output.status.success(),
        "netbox shell failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Press an object's "Sync Now" button as the logged-in admin (a POST to its
/// `proxbox-sync-now` view, through Django's test client); the status and the messages
/// the page would flash.
async fn press_sync_now(url: &str) -> Value {
    let code = format!(
        "import json\n\
         from django.test import Client\n\
         from django.contrib.messages import get_messages\n\
         from users.models import User\n\
         c = Client(HTTP_HOST='localhost')\n\
         c.force_login(User.objects.get(username='admin'))\n\
         r = c.post('{url}')\n\
         print('SYNC-NOW ' + json.dumps({{'status': r.status_code, 'messages': \
         [[m.level_tag, str(m)] for m in get_messages(r.wsgi_request)]}}))\n"
    );
    let out = netbox_shell(&code).await;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("SYNC-NOW "))
        .unwrap_or_else(|| panic!("no answer from the Sync Now view: {out}"));
    serde_json::from_str(line).expect("answer")
}

/// The NetBox changes since `since`, as `(object type, id)`.
async fn changed_since(client: &NetBoxClient, since: &str) -> Vec<(String, u64)> {
    client
        .list("core/object-changes/", &[("time_after", since.to_string())])
        .await
        .expect("object changes")
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
        .collect()
}

/// The newest Job the command created.
async fn last_job(client: &NetBoxClient) -> Value {
    client
        .list("core/jobs/", &[("name__ic", "Proxbox Sync".into())])
        .await
        .expect("jobs")
        .into_iter()
        .max_by_key(|j| j["id"].as_u64())
        .expect("a sync job")
}

/// Assert the job completed with every stage and local phase successful.
fn assert_job_succeeded(job: &Value) {
    assert_eq!(job["status"]["value"], "completed", "{job:#}");
    let response = &job["data"]["proxbox_sync"]["response"];
    let stages = response["stages"].as_array().expect("stages");
    let ran: BTreeSet<&str> = stages
        .iter()
        .filter(|s| s["result_summary"]["skipped"] != true)
        .filter_map(|s| s["sync_type"].as_str())
        .collect();
    for want in [
        "devices",
        "storage",
        "virtual-machines",
        "vm-disks",
        "vm-backups",
        "vm-snapshots",
        "network-interfaces",
        "vm-interfaces",
        "ip-addresses",
        "replications",
        "backup-routines",
    ] {
        assert!(ran.contains(want), "stage {want} did not run: {stages:#?}");
    }
    for stage in stages {
        assert_eq!(stage["result_summary"]["ok"], true, "{stage:#}");
    }
    for phase in response["local_phases"].as_array().expect("local phases") {
        assert_eq!(phase["status"], "success", "{phase:#}");
    }
}

async fn count(client: &NetBoxClient, path: &str, query: &[(&str, String)]) -> usize {
    client.list(path, query).await.expect(path).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plugins_own_sync_job_completes_against_the_host_then_changes_nothing() {
    let Some(NetBox { client, url, .. }) = netbox() else {
        return;
    };
    let mut estate = estate(79, 10);
    let cluster = unique("pj");
    estate.endpoints[0].cluster_name = Some(cluster.clone());
    let state = estate.endpoints[0].clone();
    let sim = Simulator::start(estate, 0, SimConfig::default())
        .await
        .expect("simulator");
    let host = TestServer::start_with_key(
        AppState::builder(Store::open_in_memory().expect("store"))
            .mappers(mappers())
            .build(),
    )
    .await;

    for kind in ["fastapi", "netbox", "proxmox"] {
        disable_all(&client, kind).await;
    }
    let backend = client
        .create(
            &format!("{ENDPOINTS}fastapi/"),
            json!({
                "name": unique("host"), "domain": "localhost", "port": host.addr.port(),
                "use_https": false, "verify_ssl": false, "token": BOOTSTRAP_KEY,
            }),
        )
        .await
        .expect("backend endpoint record");
    assert!(backend["id"].is_u64(), "{backend}");
    let token_v2 = std::env::var("NETBOX_TOKEN_V2").expect("NETBOX_TOKEN_V2");
    let (key, secret) = token_v2
        .trim_start_matches("nbt_")
        .split_once('.')
        .expect("v2 token");
    let netbox_record = client
        .create(
            &format!("{ENDPOINTS}netbox/"),
            json!({
                "name": unique("netbox"), "domain": "localhost",
                "port": url.port_or_known_default(), "verify_ssl": false,
                "token_version": "v2", "token_key": key, "token_secret": secret,
            }),
        )
        .await
        .expect("netbox endpoint record");
    let token = sim.token();
    let proxmox_record = client
        .create(
            &format!("{ENDPOINTS}proxmox/"),
            json!({
                "name": unique("pve"), "domain": "localhost", "port": sim.addr().port(),
                "mode": "undefined", "username": token.user, "token_name": token.token_id,
                "token_value": token.secret, "verify_ssl": false, "timeout": 30,
            }),
        )
        .await
        .expect("proxmox endpoint record");
    approve(&client, "netbox", netbox_record["id"].as_u64().unwrap()).await;
    let proxmox_pk = proxmox_record["id"].as_u64().unwrap();
    approve(&client, "proxmox", proxmox_pk).await;

    // 1. First run.
    let (ok, output) = proxbox_sync().await;
    let job = last_job(&client).await;
    assert!(ok, "proxbox_sync failed:\n{output}\njob: {job:#}");
    assert_job_succeeded(&job);

    let clusters = client
        .list("virtualization/clusters/", &[("name", cluster.clone())])
        .await
        .expect("clusters");
    assert_eq!(clusters.len(), 1, "{clusters:#?}");
    let cluster_id = clusters[0]["id"].as_u64().unwrap().to_string();
    assert_eq!(
        count(
            &client,
            "virtualization/virtual-machines/",
            &[("cluster_id", cluster_id.clone())]
        )
        .await,
        state.guests.len()
    );
    let by_endpoint = [("endpoint", proxmox_pk.to_string())];
    assert_eq!(
        count(
            &client,
            "plugins/proxbox/firewall/security-groups/",
            &by_endpoint
        )
        .await,
        state.firewall.groups.len()
    );
    assert_eq!(
        count(&client, "plugins/proxbox/firewall/aliases/", &by_endpoint).await,
        state.firewall.aliases.len()
    );
    let selecting = state
        .backup_jobs
        .iter()
        .filter(|job| !common::backup_job_selection(&state, job).is_empty())
        .count();
    assert_eq!(
        count(&client, "plugins/proxbox/backup-routines/", &by_endpoint).await,
        selecting
    );
    assert_eq!(
        count(&client, "plugins/proxbox/replications/", &by_endpoint).await,
        state.replication_jobs.len()
    );

    // 2. Second run: nothing changes in NetBox.
    let since = now_iso();
    let (ok, output) = proxbox_sync().await;
    let job = last_job(&client).await;
    assert!(ok, "second proxbox_sync failed:\n{output}\njob: {job:#}");
    assert_job_succeeded(&job);
    let changes = client
        .list("core/object-changes/", &[("time_after", since)])
        .await
        .expect("object changes");
    let summary: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["action"]["value"], c["changed_object_type"], c["object_repr"]
            )
        })
        .collect();
    assert!(changes.is_empty(), "{summary:#?}");

    // 3. A backup's Sync Now button: that backup record is updated, nothing else.
    let vms = client
        .list(
            "virtualization/virtual-machines/",
            &[("cluster_id", cluster_id.clone())],
        )
        .await
        .expect("vms");
    let mut backup = None;
    for vm in &vms {
        let found = client
            .list(
                "plugins/proxbox/backups/",
                &[("virtual_machine", vm["id"].to_string())],
            )
            .await
            .expect("backups");
        if let Some(first) = found.into_iter().next() {
            backup = Some(first);
            break;
        }
    }
    let backup = backup.expect("a synced backup");
    let volid = backup["volume_id"].as_str().unwrap().to_string();
    sim.mutate(|s| {
        for storage in &mut s.storages {
            for b in &mut storage.backups {
                if b.volid == volid {
                    b.notes = Some("noted after the sync".into());
                }
            }
        }
    });
    let since = now_iso();
    let pressed = press_sync_now(&format!(
        "/plugins/proxbox/backups/{}/proxbox-sync-now/",
        backup["id"]
    ))
    .await;
    assert_eq!(pressed["status"], 302, "{pressed}");
    assert_eq!(pressed["messages"][0][0], "success", "{pressed}");
    let after = client
        .request(
            reqwest::Method::GET,
            &format!("plugins/proxbox/backups/{}/", backup["id"]),
            &[],
            None,
        )
        .await
        .expect("backup");
    assert_eq!(after["notes"], "noted after the sync");
    assert_eq!(
        changed_since(&client, &since).await,
        [(
            "netbox_proxbox.vmbackup".to_string(),
            backup["id"].as_u64().unwrap()
        )]
    );

    // 4. A VM's Sync Now button (a targeted job): that VM is renamed, nothing else but
    //    its sync-state record changes.
    let vm = &vms[0];
    let vm_id = vm["id"].as_u64().unwrap();
    let vmid = state
        .guests
        .values()
        .find(|g| g.name() == vm["name"].as_str())
        .map(|g| g.vmid)
        .expect("the VM's guest");
    let renamed = format!("{}-renamed", vm["name"].as_str().unwrap());
    sim.mutate(|s| s.rename_guest(vmid, &renamed))
        .expect("rename");
    let since = now_iso();
    let pressed = press_sync_now(&format!(
        "/virtualization/virtual-machines/{vm_id}/proxbox-sync-now/"
    ))
    .await;
    assert_eq!(pressed["status"], 302, "{pressed}");
    let name = format!("Proxbox Sync: Virtual machine {vm_id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let job = loop {
        let job = client
            .list("core/jobs/", &[("name", name.clone())])
            .await
            .expect("jobs")
            .into_iter()
            .max_by_key(|j| j["id"].as_u64());
        if let Some(job) = job
            && ["completed", "errored", "failed"]
                .contains(&job["status"]["value"].as_str().unwrap_or(""))
        {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the VM's sync job did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(job["status"]["value"], "completed", "{job:#}");
    let after = client
        .request(
            reqwest::Method::GET,
            &format!("virtualization/virtual-machines/{vm_id}/"),
            &[],
            None,
        )
        .await
        .expect("vm");
    assert_eq!(after["name"], renamed.as_str());
    let others: Vec<(String, u64)> = changed_since(&client, &since)
        .await
        .into_iter()
        .filter(|(kind, id)| {
            let ours = kind == "virtualization.virtualmachine" && *id == vm_id;
            !(ours || kind.contains("syncstate"))
        })
        .collect();
    assert!(others.is_empty(), "{others:#?}");
    host.stop().await;
    sim.shutdown().await;
}
