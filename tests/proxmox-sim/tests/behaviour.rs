//! Behaviour of the simulator: authentication, permissions, TLS, faults, mutations,
//! counters, PVE error shapes, offline nodes, scale, determinism and the binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxmox_sim::{
    Backup, EndpointState, Estate, EstateSpec, Fault, FaultKind, Guest, GuestStatus, GuestType,
    PathMatch, SimConfig, Simulator, Snapshot, StorageType, generate,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const DELAY: Duration = Duration::from_millis(200);

fn spec() -> EstateSpec {
    EstateSpec {
        seed: 42,
        clusters: 1,
        nodes_per_cluster: 3,
        standalone_nodes: 0,
        guests: 80,
        ..EstateSpec::default()
    }
}

fn http_config() -> SimConfig {
    SimConfig {
        tls: false,
        auth_failure_delay: DELAY,
        ..SimConfig::default()
    }
}

async fn start_sim() -> Simulator {
    Simulator::start(generate(&spec()), 0, http_config())
        .await
        .unwrap()
}

struct Reply {
    status: u16,
    body: Value,
    reason: Option<String>,
}

impl Reply {
    fn data(&self) -> &Value {
        &self.body["data"]
    }

    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

async fn reply(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let bytes = resp.bytes().await.unwrap();
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        reason,
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

impl Api {
    fn root(sim: &Simulator) -> Api {
        Api::with(sim, Some(sim.token().header_value()))
    }

    fn with(sim: &Simulator, auth: Option<String>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: sim.base_url(),
            auth,
        }
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        reply(self.request(path)).await
    }

    async fn data(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body["data"].clone()
    }
}

/// The raw status line of a GET (shows custom reason phrases exactly).
async fn status_line(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req =
        format!("GET /api2/json{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn vm_entries(resources: &Value) -> Vec<Value> {
    resources
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "qemu" || e["type"] == "lxc")
        .cloned()
        .collect()
}

fn running_qemu(state: &EndpointState) -> &Guest {
    state
        .guests
        .values()
        .find(|g| {
            g.guest_type == GuestType::Qemu
                && g.status == GuestStatus::Running
                && !g.template
                && g.name().is_some()
                && g.config.contains_key("scsi0")
        })
        .expect("a running QEMU guest with scsi0")
}

#[tokio::test]
async fn token_auth_and_delayed_401() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    let r = api.get("/version").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["release"], "8.4");

    let spaced = format!("PVEAPIToken root@pam!proxbox={}", sim.token().secret);
    assert_eq!(
        Api::with(&sim, Some(spaced)).get("/version").await.status,
        200
    );

    let bad = Api::with(&sim, Some("PVEAPIToken=root@pam!proxbox=wrong".into()));
    let t = Instant::now();
    let r = bad.get("/version").await;
    let elapsed = t.elapsed();
    assert_eq!(r.status, 401);
    assert!(
        elapsed >= DELAY,
        "401 after {elapsed:?}, expected >= {DELAY:?}"
    );
    assert_eq!(
        r.body,
        Value::Null,
        "PVE sends no body with a 401 from the auth layer"
    );
    if let Some(reason) = &r.reason {
        assert_eq!(reason, "invalid token value!");
    }
    let line = status_line(
        sim.addr(),
        "/version",
        &[("Authorization", "PVEAPIToken=root@pam!proxbox=wrong")],
    )
    .await;
    assert_eq!(line, "HTTP/1.1 401 invalid token value!");
    let line = status_line(sim.addr(), "/version", &[]).await;
    assert_eq!(line, "HTTP/1.1 401 No ticket");
    let line = status_line(
        sim.addr(),
        "/version",
        &[("Authorization", "PVEAPIToken=root@pam!other=x")],
    )
    .await;
    assert_eq!(
        line,
        "HTTP/1.1 401 no such token 'other' for user 'root@pam'"
    );
    println!(
        "401 after {elapsed:?}; reason via reqwest extensions: {:?}",
        r.reason
    );
}

