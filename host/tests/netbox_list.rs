//! `NetBoxClient::list` against a small fake NetBox: pages read by offset once the
//! `count` is known (concurrently), `next` followed when it is not (even when it names
//! another host), and `list_by` splitting long filters into request-line-sized reads.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use proxbox_host::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken};
use proxbox_host::sync::apply::list_by;
use serde_json::{Value, json};

/// The fake's objects and the query strings it was asked.
#[derive(Clone, Default)]
struct Fake {
    total: usize,
    with_count: bool,
    asked: Arc<Mutex<Vec<String>>>,
}

fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn objects(State(fake): State<Fake>, RawQuery(query): RawQuery) -> Json<Value> {
    let query = query.unwrap_or_default();
    fake.asked.lock().unwrap().push(query.clone());
    let ids: Vec<usize> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let all: Vec<usize> = if ids.is_empty() {
        (1..=fake.total).collect()
    } else {
        ids
    };
    let limit: usize = param(&query, "limit").and_then(|l| l.parse().ok()).unwrap();
    let offset: usize = param(&query, "offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|id| json!({"id": id}))
        .collect();
    let next = (offset + limit < all.len()).then(|| {
        format!(
            "http://proxy.invalid/api/things/?limit={limit}&offset={}",
            offset + limit
        )
    });
    let mut body = json!({"next": next, "previous": null, "results": page});
    if fake.with_count {
        body["count"] = json!(all.len());
    }
    Json(body)
}

async fn client_for(fake: Fake) -> NetBoxClient {
    let app = axum::Router::new()
        .route("/api/things/", get(objects))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    NetBoxClient::new(NetBoxConfig::new(
        format!("http://{addr}"),
        NetBoxToken::parse("0123456789abcdef0123456789abcdef01234567"),
    ))
    .unwrap()
}

fn ids(objects: &[Value]) -> Vec<u64> {
    objects.iter().filter_map(|o| o["id"].as_u64()).collect()
}

#[tokio::test]
async fn pages_are_read_by_offset_once_the_count_is_known() {
    let fake = Fake {
        total: 2501,
        with_count: true,
        ..Fake::default()
    };
    let client = client_for(fake.clone()).await;
    let listed = client
        .list("things/", &[("name", "x".into())])
        .await
        .unwrap();
    assert_eq!(ids(&listed), (1..=2501).collect::<Vec<u64>>());
    let asked = fake.asked.lock().unwrap().clone();
    let offsets: BTreeSet<Option<String>> = asked.iter().map(|q| param(q, "offset")).collect();
    assert_eq!(
        offsets,
        BTreeSet::from([None, Some("1000".into()), Some("2000".into())])
    );
    assert!(
        asked
            .iter()
            .all(|q| param(q, "name").as_deref() == Some("x"))
    );
}

#[tokio::test]
async fn next_is_followed_without_a_count_whatever_host_it_names() {
    let fake = Fake {
        total: 2100,
        with_count: false,
        ..Fake::default()
    };
    let client = client_for(fake.clone()).await;
    let listed = client.list("things/", &[]).await.unwrap();
    assert_eq!(ids(&listed), (1..=2100).collect::<Vec<u64>>());
    assert_eq!(fake.asked.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn long_filters_are_split_into_request_line_sized_reads() {
    let fake = Fake {
        total: 0,
        with_count: true,
        ..Fake::default()
    };
    let client = client_for(fake.clone()).await;
    let wanted: BTreeSet<String> = (100_000..101_000).map(|i: u32| i.to_string()).collect();
    let listed = list_by(
        &client,
        "things/",
        "id",
        &wanted,
        &[("fields", "id".into())],
    )
    .await
    .unwrap();
    let got: BTreeSet<String> = ids(&listed).iter().map(u64::to_string).collect();
    assert_eq!(got, wanted);
    let asked = fake.asked.lock().unwrap().clone();
    assert!(asked.len() > 1, "{} requests", asked.len());
    for query in &asked {
        assert!(query.len() < 3000, "request line of {} bytes", query.len());
        assert_eq!(param(query, "fields").as_deref(), Some("id"));
    }
}
