//! A sync test world: the simulator as Proxmox, the real NetBox (with the plugin) from
//! the env file of `tests/netbox/netbox.sh`, and an in-process host between them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxbox_host::mapper::{Limits, MapperEngine, MapperSet};
use proxbox_host::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken};
use proxbox_host::server::AppState;
use proxbox_host::store::{NetBoxEndpointCreate, ProxmoxEndpointCreate, Store};
use proxmox_sim::{Estate, EstateSpec, SimConfig, Simulator, generate};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::server::TestServer;
use super::sse;

/// The test NetBox.
pub struct NetBox {
    /// Client with the v2 token.
    pub client: NetBoxClient,
    /// Base URL.
    pub url: url::Url,
    /// The v1 token (what the host's NetBox endpoint uses).
    pub token_v1: String,
}

/// The test NetBox, or `None` (saying so) when its env is not set.
pub fn netbox() -> Option<NetBox> {
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

/// A name unique to this moment.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}", nanos % 1_000_000_000_000)
}

/// The built-in mappers.
pub fn mappers() -> MapperSet {
    let cache = std::env::var_os("PROXBOX_MAPPER_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("proxbox-host-test-mappers"));
    let engine = MapperEngine::new(Limits::default(), Some(cache)).expect("engine");
    MapperSet::load(&engine, &BTreeMap::new()).expect("built-in mappers")
}

/// A one-cluster estate with a unique cluster name and node names.
pub fn estate(seed: u64, guests: usize) -> Estate {
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

/// A one-cluster estate (see [`estate`]) whose snapshot names end in a tag unique to this
/// run (returned too): the plugin keeps snapshot records unique by `(vmid, name, node)`
/// across all of NetBox, and every test world has the same node names and VMIDs.
pub fn estate_with_unique_snapshots(seed: u64, guests: usize) -> (Estate, String) {
    let mut estate = estate(seed, guests);
    let tag = unique("s");
    for guest in estate.endpoints[0].guests.values_mut() {
        for snapshot in &mut guest.snapshots {
            snapshot.name = format!("{}-{tag}", snapshot.name);
            if let Some(parent) = &mut snapshot.parent {
                *parent = format!("{parent}-{tag}");
            }
        }
    }
    (estate, tag)
}

/// Proxmox, NetBox and the host.
pub struct World {
    /// NetBox.
    pub nb: NetBox,
    /// The simulated endpoint.
    pub sim: Simulator,
    /// The host.
    pub server: TestServer,
    /// Backend id of the Proxmox endpoint.
    pub endpoint: i64,
    /// The Proxmox (and NetBox) cluster name.
    pub cluster: String,
}

/// A world around a one-cluster estate of `guests` guests, or `None` without NetBox.
pub async fn world(seed: u64, guests: usize) -> Option<World> {
    world_with(estate(seed, guests), |b| b).await
}

/// A world around `estate`, with the host's state adjusted by `configure`.
pub async fn world_with(
    estate: Estate,
    configure: impl FnOnce(
        proxbox_host::server::AppStateBuilder,
    ) -> proxbox_host::server::AppStateBuilder,
) -> Option<World> {
    let nb = netbox()?;
    let sim = Simulator::start(
        estate,
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
    let state = configure(AppState::builder(store).mappers(mappers())).build();
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
    pub async fn stream(&self, path: &str, extra: &str) -> Vec<(String, Value)> {
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

    pub async fn netbox_cluster(&self) -> Value {
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

    pub async fn netbox_vms(&self, cluster_id: u64) -> BTreeMap<String, Value> {
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

    /// NetBox changes since `since` (ISO 8601) to this world's objects: its cluster,
    /// objects in that cluster (devices, VMs, storage records) and objects of its VMs
    /// (disks, backups, snapshots, sync-state records). Other tests write to the same
    /// NetBox concurrently, so unrelated changes are left out.
    pub async fn changes_since(&self, since: &str) -> Vec<Value> {
        let Some(cluster) = self
            .nb
            .client
            .list(
                "virtualization/clusters/",
                &[("name", self.cluster.clone())],
            )
            .await
            .expect("clusters")
            .first()
            .and_then(|c| c["id"].as_u64())
        else {
            return Vec::new();
        };
        let vms: std::collections::BTreeSet<u64> = self
            .nb
            .client
            .list(
                "virtualization/virtual-machines/",
                &[
                    ("cluster_id", cluster.to_string()),
                    ("brief", "true".into()),
                ],
            )
            .await
            .expect("vms")
            .iter()
            .filter_map(|v| v["id"].as_u64())
            .collect();
        let ours = |change: &Value| {
            if change["changed_object_type"] == "virtualization.cluster"
                && change["changed_object_id"].as_u64() == Some(cluster)
            {
                return true;
            }
            ["prechange_data", "postchange_data"].iter().any(|side| {
                let data = &change[*side];
                let id = |v: &Value| v.as_u64().or_else(|| v["id"].as_u64());
                id(&data["cluster"]) == Some(cluster)
                    || id(&data["virtual_machine"]).is_some_and(|vm| vms.contains(&vm))
                    || (change["changed_object_type"] == "virtualization.virtualmachine"
                        && change["changed_object_id"]
                            .as_u64()
                            .is_some_and(|vm| vms.contains(&vm)))
            })
        };
        self.nb
            .client
            .list("core/object-changes/", &[("time_after", since.to_string())])
            .await
            .expect("object changes")
            .into_iter()
            .filter(ours)
            .collect()
    }
}

/// Now, RFC 3339 UTC.
pub fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The `phase_summary` of `phase`.
pub fn summary<'a>(frames: &'a [(String, Value)], phase: &str) -> &'a Value {
    sse::named(frames, "phase_summary")
        .into_iter()
        .find(|s| s["phase"] == phase)
        .unwrap_or_else(|| panic!("no phase_summary for {phase}"))
}

/// `(operation, status)` of every `item_progress` of a phase.
pub fn operations(frames: &[(String, Value)], phase: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for item in sse::named(frames, "item_progress") {
        if item["phase"] == phase {
            *out.entry(item["operation"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    out
}