#[tokio::test]
async fn ticket_login_cookie_renewal_and_expiry() {
    let config = SimConfig {
        ticket_lifetime: Duration::from_secs(2),
        ..http_config()
    };
    let sim = Simulator::start(generate(&spec()), 0, config)
        .await
        .unwrap();
    let (user, password) = sim.password_user();
    let anon = Api::with(&sim, None);
    let login = |u: String, p: String, extra: Vec<(&'static str, String)>| {
        let mut form = vec![("username", u), ("password", p)];
        form.extend(extra);
        anon.http
            .post(format!("{}/access/ticket", anon.base))
            .form(&form)
    };

    let r = reply(login(user.clone(), password.clone(), vec![])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ticket = r.data()["ticket"].as_str().unwrap().to_string();
    let csrf = r.data()["CSRFPreventionToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ticket.starts_with("PVE:root@pam:"), "{ticket}");
    assert!(ticket.contains("::"));
    assert_eq!(r.data()["username"], "root@pam");
    assert_eq!(r.data()["clustername"], "pve-prod");
    assert!(r.data()["cap"]["vms"]["VM.Audit"] == 1);
    assert_eq!(csrf.split(':').next().unwrap().len(), 8);

    let encoded: String = url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect();
    let cookie = format!("PVEAuthCookie={encoded}");
    let r = reply(anon.request("/nodes").header("Cookie", &cookie)).await;
    assert_eq!(r.status, 200);
    let r = reply(
        anon.request("/nodes")
            .header("Authorization", format!("PVEAuthCookie={ticket}")),
    )
    .await;
    assert_eq!(r.status, 200);

    let r = reply(login(
        "root".into(),
        password.clone(),
        vec![("realm", "pam".into())],
    ))
    .await;
    assert_eq!(r.status, 200, "username + realm");

    let r = reply(login(user.clone(), ticket.clone(), vec![])).await;
    assert_eq!(r.status, 200, "renewal with the ticket as password");
    assert!(
        r.data()["ticket"]
            .as_str()
            .unwrap()
            .starts_with("PVE:root@pam:")
    );

    let t = Instant::now();
    let r = reply(login(user.clone(), "wrong".into(), vec![])).await;
    assert_eq!(r.status, 401);
    assert!(t.elapsed() >= DELAY);
    assert_eq!(r.message(), "authentication failure\n");
    assert_eq!(r.body["data"], Value::Null);

    let post = anon
        .http
        .post(format!("{}/version", anon.base))
        .header("Cookie", &cookie);
    assert_eq!(
        reply(post).await.status,
        401,
        "POST with a ticket needs a CSRF token"
    );
    let post = anon
        .http
        .post(format!("{}/version", anon.base))
        .header("Cookie", &cookie)
        .header("CSRFPreventionToken", &csrf);
    let r = reply(post).await;
    assert_eq!(r.status, 501);
    assert_eq!(r.message(), "Method 'POST /version' not implemented");

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = reply(anon.request("/nodes").header("Cookie", &cookie)).await;
    assert_eq!(r.status, 401, "expired ticket");
    let line = status_line(sim.addr(), "/nodes", &[("Cookie", &cookie)]).await;
    assert_eq!(line, "HTTP/1.1 401 permission denied - invalid PVE ticket");
    let r = reply(login(user, ticket, vec![])).await;
    assert_eq!(r.status, 401, "an expired ticket cannot be renewed");
}

#[tokio::test]
async fn limited_token_sees_less_and_gets_403() {
    let sim = start_sim().await;
    let root = Api::root(&sim);
    let limited = Api::with(&sim, Some(sim.limited_token().header_value()));
    assert!(
        sim.limited_token()
            .header_value()
            .starts_with("PVEAPIToken=audit@pve!limited=")
    );

    let all = vm_entries(&root.data("/cluster/resources").await);
    let r = limited.get("/cluster/resources").await;
    assert_eq!(r.status, 200, "never 403 on /cluster/resources");
    let seen = vm_entries(r.data());
    assert!(
        !seen.is_empty() && seen.len() < all.len(),
        "{} of {}",
        seen.len(),
        all.len()
    );
    println!("limited token sees {} of {} guests", seen.len(), all.len());

    let state = sim.state();
    let hidden = state
        .guests
        .values()
        .find(|g| !state.limited_sees_vmid(g.vmid))
        .unwrap();
    let visible = state
        .guests
        .values()
        .find(|g| state.limited_sees_vmid(g.vmid))
        .unwrap();
    let kind = hidden.guest_type.as_str();
    let base = format!("/nodes/{}/{kind}/{}", hidden.node, hidden.vmid);
    for sub in ["config", "status/current", "snapshot"] {
        let r = limited.get(&format!("{base}/{sub}")).await;
        assert_eq!(r.status, 403, "{sub}");
        assert_eq!(
            r.message(),
            format!("Permission check failed (/vms/{}, VM.Audit)", hidden.vmid)
        );
    }
    let extra = if hidden.guest_type == GuestType::Qemu {
        "agent/network-get-interfaces"
    } else {
        "interfaces"
    };
    assert_eq!(limited.get(&format!("{base}/{extra}")).await.status, 403);
    let vbase = format!(
        "/nodes/{}/{}/{}",
        visible.node,
        visible.guest_type.as_str(),
        visible.vmid
    );
    assert_eq!(limited.get(&format!("{vbase}/config")).await.status, 200);

    let node = &state.nodes[0].name;
    let hidden_storage = state
        .storages
        .iter()
        .find(|s| !state.limited_sees_storage(&s.storage) && s.available_on(node) && !s.disable)
        .unwrap();
    let r = limited
        .get(&format!(
            "/nodes/{node}/storage/{}/content",
            hidden_storage.storage
        ))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message(),
        format!(
            "Permission check failed (/storage/{}, Datastore.Audit|Datastore.AllocateSpace)",
            hidden_storage.storage
        )
    );
    assert_eq!(
        limited
            .get(&format!("/nodes/{node}/storage/local/content"))
            .await
            .status,
        200
    );
    let storages = limited.data("/storage").await;
    assert!(storages.as_array().unwrap().len() < state.storages.len());
    let listed = limited
        .data(&format!("/nodes/{}/{}", hidden.node, kind))
        .await;
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["vmid"] == hidden.vmid)
    );
}

