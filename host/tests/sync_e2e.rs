//! The sync end to end: the simulator as Proxmox, the real NetBox with the plugin
//! (`tests/netbox/netbox.sh up`), the host in between, driven through its routes and
//! read back from NetBox object by object.
//!
//! Needs `NETBOX_URL`, `NETBOX_TOKEN_V1` and `NETBOX_TOKEN_V2_HEADER` (the env file of
//! `netbox.sh`); without them each test says it is skipped, unless
//! `PROXBOX_REQUIRE_NETBOX=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::server::TestServer;
use common::sse;
use proxbox_host::mapper::{Limits, MapperEngine, MapperSet};
use proxbox_host::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken};
use proxbox_host::server::AppState;
use proxbox_host::store::{NetBoxEndpointCreate, ProxmoxEndpointCreate, Store};
use proxmox_sim::{Estate, EstateSpec, SimConfig, Simulator, generate};
use reqwest::{Method, StatusCode};
use serde_json::Value;

struct NetBox {
    client: NetBoxClient,
    url: url::Url,
    token_v1: String,
}

fn netbox() -> Option<NetBox> {
    let url = std::env::var("NETBOX_URL").ok().filter(|u| !u.is_empty());
    let v1 = std::env::var("NETBOX_TOKEN_V1")
        .ok()
        .filter(|t| !t.is_empty());
    let v2 = std::env::var("NETBOX_TOKEN_V2_HEADER")
        .ok()
        .filter(|t| !t.is_empty());
    match (url, v1, v2) {
        (Some(url), Some(token_v1), Some(v2)) => Some(NetBox {
            client: NetBoxClient::new(NetBoxConfig::new(url.clone(), NetBoxToken::parse(&v2)))
                .expect("client"),
            url: url::Url::parse(&url).expect("NETBOX_URL"),
            token_v1,
        }),
        _ => {
            assert!(
                std::env::var("PROXBOX_REQUIRE_NETBOX").as_deref() != Ok("1"),
                "PROXBOX_REQUIRE_NETBOX=1 but the NetBox env is not set"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no NetBox (run tests/netbox/netbox.sh up and source its env file)"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}", nanos % 1_000_000_000_000)
}

fn mappers() -> MapperSet {
    let cache = std::env::var_os("PROXBOX_MAPPER_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("proxbox-host-test-mappers"));
    let engine = MapperEngine::new(Limits::default(), Some(cache)).expect("engine");
    MapperSet::load(&engine, &BTreeMap::new()).expect("built-in mappers")
}

/// A one-cluster estate with a unique cluster name and node names.
fn estate(seed: u64, guests: usize) -> Estate {
    let mut estate = generate(&EstateSpec {
        seed,
        clusters: 1,
        nodes_per_cluster: 3,
        standalone_nodes: 0,
        guests,
        ..EstateSpec::default()
    });
    let tag = unique("c");
    let endpoint = &mut estate.endpoints[0];
    endpoint.cluster_name = Some(format!("pve-{tag}"));
    estate
}

struct World {
    nb: NetBox,
    sim: Simulator,
    server: TestServer,
    endpoint: i64,
    cluster: String,
}

async fn world(seed: u64, guests: usize) -> Option<World> {
    let nb = netbox()?;
    let sim = Simulator::start(
        estate(seed, guests),
        0,
        SimConfig {
            auth_failure_delay: Duration::from_millis(10),
            ..SimConfig::default()
        },
    )
    .await
    .expect("simulator");
    let store = Store::open_in_memory().expect("store");
    let mut netbox_endpoint =
        NetBoxEndpointCreate::new("netbox", nb.url.host_str().expect("host"), &nb.token_v1);
    netbox_endpoint.port = i64::from(nb.url.port_or_known_default().expect("port"));
    netbox_endpoint.verify_ssl = false;
    store
        .create_netbox_endpoint(netbox_endpoint)
        .expect("netbox endpoint");
    let token = sim.token();
    let mut pve = ProxmoxEndpointCreate::new(
        "pve (nb:1)",
        &sim.addr().ip().to_string(),
        sim.addr().port(),
        &token.user,
    );
    pve.token_name = Some(token.token_id.clone());
    pve.token_value = Some(proxbox_host::store::Secret::new(token.secret.clone()));
    pve.verify_ssl = false;
    let endpoint = store
        .create_proxmox_endpoint(pve)
        .expect("proxmox endpoint")
        .id;
    let state = AppState::builder(store).mappers(mappers()).build();
    let server = TestServer::start_with_key(state).await;
    let cluster = sim.state().cluster_name.expect("cluster name");
    Some(World {
        nb,
        sim,
        server,
        endpoint,
        cluster,
    })
}

impl World {
    /// Run a stage stream and return its frames (asserting HTTP 200 and one final `complete`).
    async fn stream(&self, path: &str, extra: &str) -> Vec<(String, Value)> {
        let query = format!("proxmox_endpoint_ids={}{extra}", self.endpoint);
        let answer = self
            .server
            .call(Method::GET, &format!("{path}?{query}"), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
        );
        let frames = sse::frames(&answer.text);
        let complete = sse::complete(&frames);
        assert_eq!(complete["ok"], true, "{complete}");
        frames
    }

    async fn netbox_cluster(&self) -> Value {
        let found = self
            .nb
            .client
            .list(
                "virtualization/clusters/",
                &[("name", self.cluster.clone())],
            )
            .await
            .expect("clusters");
        assert_eq!(found.len(), 1, "one NetBox cluster named {}", self.cluster);
        found[0].clone()
    }

    async fn netbox_vms(&self, cluster_id: u64) -> BTreeMap<String, Value> {
        self.nb
            .client
            .list(
                "virtualization/virtual-machines/",
                &[("cluster_id", cluster_id.to_string())],
            )
            .await
            .expect("vms")
            .into_iter()
            .map(|vm| (vm["name"].as_str().unwrap_or_default().to_string(), vm))
            .collect()
    }

    /// NetBox changes recorded since `since` (ISO 8601).
    async fn changes_since(&self, since: &str) -> Vec<Value> {
        self.nb
            .client
            .list("core/object-changes/", &[("time_after", since.to_string())])
            .await
            .expect("object changes")
    }
}

fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn summary<'a>(frames: &'a [(String, Value)], phase: &str) -> &'a Value {
    sse::named(frames, "phase_summary")
        .into_iter()
        .find(|s| s["phase"] == phase)
        .unwrap_or_else(|| panic!("no phase_summary for {phase}"))
}

/// `(operation, status)` of every `item_progress` of a phase.
fn operations(frames: &[(String, Value)], phase: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for item in sse::named(frames, "item_progress") {
        if item["phase"] == phase {
            *out.entry(item["operation"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    out
}

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
