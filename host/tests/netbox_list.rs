//! `NetBoxClient::list` against a small fake NetBox: pages read by id ranges (so a
//! delete by someone else mid-read hides nothing), `next` followed for a query with its
//! own ordering (even when it names another host), and `list_by` splitting long filters
//! into request-line-sized reads.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use proxbox_host::netbox::{Existing, NetBoxClient, NetBoxConfig, NetBoxToken};
use proxbox_host::sync::apply::{list_by, list_each};
use serde_json::{Value, json};

/// The fake's objects and the query strings it was asked.
#[derive(Clone, Default)]
struct Fake {
    objects: Arc<Mutex<BTreeSet<u64>>>,
    /// Deleted (by "someone else") right after the first request is answered.
    delete_after_first: Option<u64>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn with(total: u64) -> Fake {
        Fake {
            objects: Arc::new(Mutex::new((1..=total).collect())),
            ..Fake::default()
        }
    }
}

fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn number(query: &str, name: &str) -> Option<u64> {
    param(query, name).and_then(|v| v.parse().ok())
}

async fn objects(State(fake): State<Fake>, RawQuery(query): RawQuery) -> Json<Value> {
    let query = query.unwrap_or_default();
    let first = {
        let mut asked = fake.asked.lock().unwrap();
        asked.push(query.clone());
        asked.len() == 1
    };
    let ids: BTreeSet<u64> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let mut all: Vec<u64> = fake
        .objects
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|id| ids.is_empty() || ids.contains(id))
        .filter(|id| number(&query, "id__gt").is_none_or(|gt| *id > gt))
        .filter(|id| number(&query, "id__lte").is_none_or(|lte| *id <= lte))
        .collect();
    if param(&query, "ordering").as_deref() == Some("-id") {
        all.reverse();
    }
    let limit = number(&query, "limit").unwrap() as usize;
    let offset = number(&query, "offset").unwrap_or(0) as usize;
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|id| json!({"id": id}))
        .collect();
    let next = (offset + limit < all.len()).then(|| {
        let mut next: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != "offset")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        next.push(("offset".into(), (offset + limit).to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        format!("http://proxy.invalid/api/things/?{query}")
    });
    if first && let Some(id) = fake.delete_after_first {
        fake.objects.lock().unwrap().remove(&id);
    }
    Json(json!({"count": all.len(), "next": next, "previous": null, "results": page}))
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

fn ids<E: Existing>(objects: &[E]) -> Vec<u64> {
    objects
        .iter()
        .filter_map(|o| o.parsed()["id"].as_u64())
        .collect()
}

#[tokio::test]
async fn pages_are_read_by_id_so_a_delete_meanwhile_hides_nothing() {
    let fake = Fake {
        delete_after_first: Some(5),
        ..Fake::with(4321)
    };
    let client = client_for(fake.clone()).await;
    let listed = client
        .list("things/", &[("name", "x".into())])
        .await
        .unwrap();
    assert_eq!(ids(&listed), (1..=4321).collect::<Vec<u64>>());
    let asked = fake.asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|q| param(q, "name").as_deref() == Some("x"))
    );
    assert!(
        asked.iter().all(|q| param(q, "offset").is_none()),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .filter(|q| param(q, "id__gt").is_some())
            .count()
            > 1,
        "the rest is read in id ranges: {asked:?}"
    );
}

#[tokio::test]
async fn a_query_with_its_own_ordering_follows_next_whatever_host_it_names() {
    let fake = Fake::with(2100);
    let client = client_for(fake.clone()).await;
    let listed = client
        .list("things/", &[("ordering", "name".into())])
        .await
        .unwrap();
    assert_eq!(ids(&listed), (1..=2100).collect::<Vec<u64>>());
    assert_eq!(fake.asked.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn long_filters_are_split_into_request_line_sized_reads() {
    let fake = Fake::with(200_000);
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

#[tokio::test]
async fn single_value_filters_get_one_request_per_value() {
    let fake = Fake::with(10);
    let client = client_for(fake.clone()).await;
    let clusters: BTreeSet<String> = ["3", "7", "12"].map(String::from).into();
    list_each(&client, "things/", "cluster", &clusters, &[])
        .await
        .unwrap();
    let asked: BTreeSet<String> = fake
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|q| {
            let values: Vec<String> = url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "cluster")
                .map(|(_, v)| v.into_owned())
                .collect();
            assert_eq!(values.len(), 1, "{q}");
            values[0].clone()
        })
        .collect();
    assert_eq!(asked, clusters);
}
