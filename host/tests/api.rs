//! Contract tests of the plugin-facing HTTP API (contract §2.3, §3.2–§3.6): every route's
//! status codes and bodies, every validation error, the auth failures and the lockout.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server::{BOOTSTRAP_KEY, TestServer};
use proxbox_host::server::AppState;
use proxbox_host::server::auth::TrustedProxies;
use proxbox_host::server::openapi::ROUTES;
use proxbox_host::store::{ManualClock, Store, messages};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn store() -> Store {
    Store::open_in_memory().expect("store")
}

async fn keyed() -> TestServer {
    TestServer::start_with_key(AppState::new(store())).await
}

fn detail(answer: &common::server::Answer) -> &Value {
    &answer.json["detail"]
}

/// The single 422 item of an answer: `(type, loc)`.
fn invalid(answer: &common::server::Answer) -> (String, Value) {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    let items = answer.json["detail"].as_array().expect("422 detail list");
    assert_eq!(items.len(), 1, "{}", answer.text);
    let item = &items[0];
    assert!(item["msg"].is_string(), "{}", answer.text);
    (
        item["type"].as_str().unwrap_or_default().to_string(),
        item["loc"].clone(),
    )
}

#[tokio::test]
async fn public_routes_and_first_key_bootstrap() {
    let server = TestServer::start(AppState::new(store())).await;

    let root = server.call(Method::GET, "/", None).await;
    assert_eq!(root.status, StatusCode::OK);
    assert!(root.json["message"].is_string());
    let health = server.call(Method::GET, "/health", None).await;
    assert_eq!(health.json, json!({ "status": "ready", "init_ok": true }));
    assert_eq!(
        health.headers["x-content-type-options"], "nosniff",
        "security headers"
    );

    // Before any key exists, protected routes say how to register one.
    let version = server.call(Method::GET, "/version", None).await;
    assert_eq!(version.status, StatusCode::UNAUTHORIZED);
    assert_eq!(detail(&version), messages::NO_API_KEY_CONFIGURED);

    let status = server
        .call(Method::GET, "/auth/bootstrap-status", None)
        .await;
    assert_eq!(
        status.json,
        json!({ "needs_bootstrap": true, "has_db_keys": false })
    );

    let short = server
        .call(
            Method::POST,
            "/auth/register-key",
            Some(json!({ "api_key": "too-short" })),
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail(&short), messages::API_KEY_TOO_SHORT);

    let missing = server
        .call(Method::POST, "/auth/register-key", Some(json!({})))
        .await;
    assert_eq!(
        invalid(&missing),
        ("missing".into(), json!(["body", "api_key"]))
    );
    let no_body = server
        .call_raw(Method::POST, "/auth/register-key", "")
        .await;
    assert_eq!(invalid(&no_body), ("missing".into(), json!(["body"])));
    let garbage = server
        .call_raw(Method::POST, "/auth/register-key", "{not json")
        .await;
    assert_eq!(invalid(&garbage).0, "json_invalid");

    let registered = server
        .call(
            Method::POST,
            "/auth/register-key",
            Some(json!({ "api_key": BOOTSTRAP_KEY, "label": "plugin" })),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED);
    assert_eq!(registered.json, json!({ "detail": "API key registered." }));

    // Bootstrap works once, forever.
    let again = server
        .call(
            Method::POST,
            "/auth/register-key",
            Some(json!({ "api_key": "another-key-0123456789-abcdefghijklmnop" })),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(detail(&again), messages::API_KEY_ALREADY_CONFIGURED);
    let status = server
        .call(Method::GET, "/auth/bootstrap-status", None)
        .await;
    assert_eq!(
        status.json,
        json!({ "needs_bootstrap": false, "has_db_keys": true })
    );

    let version = server
        .call_with(Method::GET, "/version", None, Some(BOOTSTRAP_KEY), &[])
        .await;
    assert_eq!(version.status, StatusCode::OK);
    assert_eq!(version.json["version"], env!("CARGO_PKG_VERSION"));
    server.stop().await;
}

#[tokio::test]
async fn auth_failures_lock_a_client_out_until_the_window_passes() {
    let clock = ManualClock::new();
    let state = AppState::builder(store())
        .clock(Arc::new(clock.clone()))
        .build();
    let server = TestServer::start_with_key(state).await;
    let call = |key: Option<&'static str>| {
        let server = &server;
        async move {
            server
                .call_with(Method::GET, "/auth/keys", None, key, &[])
                .await
        }
    };

    let missing = call(None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(detail(&missing), "API key required. 4 attempts remaining.");
    for remaining in [3, 2, 1] {
        let wrong = call(Some("wrong")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            detail(&wrong),
            &format!("Invalid API key. {remaining} attempts remaining.")
        );
    }
    let fifth = call(Some("wrong")).await;
    assert_eq!(fifth.status, StatusCode::UNAUTHORIZED);
    assert_eq!(detail(&fifth), "Invalid API key.");

    // Locked: even the right key is refused, with Retry-After counting down.
    let locked = call(Some(BOOTSTRAP_KEY)).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(detail(&locked), messages::LOCKED_OUT);
    assert_eq!(locked.headers["retry-after"], "300");
    clock.advance(Duration::from_secs(299));
    let still = call(Some(BOOTSTRAP_KEY)).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(still.headers["retry-after"], "1");
    // Public routes stay open while locked.
    let health = call(None).await;
    assert_eq!(health.status, StatusCode::TOO_MANY_REQUESTS);
    let health = server
        .call_with(Method::GET, "/health", None, None, &[])
        .await;
    assert_eq!(health.status, StatusCode::OK);

    clock.advance(Duration::from_secs(1));
    let open = call(Some(BOOTSTRAP_KEY)).await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.text);
    // A success clears the count: the next failure starts again at 4 remaining.
    let wrong = call(Some("wrong")).await;
    assert_eq!(detail(&wrong), "Invalid API key. 4 attempts remaining.");
    server.stop().await;
}

