//! Secrets never leave the host (responses, logs, the database file), and a restart
//! keeps endpoints and keys while the secrets stay unreadable without the key.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::server::{BOOTSTRAP_KEY, TestServer};
use proxbox_host::server::AppState;
use proxbox_host::store::{EncryptionKey, Store, StoreError};
use proxmox_sim::{EstateSpec, SimConfig, Simulator, generate};
use reqwest::{Method, StatusCode};
use serde_json::json;

const NETBOX_TOKEN: &str = "nbtoken0SECRET0aaaaaaaaaaaaaaaaaaaaaaaaaa";
const NETBOX_TOKEN_KEY: &str = "nbkey0SECRET0bbbbbbbb";
const PVE_PASSWORD: &str = "pve-password-SECRET-cccc";
const PVE_TOKEN: &str = "dddddddd-SECRET-eeee-ffff-000000000000";
const WRONG_KEY: &str = "wrong-api-key-SECRET-gggggggggggggggggggg";
const SECRETS: [&str; 6] = [
    NETBOX_TOKEN,
    NETBOX_TOKEN_KEY,
    PVE_PASSWORD,
    PVE_TOKEN,
    WRONG_KEY,
    BOOTSTRAP_KEY,
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

// Current-thread runtime: the server, the client and the subscriber share this thread.
#[tokio::test]
async fn a_full_crud_cycle_leaks_no_secret_in_responses_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info,proxbox_host=trace,axum=trace,tower=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let estate = generate(&EstateSpec {
        seed: 21,
        clusters: 1,
        nodes_per_cluster: 2,
        standalone_nodes: 0,
        guests: 5,
        ..EstateSpec::default()
    });
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

    let server =
        TestServer::start_with_key(AppState::new(Store::open_in_memory().expect("store"))).await;
    let mut answers = Vec::new();
    let mut call = async |method: Method, path: &str, body: Option<serde_json::Value>| {
        let answer = server.call(method, path, body).await;
        answers.push(format!("{:?}\n{}", answer.headers, answer.text));
        answer
    };

    // NetBox endpoint: create (v1), a rejected over-long token, switch to v2, read, delete.
    let netbox = call(
        Method::POST,
        "/netbox/endpoint",
        Some(
            json!({ "name": "nb", "ip_address": "127.0.0.1", "port": 8001, "token": NETBOX_TOKEN }),
        ),
    )
    .await;
    assert_eq!(netbox.status, StatusCode::OK, "{}", netbox.text);
    let nb_id = netbox.json["id"].as_i64().expect("id");
    let too_long = call(
        Method::PUT,
        &format!("/netbox/endpoint/{nb_id}"),
        Some(json!({ "token": format!("{NETBOX_TOKEN}{}", "x".repeat(1000)) })),
    )
    .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_type = call(
        Method::PUT,
        &format!("/netbox/endpoint/{nb_id}"),
        Some(json!({ "token": NETBOX_TOKEN, "verify_ssl": NETBOX_TOKEN })),
    )
    .await;
    assert_eq!(bad_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    let v2 = call(
        Method::PUT,
        &format!("/netbox/endpoint/{nb_id}"),
        Some(
            json!({ "token_version": "v2", "token_key": NETBOX_TOKEN_KEY, "token": NETBOX_TOKEN }),
        ),
    )
    .await;
    assert_eq!(v2.status, StatusCode::OK, "{}", v2.text);
    call(Method::GET, "/netbox/endpoint", None).await;
    call(Method::GET, &format!("/netbox/endpoint/{nb_id}"), None).await;

    // Proxmox endpoint: password (wrong for the simulator), then a token; sessions fail
    // upstream and the error must not carry the credentials.
    let pve = call(
        Method::POST,
        "/proxmox/endpoints",
        Some(json!({
            "name": "pve (nb:1)", "ip_address": "127.0.0.1", "port": sim.addr().port(),
            "username": "root@pam", "password": PVE_PASSWORD, "verify_ssl": false,
            "max_retries": 0,
        })),
    )
    .await;
    assert_eq!(pve.status, StatusCode::OK, "{}", pve.text);
    let pve_id = pve.json["id"].as_i64().expect("id");
    let refused = call(Method::GET, "/proxmox/sessions", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    let duplicate = call(
        Method::POST,
        "/proxmox/endpoints",
        Some(json!({
            "name": "pve (nb:1)", "ip_address": "127.0.0.1", "port": 8006,
            "username": "root@pam", "password": PVE_PASSWORD,
        })),
    )
    .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    let half_token = call(
        Method::PUT,
        &format!("/proxmox/endpoints/{pve_id}"),
        Some(json!({ "token_value": PVE_TOKEN })),
    )
    .await;
    assert_eq!(half_token.status, StatusCode::BAD_REQUEST);
    let token = call(
        Method::PUT,
        &format!("/proxmox/endpoints/{pve_id}"),
        Some(json!({ "token_name": "proxbox", "token_value": PVE_TOKEN })),
    )
    .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    call(Method::GET, "/proxmox/endpoints", None).await;
    call(Method::GET, &format!("/proxmox/endpoints/{pve_id}"), None).await;
    call(Method::GET, "/proxmox/sessions", None).await;
    call(
        Method::DELETE,
        &format!("/proxmox/endpoints/{pve_id}"),
        None,
    )
    .await;
    call(Method::DELETE, &format!("/netbox/endpoint/{nb_id}"), None).await;
    call(Method::GET, "/auth/keys", None).await;

    let wrong = server
        .call_with(Method::GET, "/auth/keys", None, Some(WRONG_KEY), &[])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    answers.push(format!("{:?}\n{}", wrong.headers, wrong.text));
    server.stop().await;

    let logs = logs.text();
    assert!(
        logs.contains("NetBox endpoint created") && logs.contains("Proxmox endpoint updated"),
        "the logs were captured: {logs}"
    );
    assert!(logs.contains("invalid API key"), "{logs}");
    for secret in SECRETS {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
        for answer in &answers {
            assert!(
                !answer.contains(secret),
                "a secret is in a response:\n{answer}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_endpoints_and_keys_and_secrets_need_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("proxbox.db");
    let key_file = dir.path().join("proxbox.key");
    let (key, _) = EncryptionKey::load_or_create_file(&key_file).expect("key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode");
    }

    let store = Store::open_with_key(&db, &key).expect("store");
    let server = TestServer::start_with_key(AppState::new(store)).await;
    let created = server
        .call(
            Method::POST,
            "/proxmox/endpoints",
            Some(json!({
                "name": "pve (nb:9)", "ip_address": "10.1.2.3", "port": 8006,
                "username": "root@pam", "password": PVE_PASSWORD,
            })),
        )
        .await;
    let pve_id = created.json["id"].as_i64().expect("id");
    server
        .call(
            Method::POST,
            "/netbox/endpoint",
            Some(json!({ "name": "nb", "ip_address": "127.0.0.1", "token": NETBOX_TOKEN })),
        )
        .await;
    let listed_before = server
        .call(Method::GET, "/proxmox/endpoints", None)
        .await
        .json;
    server.stop().await;

    // Same file, same key: everything is back and the key still authenticates.
    let (again, _) = EncryptionKey::load_or_create_file(&key_file).expect("key file");
    let store = Store::open_with_key(&db, &again).expect("reopen");
    assert!(store.key_matches().expect("key check"));
    let endpoint = store
        .proxmox_endpoint_with_secrets(pve_id)
        .expect("read")
        .expect("row");
    assert_eq!(endpoint.password.expect("password").expose(), PVE_PASSWORD);
    assert_eq!(
        store
            .netbox_singleton()
            .expect("read")
            .expect("row")
            .token
            .expose(),
        NETBOX_TOKEN
    );
    let mut server = TestServer::start(AppState::new(store)).await;
    server.key = Some(BOOTSTRAP_KEY.into());
    let listed_after = server.call(Method::GET, "/proxmox/endpoints", None).await;
    assert_eq!(
        listed_after.status,
        StatusCode::OK,
        "the key survived the restart"
    );
    assert_eq!(listed_after.json, listed_before);
    let bootstrap = server
        .call(Method::GET, "/auth/bootstrap-status", None)
        .await;
    assert_eq!(bootstrap.json["needs_bootstrap"], false);
    server.stop().await;

    // Another key: the rows are there, but no secret decrypts and no API key verifies.
    let other = EncryptionKey::generate().expect("key");
    let store = Store::open_with_key(&db, &other).expect("open with another key");
    assert!(!store.key_matches().expect("key check"));
    assert!(matches!(
        store.proxmox_endpoint_with_secrets(pve_id),
        Err(StoreError::Decrypt { .. })
    ));
    assert_eq!(store.verify_key(BOOTSTRAP_KEY).expect("verify"), None);
    drop(store);

    // On disk, nothing is in plaintext.
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        for secret in [PVE_PASSWORD, NETBOX_TOKEN, BOOTSTRAP_KEY] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in plaintext in {}",
                path.display()
            );
        }
    }
}
