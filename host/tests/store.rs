//! The embedded configuration store: migrations, validation with the reference's
//! messages, secrets at rest, API keys and lockout.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxbox_host::store::{
    self, EncryptionKey, Failure, KeyId, Lockout, LockoutPolicy, LockoutStatus, ManualClock,
    NetBoxEndpointCreate, NetBoxEndpointUpdate, Page, ProxmoxEndpointCreate, ProxmoxEndpointUpdate,
    Secret, Store, StoreError, messages, schema,
};

const PASSWORD: &str = "pve-Pa55word-zebra";
const TOKEN_VALUE: &str = "3f1c2a9e-5b7d-4e0f-9a61-0d2b8c7e4f11";
const NB_TOKEN: &str = "nbtoken0123456789abcdef0123456789abcdef";
const NB_TOKEN_KEY: &str = "nbkeyXYZ987";

fn key() -> EncryptionKey {
    EncryptionKey::generate().unwrap()
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("database.db");
    (dir, path)
}

fn invalid(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Invalid(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// The `(field, message)` pairs of a 422.
fn unprocessable(
    result: Result<impl std::fmt::Debug, StoreError>,
) -> Vec<(Option<String>, String)> {
    match result {
        Err(err @ StoreError::Unprocessable(_)) => {
            assert_eq!(err.http_status(), 422);
            let StoreError::Unprocessable(errors) = err else {
                unreachable!()
            };
            errors
                .into_iter()
                .map(|e| (e.field.map(str::to_string), e.message))
                .collect()
        }
        other => panic!("expected a 422, got {other:?}"),
    }
}

fn pve(name: &str) -> ProxmoxEndpointCreate {
    let mut input = ProxmoxEndpointCreate::new(name, "10.0.0.10", 8006, "root@pam");
    input.password = Some(Secret::new(PASSWORD));
    input
}

fn pve_token(name: &str) -> ProxmoxEndpointCreate {
    let mut input = ProxmoxEndpointCreate::new(name, "10.0.0.11", 8006, "sync@pve");
    input.token_name = Some("sync@pve!proxbox".into());
    input.token_value = Some(Secret::new(TOKEN_VALUE));
    input
}

/// Every byte SQLite wrote for `db`: the file, its WAL and shared-memory files.
fn raw_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(b) = std::fs::read(PathBuf::from(name)) {
            bytes.extend(b);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `PRAGMA data_version` seen from another connection: changes iff the store committed.
fn data_version(watch: &rusqlite::Connection) -> i64 {
    watch
        .query_row("PRAGMA data_version", [], |r| r.get(0))
        .unwrap()
}

// --- Migrations -------------------------------------------------------------------------

#[test]
fn reopen_keeps_data_and_is_a_no_op_at_the_latest_version() {
    let (_dir, path) = temp_db();
    let key = key();
    let schema_sql = |path: &Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let id = {
        let store = Store::open_with_key(&path, &key).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::LATEST_VERSION);
        store
            .create_netbox_endpoint(NetBoxEndpointCreate::new("nb", "10.0.0.2", NB_TOKEN))
            .unwrap();
        store.create_key("ops").unwrap();
        store.create_proxmox_endpoint(pve("pve (nb:1)")).unwrap().id
    };
    let version: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::LATEST_VERSION);
    let before = schema_sql(&path);

    for _ in 0..2 {
        let store = Store::open_with_key(&path, &key).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::LATEST_VERSION);
        let endpoint = store.proxmox_endpoint_with_secrets(id).unwrap().unwrap();
        assert_eq!(endpoint.public.name, "pve (nb:1)");
        assert_eq!(endpoint.password.unwrap().expose(), PASSWORD);
        assert_eq!(
            store.netbox_singleton().unwrap().unwrap().token.expose(),
            NB_TOKEN
        );
        assert_eq!(store.list_keys().unwrap().len(), 1);
        assert!(store.key_matches().unwrap());
    }
    assert_eq!(schema_sql(&path), before);
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path) = temp_db();
    drop(Store::open_with_key(&path, &key()).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", schema::LATEST_VERSION + 1)
        .unwrap();
    assert!(matches!(
        Store::open_with_key(&path, &key()),
        Err(StoreError::Migration(_))
    ));
}