#[tokio::test]
async fn tls_certificate_and_fingerprint() {
    let config = SimConfig {
        auth_failure_delay: DELAY,
        ..SimConfig::default()
    };
    let sim = Simulator::start(generate(&spec()), 0, config)
        .await
        .unwrap();
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let pem = sim.certificate_pem().unwrap();
    let fingerprint = sim.certificate_fingerprint().unwrap();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    assert!(
        fingerprint
            .chars()
            .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase())
    );

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let token = sim.token().header_value();
    let r = reply(
        client
            .get(format!("{}/nodes", sim.base_url()))
            .header("Authorization", &token),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.data()[0]["ssl_fingerprint"],
        fingerprint.as_str(),
        "local node reports the served cert"
    );

    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{}/version", sim.base_url()))
            .send()
            .await
            .is_err()
    );

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            sim.certificate_der().unwrap(),
        ))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let served_fp: Vec<String> = Sha256::digest(served.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(served_fp.join(":"), fingerprint);
}

#[tokio::test]
async fn fault_latency_status_and_times() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    let faults = sim.faults();

    faults.inject(Fault::new("/version", FaultKind::Latency(Duration::from_millis(300))).times(1));
    let t = Instant::now();
    assert_eq!(api.get("/version").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(faults.list().is_empty(), "times(1) consumed");

    faults.inject(
        Fault::new(
            "/version",
            FaultKind::Status(503, "Service Unavailable".into()),
        )
        .times(2),
    );
    for _ in 0..2 {
        let r = api.get("/version").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.message(), "Service Unavailable\n");
    }
    assert_eq!(api.get("/version").await.status, 200);

    faults.inject(Fault::new(
        "/cluster/status",
        FaultKind::Status(596, "Connection timed out".into()),
    ));
    let r = api.get("/cluster/status").await;
    assert_eq!(r.status, 596);
    assert_eq!(r.body, Value::Null, "proxy pseudo-statuses carry no body");
    let line = status_line(
        sim.addr(),
        "/cluster/status",
        &[("Authorization", &sim.token().header_value())],
    )
    .await;
    assert_eq!(line, "HTTP/1.1 596 Connection timed out");
    faults.clear();
    assert_eq!(api.get("/cluster/status").await.status, 200);

    faults.inject(Fault::new(
        PathMatch::prefix("/nodes/pve1/"),
        FaultKind::Status(502, "Bad Gateway".into()),
    ));
    assert_eq!(api.get("/nodes/pve1/status").await.status, 502);
    assert_eq!(api.get("/nodes/pve2/status").await.status, 200);
    assert_eq!(api.get("/version").await.status, 200);
    faults.clear();
}