#[tokio::test]
async fn lockout_is_per_client_and_forwarded_for_needs_a_trusted_proxy() {
    // Untrusted peer: X-Forwarded-For is ignored, so spoofing it does not dodge a lock.
    let server = keyed().await;
    for n in 0..5 {
        let spoofed = format!("10.0.0.{n}");
        let answer = server
            .call_with(
                Method::GET,
                "/version",
                None,
                Some("wrong"),
                &[("X-Forwarded-For", &spoofed)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let locked = server
        .call_with(
            Method::GET,
            "/version",
            None,
            None,
            &[("X-Forwarded-For", "10.9.9.9")],
        )
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;

    // Trusted proxy (loopback): each forwarded client has its own count.
    let state = AppState::builder(store())
        .trusted_proxies(TrustedProxies::parse("127.0.0.0/8").expect("cidr"))
        .build();
    let server = TestServer::start_with_key(state).await;
    for _ in 0..5 {
        server
            .call_with(
                Method::GET,
                "/version",
                None,
                Some("wrong"),
                &[("X-Forwarded-For", "10.0.0.1")],
            )
            .await;
    }
    let a = server
        .call_with(
            Method::GET,
            "/version",
            None,
            Some(BOOTSTRAP_KEY),
            &[("X-Forwarded-For", "10.0.0.1")],
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let b = server
        .call_with(
            Method::GET,
            "/version",
            None,
            Some(BOOTSTRAP_KEY),
            &[("X-Forwarded-For", "10.0.0.2")],
        )
        .await;
    assert_eq!(b.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn api_key_management_keeps_one_active_key() {
    let server = keyed().await;
    let created = server.call(Method::POST, "/auth/keys", None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let raw = created.json["raw_key"]
        .as_str()
        .expect("raw_key")
        .to_string();
    assert!(raw.len() >= 43, "high-entropy key: {raw}");
    let new_id = created.json["id"].as_i64().expect("id");
    assert_eq!(created.json["is_active"], true);
    assert!(created.json["created_at"].is_f64());

    let by_new_key = server
        .call_with(Method::GET, "/auth/keys", None, Some(&raw), &[])
        .await;
    assert_eq!(by_new_key.status, StatusCode::OK);
    let keys = by_new_key.json["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["id"], new_id, "newest first");
    for key in &keys {
        let mut fields: Vec<&str> = key
            .as_object()
            .expect("obj")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["created_at", "id", "is_active", "label"]);
    }
    let old_id = keys[1]["id"].as_i64().expect("id");

    let deactivated = server
        .call(
            Method::POST,
            &format!("/auth/keys/{old_id}/deactivate"),
            None,
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK);
    assert_eq!(deactivated.json["is_active"], false);
    let refused = server
        .call_with(Method::GET, "/version", None, Some(BOOTSTRAP_KEY), &[])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let mut server = server;
    server.key = Some(raw.clone());
    for path in [
        format!("/auth/keys/{new_id}/deactivate"),
        format!("/auth/keys/{new_id}"),
    ] {
        let method = if path.ends_with("deactivate") {
            Method::POST
        } else {
            Method::DELETE
        };
        let last = server.call(method, &path, None).await;
        assert_eq!(last.status, StatusCode::CONFLICT);
        assert_eq!(
            last.json,
            json!({ "detail": {
                "code": messages::LAST_ACTIVE_KEY_CODE,
                "message": messages::LAST_ACTIVE_KEY,
            }})
        );
    }
    let reactivated = server
        .call(Method::POST, &format!("/auth/keys/{old_id}/activate"), None)
        .await;
    assert_eq!(reactivated.json["is_active"], true);
    let deleted = server
        .call(Method::DELETE, &format!("/auth/keys/{new_id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    let gone = server
        .call_with(Method::GET, "/version", None, Some(&raw), &[])
        .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);

    server.key = Some(BOOTSTRAP_KEY.into());
    let missing = server.call(Method::DELETE, "/auth/keys/9999", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(detail(&missing), messages::API_KEY_NOT_FOUND);
    let not_int = server.call(Method::DELETE, "/auth/keys/abc", None).await;
    assert_eq!(
        invalid(&not_int),
        ("int_parsing".into(), json!(["path", "key_id"]))
    );
    server.stop().await;
}

fn netbox_body() -> Value {
    json!({
        "name": "NetBox", "ip_address": "127.0.0.1", "domain": "", "port": 8001,
        "verify_ssl": false, "token_version": "v1", "token": "0123456789abcdef0123456789abcdef01234567",
    })
}

#[tokio::test]
async fn netbox_endpoint_contract() {
    let server = keyed().await;
    let post = |body: Value| {
        let server = &server;
        async move {
            server
                .call(Method::POST, "/netbox/endpoint", Some(body))
                .await
        }
    };
    let with = |changes: Value| {
        let mut body = netbox_body();
        for (k, v) in changes.as_object().expect("obj") {
            body[k] = v.clone();
        }
        body
    };

    let mut no_token = netbox_body();
    no_token.as_object_mut().expect("obj").remove("token");
    assert_eq!(
        invalid(&post(no_token).await),
        ("missing".into(), json!(["body", "token"]))
    );
    assert_eq!(
        invalid(&post(with(json!({ "port": 70000 }))).await),
        ("less_than_equal".into(), json!(["body", "port"]))
    );
    assert_eq!(
        invalid(&post(with(json!({ "port": 0 }))).await),
        ("greater_than_equal".into(), json!(["body", "port"]))
    );
    assert_eq!(
        invalid(&post(with(json!({ "name": "x".repeat(256) }))).await),
        ("string_too_long".into(), json!(["body", "name"]))
    );
    assert_eq!(
        invalid(&post(with(json!({ "ip_address": "1".repeat(46) }))).await),
        ("string_too_long".into(), json!(["body", "ip_address"]))
    );
    assert_eq!(
        invalid(&post(with(json!({ "verify_ssl": "maybe" }))).await),
        ("bool_type".into(), json!(["body", "verify_ssl"]))
    );
    for (changes, message) in [
        (json!({ "token_version": "v3" }), messages::NETBOX_TOKEN_VERSION_INVALID.to_string()),
        (json!({ "token": "  " }), messages::NETBOX_TOKEN_V1_REQUIRED.to_string()),
        (json!({ "token_version": "v2" }), messages::NETBOX_TOKEN_V2_PAIR.to_string()),
        (
            json!({ "ip_address": "" }),
            "Invalid IP address: Host cannot be empty. Adjust SSRF settings in ProxboxPluginSettings.".to_string(),
        ),
        (
            json!({ "ip_address": "0.0.0.0" }),
            "Invalid IP address: Host '0.0.0.0' is an unspecified IP address. Adjust SSRF settings in ProxboxPluginSettings.".to_string(),
        ),
        (
            json!({ "domain": "::" }),
            "Invalid domain: Host '::' is an unspecified IP address. Adjust SSRF settings in ProxboxPluginSettings.".to_string(),
        ),
    ] {
        let answer = post(with(changes.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{changes}: {}", answer.text);
        assert_eq!(detail(&answer), &message, "{changes}");
    }

    let created = post(netbox_body()).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let id = created.json["id"].as_i64().expect("id");
    assert_eq!(
        created.json,
        json!({
            "id": id, "name": "NetBox", "ip_address": "127.0.0.1", "domain": "", "port": 8001,
            "token_version": "v1", "verify_ssl": false, "enabled": true,
        })
    );
    let second = post(with(json!({ "name": "Other" }))).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail(&second), messages::NETBOX_SINGLETON);

    // Unknown query parameters are ignored; the page is validated.
    let listed = server
        .call(
            Method::GET,
            "/netbox/endpoint?offset=0&limit=10&whatever=1",
            None,
        )
        .await;
    assert_eq!(listed.json, json!([created.json.clone()]));
    let too_many = server
        .call(Method::GET, "/netbox/endpoint?limit=101", None)
        .await;
    assert_eq!(
        invalid(&too_many),
        ("less_than_equal".into(), json!(["query", "limit"]))
    );
    let not_int = server
        .call(Method::GET, "/netbox/endpoint?offset=x", None)
        .await;
    assert_eq!(
        invalid(&not_int),
        ("int_parsing".into(), json!(["query", "offset"]))
    );

    let got = server
        .call(Method::GET, &format!("/netbox/endpoint/{id}"), None)
        .await;
    assert_eq!(got.json, created.json);
    for (method, message) in [
        (Method::GET, messages::NETBOX_NOT_FOUND),
        (Method::PUT, messages::NETBOX_NOT_FOUND_UPDATE),
        (Method::DELETE, messages::NETBOX_NOT_FOUND_DELETE),
    ] {
        let body = (method == Method::PUT).then(|| json!({ "name": "x" }));
        let answer = server
            .call(method.clone(), "/netbox/endpoint/999", body)
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(detail(&answer), message, "{method}");
    }

    // The plugin's push: PUT the same record again changes nothing; a partial PUT.
    let same = server
        .call(
            Method::PUT,
            &format!("/netbox/endpoint/{id}"),
            Some(netbox_body()),
        )
        .await;
    assert_eq!(same.json, created.json);
    let moved = server
        .call(
            Method::PUT,
            &format!("/netbox/endpoint/{id}"),
            Some(json!({ "port": 8443, "verify_ssl": true })),
        )
        .await;
    assert_eq!(moved.json["port"], 8443);
    assert_eq!(moved.json["name"], "NetBox");
    let bad_update = server
        .call(
            Method::PUT,
            &format!("/netbox/endpoint/{id}"),
            Some(json!({ "ip_address": "0.0.0.0" })),
        )
        .await;
    assert_eq!(bad_update.status, StatusCode::BAD_REQUEST);

    let deleted = server
        .call(Method::DELETE, &format!("/netbox/endpoint/{id}"), None)
        .await;
    assert_eq!(deleted.json, json!({ "message": messages::NETBOX_DELETED }));
    let status = server.call(Method::GET, "/netbox/status", None).await;
    assert_eq!(status.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        status.json,
        json!({
            "message": "No NetBox endpoint found",
            "detail": "Please add a NetBox endpoint in the database",
            "python_exception": null,
        })
    );
    server.stop().await;
}

fn proxmox_body(name: &str) -> Value {
    json!({
        "name": name, "ip_address": "10.0.0.10", "domain": null, "port": 8006,
        "username": "root@pam", "password": null, "verify_ssl": false, "timeout": 30,
        "max_retries": 2, "retry_backoff": 0.5, "token_name": "proxbox",
        "token_value": "11111111-2222-3333-4444-555555555555", "access_methods": "api",
        "site_id": null, "site_slug": null, "site_name": null,
        "tenant_id": null, "tenant_slug": null, "tenant_name": null,
    })
}

#[tokio::test]
async fn proxmox_endpoint_contract() {
    let server = keyed().await;
    let post = |body: Value| {
        let server = &server;
        async move {
            server
                .call(Method::POST, "/proxmox/endpoints", Some(body))
                .await
        }
    };
    let with = |changes: Value| {
        let mut body = proxmox_body("pve (nb:1)");
        for (k, v) in changes.as_object().expect("obj") {
            body[k] = v.clone();
        }
        body
    };
    for (changes, message) in [
        (json!({ "token_value": null }), messages::PROXMOX_TOKEN_PAIR),
        (json!({ "token_name": null }), messages::PROXMOX_TOKEN_PAIR),
        (
            json!({ "token_name": null, "token_value": null }),
            messages::PROXMOX_CREDENTIALS_REQUIRED,
        ),
        (
            json!({ "ip_address": "0.0.0.0" }),
            "Invalid IP address: Host '0.0.0.0' is an unspecified IP address",
        ),
        (
            json!({ "domain": "0.0.0.0" }),
            "Invalid domain: Host '0.0.0.0' is an unspecified IP address",
        ),
    ] {
        let answer = post(with(changes.clone())).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{changes}: {}",
            answer.text
        );
        assert_eq!(detail(&answer), message, "{changes}");
    }
    for (changes, kind, field) in [
        (
            json!({ "access_methods": "ssh" }),
            "value_error",
            "access_methods",
        ),
        (json!({ "timeout": 0 }), "greater_than_equal", "timeout"),
        (json!({ "timeout": 3601 }), "less_than_equal", "timeout"),
        (
            json!({ "max_retries": 101 }),
            "less_than_equal",
            "max_retries",
        ),
        (
            json!({ "retry_backoff": 301.0 }),
            "less_than_equal",
            "retry_backoff",
        ),
        (json!({ "port": 65536 }), "less_than_equal", "port"),
    ] {
        let answer = post(with(changes.clone())).await;
        let (got_kind, loc) = invalid(&answer);
        assert_eq!(got_kind, kind, "{changes}: {}", answer.text);
        assert_eq!(loc, json!(["body", field]), "{changes}");
    }
    let mut no_port = proxmox_body("x");
    no_port.as_object_mut().expect("obj").remove("port");
    assert_eq!(
        invalid(&post(no_port).await),
        ("missing".into(), json!(["body", "port"]))
    );

    let created = post(proxmox_body("pve (nb:1)")).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let id = created.json["id"].as_i64().expect("id");
    for secret_field in ["password", "token_name", "token_value"] {
        assert!(
            created.json.get(secret_field).is_none(),
            "{secret_field} returned: {}",
            created.text
        );
    }
    assert_eq!(created.json["name"], "pve (nb:1)");
    assert_eq!(created.json["access_methods"], "api");
    assert_eq!(created.json["timeout"], 30);
    let duplicate = post(proxmox_body("pve (nb:1)")).await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert_eq!(detail(&duplicate), messages::PROXMOX_NAME_EXISTS);

    // The plugin's push: list, find its row by name, PUT it unchanged, verify the target.
    let listed = server.call(Method::GET, "/proxmox/endpoints", None).await;
    let row = listed
        .json
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["name"] == "pve (nb:1)")
        .expect("pushed row")
        .clone();
    assert_eq!(
        (row["ip_address"].clone(), row["port"].clone()),
        (json!("10.0.0.10"), json!(8006))
    );
    let same = server
        .call(
            Method::PUT,
            &format!("/proxmox/endpoints/{id}"),
            Some(proxmox_body("pve (nb:1)")),
        )
        .await;
    assert_eq!(same.json, created.json);
    let renamed = server
        .call(
            Method::PUT,
            &format!("/proxmox/endpoints/{id}"),
            Some(json!({ "domain": "pve.example.test", "enabled": false })),
        )
        .await;
    assert_eq!(renamed.json["domain"], "pve.example.test");
    assert_eq!(renamed.json["enabled"], false);
    let bad_host = server
        .call(
            Method::PUT,
            &format!("/proxmox/endpoints/{id}"),
            Some(json!({ "ip_address": "::" })),
        )
        .await;
    assert_eq!(bad_host.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        detail(&bad_host),
        "Invalid IP address: Host '::' is an unspecified IP address. Adjust SSRF settings in ProxboxPluginSettings."
    );

    for (method, message) in [
        (Method::GET, messages::PROXMOX_NOT_FOUND),
        (Method::PUT, messages::PROXMOX_NOT_FOUND_UPDATE),
        (Method::DELETE, messages::PROXMOX_NOT_FOUND),
    ] {
        let body = (method == Method::PUT).then(|| json!({ "enabled": true }));
        let answer = server
            .call(method.clone(), "/proxmox/endpoints/999", body)
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(detail(&answer), message, "{method}");
    }
    let deleted = server
        .call(Method::DELETE, &format!("/proxmox/endpoints/{id}"), None)
        .await;
    assert_eq!(
        deleted.json,
        json!({ "message": messages::PROXMOX_DELETED })
    );
    let empty = server.call(Method::GET, "/proxmox/endpoints", None).await;
    assert_eq!(empty.json, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_the_docs_list_them() {
    let server = keyed().await;
    let doc = server.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.json["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            operations += 1;
            let concrete = path
                .replace("{key_id}", "999999")
                .replace("{netbox_id}", "999999")
                .replace("{endpoint_id}", "999999")
                .replace("{netbox_vm_id}", "999999");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
            let answer = server.call(method.clone(), &concrete, body).await;
            assert_ne!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_ne!(
                answer.json,
                json!({ "detail": "Not Found" }),
                "{method} {path} is documented but not routed"
            );
        }
    }
    assert_eq!(operations, ROUTES.len());
    let unknown = server.call(Method::GET, "/no/such/route", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json, json!({ "detail": "Not Found" }));

    let docs = server.call(Method::GET, "/docs", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    for route in ROUTES {
        assert!(
            docs.text.contains(route.path),
            "{} missing from /docs",
            route.path
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn sync_active_lists_registered_runs() {
    let server = keyed().await;
    let idle = server.call(Method::GET, "/sync/active", None).await;
    assert_eq!(
        idle.json,
        json!({ "active": false, "started_at": null, "id": null, "kind": null, "runs": [] })
    );
    let run = server.state.runs().start("full-update", Some("run-1"));
    let busy = server.call(Method::GET, "/sync/active", None).await;
    assert_eq!(busy.json["active"], true);
    assert_eq!(busy.json["id"], "run-1");
    assert_eq!(busy.json["kind"], "full-update");
    assert_eq!(busy.json["runs"].as_array().map(Vec::len), Some(1));
    drop(run);
    let idle = server.call(Method::GET, "/sync/active", None).await;
    assert_eq!(idle.json["active"], false);
    server.stop().await;
}
