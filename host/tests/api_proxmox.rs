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

/// The firewall pass's routes: the summary carries the datacenter rules, security groups
/// with their rules, IP sets with their entries, aliases and options of the cluster
/// (under the reference's keys and the keys the plugin reads); node rules come per node;
/// a Proxmox read that fails is a 502, never an empty list the plugin would take for
/// "everything was deleted".
#[tokio::test]
async fn the_firewall_routes_answer_what_proxmox_holds() {
    let sim = simulator(17, 1, 0, 0).await;
    let state = sim.state();
    let cluster = state.cluster_name.clone().expect("cluster");
    let fw = &state.firewall;
    let server =
        TestServer::start_with_key(AppState::new(Store::open_in_memory().expect("store"))).await;
    let id = register(&server, "pve (nb:4)", &sim, true).await;
    let scope = format!("source=database&proxmox_endpoint_ids={id}");

    let summary = server
        .call(
            Method::GET,
            &format!("/proxmox/firewall/summary?{scope}"),
            None,
        )
        .await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.text);
    let entries = summary.json.as_array().expect("a list");
    assert_eq!(entries.len(), 1, "{}", summary.text);
    let entry = &entries[0];
    assert_eq!(entry["cluster_name"], cluster.as_str());
    assert_eq!(entry["status"], "ok");
    for (ours, plugins) in [
        ("datacenter_rules", "rules"),
        ("datacenter_ipsets", "ip_sets"),
        ("datacenter_aliases", "aliases"),
    ] {
        assert_eq!(entry[ours], entry[plugins], "{ours} and {plugins}");
    }
    let rules = entry["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), fw.rules.len());
    for (rule, raw) in rules.iter().zip(&fw.rules) {
        assert_eq!(rule["pos"], raw["pos"]);
        assert_eq!(rule["type"], raw["type"]);
        assert_eq!(rule["action"], raw["action"]);
        assert_eq!(rule["enable"], json!(raw["enable"] == 1));
        assert_eq!(rule["zone"], "datacenter");
        assert_eq!(
            rule["icmp_type"],
            raw.get("icmp-type").cloned().unwrap_or(Value::Null)
        );
    }
    let groups = entry["security_groups"].as_array().expect("groups");
    assert_eq!(groups.len(), fw.groups.len());
    for (group, raw) in groups.iter().zip(&fw.groups) {
        assert_eq!(group["name"], raw.group.as_str());
        let rules = group["rules"].as_array().expect("group rules");
        assert_eq!(rules.len(), raw.rules.len(), "{group}");
        assert!(rules.iter().all(|r| r["security_group"] == raw.group.as_str()
            && r["zone"] == "security_group"));
    }
    let ipsets = entry["ip_sets"].as_array().expect("ip sets");
    assert_eq!(ipsets.len(), fw.ipsets.len());
    for (set, raw) in ipsets.iter().zip(&fw.ipsets) {
        assert_eq!(set["name"], raw.name.as_str());
        let cidrs: Vec<&Value> = set["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["cidr"])
            .collect();
        let want: Vec<&Value> = raw.entries.iter().map(|e| &e["cidr"]).collect();
        assert_eq!(cidrs, want);
    }
    let aliases = entry["aliases"].as_array().expect("aliases");
    assert_eq!(aliases.len(), fw.aliases.len());
    assert!(aliases.iter().all(|a| a["cidr"].is_string()));
    assert_eq!(entry["options"]["policy_in"], fw.options["policy_in"]);
    assert_eq!(entry["options"]["enable"], fw.options["enable"]);
    assert_eq!(
        entry["datacenter_options"]["enable"],
        json!(fw.options["enable"] == 1)
    );
    assert!(
        entry["datacenter_options"]["options"]
            .get("log_ratelimit")
            .is_none()
    );

    for node in &state.nodes {
        let answer = server
            .call(
                Method::GET,
                &format!("/proxmox/firewall/nodes/{}/rules?{scope}", node.name),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let rules = answer.json.as_array().expect("a list");
        assert_eq!(
            rules.len(),
            fw.node_rules[&node.name].len(),
            "{}",
            node.name
        );
        assert!(
            rules
                .iter()
                .all(|r| r["node"] == node.name.as_str() && r["zone"] == "node")
        );
    }
    let elsewhere = server
        .call(
            Method::GET,
            &format!("/proxmox/firewall/nodes/not-a-node/rules?{scope}"),
            None,
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.text);
    assert_eq!(elsewhere.json, json!([]));

    sim.faults().inject(Fault::new(
        "/cluster/firewall/aliases",
        FaultKind::Status(500, "boom".into()),
    ));
    let failed = server
        .call(
            Method::GET,
            &format!("/proxmox/firewall/summary?{scope}"),
            None,
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text);
    assert!(
        failed.text.contains("cluster/firewall/aliases"),
        "{}",
        failed.text
    );
    sim.faults().clear();
    server.stop().await;
}
