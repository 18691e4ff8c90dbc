//! The Proxmox client against the simulator: every call, both auth modes, TLS modes,
//! and every injected fault.

use std::time::{Duration, Instant};

use proxbox_host::proxmox::inventory::{read_backups, read_configs, read_snapshots};
use proxbox_host::proxmox::models::GuestKind;
use proxbox_host::proxmox::{
    Credentials, EndpointConfig, Inventory, ProxmoxClient, ProxmoxError, Secret, TlsMode,
};
use proxmox_sim::{
    EstateSpec, Fault, FaultKind, GuestStatus, GuestType, PathMatch, SimConfig, Simulator, generate,
};

const AUTH_DELAY: Duration = Duration::from_millis(300);

async fn simulator(tls: bool) -> Simulator {
    simulator_with(tls, Duration::from_secs(2)).await
}

async fn simulator_with(tls: bool, ticket_lifetime: Duration) -> Simulator {
    let estate = generate(&EstateSpec {
        seed: 7,
        clusters: 1,
        nodes_per_cluster: 3,
        standalone_nodes: 0,
        guests: 40,
        ..EstateSpec::default()
    });
    let config = SimConfig {
        tls,
        auth_failure_delay: AUTH_DELAY,
        ticket_lifetime,
        ..SimConfig::default()
    };
    Simulator::start(estate, 0, config)
        .await
        .expect("simulator starts")
}

fn token(sim: &Simulator) -> Credentials {
    let t = sim.token();
    Credentials::Token {
        user: t.user,
        token_id: t.token_id,
        secret: Secret::new(t.secret),
    }
}

fn config(sim: &Simulator, credentials: Credentials) -> EndpointConfig {
    let mut config = EndpointConfig::new(sim.base_url(), credentials);
    config.tls = match sim.certificate_fingerprint() {
        Some(fp) => TlsMode::Fingerprint(fp),
        None => TlsMode::Verify { ca_pem: None },
    };
    config.timeout = Duration::from_secs(5);
    config.retry_backoff = Duration::from_millis(20);
    config
}

fn client(sim: &Simulator) -> ProxmoxClient {
    ProxmoxClient::new(config(sim, token(sim))).expect("client")
}

#[tokio::test]
async fn every_call_decodes_over_https_with_a_token() {
    let sim = simulator(true).await;
    let client = client(&sim);
    let state = sim.state();

    let version = client.version().await.expect("version");
    assert!(!version.version.is_empty());
    let status = client.cluster_status().await.expect("cluster status");
    assert_eq!(status.len(), state.nodes.len() + 1);
    let resources = client.cluster_resources(None).await.expect("resources");
    let guests = client
        .cluster_resources(Some("vm"))
        .await
        .expect("vm resources");
    assert_eq!(guests.len(), state.guests.len());
    assert!(resources.len() > guests.len());
    let nodes = client.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), state.nodes.len());
    let node = &state.nodes[0].name;
    let node_status = client.node_status(node).await.expect("node status");
    assert!(node_status.cpus.is_some());
    let network = client.node_network(node).await.expect("network");
    assert!(network.iter().any(|i| i.kind == "bridge"));

    let qemu = state
        .guests
        .values()
        .find(|g| {
            g.guest_type == GuestType::Qemu
                && g.agent.is_some()
                && g.agent_enabled()
                && g.status == GuestStatus::Running
        })
        .expect("a running QEMU guest with agent data");
    let config = client
        .guest_config(&qemu.node, GuestKind::Qemu, qemu.vmid)
        .await
        .expect("qemu config");
    assert!(config.raw.get("net0").is_some() || config.raw.get("scsi0").is_some());
    let agent = client
        .qemu_agent_interfaces(&qemu.node, qemu.vmid)
        .await
        .expect("agent");
    assert!(!agent.is_empty());
    let lxc = state
        .guests
        .values()
        .find(|g| g.guest_type == GuestType::Lxc && g.status == GuestStatus::Running)
        .expect("a running container");
    client
        .guest_config(&lxc.node, GuestKind::Lxc, lxc.vmid)
        .await
        .expect("lxc config");
    let ifaces = client
        .lxc_interfaces(&lxc.node, lxc.vmid)
        .await
        .expect("lxc interfaces");
    assert!(ifaces.iter().any(|i| i.mac.is_some()));
    let snapshots = client
        .snapshots(&qemu.node, GuestKind::Qemu, qemu.vmid)
        .await
        .expect("snapshots");
    assert!(snapshots.iter().all(|s| s.name != "current"));

    let storages = client.storages().await.expect("storages");
    assert_eq!(storages.len(), state.storages.len());
    let one = client
        .storage(&storages[0].storage)
        .await
        .expect("one storage");
    assert_eq!(one.storage, storages[0].storage);
    assert!(
        !client
            .node_storages(node)
            .await
            .expect("node storages")
            .is_empty()
    );
    let backup_store = storages
        .iter()
        .find(|s| s.holds_backups() && s.available_on(node))
        .expect("a backup storage");
    let backups = client
        .backups(node, &backup_store.storage, None)
        .await
        .expect("backups");
    assert!(
        backups
            .iter()
            .all(|b| b.content.as_deref() == Some("backup"))
    );
}