#[tokio::test]
async fn fault_hang_malformed_and_disconnect() {
    let sim = start_sim().await;
    let faults = sim.faults();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let token = sim.token().header_value();
    let url = format!("{}/cluster/resources", sim.base_url());

    faults.inject(Fault::new("/cluster/resources", FaultKind::Hang));
    let err = client
        .get(&url)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    faults.clear();
    assert_eq!(
        client
            .get(&url)
            .header("Authorization", &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    faults.inject(Fault::new("/cluster/resources", FaultKind::MalformedJson).times(1));
    let resp = client
        .get(&url)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    assert!(bytes.starts_with(b"{\"data\":["));

    faults.inject(Fault::new("/cluster/resources", FaultKind::Disconnect).times(1));
    assert!(
        client
            .get(&url)
            .header("Authorization", &token)
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        client
            .get(&url)
            .header("Authorization", &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn fault_partial_inventory_and_node_offline() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    let faults = sim.faults();
    let full = vm_entries(&api.data("/cluster/resources").await).len();

    faults.inject(Fault::new(
        "/cluster/resources",
        FaultKind::PartialInventory { drop_fraction: 0.5 },
    ));
    let a = vm_entries(&api.data("/cluster/resources").await);
    let b = vm_entries(&api.data("/cluster/resources").await);
    assert_eq!(a, b, "the same guests are dropped each time");
    assert!(
        a.len() < full && a.len() > full / 5,
        "{} of {full}",
        a.len()
    );
    assert_eq!(api.get("/nodes/pve1/qemu").await.status, 200);
    faults.clear();

    faults.inject(Fault::new(
        PathMatch::Any,
        FaultKind::NodeOffline("pve2".into()),
    ));
    let r = api.get("/nodes/pve2/status").await;
    assert_eq!(r.status, 595);
    assert_eq!(r.body, Value::Null);
    let unknown = vm_entries(&api.data("/cluster/resources").await)
        .into_iter()
        .filter(|e| e["node"] == "pve2")
        .collect::<Vec<_>>();
    assert!(!unknown.is_empty());
    assert!(
        unknown
            .iter()
            .all(|e| e["status"] == "unknown" && e.get("name").is_none())
    );
    faults.clear();
    assert_eq!(api.get("/nodes/pve2/status").await.status, 200);
}

#[tokio::test]
async fn fault_control_over_http() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    let ctl = format!("http://{}/_sim", sim.addr());
    let http = reqwest::Client::new();
    let fault =
        json!({"path": {"exact": "/version"}, "kind": {"status": [500, "boom"]}, "times": 1});
    let r = http
        .post(format!("{ctl}/faults"))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = http
        .get(format!("{ctl}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let r = api.get("/version").await;
    assert_eq!((r.status, r.message()), (500, "boom\n"));
    assert_eq!(api.get("/version").await.status, 200);

    let latency = json!({"path": "any", "kind": {"latency": 50}});
    http.post(format!("{ctl}/faults"))
        .json(&latency)
        .send()
        .await
        .unwrap();
    assert_eq!(sim.faults().list().len(), 1);
    http.delete(format!("{ctl}/faults")).send().await.unwrap();
    assert!(sim.faults().list().is_empty());
}

#[tokio::test]
async fn mutations_are_reflected() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    let state = sim.state();
    let g = running_qemu(&state).clone();
    let id = g.vmid;
    let other = state
        .nodes
        .iter()
        .find(|n| n.name != g.node)
        .unwrap()
        .name
        .clone();
    let find = |res: &Value| vm_entries(res).into_iter().find(|e| e["vmid"] == id);

    sim.rename_guest(id, "renamed-vm").unwrap();
    let cfg = api
        .data(&format!("/nodes/{}/qemu/{id}/config", g.node))
        .await;
    assert_eq!(cfg["name"], "renamed-vm");
    assert_eq!(
        find(&api.data("/cluster/resources").await).unwrap()["name"],
        "renamed-vm"
    );

    let boot_key = ["scsi0", "virtio0", "sata0", "ide0"]
        .into_iter()
        .find(|k| cfg.get(*k).is_some())
        .unwrap();
    sim.resize_disk(id, "scsi0", "500G").unwrap();
    let cfg = api
        .data(&format!("/nodes/{}/qemu/{id}/config", g.node))
        .await;
    assert!(
        cfg["scsi0"].as_str().unwrap().contains("size=500G"),
        "{}",
        cfg["scsi0"]
    );
    if boot_key == "scsi0" {
        let e = find(&api.data("/cluster/resources").await).unwrap();
        assert_eq!(e["maxdisk"], 500u64 << 30);
    }

    sim.migrate_guest(id, &other).unwrap();
    let r = api
        .get(&format!("/nodes/{}/qemu/{id}/config", g.node))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.message(),
        format!(
            "Configuration file 'nodes/{}/qemu-server/{id}.conf' does not exist\n",
            g.node
        )
    );
    assert_eq!(
        api.get(&format!("/nodes/{other}/qemu/{id}/config"))
            .await
            .status,
        200
    );
    assert_eq!(
        find(&api.data("/cluster/resources").await).unwrap()["node"],
        other.as_str()
    );

    let before = g.snapshots.last().map(|s| s.name.clone());
    sim.add_snapshot(id, Snapshot::new("sim-snap", "made by the test"))
        .unwrap();
    let snaps = api
        .data(&format!("/nodes/{other}/qemu/{id}/snapshot"))
        .await;
    let snaps = snaps.as_array().unwrap();
    let added = snaps.iter().find(|s| s["name"] == "sim-snap").unwrap();
    assert_eq!(
        added.get("parent").and_then(Value::as_str),
        before.as_deref()
    );
    let current = snaps.iter().find(|s| s["name"] == "current").unwrap();
    assert_eq!(current["parent"], "sim-snap");
    assert_eq!(current["description"], "You are here!");
    assert_eq!(
        api.data(&format!("/nodes/{other}/qemu/{id}/config")).await["parent"],
        "sim-snap"
    );
    sim.delete_snapshot(id, "sim-snap").unwrap();
    let snaps = api
        .data(&format!("/nodes/{other}/qemu/{id}/snapshot"))
        .await;
    assert!(
        !snaps
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "sim-snap")
    );

    let storage = state
        .storages
        .iter()
        .find(|s| s.storage_type == StorageType::Nfs && s.has_content("backup") && !s.disable)
        .unwrap()
        .storage
        .clone();
    let backup = Backup::vzdump(&storage, id, GuestType::Qemu, 1_760_000_000, 1 << 30);
    let volid = backup.volid.clone();
    sim.add_backup(&storage, backup).unwrap();
    for node in state.nodes.iter().map(|n| &n.name) {
        let list = api
            .data(&format!(
                "/nodes/{node}/storage/{storage}/content?content=backup&vmid={id}"
            ))
            .await;
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["volid"] == volid.as_str())
            .cloned();
        let entry = entry.unwrap_or_else(|| panic!("shared storage shows the backup on {node}"));
        assert_eq!(entry["format"], "vma.zst");
        assert_eq!(entry["subtype"], "qemu");
    }
    sim.delete_backup(&volid).unwrap();
    let list = api
        .data(&format!(
            "/nodes/pve1/storage/{storage}/content?content=backup"
        ))
        .await;
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["volid"] == volid.as_str())
    );

    sim.add_guest(Guest::lxc(5000, "pve1", "new-ct")).unwrap();
    assert!(sim.add_guest(Guest::lxc(5000, "pve1", "dup")).is_err());
    let lxc = api.data("/nodes/pve1/lxc").await;
    assert!(
        lxc.as_array()
            .unwrap()
            .iter()
            .any(|e| e["vmid"] == 5000 && e["name"] == "new-ct")
    );
    sim.remove_guest(id).unwrap();
    assert_eq!(
        api.get(&format!("/nodes/{other}/qemu/{id}/config"))
            .await
            .status,
        500
    );
    assert!(find(&api.data("/cluster/resources").await).is_none());

    let ctl = format!("http://{}/_sim/mutate", sim.addr());
    let http = reqwest::Client::new();
    let r = http
        .post(&ctl)
        .json(&json!({"op": "rename-guest", "vmid": 5000, "name": "via-http"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        api.data("/nodes/pve1/lxc/5000/config").await["hostname"],
        "via-http"
    );
    let r = http
        .post(&ctl)
        .json(&json!({"op": "remove-guest", "vmid": 77777}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(sim.mutate(|s| s.guests.contains_key(&5000)));
}

#[tokio::test]
async fn offline_node_answers_595_and_unknown_status() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    sim.set_node_online("pve3", false).unwrap();
    let token = sim.token().header_value();
    let line = status_line(sim.addr(), "/nodes/pve3/qemu", &[("Authorization", &token)]).await;
    assert_eq!(line, "HTTP/1.1 595 No route to host");
    let r = api.get("/nodes/pve3/storage").await;
    assert_eq!(r.status, 595);
    let resources = api.data("/cluster/resources").await;
    let on_pve3: Vec<Value> = vm_entries(&resources)
        .into_iter()
        .filter(|e| e["node"] == "pve3")
        .collect();
    assert!(!on_pve3.is_empty());
    assert!(on_pve3.iter().all(|e| e["status"] == "unknown"));
    let node = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "node/pve3")
        .unwrap();
    assert_eq!(node["status"], "offline");
    let status = api.data("/cluster/status").await;
    let entry = status
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "pve3")
        .unwrap();
    assert_eq!(entry["online"], 0);
    let nodes = api.data("/nodes").await;
    assert_eq!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"] == "pve3")
            .unwrap()["status"],
        "offline"
    );
    sim.set_node_online("pve3", true).unwrap();
    assert_eq!(api.get("/nodes/pve3/qemu").await.status, 200);
}

