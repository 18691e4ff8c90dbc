//! The Proxmox read routes (contract §3.1, §3.6) against the simulator: endpoint
//! selection, sessions, version, cluster status and resources, nodes, and failures.

mod common;

use std::time::Duration;

use common::server::TestServer;
use proxbox_host::server::AppState;
use proxbox_host::store::Store;
use proxmox_sim::{EstateSpec, Fault, FaultKind, SimConfig, Simulator, generate};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn simulator(seed: u64, clusters: usize, standalone: usize, endpoint: usize) -> Simulator {
    let estate = generate(&EstateSpec {
        seed,
        clusters,
        nodes_per_cluster: 3,
        standalone_nodes: standalone,
        guests: 30,
        ..EstateSpec::default()
    });
    let config = SimConfig {
        auth_failure_delay: Duration::from_millis(50),
        ..SimConfig::default()
    };
    Simulator::start(estate, endpoint, config)
        .await
        .expect("simulator")
}

/// Register `sim` as a Proxmox endpoint (token auth, TLS not verified) and return its id.
async fn register(server: &TestServer, name: &str, sim: &Simulator, token_ok: bool) -> i64 {
    let token = sim.token();
    let secret = if token_ok {
        token.secret.clone()
    } else {
        "00000000-0000-0000-0000-000000000000".into()
    };
    let answer = server
        .call(
            Method::POST,
            "/proxmox/endpoints",
            Some(json!({
                "name": name, "ip_address": sim.addr().ip().to_string(), "port": sim.addr().port(),
                "username": token.user, "verify_ssl": false, "timeout": 5, "max_retries": 0,
                "token_name": token.token_id, "token_value": secret,
            })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["id"].as_i64().expect("id")
}

fn only_key(entry: &Value) -> (&str, &Value) {
    let map = entry.as_object().expect("object");
    assert_eq!(map.len(), 1, "{entry}");
    map.iter()
        .next()
        .map(|(k, v)| (k.as_str(), v))
        .expect("entry")
}

#[tokio::test]
async fn read_routes_describe_a_cluster() {
    let sim = simulator(11, 1, 0, 0).await;
    let state = sim.state();
    let cluster = state.cluster_name.clone().expect("cluster");
    let server =
        TestServer::start_with_key(AppState::new(Store::open_in_memory().expect("store"))).await;
    let id = register(&server, "pve (nb:3)", &sim, true).await;
    let scope = format!("proxmox_endpoint_ids={id}");

    let sessions = server
        .call(Method::GET, &format!("/proxmox/sessions?{scope}"), None)
        .await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.text);
    let session = &sessions.json[0];
    assert_eq!(session["name"], cluster.as_str());
    assert_eq!(session["mode"], "cluster");
    assert_eq!(session["http_port"], sim.addr().port());
    assert_eq!(
        session["proxmox_version"]["version"],
        state.version.version.as_str()
    );

    let version = server.call(Method::GET, "/proxmox/version", None).await;
    let (name, payload) = only_key(&version.json[0]);
    assert_eq!(name, cluster);
    assert_eq!(payload["version"], state.version.version.as_str());

    let status = server
        .call(Method::GET, "/proxmox/cluster/status", None)
        .await;
    let record = &status.json[0];
    assert_eq!(record["name"], cluster.as_str());
    assert_eq!(record["type"], "cluster");
    assert_eq!(record["mode"], "cluster");
    assert_eq!(record["db_endpoint_id"], id);
    assert_eq!(record["endpoint_name"], "pve (nb:3)");
    assert_eq!(record["node_device_name_template"], "{node}");
    let nodes = record["node_list"].as_array().expect("node_list");
    assert_eq!(nodes.len(), state.nodes.len());
    for (node, expected) in nodes.iter().zip(&state.nodes) {
        assert_eq!(node["name"], expected.name.as_str());
        assert_eq!(node["type"], "node");
        assert_eq!(node["nodeid"], expected.nodeid);
        assert_eq!(node["online"], expected.online);
        assert_eq!(node["ip"], expected.ip.as_str());
    }

    let vms = server
        .call(Method::GET, "/proxmox/cluster/resources?type=vm", None)
        .await;
    let (name, resources) = only_key(&vms.json[0]);
    assert_eq!(name, cluster);
    let resources = resources.as_array().expect("resources");
    assert_eq!(resources.len(), state.guests.len());
    assert!(
        resources
            .iter()
            .all(|r| matches!(r["type"].as_str(), Some("qemu" | "lxc")))
    );
    let bad_type = server
        .call(Method::GET, "/proxmox/cluster/resources?type=disk", None)
        .await;
    assert_eq!(bad_type.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Every node, not only the first (a reference quirk, fixed).
    let node_list = server.call(Method::GET, "/proxmox/nodes/", None).await;
    let listed: Vec<&str> = node_list
        .json
        .as_array()
        .expect("nodes")
        .iter()
        .map(|e| {
            let (name, node) = only_key(e);
            assert_eq!(name, cluster);
            node["node"].as_str().expect("node name")
        })
        .collect();
    let mut expected: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut got = listed.clone();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn two_endpoints_of_one_cluster_collapse_and_scoping_selects() {
    let sim = simulator(12, 1, 1, 0).await;
    let standalone = simulator(12, 1, 1, 1).await;
    let server =
        TestServer::start_with_key(AppState::new(Store::open_in_memory().expect("store"))).await;
    let a = register(&server, "node-a", &sim, true).await;
    let b = register(&server, "node-b", &sim, true).await;
    let c = register(&server, "standalone", &standalone, true).await;

    let all = server
        .call(Method::GET, "/proxmox/cluster/resources?type=vm", None)
        .await;
    let groups = all.json.as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{}", all.text);
    let (name, resources) = only_key(&groups[0]);
    assert_eq!(name, sim.state().cluster_name.expect("cluster"));
    assert_eq!(
        resources.as_array().map(Vec::len),
        Some(sim.state().guests.len())
    );
    let (name, _) = only_key(&groups[1]);
    assert_eq!(
        name,
        standalone.state().nodes[0].name,
        "a standalone node is named after itself"
    );

    let scoped = server
        .call(
            Method::GET,
            &format!("/proxmox/sessions?proxmox_endpoint_ids={c}"),
            None,
        )
        .await;
    assert_eq!(scoped.json.as_array().map(Vec::len), Some(1));
    assert_eq!(scoped.json[0]["mode"], "standalone");
    let both = server
        .call(
            Method::GET,
            &format!("/proxmox/sessions?proxmox_endpoint_ids={a},{b}"),
            None,
        )
        .await;
    assert_eq!(both.json.as_array().map(Vec::len), Some(2));
    let by_name = server
        .call(Method::GET, "/proxmox/sessions?name=node-b", None)
        .await;
    assert_eq!(by_name.json.as_array().map(Vec::len), Some(1));
    let none = server
        .call(
            Method::GET,
            "/proxmox/sessions?proxmox_endpoint_ids=999",
            None,
        )
        .await;
    assert_eq!(none.json, json!([]));
    let no_version = server
        .call(
            Method::GET,
            "/proxmox/version?proxmox_endpoint_ids=999",
            None,
        )
        .await;
    assert_eq!(no_version.status, StatusCode::NOT_FOUND);

    let bad_ids = server
        .call(
            Method::GET,
            "/proxmox/sessions?proxmox_endpoint_ids=1,x",
            None,
        )
        .await;
    assert_eq!(bad_ids.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_ids.json,
        json!({
            "message": "Invalid Proxmox endpoint_ids query parameter",
            "detail": "endpoint_ids must be a comma-separated list of integers.",
            "python_exception": null,
        })
    );
    let unknown_name = server
        .call(Method::GET, "/proxmox/sessions?name=nope", None)
        .await;
    assert_eq!(unknown_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown_name.json["message"],
        "No result found for Proxmox Sessions based on the provided name"
    );
    let bad_source = server
        .call(Method::GET, "/proxmox/sessions?source=elsewhere", None)
        .await;
    assert_eq!(bad_source.status, StatusCode::BAD_REQUEST);

    // A disabled endpoint is not used.
    server
        .call(
            Method::PUT,
            &format!("/proxmox/endpoints/{c}"),
            Some(json!({ "enabled": false })),
        )
        .await;
    let enabled = server.call(Method::GET, "/proxmox/sessions", None).await;
    assert_eq!(enabled.json.as_array().map(Vec::len), Some(2));
    server.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_json_errors_with_the_upstream_status() {
    let sim = simulator(13, 1, 0, 0).await;
    let server =
        TestServer::start_with_key(AppState::new(Store::open_in_memory().expect("store"))).await;
    let bad = register(&server, "bad-token", &sim, false).await;
    let refused = server
        .call(
            Method::GET,
            &format!("/proxmox/sessions?proxmox_endpoint_ids={bad}"),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.json["message"], "Could not return Proxmox Sessions");
    assert_eq!(
        refused.json["detail"]["reason"],
        "proxmox_session_acquisition_failed"
    );
    assert_eq!(refused.json["detail"]["upstream_status"], 401);

    let good = register(&server, "good", &sim, true).await;
    sim.faults().inject(Fault::new(
        "/cluster/status",
        FaultKind::Status(500, "boom".into()),
    ));
    let failed = server
        .call(
            Method::GET,
            &format!("/proxmox/cluster/status?proxmox_endpoint_ids={good}"),
            None,
        )
        .await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    assert_eq!(failed.json["message"], "Could not return Proxmox Sessions");
    sim.faults().clear();
    let ok = server
        .call(
            Method::GET,
            &format!("/proxmox/cluster/status?proxmox_endpoint_ids={good}"),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    // Restricted token: /cluster/status refused with 403 → mode "restricted".
    sim.faults().inject(Fault::new(
        "/cluster/status",
        FaultKind::Status(403, "Permission check failed".into()),
    ));
    let restricted = server
        .call(
            Method::GET,
            &format!("/proxmox/sessions?proxmox_endpoint_ids={good}"),
            None,
        )
        .await;
    assert_eq!(
        restricted.json[0]["mode"], "restricted",
        "{}",
        restricted.text
    );
    server.stop().await;
}

#[tokio::test]
async fn the_sync_jobs_phase_routes_answer_from_proxmox() {
    let sim = simulator(14, 1, 0, 0).await;
    let state = sim.state();
    let server =
        TestServer::start_with_key(AppState::new(Store::open_in_memory().expect("store"))).await;
    let id = register(&server, "pve (nb:4)", &sim, true).await;
    let scope = format!("proxmox_endpoint_ids={id}&source=database");
    let guest = state
        .guests
        .values()
        .find(|g| g.guest_type == proxmox_sim::GuestType::Qemu)
        .expect("a QEMU guest");

    let config = server
        .call(
            Method::GET,
            &format!("/proxmox/{}/qemu/{}/config?{scope}", guest.node, guest.vmid),
            None,
        )
        .await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.text);
    for (key, value) in &guest.config {
        assert_eq!(&config.json[key], value, "{key}");
    }
    let wrong_node = state
        .nodes
        .iter()
        .find(|n| n.name != guest.node)
        .expect("another node");
    let missing = server
        .call(
            Method::GET,
            &format!(
                "/proxmox/{}/qemu/{}/config?{scope}",
                wrong_node.name, guest.vmid
            ),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_GATEWAY, "{}", missing.text);
    assert_eq!(
        missing.json["message"],
        "Error retrieving Proxmox VM config"
    );
    let bad_type = server
        .call(
            Method::GET,
            &format!("/proxmox/{}/vm/{}/config", guest.node, guest.vmid),
            None,
        )
        .await;
    assert_eq!(
        bad_type.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_type.text
    );

    let time = server
        .call(
            Method::GET,
            &format!("/proxmox/api2/nodes/{}/time?{scope}", guest.node),
            None,
        )
        .await;
    assert_eq!(time.status, StatusCode::OK, "{}", time.text);
    assert_eq!(time.json["timezone"], "UTC");
    assert!(
        time.json["time"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000)
    );

    // Proxmox VE before 9.2 has no custom CPU models (it answers 501): none, not an error.
    let models = server
        .call(
            Method::GET,
            &format!("/proxmox/datacenter/cpu-models?{scope}"),
            None,
        )
        .await;
    assert_eq!(models.status, StatusCode::OK, "{}", models.text);
    assert_eq!(models.json, json!([]));
    sim.faults().inject(Fault::new(
        "/cluster/qemu/custom-cpu-models",
        FaultKind::Status(500, "boom".into()),
    ));
    let failing = server
        .call(
            Method::GET,
            &format!("/proxmox/datacenter/cpu-models?{scope}"),
            None,
        )
        .await;
    assert_eq!(failing.status, StatusCode::OK, "{}", failing.text);
    assert_eq!(failing.json[0]["status"], "error");
    assert_eq!(
        failing.json[0]["cluster_name"],
        state.cluster_name.clone().unwrap().as_str()
    );
    server.stop().await;
}