#[tokio::test]
async fn inventory_reads_report_completeness() {
    let sim = simulator(true).await;
    let client = client(&sim);
    let inventory = Inventory::read(&client).await.expect("inventory");
    assert_eq!(inventory.guests.len(), sim.state().guests.len());
    assert!(
        inventory.completeness.is_complete(),
        "{:?}",
        inventory.completeness
    );

    let (configs, completeness) = read_configs(&client, &inventory).await;
    assert_eq!(configs.len(), inventory.guests.len());
    assert!(completeness.is_complete());
    assert_eq!(completeness.nodes_read.len(), sim.state().nodes.len());
    let (snapshots, completeness) = read_snapshots(&client, &inventory).await;
    assert_eq!(snapshots.len(), inventory.guests.len());
    assert!(completeness.is_complete());

    let storages = client.storages().await.expect("storages");
    let (backups, completeness) = read_backups(&client, &inventory, &storages).await;
    let expected: usize = sim.state().storages.iter().map(|s| s.backups.len()).sum();
    assert_eq!(
        backups.len(),
        expected,
        "every backup once, shared storages de-duplicated"
    );
    assert!(completeness.storages_failed.is_empty() && !completeness.storages_read.is_empty());
}

#[tokio::test]
async fn an_offline_node_makes_reads_incomplete() {
    let sim = simulator(true).await;
    let client = client(&sim);
    let offline = sim.state().nodes[1].name.clone();
    sim.set_node_online(&offline, false).expect("node offline");
    let inventory = Inventory::read(&client)
        .await
        .expect("inventory still reads");
    assert!(inventory.completeness.nodes_offline.contains(&offline));
    assert!(!inventory.completeness.is_complete());

    let (_, completeness) = read_configs(&client, &inventory).await;
    let on_offline = sim
        .state()
        .guests
        .values()
        .filter(|g| g.node == offline)
        .count();
    assert!(on_offline > 0);
    assert_eq!(completeness.guests_failed.len(), on_offline);
    assert!(completeness.nodes_failed.contains_key(&offline));
    assert!(!completeness.nodes_read.contains(&offline));
}

#[tokio::test]
async fn a_partial_inventory_is_detected_as_shrinkage() {
    let sim = simulator(true).await;
    let client = client(&sim);
    let full = Inventory::read(&client)
        .await
        .expect("full")
        .completeness
        .guests_seen;
    sim.faults().inject(Fault::new(
        PathMatch::exact("/cluster/resources"),
        FaultKind::PartialInventory { drop_fraction: 0.8 },
    ));
    let partial = Inventory::read(&client).await.expect("partial");
    assert!(partial.completeness.guests_seen < full);
    assert!(partial.completeness.shrank_suspiciously(full, 0.5));
}

#[tokio::test]
async fn the_limited_token_sees_less_and_gets_403() {
    let sim = simulator(true).await;
    let limited = sim.limited_token();
    let credentials =
        Credentials::from_endpoint(None, None, Some(&limited.header_value()), None).expect("token");
    let client = ProxmoxClient::new(config(&sim, credentials)).expect("client");
    let seen = client
        .cluster_resources(Some("vm"))
        .await
        .expect("never 403");
    let state = sim.state();
    assert!(seen.len() < state.guests.len());
    let hidden = state
        .guests
        .values()
        .find(|g| !seen.iter().any(|r| r.vmid == Some(g.vmid)))
        .expect("a hidden guest");
    let kind = if hidden.guest_type == GuestType::Qemu {
        GuestKind::Qemu
    } else {
        GuestKind::Lxc
    };
    let path = format!(
        "/nodes/{}/{}/{}/config",
        hidden.node,
        kind.path(),
        hidden.vmid
    );
    sim.reset_counters();
    let err = client
        .guest_config(&hidden.node, kind, hidden.vmid)
        .await
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("VM.Audit"), "{err}");
    assert_eq!(sim.request_count(&path), 1, "403 is not retried");
}