#[tokio::test]
async fn request_counters() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    api.get("/version").await;
    sim.reset_counters();
    for _ in 0..3 {
        api.get("/version").await;
    }
    api.get("/cluster/resources?type=vm").await;
    api.get("/nodes/pve1/status").await;
    assert_eq!(sim.request_count("/version"), 3);
    assert_eq!(sim.request_count("/api2/json/version"), 3);
    assert_eq!(sim.request_count("/cluster/resources"), 1);
    assert_eq!(sim.request_count("/nodes/pve2/status"), 0);
    let counts = sim.request_counts();
    assert_eq!(counts.values().sum::<u64>(), 5, "{counts:?}");
    let http = reqwest::Client::new();
    let over_http: Value = http
        .get(format!("http://{}/_sim/counters", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["/version"], 3);
    http.delete(format!("http://{}/_sim/counters", sim.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.request_count("/version"), 0);
    sim.reset_counters();
    assert!(sim.request_counts().is_empty());
}

#[tokio::test]
async fn pve_error_shapes() {
    let sim = start_sim().await;
    let api = Api::root(&sim);
    let token = sim.token().header_value();
    let auth = [("Authorization", token.as_str())];

    let r = api.get("/nodes/nope/status").await;
    assert_eq!(
        (r.status, r.message()),
        (500, "no such cluster node 'nope'\n")
    );
    let r = api.get("/nodes/pve1/qemu/99999/config").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body["data"], Value::Null);
    let line = status_line(sim.addr(), "/nodes/pve1/qemu/99999/config", &auth).await;
    assert_eq!(
        line,
        "HTTP/1.1 500 Configuration file 'nodes/pve1/qemu-server/99999.conf' does not exist"
    );
    let r = api.get("/nodes/pve1/lxc/99999/status/current").await;
    assert_eq!(
        r.message(),
        "Configuration file 'nodes/pve1/lxc/99999.conf' does not exist\n"
    );

    let r = api.get("/nodes/pve1/frobnicate").await;
    assert_eq!(
        (r.status, r.message()),
        (501, "Method 'GET /nodes/pve1/frobnicate' not implemented")
    );

    let r = api.get("/nodes/pve1/qemu/abc/config").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"]["vmid"],
        "type check ('integer') failed - got 'abc'"
    );
    let line = status_line(sim.addr(), "/nodes/pve1/qemu/abc/config", &auth).await;
    assert_eq!(line, "HTTP/1.1 400 Parameter verification failed.");
    let r = api.get("/cluster/resources?type=bogus").await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["errors"]["type"]
            .as_str()
            .unwrap()
            .contains("enumeration")
    );
    let r = api.get("/version?foo=1").await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["errors"]["foo"]
            .as_str()
            .unwrap()
            .contains("not defined in schema")
    );
    assert_eq!(
        api.get("/version?_dc=123").await.status,
        200,
        "_dc is ignored like in PVE"
    );

    let state = sim.state();
    let stopped_qemu = state.guests.values().find(|g| {
        g.guest_type == GuestType::Qemu && g.status == GuestStatus::Stopped && g.agent_enabled()
    });
    if let Some(g) = stopped_qemu {
        let r = api
            .get(&format!(
                "/nodes/{}/qemu/{}/agent/network-get-interfaces",
                g.node, g.vmid
            ))
            .await;
        assert_eq!(r.message(), format!("VM {} is not running\n", g.vmid));
    }
    let no_agent = state
        .guests
        .values()
        .find(|g| g.guest_type == GuestType::Qemu && !g.agent_enabled())
        .unwrap();
    let r = api
        .get(&format!(
            "/nodes/{}/qemu/{}/agent/network-get-interfaces",
            no_agent.node, no_agent.vmid
        ))
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "No QEMU guest agent configured\n")
    );
    let with_agent = state
        .guests
        .values()
        .find(|g| g.status == GuestStatus::Running && g.agent.as_ref().is_some_and(Value::is_array))
        .unwrap();
    let d = api
        .data(&format!(
            "/nodes/{}/qemu/{}/agent/network-get-interfaces",
            with_agent.node, with_agent.vmid
        ))
        .await;
    let ifaces = d["result"].as_array().unwrap();
    assert!(
        ifaces
            .iter()
            .filter_map(|i| i["hardware-address"].as_str())
            .all(|m| m == m.to_lowercase())
    );
    let stopped_ct = state
        .guests
        .values()
        .find(|g| g.guest_type == GuestType::Lxc && g.status == GuestStatus::Stopped);
    if let Some(g) = stopped_ct {
        let r = api
            .get(&format!("/nodes/{}/lxc/{}/interfaces", g.node, g.vmid))
            .await;
        assert_eq!((r.status, r.data().clone()), (200, Value::Null));
    }
    let restricted = state.storages.iter().find(|s| s.nodes.is_some()).unwrap();
    let outside = state
        .nodes
        .iter()
        .find(|n| !restricted.available_on(&n.name))
        .unwrap();
    let r = api
        .get(&format!(
            "/nodes/{}/storage/{}/content",
            outside.name, restricted.storage
        ))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.message(),
        format!(
            "storage '{}' is not available on node '{}'\n",
            restricted.storage, outside.name
        )
    );
    let resp = api.request("/version").send().await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(resp.headers()["server"], "pve-api-daemon/3.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_guests() {
    let t = Instant::now();
    let estate = generate(&EstateSpec {
        seed: 10_000,
        clusters: 1,
        nodes_per_cluster: 8,
        standalone_nodes: 0,
        guests: 10_000,
        ..EstateSpec::default()
    });
    let generated = t.elapsed();
    assert_eq!(estate.guest_count(), 10_000);
    let sim = Simulator::start(estate, 0, SimConfig::default())
        .await
        .unwrap();
    let started = t.elapsed();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(sim.certificate_pem().unwrap().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let t2 = Instant::now();
    let resp = client
        .get(format!("{}/cluster/resources", sim.base_url()))
        .header("Authorization", sim.token().header_value())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let fetched = t2.elapsed();
    let guests = vm_entries(&body["data"]);
    println!(
        "10,000 guests: generated in {generated:?}, generated+started in {started:?}, /cluster/resources ({} entries) in {fetched:?}",
        body["data"].as_array().unwrap().len()
    );
    assert_eq!(guests.len(), 10_000);
    assert!(started < Duration::from_secs(30));
}

#[test]
fn generation_is_deterministic_and_round_trips() {
    let a = generate(&spec());
    let b = generate(&spec());
    assert_eq!(a, b);
    let c = generate(&EstateSpec { seed: 43, ..spec() });
    assert_ne!(a, c);
    let path = std::env::temp_dir().join(format!("proxmox-sim-estate-{}.json", std::process::id()));
    a.save(&path).unwrap();
    let loaded = Estate::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(a, loaded);
}

#[test]
fn generated_estates_are_varied() {
    let estate = generate(&EstateSpec {
        seed: 5,
        clusters: 3,
        nodes_per_cluster: 3,
        standalone_nodes: 2,
        guests: 3000,
        ..EstateSpec::default()
    });
    let guests: Vec<&Guest> = estate
        .endpoints
        .iter()
        .flat_map(|e| e.guests.values())
        .collect();
    let values = |key_pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        guests
            .iter()
            .flat_map(|g| g.config.iter())
            .filter(|(k, _)| key_pred(k))
            .filter_map(|(_, v)| v.as_str().map(str::to_string))
            .collect()
    };
    let has = |key_pred: &dyn Fn(&str) -> bool, val_pred: &dyn Fn(&str) -> bool| {
        values(key_pred).iter().any(|v| val_pred(v))
    };
    for bus in ["scsi", "virtio", "sata", "ide"] {
        assert!(
            has(
                &|k| proxmox_sim::is_disk_key(k) && k.starts_with(bus),
                &|v| !v.contains("media=cdrom")
            ),
            "{bus} disks"
        );
    }
    assert!(has(&|k| k == "efidisk0", &|v| v.ends_with("size=528K")));
    assert!(has(&|k| k == "tpmstate0", &|v| v.contains("size=4M")));
    assert!(has(&|k| k == "ide2", &|v| v == "none,media=cdrom"));
    assert!(has(&|k| k == "ide2", &|v| v.starts_with("local:iso/")
        && v.contains("media=cdrom")));
    for unit in ["K", "M", "G", "T"] {
        assert!(
            has(
                &|k| proxmox_sim::is_disk_key(k)
                    || k == "efidisk0"
                    || k == "rootfs"
                    || k.starts_with("mp"),
                &|v| { proxmox_sim::prop_get(v, "size").is_some_and(|s| s.ends_with(unit)) }
            ),
            "sizes in {unit}"
        );
    }
    for model in ["virtio", "e1000", "e1000e", "vmxnet3", "rtl8139"] {
        assert!(
            has(&|k| k.starts_with("net"), &|v| v
                .starts_with(&format!("{model}="))),
            "{model}"
        );
    }
    assert!(has(&|k| k.starts_with("net"), &|v| v.contains("tag=")));
    assert!(has(&|k| k.starts_with("net"), &|v| v
        .starts_with("name=eth0")
        && v.contains("type=veth")
        && v.contains("hwaddr=")));
    assert!(has(&|k| k == "rootfs", &|v| v.contains("size=")));
    assert!(has(&|k| proxmox_sim::is_mp_key(k), &|v| v.contains(':')
        && v.contains("size=")));
    assert!(has(&|k| proxmox_sim::is_mp_key(k), &|v| v.starts_with('/')
        && v.contains("mp=")));
    for agent in ["1,fstrim_cloned_disks=1", "enabled=1", "1"] {
        assert!(has(&|k| k == "agent", &|v| v == agent), "agent {agent}");
    }
    let qemu: Vec<&&Guest> = guests
        .iter()
        .filter(|g| g.guest_type == GuestType::Qemu)
        .collect();
    assert!(qemu.iter().any(|g| !g.config.contains_key("agent")));
    assert!(
        qemu.iter()
            .any(|g| g.config.get("memory").is_some_and(Value::is_string))
    );
    assert!(
        qemu.iter()
            .any(|g| g.config.get("memory").is_some_and(Value::is_u64))
    );
    assert!(qemu.iter().any(|g| g.name().is_none()), "blank QEMU names");
    assert!(guests.iter().any(|g| {
        g.tags()
            .is_some_and(|t| t.contains(';') && t.chars().any(char::is_uppercase))
    }));
    assert!(guests.iter().any(|g| g.template));
    let lxc_share = guests
        .iter()
        .filter(|g| g.guest_type == GuestType::Lxc)
        .count() as f64
        / guests.len() as f64;
    assert!((0.25..0.35).contains(&lxc_share), "lxc share {lxc_share}");
    assert!(guests.iter().any(|g| g.snapshots.len() >= 2
        && g.snapshots[1].parent.as_deref() == Some(g.snapshots[0].name.as_str())));
    assert!(guests.iter().any(|g| g.status == GuestStatus::Paused));

    let names = |e: usize| -> std::collections::BTreeSet<String> {
        estate.endpoints[e]
            .guests
            .values()
            .filter_map(|g| g.name().map(str::to_string))
            .collect()
    };
    assert!(
        names(0).intersection(&names(1)).count() > 0,
        "duplicate names across clusters"
    );

    let types: std::collections::BTreeSet<&str> = estate
        .endpoints
        .iter()
        .flat_map(|e| e.storages.iter().map(|s| s.storage_type.as_str()))
        .collect();
    for t in ["dir", "nfs", "pbs", "rbd", "cephfs"] {
        assert!(types.contains(t), "storage type {t}: {types:?}");
    }
    assert!(types.contains("lvmthin") || types.contains("zfspool"));
    let formats: std::collections::BTreeSet<String> = estate
        .endpoints
        .iter()
        .flat_map(|e| {
            e.storages
                .iter()
                .flat_map(|s| s.backups.iter().map(|b| b.format.clone()))
        })
        .collect();
    for f in ["pbs-vm", "pbs-ct", "vma.zst", "tar.zst"] {
        assert!(formats.contains(f), "backup format {f}: {formats:?}");
    }
    let backups: usize = estate
        .endpoints
        .iter()
        .flat_map(|e| e.storages.iter().map(|s| s.backups.len()))
        .sum();
    assert!(backups > guests.len(), "~2 backups per guest: {backups}");
    let pbs = estate
        .endpoints
        .iter()
        .flat_map(|e| e.storages.iter().flat_map(|s| s.backups.iter()))
        .find(|b| b.format == "pbs-vm")
        .unwrap();
    assert!(pbs.volid.contains(":backup/vm/") && pbs.volid.ends_with('Z'));
}