#[test]
fn database_file_is_private_and_wal() {
    let (_dir, path) = temp_db();
    let _store = Store::open_with_key(&path, &key()).unwrap();
    assert_eq!(mode(&path), 0o600);
    let journal: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

// --- NetBox endpoint --------------------------------------------------------------------

#[test]
fn netbox_endpoint_rules() {
    let store = Store::open_in_memory().unwrap();

    let mut v1 = NetBoxEndpointCreate::new("nb", "10.0.0.2", "   ");
    assert_eq!(
        invalid(store.create_netbox_endpoint(v1.clone())),
        messages::NETBOX_TOKEN_V1_REQUIRED
    );
    assert_eq!(
        messages::NETBOX_TOKEN_V1_REQUIRED,
        "token is required for NetBox API token v1"
    );

    v1.token_version = "v3".into();
    assert_eq!(
        invalid(store.create_netbox_endpoint(v1.clone())),
        "Invalid token_version. Must be 'v1' or 'v2'."
    );

    let mut v2 = NetBoxEndpointCreate::new("nb", "10.0.0.2", NB_TOKEN);
    v2.token_version = "V2".into();
    assert_eq!(
        invalid(store.create_netbox_endpoint(v2.clone())),
        "token_key and token (secret) must both be set for NetBox API token v2"
    );

    let mut bad = NetBoxEndpointCreate::new(&"n".repeat(256), "10.0.0.2", NB_TOKEN);
    bad.port = 70000;
    assert_eq!(
        unprocessable(store.create_netbox_endpoint(bad)),
        [
            (
                Some("name".into()),
                "String should have at most 255 characters".into()
            ),
            (
                Some("port".into()),
                "Input should be less than or equal to 65535".into()
            ),
        ]
    );

    v2.token_key = Some(Secret::new(NB_TOKEN_KEY));
    let created = store.create_netbox_endpoint(v2).unwrap();
    assert_eq!(created.token_version, "v2");
    assert_eq!(
        (created.port, created.verify_ssl, created.enabled),
        (443, true, true)
    );
    assert_eq!(created.url(), "https://10.0.0.2:443");
    let public = serde_json::to_value(&created).unwrap();
    assert_eq!(
        public
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        [
            "domain",
            "enabled",
            "id",
            "ip_address",
            "name",
            "port",
            "token_version",
            "verify_ssl"
        ]
    );

    let second = NetBoxEndpointCreate::new("other", "10.0.0.3", NB_TOKEN);
    assert_eq!(
        invalid(store.create_netbox_endpoint(second)),
        "Only one NetBox endpoint is allowed"
    );

    let full = store.netbox_singleton().unwrap().unwrap();
    assert_eq!(full.token.expose(), NB_TOKEN);
    assert_eq!(full.token_key.as_ref().unwrap().expose(), NB_TOKEN_KEY);
    assert_eq!(format!("{:?}", full.token), "***");

    // Partial update: only the port; secrets kept.
    let updated = store
        .update_netbox_endpoint(
            created.id,
            NetBoxEndpointUpdate {
                port: Some(8080),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((updated.port, updated.name.as_str()), (8080, "nb"));
    assert_eq!(
        store.netbox_singleton().unwrap().unwrap().token.expose(),
        NB_TOKEN
    );

    // Switching to v1 drops the token key.
    let patch: NetBoxEndpointUpdate =
        serde_json::from_value(serde_json::json!({"token_version": "v1"})).unwrap();
    store.update_netbox_endpoint(created.id, patch).unwrap();
    assert!(
        store
            .netbox_singleton()
            .unwrap()
            .unwrap()
            .token_key
            .is_none()
    );

    // Explicit null token on v1: rejected like the reference.
    let patch: NetBoxEndpointUpdate =
        serde_json::from_value(serde_json::json!({"token": null})).unwrap();
    assert_eq!(
        invalid(store.update_netbox_endpoint(created.id, patch)),
        messages::NETBOX_TOKEN_V1_REQUIRED
    );

    assert!(matches!(
        store.update_netbox_endpoint(99, NetBoxEndpointUpdate::default()),
        Err(StoreError::NotFound(store::Entity::NetBoxEndpoint))
    ));
    assert_eq!(
        store.list_netbox_endpoints(Page::default()).unwrap().len(),
        1
    );
    store.delete_netbox_endpoint(created.id).unwrap();
    assert!(store.get_netbox_endpoint(created.id).unwrap().is_none());
    let err = store.delete_netbox_endpoint(created.id).unwrap_err();
    assert_eq!(err.http_status(), 404);
    // Deleting frees the singleton.
    store
        .create_netbox_endpoint(NetBoxEndpointCreate::new("nb2", "10.0.0.4", NB_TOKEN))
        .unwrap();
}

#[test]
fn netbox_plugin_push_is_idempotent() {
    let (_dir, path) = temp_db();
    let store = Store::open_with_key(&path, &key()).unwrap();
    let payload = serde_json::json!({
        "name": "NetBox", "ip_address": "127.0.0.1", "domain": "netbox.lan", "port": 443,
        "verify_ssl": true, "token_version": "v2", "token": NB_TOKEN, "token_key": NB_TOKEN_KEY,
    });
    let created = store
        .create_netbox_endpoint(serde_json::from_value(payload.clone()).unwrap())
        .unwrap();
    assert_eq!(created.url(), "https://netbox.lan:443");
    let watch = rusqlite::Connection::open(&path).unwrap();
    let before = data_version(&watch);
    let again: NetBoxEndpointUpdate = serde_json::from_value(payload).unwrap();
    assert_eq!(
        store.update_netbox_endpoint(created.id, again).unwrap(),
        created
    );
    assert_eq!(
        data_version(&watch),
        before,
        "an unchanged push must not write"
    );

    let rotate = NetBoxEndpointUpdate {
        token: Some(Some(Secret::new("rotated-token-value"))),
        ..Default::default()
    };
    store.update_netbox_endpoint(created.id, rotate).unwrap();
    assert_ne!(data_version(&watch), before);
    assert_eq!(
        store.netbox_singleton().unwrap().unwrap().token.expose(),
        "rotated-token-value"
    );
}

// --- Proxmox endpoints ------------------------------------------------------------------

#[test]
fn proxmox_credential_rules() {
    let store = Store::open_in_memory().unwrap();
    let bare = ProxmoxEndpointCreate::new("pve", "10.0.0.10", 8006, "root@pam");
    assert_eq!(
        invalid(store.create_proxmox_endpoint(bare.clone())),
        "Provide password or both token_name/token_value"
    );
    let mut half = bare.clone();
    half.token_name = Some("root@pam!sync".into());
    assert_eq!(
        invalid(store.create_proxmox_endpoint(half.clone())),
        "token_name and token_value must be provided together"
    );
    let mut other_half = bare.clone();
    other_half.password = Some(Secret::new(PASSWORD));
    other_half.token_value = Some(Secret::new(TOKEN_VALUE));
    assert_eq!(
        invalid(store.create_proxmox_endpoint(other_half)),
        messages::PROXMOX_TOKEN_PAIR
    );
    let mut empty_password = bare;
    empty_password.password = Some(Secret::new(""));
    assert_eq!(
        invalid(store.create_proxmox_endpoint(empty_password)),
        messages::PROXMOX_CREDENTIALS_REQUIRED
    );

    let a = store.create_proxmox_endpoint(pve("pve")).unwrap();
    assert_eq!(
        invalid(store.create_proxmox_endpoint(pve_token("pve"))),
        "Proxmox endpoint name already exists"
    );
    let b = store.create_proxmox_endpoint(pve_token("pve2")).unwrap();
    let rename = ProxmoxEndpointUpdate {
        name: Some("pve".into()),
        ..Default::default()
    };
    assert_eq!(
        invalid(store.update_proxmox_endpoint(b.id, rename)),
        messages::PROXMOX_NAME_EXISTS
    );

    // Credentials on update are checked on the merged record.
    let drop_token_value = ProxmoxEndpointUpdate {
        token_value: Some(None),
        ..Default::default()
    };
    assert_eq!(
        invalid(store.update_proxmox_endpoint(b.id, drop_token_value)),
        messages::PROXMOX_TOKEN_PAIR
    );
    let drop_password = ProxmoxEndpointUpdate {
        password: Some(None),
        ..Default::default()
    };
    assert_eq!(
        invalid(store.update_proxmox_endpoint(a.id, drop_password)),
        messages::PROXMOX_CREDENTIALS_REQUIRED
    );
    let switch_to_token = ProxmoxEndpointUpdate {
        password: Some(None),
        token_name: Some(Some("root@pam!sync".into())),
        token_value: Some(Some(Secret::new(TOKEN_VALUE))),
        ..Default::default()
    };
    store
        .update_proxmox_endpoint(a.id, switch_to_token)
        .unwrap();
    let a_full = store.proxmox_endpoint_with_secrets(a.id).unwrap().unwrap();
    assert!(a_full.password.is_none() && a_full.has_token());
    assert_eq!(a_full.token_value.unwrap().expose(), TOKEN_VALUE);
}

#[test]
fn proxmox_field_limits() {
    let store = Store::open_in_memory().unwrap();
    let mut input = pve("pve");
    input.port = 0;
    input.access_methods = "ssh".into();
    input.timeout = Some(0);
    input.max_retries = Some(101);
    input.retry_backoff = Some(300.5);
    input.site_id = Some(0);
    input.username = "u".repeat(256);
    assert_eq!(
        unprocessable(store.create_proxmox_endpoint(input)),
        [
            (
                Some("port".into()),
                "Input should be greater than or equal to 1".into()
            ),
            (
                Some("username".into()),
                "String should have at most 255 characters".into()
            ),
            (
                Some("access_methods".into()),
                "Value error, access_methods must be one of ['api', 'api_ssh'] \
                 (SSH-only is not allowed; SSH only complements API)"
                    .into()
            ),
            (
                Some("site_id".into()),
                "Input should be greater than or equal to 1".into()
            ),
            (
                Some("timeout".into()),
                "Input should be greater than or equal to 1".into()
            ),
            (
                Some("max_retries".into()),
                "Input should be less than or equal to 100".into()
            ),
            (
                Some("retry_backoff".into()),
                "Input should be less than or equal to 300".into()
            ),
        ]
    );
    let mut input = pve("pve");
    input.timeout = Some(3601);
    assert_eq!(
        unprocessable(store.create_proxmox_endpoint(input)),
        [(
            Some("timeout".into()),
            "Input should be less than or equal to 3600".into()
        )]
    );
    // The field errors come before the credential rules, as in pydantic + FastAPI.
    let mut input = ProxmoxEndpointCreate::new("pve", "10.0.0.1", 8006, "root@pam");
    input.port = 65536;
    assert_eq!(unprocessable(store.create_proxmox_endpoint(input)).len(), 1);

    // Node Device name templates.
    let mut input = pve("pve");
    input.node_device_name_template = "{host}".into();
    assert_eq!(
        unprocessable(store.create_proxmox_endpoint(input)),
        [(
            Some("node_device_name_template".into()),
            "Value error, Unknown node device name placeholder: 'host'.".into()
        )]
    );
    let mut input = pve("pve (nb:3)");
    input.node_device_name_template = "{endpoint}-{node}".into();
    assert_eq!(
        unprocessable(store.create_proxmox_endpoint(input)),
        [(
            None,
            "Value error, Node 'node' in cluster 'cluster' rendered an invalid NetBox Device \
             name from template '{endpoint}-{node}' (length 15): Rendered node device name \
             must be 1-64 DNS-safe letters, digits, hyphens, or dots."
                .into()
        )]
    );
    let mut input = pve("pve");
    input.node_device_name_template = " {cluster_slug}-{node} ".into();
    let created = store.create_proxmox_endpoint(input).unwrap();
    assert_eq!(created.node_device_name_template, "{cluster_slug}-{node}");
    let rename = ProxmoxEndpointUpdate {
        name: Some("pve (nb:9)".into()),
        ..Default::default()
    };
    store.update_proxmox_endpoint(created.id, rename).unwrap();
    let endpoint_template = ProxmoxEndpointUpdate {
        node_device_name_template: Some("{endpoint}.{node}".into()),
        ..Default::default()
    };
    match store.update_proxmox_endpoint(created.id, endpoint_template) {
        Err(e @ StoreError::UnprocessableDetail(_)) => {
            assert_eq!(e.http_status(), 422);
            assert!(
                e.to_string()
                    .starts_with("Node 'node' in cluster 'cluster'"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn proxmox_crud_and_defaults() {
    let store = Store::open_in_memory().unwrap();
    let created = store.create_proxmox_endpoint(pve("pve")).unwrap();
    assert_eq!(created.port, 8006);
    assert!(created.verify_ssl && created.enabled && !created.allow_writes);
    assert_eq!(created.access_methods, store::AccessMethod::Api);
    assert_eq!(
        (created.timeout, created.max_retries, created.retry_backoff),
        (None, None, None)
    );
    let json = serde_json::to_value(&created).unwrap();
    for secret in ["password", "token_name", "token_value"] {
        assert!(
            json.get(secret).is_none(),
            "{secret} leaked into the public view"
        );
    }
    assert_eq!(json["access_methods"], "api");
    assert_eq!(json["domain"], serde_json::Value::Null);

    let patch: ProxmoxEndpointUpdate = serde_json::from_value(serde_json::json!({
        "domain": "pve.lan", "timeout": 30, "retry_backoff": 1, "access_methods": "api_ssh",
        "site_id": "4", "site_slug": "dc1",
    }))
    .unwrap();
    let updated = store.update_proxmox_endpoint(created.id, patch).unwrap();
    assert_eq!(updated.domain.as_deref(), Some("pve.lan"));
    assert_eq!(
        (updated.timeout, updated.retry_backoff),
        (Some(30), Some(1.0))
    );
    assert_eq!(
        (updated.site_id, updated.site_slug.as_deref()),
        (Some(4), Some("dc1"))
    );
    assert!(updated.access_methods.ssh_enabled());
    assert_eq!(updated.name, "pve");
    assert_eq!(updated.host(), "pve.lan");
    let cleared: ProxmoxEndpointUpdate =
        serde_json::from_value(serde_json::json!({"domain": null, "timeout": null})).unwrap();
    let cleared = store.update_proxmox_endpoint(created.id, cleared).unwrap();
    assert_eq!((cleared.domain, cleared.timeout), (None, None));
    assert_eq!(cleared.site_slug.as_deref(), Some("dc1"));
    assert_eq!(
        store
            .proxmox_endpoint_with_secrets(created.id)
            .unwrap()
            .unwrap()
            .password
            .unwrap()
            .expose(),
        PASSWORD
    );

    assert!(matches!(
        store.update_proxmox_endpoint(999, ProxmoxEndpointUpdate::default()),
        Err(StoreError::NotFound(store::Entity::ProxmoxEndpoint))
    ));
    store.delete_proxmox_endpoint(created.id).unwrap();
    assert!(store.get_proxmox_endpoint(created.id).unwrap().is_none());
    assert_eq!(
        store
            .delete_proxmox_endpoint(created.id)
            .unwrap_err()
            .http_status(),
        404
    );
    // Ids are never reused.
    assert!(store.create_proxmox_endpoint(pve("pve")).unwrap().id > created.id);
}

#[test]
fn list_pages() {
    let store = Store::open_in_memory().unwrap();
    for i in 0..105 {
        store
            .create_proxmox_endpoint(pve(&format!("pve{i}")))
            .unwrap();
    }
    assert_eq!(
        store.list_proxmox_endpoints(Page::default()).unwrap().len(),
        100
    );
    let tail = store
        .list_proxmox_endpoints(Page::new(100, 100).unwrap())
        .unwrap();
    assert_eq!(
        tail.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["pve100", "pve101", "pve102", "pve103", "pve104"]
    );
    assert_eq!(
        store
            .list_proxmox_endpoints(Page::new(3, 2).unwrap())
            .unwrap()[0]
            .name,
        "pve3"
    );
    assert_eq!(
        unprocessable(Page::new(0, 101)),
        [(
            Some("limit".into()),
            "Input should be less than or equal to 100".into()
        )]
    );
    assert_eq!(store.enabled_proxmox_endpoints().unwrap().len(), 105);
}

#[test]
fn plugin_push_conventions() {
    let (_dir, path) = temp_db();
    let store = Store::open_with_key(&path, &key()).unwrap();
    // What netbox-proxbox 0.0.29 pushes for its endpoint pk 3.
    let payload = serde_json::json!({
        "name": store::plugin_endpoint_name("Lab PVE", 3),
        "node_device_name_template": "",
        "ip_address": "192.0.2.10", "domain": "PVE.example.com.", "port": 8006,
        "username": "root@pam", "password": null, "verify_ssl": false,
        "timeout": 5, "max_retries": 0, "retry_backoff": 0.5,
        "token_name": "root@pam!proxbox", "token_value": TOKEN_VALUE,
        "enabled": true, "allow_packer_template_builds": false, "access_methods": "api",
        "site_id": null, "site_slug": null, "site_name": null,
        "tenant_id": 2, "tenant_slug": "acme", "tenant_name": "ACME",
    });
    let created = store
        .create_proxmox_endpoint(serde_json::from_value(payload.clone()).unwrap())
        .unwrap();
    assert_eq!(created.name, "Lab PVE (nb:3)");
    assert_eq!(created.plugin_pk(), Some(3));
    assert_eq!(store::plugin_pk("Lab PVE (nb:3)"), Some(3));
    assert!(created.points_at("pve.example.com", 8006));
    assert!(!created.points_at("192.0.2.10", 8006));
    assert!(!created.points_at("pve.example.com", 8007));
    assert_eq!(
        store
            .proxmox_endpoint_by_name("Lab PVE (nb:3)")
            .unwrap()
            .unwrap()
            .id,
        created.id
    );
    store.create_proxmox_endpoint(pve("other (nb:31)")).unwrap();
    let claims = store.proxmox_endpoints_for_plugin_pk(3).unwrap();
    assert_eq!(
        claims.iter().map(|e| e.id).collect::<Vec<_>>(),
        [created.id]
    );

    // The plugin PUTs the same payload before every sync: nothing is written.
    let watch = rusqlite::Connection::open(&path).unwrap();
    let before = data_version(&watch);
    let same: ProxmoxEndpointUpdate = serde_json::from_value(payload).unwrap();
    assert_eq!(
        store.update_proxmox_endpoint(created.id, same).unwrap(),
        created
    );
    assert_eq!(data_version(&watch), before);
}

// --- Secrets at rest --------------------------------------------------------------------

#[test]
fn raw_database_never_holds_plaintext_secrets() {
    let (_dir, path) = temp_db();
    let store = Store::open_with_key(&path, &key()).unwrap();
    let mut nb = NetBoxEndpointCreate::new("nb", "10.0.0.2", NB_TOKEN);
    nb.token_version = "v2".into();
    nb.token_key = Some(Secret::new(NB_TOKEN_KEY));
    store.create_netbox_endpoint(nb).unwrap();
    store.create_proxmox_endpoint(pve("pve")).unwrap();
    let tok = store.create_proxmox_endpoint(pve_token("pve2")).unwrap();
    let rotated = "rotated-password-quokka";
    store
        .update_proxmox_endpoint(
            tok.id,
            ProxmoxEndpointUpdate {
                password: Some(Some(Secret::new(rotated))),
                ..Default::default()
            },
        )
        .unwrap();
    let (_, api_key) = store.create_key("ops").unwrap();
    let registered = "registered-bootstrap-key-0123456789-abcdef";

    let secrets = [
        PASSWORD,
        TOKEN_VALUE,
        NB_TOKEN,
        NB_TOKEN_KEY,
        rotated,
        api_key.expose(),
    ];
    let check = |bytes: &[u8]| {
        assert!(
            contains(bytes, "sync@pve!proxbox"),
            "sanity: plaintext columns are readable"
        );
        for secret in secrets {
            assert!(
                !contains(bytes, secret),
                "plaintext secret found in the database files"
            );
        }
    };
    check(&raw_bytes(&path));
    drop(store);
    check(&raw_bytes(&path));

    // A registered key is stored as a digest too.
    let (_dir2, path2) = temp_db();
    let store2 = Store::open_with_key(&path2, &key()).unwrap();
    store2.register_first_key(registered, "").unwrap();
    drop(store2);
    assert!(!contains(&raw_bytes(&path2), registered));
}

#[test]
fn secrets_need_the_right_key() {
    let (_dir, path) = temp_db();
    let right = key();
    let id = {
        let store = Store::open_with_key(&path, &right).unwrap();
        store
            .create_netbox_endpoint(NetBoxEndpointCreate::new("nb", "10.0.0.2", NB_TOKEN))
            .unwrap();
        store.create_proxmox_endpoint(pve("pve")).unwrap().id
    };
    let wrong = Store::open_with_key(&path, &key()).unwrap();
    assert!(!wrong.key_matches().unwrap());
    let err = wrong.proxmox_endpoint_with_secrets(id).unwrap_err();
    assert!(
        matches!(&err, StoreError::Decrypt { field } if field == "proxmoxendpoint.password (id 1)"),
        "{err}"
    );
    assert!(matches!(
        wrong.netbox_singleton(),
        Err(StoreError::Decrypt { .. })
    ));
    // Non-secret reads still work.
    assert_eq!(wrong.get_proxmox_endpoint(id).unwrap().unwrap().name, "pve");
    let enabled = wrong.enabled_proxmox_endpoints().unwrap();
    assert!(matches!(enabled[0], Err(StoreError::Decrypt { .. })));
    // Re-pushing the secret under the new key repairs the row.
    wrong
        .update_proxmox_endpoint(
            id,
            ProxmoxEndpointUpdate {
                password: Some(Some(Secret::new(PASSWORD))),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        wrong
            .proxmox_endpoint_with_secrets(id)
            .unwrap()
            .unwrap()
            .password
            .unwrap()
            .expose(),
        PASSWORD
    );
    drop(wrong);

    let store = Store::open_with_key(&path, &right).unwrap();
    assert!(store.key_matches().unwrap());
    assert_eq!(
        store.netbox_singleton().unwrap().unwrap().token.expose(),
        NB_TOKEN
    );
}

#[test]
fn ciphertexts_cannot_be_moved() {
    let (_dir, path) = temp_db();
    let key = key();
    let store = Store::open_with_key(&path, &key).unwrap();
    let a = store.create_proxmox_endpoint(pve("a")).unwrap().id;
    let with_both = |name: &str| {
        let mut input = pve_token(name);
        input.password = Some(Secret::new("second-password-value"));
        store.create_proxmox_endpoint(input).unwrap().id
    };
    let b = with_both("b");
    let c = with_both("c");
    drop(store);

    let raw = rusqlite::Connection::open(&path).unwrap();
    // Row a's password into row b (another row); c's token value into c's password (another column).
    raw.execute(
        "UPDATE proxmoxendpoint SET password = (SELECT password FROM proxmoxendpoint WHERE id = ?1) WHERE id = ?2",
        [a, b],
    )
    .unwrap();
    raw.execute(
        "UPDATE proxmoxendpoint SET password = token_value WHERE id = ?1",
        [c],
    )
    .unwrap();
    drop(raw);

    let store = Store::open_with_key(&path, &key).unwrap();
    assert_eq!(
        store
            .proxmox_endpoint_with_secrets(a)
            .unwrap()
            .unwrap()
            .password
            .unwrap()
            .expose(),
        PASSWORD
    );
    for id in [b, c] {
        assert!(matches!(
            store.proxmox_endpoint_with_secrets(id),
            Err(StoreError::Decrypt { .. })
        ));
    }
}

#[test]
fn key_file_is_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("database.db");
    let key_path = EncryptionKey::key_file_path(&db);
    assert_eq!(key_path, dir.path().join("database.db.key"));
    let (key, source) = EncryptionKey::load_or_create_file(&key_path).unwrap();
    assert_eq!(source, store::KeySource::Generated(key_path.clone()));
    assert_eq!(mode(&key_path), 0o600);
    let (again, source) = EncryptionKey::load_or_create_file(&key_path).unwrap();
    assert_eq!(source, store::KeySource::File(key_path.clone()));
    assert_eq!(again.to_base64(), key.to_base64());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no temp file left behind"
    );

    // Store::open uses <db>.key unless PROXBOX_ENCRYPTION_KEY is set.
    if std::env::var_os(EncryptionKey::ENV).is_none()
        && std::env::var_os(EncryptionKey::FILE_ENV).is_none()
    {
        let store = Store::open(&db).unwrap();
        store.create_proxmox_endpoint(pve("pve")).unwrap();
        drop(store);
        let with_file_key = Store::open_with_key(&db, &key).unwrap();
        assert!(with_file_key.key_matches().unwrap());
    }
}

#[test]
fn loose_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("database.db.key");
    std::fs::write(&key_path, format!("{}\n", key().to_base64())).unwrap();
    for loose in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(loose)).unwrap();
        match EncryptionKey::load_or_create_file(&key_path) {
            Err(StoreError::Key(message)) => assert!(message.contains("chmod 600"), "{message}"),
            other => panic!("mode {loose:o} accepted: {other:?}"),
        }
    }
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(EncryptionKey::load_or_create_file(&key_path).is_ok());
    std::fs::write(&key_path, "garbage").unwrap();
    assert!(matches!(
        EncryptionKey::load_or_create_file(&key_path),
        Err(StoreError::Key(_))
    ));
}

#[test]
fn env_key_value_opens_the_same_secrets() {
    let (_dir, path) = temp_db();
    let key = key();
    // The value an operator would put in PROXBOX_ENCRYPTION_KEY.
    let env_value = key.to_base64();
    let id = {
        let store =
            Store::open_with_key(&path, &EncryptionKey::from_env_value(&env_value).unwrap())
                .unwrap();
        store.create_proxmox_endpoint(pve("pve")).unwrap().id
    };
    let store = Store::open_with_key(&path, &key).unwrap();
    assert_eq!(
        store
            .proxmox_endpoint_with_secrets(id)
            .unwrap()
            .unwrap()
            .password
            .unwrap()
            .expose(),
        PASSWORD
    );
    assert!(matches!(
        EncryptionKey::from_env_value("too-short"),
        Err(StoreError::Key(_))
    ));
}

// --- API keys ---------------------------------------------------------------------------

#[test]
fn api_key_bootstrap() {
    let store = Store::open_in_memory().unwrap();
    assert!(!store.bootstrap_claimed().unwrap());
    assert!(!store.has_any_key().unwrap());
    assert_eq!(
        invalid(store.register_first_key(&"k".repeat(31), "")),
        "API key must be at least 32 characters."
    );
    let plugin_key = "plugin-generated-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let first = store.register_first_key(plugin_key, "plugin").unwrap();
    assert!(store.bootstrap_claimed().unwrap() && store.has_any_key().unwrap());
    assert_eq!(store.verify_key(plugin_key).unwrap(), Some(first.id));
    match store.register_first_key("another-key-0123456789-0123456789-xx", "") {
        Err(e @ StoreError::Conflict { code: None, .. }) => {
            assert_eq!(e.http_status(), 409);
            assert_eq!(e.to_string(), "An API key is already configured.");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn api_keys_verify_and_retire() {
    let store = Store::open_in_memory().unwrap();
    let (first, raw) = store.create_key("ops").unwrap();
    assert!(raw.expose().starts_with(store::KEY_PREFIX));
    assert!(raw.expose().len() >= 43 + store::KEY_PREFIX.len());
    assert_eq!(format!("{raw}"), "***");
    assert_eq!(store.verify_key(raw.expose()).unwrap(), Some(first.id));
    assert_eq!(store.verify_key("pbx_wrong").unwrap(), None);
    assert_eq!(store.verify_key("").unwrap(), None);
    let mut almost = raw.expose().to_string();
    almost.pop();
    assert_eq!(store.verify_key(&almost).unwrap(), None);

    let last = |r: Result<_, StoreError>| match r {
        Err(
            e @ StoreError::Conflict {
                code: Some(code), ..
            },
        ) => {
            assert_eq!(code, "last_active_api_key_required");
            assert_eq!(
                e.to_string(),
                "Create and verify another active API key before retiring this key."
            );
        }
        other => panic!("{other:?}"),
    };
    last(store.delete_key(first.id).map(|_| ()));
    last(store.deactivate_key(first.id).map(|_| ()));

    let (second, raw2) = store.create_key("").unwrap();
    assert_ne!(raw2.expose(), raw.expose());
    let listed = store.list_keys().unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    let json = serde_json::to_value(&listed[0]).unwrap();
    assert_eq!(
        json.as_object().unwrap().len(),
        4,
        "only id, label, is_active, created_at"
    );

    let off = store.deactivate_key(first.id).unwrap();
    assert!(!off.is_active);
    assert_eq!(store.verify_key(raw.expose()).unwrap(), None);
    last(store.delete_key(second.id).map(|_| ()));
    store.delete_key(first.id).unwrap(); // inactive: always deletable
    assert!(matches!(
        store.delete_key(first.id),
        Err(StoreError::NotFound(store::Entity::ApiKey))
    ));
    assert!(store.bootstrap_claimed().unwrap());
    assert_eq!(store.verify_key(raw2.expose()).unwrap(), Some(second.id));
    assert_eq!(store.get_key(KeyId(12345)).unwrap(), None);
}

#[test]
fn active_key_cap() {
    let store = Store::open_in_memory().unwrap();
    store.set_max_active_keys(2);
    let (a, _) = store.create_key("a").unwrap();
    store.create_key("b").unwrap();
    match store.create_key("c") {
        Err(StoreError::Conflict {
            code: Some(code),
            message,
        }) => {
            assert_eq!(code, "active_api_key_limit_reached");
            assert!(
                message.starts_with("The configured active API-key limit is 2."),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    store.deactivate_key(a.id).unwrap();
    store.create_key("c").unwrap();
    assert!(matches!(
        store.activate_key(a.id),
        Err(StoreError::Conflict { .. })
    ));
}

#[test]
fn api_keys_from_many_threads() {
    let store = Store::open_in_memory().unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let (info, raw) = store.create_key("t").unwrap();
                assert_eq!(store.verify_key(raw.expose()).unwrap(), Some(info.id));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.list_keys().unwrap().len(), 8);
}

// --- Lockout ----------------------------------------------------------------------------

#[test]
fn lockout_after_five_failures_then_expiry() {
    let clock = ManualClock::new();
    let lockout = Lockout::with_clock(LockoutPolicy::default(), clock.clone());
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let other: IpAddr = "203.0.113.8".parse().unwrap();

    for expected_remaining in [4, 3, 2, 1] {
        assert!(matches!(lockout.status(ip), LockoutStatus::Open { .. }));
        let failure = lockout.record_failure(ip);
        assert_eq!(
            (failure.remaining_attempts, failure.locked),
            (expected_remaining, None)
        );
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(
        messages::invalid_api_key(1),
        "Invalid API key. 1 attempts remaining."
    );
    let fifth = lockout.record_failure(ip);
    assert_eq!(
        fifth,
        Failure {
            attempts: 5,
            remaining_attempts: 0,
            locked: Some(300)
        }
    );
    assert_eq!(
        messages::invalid_api_key(fifth.remaining_attempts),
        "Invalid API key."
    );

    // The 6th attempt is refused with the seconds left.
    assert_eq!(
        lockout.status(ip),
        LockoutStatus::Locked { retry_after: 300 }
    );
    clock.advance(Duration::from_millis(100_500));
    assert_eq!(
        lockout.status(ip),
        LockoutStatus::Locked { retry_after: 200 }
    );
    // Failing while locked does not extend the lock.
    assert_eq!(lockout.record_failure(ip).locked, Some(200));
    assert_eq!(
        lockout.status(other),
        LockoutStatus::Open {
            remaining_attempts: 5
        }
    );

    clock.advance(Duration::from_millis(199_499));
    assert_eq!(lockout.status(ip), LockoutStatus::Locked { retry_after: 1 });
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        lockout.status(ip),
        LockoutStatus::Open {
            remaining_attempts: 5
        }
    );
    assert_eq!(lockout.record_failure(ip).attempts, 1);

    lockout.record_success(ip);
    assert_eq!(
        lockout.status(ip),
        LockoutStatus::Open {
            remaining_attempts: 5
        }
    );
    lockout.prune();
    assert!(lockout.is_empty());
}

#[test]
fn store_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Store>();
    fn assert_lockout<T: Send + Sync>() {}
    assert_lockout::<Lockout>();
}