#[tokio::test]
async fn a_bad_token_fails_once_after_the_delay() {
    let sim = simulator(true).await;
    let credentials = Credentials::from_endpoint(
        Some("root@pam"),
        None,
        Some("proxbox"),
        Some("wrong-secret"),
    )
    .expect("token");
    let client = ProxmoxClient::new(config(&sim, credentials)).expect("client");
    let started = Instant::now();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Unauthorized { .. }), "{err}");
    assert!(started.elapsed() >= AUTH_DELAY);
    assert_eq!(sim.request_count("/version"), 1, "401 is never retried");
    assert!(
        !err.to_string().contains("wrong-secret"),
        "the secret leaked: {err}"
    );
}

#[tokio::test]
async fn ticket_auth_logs_in_and_renews() {
    // Generous margins so a loaded machine cannot cross a boundary early.
    let sim = simulator_with(true, Duration::from_secs(5)).await;
    let (user, password) = sim.password_user();
    let credentials =
        Credentials::from_endpoint(Some(&user), Some(&password), None, None).expect("password");
    let mut config = config(&sim, credentials);
    config.ticket_renew_after = Duration::from_secs(2);
    let client = ProxmoxClient::new(config).expect("client");
    client.version().await.expect("first call logs in");
    client.cluster_status().await.expect("the ticket is reused");
    assert_eq!(sim.request_count("/access/ticket"), 1);
    // Past the renewal age (the simulator's tickets live 5 s): the client renews first.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    client.version().await.expect("renewed");
    assert_eq!(sim.request_count("/access/ticket"), 2);
    // Past the renewed ticket's lifetime: renewal is refused, the client logs in again.
    tokio::time::sleep(Duration::from_millis(5300)).await;
    client.version().await.expect("logged in again");
    assert!(sim.request_count("/access/ticket") >= 3);

    let bad = Credentials::from_endpoint(Some(&user), Some("nope"), None, None).expect("password");
    let err = ProxmoxClient::new(self::config(&sim, bad))
        .expect("client")
        .version()
        .await
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn tls_modes() {
    let sim = simulator(true).await;
    let base = config(&sim, token(&sim));

    let verify_with_ca = EndpointConfig {
        tls: TlsMode::Verify {
            ca_pem: sim.certificate_pem(),
        },
        ..base.clone()
    };
    ProxmoxClient::new(verify_with_ca)
        .unwrap()
        .version()
        .await
        .expect("trusted CA");

    let verify_public = EndpointConfig {
        tls: TlsMode::Verify { ca_pem: None },
        ..base.clone()
    };
    let err = ProxmoxClient::new(verify_public)
        .unwrap()
        .version()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxmoxError::Connect { .. }),
        "self-signed must be refused: {err}"
    );

    let wrong_pin = EndpointConfig {
        tls: TlsMode::Fingerprint(["AB"; 32].join(":")),
        max_retries: 0,
        ..base.clone()
    };
    let err = ProxmoxClient::new(wrong_pin)
        .unwrap()
        .version()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");

    let insecure = EndpointConfig {
        tls: TlsMode::Insecure,
        ..base.clone()
    };
    ProxmoxClient::new(insecure)
        .unwrap()
        .version()
        .await
        .expect("verification off");

    let plain = simulator(false).await;
    assert!(plain.base_url().starts_with("http://"));
    client(&plain).version().await.expect("plain HTTP");
}

#[tokio::test]
async fn transient_faults_are_retried_and_definite_answers_are_not() {
    let sim = simulator(true).await;
    let client = client(&sim);
    for (status, reason) in [
        (503, "Service Unavailable"),
        (595, "No route to host"),
        (596, "Connection timed out"),
        (502, "Bad Gateway"),
    ] {
        sim.reset_counters();
        sim.faults().inject(
            Fault::new(
                PathMatch::exact("/version"),
                FaultKind::Status(status, reason.into()),
            )
            .times(2),
        );
        client
            .version()
            .await
            .unwrap_or_else(|e| panic!("{status} should be retried: {e}"));
        assert_eq!(
            sim.request_count("/version"),
            3,
            "{status}: two failures, then success"
        );
    }

    sim.reset_counters();
    sim.faults()
        .inject(Fault::new(PathMatch::exact("/version"), FaultKind::Disconnect).times(1));
    client
        .version()
        .await
        .expect("a dropped connection is retried");
    assert_eq!(sim.request_count("/version"), 2);

    // A missing guest is a definite answer (500 "does not exist"): one request only.
    sim.reset_counters();
    let node = sim.state().nodes[0].name.clone();
    let err = client
        .guest_config(&node, GuestKind::Qemu, 999_999)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(
        sim.request_count(&format!("/nodes/{node}/qemu/999999/config")),
        1
    );

    // A persistent failure gives up after the retries.
    sim.reset_counters();
    sim.faults().inject(Fault::new(
        PathMatch::exact("/cluster/status"),
        FaultKind::Status(503, "busy".into()),
    ));
    let err = client.cluster_status().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(sim.request_count("/cluster/status"), 4, "1 try + 3 retries");
    sim.faults().clear();
}