#[test]
fn ten_thousand_guests_generate_fast() {
    let t = Instant::now();
    let estate = generate(&EstateSpec {
        guests: 10_000,
        ..EstateSpec::default()
    });
    let took = t.elapsed();
    println!("generated {} guests in {took:?}", estate.guest_count());
    assert_eq!(estate.guest_count(), 10_000);
    assert!(took < Duration::from_secs(10));
}

#[tokio::test]
async fn refuses_non_loopback_bind() {
    let config = SimConfig {
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        ..http_config()
    };
    assert!(
        Simulator::start(generate(&spec()), 0, config)
            .await
            .is_err()
    );
    assert!(
        Simulator::start(generate(&spec()), 5, http_config())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn state_and_credentials_over_http() {
    let sim = start_sim().await;
    let http = reqwest::Client::new();
    let state: EndpointState = http
        .get(format!("http://{}/_sim/estate", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, sim.state());
    let creds: Value = http
        .get(format!("http://{}/_sim/credentials", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creds["token"], sim.token().header_value());
    assert_eq!(creds["limited_token"], sim.limited_token().header_value());
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_listener() {
    let sim = start_sim().await;
    let addr = sim.addr();
    sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let sim = start_sim().await;
    let addr = sim.addr();
    drop(sim);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn binary_prints_one_line_per_endpoint() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxmox-sim"))
        .args([
            "--no-tls",
            "--clusters",
            "1",
            "--standalone",
            "1",
            "--guests",
            "12",
            "--auth-delay-ms",
            "50",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut endpoints = Vec::new();
    while endpoints.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        endpoints.push(line);
    }
    let first: Vec<&str> = endpoints[0].split(' ').collect();
    assert_eq!(first[0..2], ["endpoint", "0"]);
    assert_eq!(first[2], "pve-prod");
    assert!(first[3].starts_with("http://127.0.0.1:") && first[3].ends_with("/api2/json"));
    let token = first[4].strip_prefix("token=").unwrap();
    assert!(token.starts_with("PVEAPIToken=root@pam!proxbox="));
    assert_eq!(first[5], "fingerprint=-");
    assert!(endpoints[1].starts_with("endpoint 1 pve "));
    let r = reply(
        reqwest::Client::new()
            .get(format!("{}/version", first[3]))
            .header("Authorization", token),
    )
    .await;
    assert_eq!(r.status, 200);
    child.kill().await.unwrap();
}