#[tokio::test]
async fn malformed_json_latency_and_hangs() {
    let sim = simulator(true).await;
    let client = client(&sim);
    sim.faults()
        .inject(Fault::new(PathMatch::exact("/version"), FaultKind::MalformedJson).times(1));
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Decode { .. }), "{err}");

    sim.faults().inject(
        Fault::new(
            PathMatch::exact("/nodes"),
            FaultKind::Latency(Duration::from_millis(300)),
        )
        .times(1),
    );
    let started = Instant::now();
    client.nodes().await.expect("slow but fine");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let mut hanging = config(&sim, token(&sim));
    hanging.timeout = Duration::from_millis(400);
    hanging.max_retries = 1;
    let hanging = ProxmoxClient::new(hanging).expect("client");
    sim.reset_counters();
    sim.faults().inject(Fault::new(
        PathMatch::exact("/cluster/resources"),
        FaultKind::Hang,
    ));
    let err = hanging.cluster_resources(None).await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Timeout { .. }), "{err}");
    assert_eq!(
        sim.request_count("/cluster/resources"),
        2,
        "a timed-out GET is retried once"
    );
}

#[tokio::test]
async fn concurrency_is_bounded_per_endpoint() {
    let sim = simulator(true).await;
    let mut config = config(&sim, token(&sim));
    config.max_concurrency = 2;
    let client = ProxmoxClient::new(config).expect("client");
    sim.faults().inject(Fault::new(
        PathMatch::exact("/version"),
        FaultKind::Latency(Duration::from_millis(200)),
    ));
    let started = Instant::now();
    let calls = (0..6).map(|_| client.version());
    for result in futures::future::join_all(calls).await {
        result.expect("version");
    }
    // Six 200 ms requests, two at a time, cannot finish in under 600 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn mutations_show_up_in_the_next_read() {
    let sim = simulator(true).await;
    let client = client(&sim);
    let (vmid, node) = {
        let state = sim.state();
        let g = state
            .guests
            .values()
            .find(|g| g.guest_type == GuestType::Qemu)
            .expect("qemu");
        (g.vmid, g.node.clone())
    };
    sim.rename_guest(vmid, "renamed-by-test").expect("rename");
    let resources = client
        .cluster_resources(Some("vm"))
        .await
        .expect("resources");
    let entry = resources
        .iter()
        .find(|r| r.vmid == Some(vmid))
        .expect("still there");
    assert_eq!(entry.name.as_deref(), Some("renamed-by-test"));

    let target = sim
        .state()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != node)
        .expect("another node");
    sim.migrate_guest(vmid, &target).expect("migrate");
    let err = client
        .guest_config(&node, GuestKind::Qemu, vmid)
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(500),
        "the old node no longer has it: {err}"
    );
    client
        .guest_config(&target, GuestKind::Qemu, vmid)
        .await
        .expect("found on the new node");

    sim.remove_guest(vmid).expect("remove");
    let resources = client
        .cluster_resources(Some("vm"))
        .await
        .expect("resources");
    assert!(resources.iter().all(|r| r.vmid != Some(vmid)));
}

#[tokio::test]
async fn a_node_offline_fault_and_parameter_errors() {
    let sim = simulator(true).await;
    let client = client(&sim);
    let node = sim.state().nodes[2].name.clone();
    sim.faults().inject(Fault::new(
        PathMatch::Any,
        FaultKind::NodeOffline(node.clone()),
    ));
    let err = client.node_status(&node).await.unwrap_err();
    assert_eq!(err.status(), Some(595), "{err}");
    assert!(err.is_retryable());
    let inventory = Inventory::read(&client).await.expect("inventory");
    assert!(inventory.completeness.nodes_offline.contains(&node));
    sim.faults().clear();

    // Proxmox rejects unknown parameters with 400 and a per-parameter `errors` map.
    let err = client
        .get("version", &[("bogus", "1".to_string())])
        .await
        .unwrap_err();
    match err {
        ProxmoxError::Status {
            status: 400,
            errors,
            ..
        } => assert!(errors.contains_key("bogus"), "{errors:?}"),
        other => panic!("expected a 400 with errors, got {other}"),
    }
}
