//! The NetBox client and reconcile engine against a real NetBox 4.7 with the
//! netbox-proxbox plugin (`tests/netbox/netbox.sh up`).
//!
//! Needs `NETBOX_URL` and `NETBOX_TOKEN_V2_HEADER` (source the env file `netbox.sh` writes).
//! Without them each test prints why it is skipped — unless `PROXBOX_REQUIRE_NETBOX=1`
//! (set by `.ci/run`), which turns a missing NetBox into a failure.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use proxbox_host::netbox::prerequisites::{self, Prerequisites};
use proxbox_host::netbox::reconcile::{self, Desired, KindSpec};
use proxbox_host::netbox::vms::{self, DesiredVm, VmIdentity};
use proxbox_host::netbox::{NetBoxClient, NetBoxConfig, NetBoxToken, OverwriteFlags};
use serde_json::{Map, Value, json};

/// A client for the test NetBox, or `None` (with a message) when there is none.
fn netbox() -> Option<NetBoxClient> {
    let url = std::env::var("NETBOX_URL").ok().filter(|u| !u.is_empty());
    let token = std::env::var("NETBOX_TOKEN_V2_HEADER")
        .ok()
        .filter(|t| !t.is_empty());
    match (url, token) {
        (Some(url), Some(token)) => Some(
            NetBoxClient::new(NetBoxConfig::new(url, NetBoxToken::parse(&token))).expect("client"),
        ),
        _ => {
            assert!(
                std::env::var("PROXBOX_REQUIRE_NETBOX").as_deref() != Ok("1"),
                "PROXBOX_REQUIRE_NETBOX=1 but NETBOX_URL / NETBOX_TOKEN_V2_HEADER are not set"
            );
            // Written to the stream directly so the test harness does not swallow it.
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

/// Prerequisites plus a fresh cluster for one test.
async fn setup(client: &NetBoxClient, name: &str) -> (Prerequisites, u64) {
    let status = client.status().await.expect("status");
    assert!(
        status.has_proxbox_plugin(),
        "the netbox-proxbox plugin is not installed"
    );
    let prereqs = prerequisites::ensure_all(client, &status)
        .await
        .expect("prerequisites");
    let cluster = client
        .create(
            "virtualization/clusters/",
            json!({"name": unique(name), "type": prereqs.cluster_types["cluster"]}),
        )
        .await
        .expect("cluster");
    (prereqs, cluster["id"].as_u64().unwrap())
}

fn vm(prereqs: &Prerequisites, cluster: u64, vmid: u32, memory: u64) -> DesiredVm {
    let payload: Map<String, Value> = json!({
        "name": format!("vm-{vmid}"),
        "status": "active",
        "cluster": cluster,
        "vcpus": 2,
        "memory": memory,
        "description": format!("Synced from Proxmox node pve1"),
        "tags": [prereqs.ownership_tag().unwrap()],
    })
    .as_object()
    .unwrap()
    .clone();
    DesiredVm {
        identity: VmIdentity {
            endpoint: 1,
            vmid,
            kind: "qemu".into(),
        },
        payload,
        cluster_name: "pve".into(),
        node_name: "pve1".into(),
    }
}

fn owned() -> std::collections::BTreeSet<String> {
    OverwriteFlags::default().vm_fields()
}

#[tokio::test]
async fn prerequisites_are_idempotent() {
    let Some(client) = netbox() else { return };
    let status = client.status().await.expect("status");
    let first = prerequisites::ensure_all(&client, &status)
        .await
        .expect("first");
    let writes = client.counts().writes();
    let second = prerequisites::ensure_all(&client, &status)
        .await
        .expect("second");
    assert_eq!(first, second);
    assert_eq!(
        client.counts().writes(),
        writes,
        "a second ensure writes nothing"
    );
    assert!(first.ownership_tag().is_some());
    assert_eq!(first.roles.len(), 4);
    assert_eq!(first.vm_types.len(), 2, "NetBox 4.7 has VM types");
}

#[tokio::test]
async fn thousand_vms_then_a_second_reconcile_writes_nothing() {
    let Some(client) = netbox() else { return };
    let (prereqs, cluster) = setup(&client, "e2e-bulk").await;
    let desired: Vec<DesiredVm> = (0..1000)
        .map(|i| vm(&prereqs, cluster, 1000 + i, 2048))
        .collect();

    let applied = vms::reconcile_cluster(&client, cluster, &desired, owned(), true)
        .await
        .expect("first");
    assert_eq!(
        applied.created,
        1000,
        "failed: {:?}",
        applied.failed.values().next()
    );
    assert!(applied.failed.is_empty());

    let writes = client.counts().writes();
    let applied = vms::reconcile_cluster(&client, cluster, &desired, owned(), true)
        .await
        .expect("second");
    assert_eq!(
        (applied.created, applied.updated, applied.unchanged),
        (0, 0, 1000)
    );
    assert!(applied.deleted.is_empty());
    assert_eq!(
        client.counts().writes(),
        writes,
        "the second reconcile made write requests"
    );
}

#[tokio::test]
async fn one_changed_field_patches_exactly_that_field() {
    let Some(client) = netbox() else { return };
    let (prereqs, cluster) = setup(&client, "e2e-patch").await;
    let mut desired: Vec<DesiredVm> = (0..20)
        .map(|i| vm(&prereqs, cluster, 200 + i, 1024))
        .collect();
    vms::reconcile_cluster(&client, cluster, &desired, owned(), true)
        .await
        .expect("create");

    desired[7].payload.insert("memory".into(), json!(4096));
    // The plan holds one patch, of that field only.
    let existing = client
        .list(vms::VM_PATH, &[("cluster_id", cluster.to_string())])
        .await
        .expect("list");
    let target = existing
        .iter()
        .find(|v| v["name"] == "vm-207")
        .and_then(|v| v["id"].as_u64())
        .expect("vm-207");
    let writes = client.counts().writes();
    let applied = vms::reconcile_cluster(&client, cluster, &desired, owned(), true)
        .await
        .expect("patch");
    assert_eq!(
        (applied.updated, applied.unchanged, applied.created),
        (1, 19, 0)
    );
    assert_eq!(client.counts().writes(), writes + 1, "one bulk PATCH");
    let after = client
        .request(
            reqwest::Method::GET,
            &format!("{}{target}/", vms::VM_PATH),
            &[],
            None,
        )
        .await
        .expect("get");
    assert_eq!(after["memory"], json!(4096));
    assert_eq!(after["vcpus"].as_f64(), Some(2.0));

    // The change log shows exactly one update of that object, changing only `memory`.
    let changes = client
        .list(
            "core/object-changes/",
            &[
                ("changed_object_id", target.to_string()),
                ("action", "update".into()),
            ],
        )
        .await
        .expect("object changes");
    let vm_changes: Vec<&Value> = changes
        .iter()
        .filter(|c| c["changed_object_type"] == "virtualization.virtualmachine")
        .collect();
    assert_eq!(vm_changes.len(), 1, "{vm_changes:?}");
    let pre = vm_changes[0]["prechange_data"]
        .as_object()
        .expect("prechange");
    let post = vm_changes[0]["postchange_data"]
        .as_object()
        .expect("postchange");
    let changed: Vec<&String> = post
        .iter()
        .filter(|(k, v)| pre.get(*k) != Some(v) && *k != "last_updated")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed, vec!["memory"]);
}

#[tokio::test]
async fn a_validation_error_fails_that_object_and_the_others_land() {
    let Some(client) = netbox() else { return };
    let (prereqs, cluster) = setup(&client, "e2e-invalid").await;
    // An operator's VM already holds the name; NetBox names are unique per cluster, ignoring case.
    client
        .create(
            vms::VM_PATH,
            json!({"name": "taken", "cluster": cluster, "status": "active"}),
        )
        .await
        .expect("operator VM");
    let mut desired: Vec<DesiredVm> = (0..4)
        .map(|i| vm(&prereqs, cluster, 300 + i, 512))
        .collect();
    desired[2].payload.insert("name".into(), json!("TAKEN"));
    let applied = vms::reconcile_cluster(&client, cluster, &desired, owned(), false)
        .await
        .expect("reconcile");
    assert_eq!(applied.created, 3);
    let error = applied
        .failed
        .get(&2)
        .expect("the duplicate failed")
        .to_string();
    assert!(
        error.contains("unique"),
        "NetBox's message is surfaced: {error}"
    );
    let names: Vec<String> = client
        .list(vms::VM_PATH, &[("cluster_id", cluster.to_string())])
        .await
        .expect("list")
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    for name in ["vm-300", "vm-301", "vm-303", "taken"] {
        assert!(
            names.contains(&name.to_string()),
            "{name} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn deletes_need_a_complete_scope_and_our_ownership_mark() {
    let Some(client) = netbox() else { return };
    let (prereqs, cluster) = setup(&client, "e2e-delete").await;
    let desired: Vec<DesiredVm> = (0..3)
        .map(|i| vm(&prereqs, cluster, 400 + i, 512))
        .collect();
    vms::reconcile_cluster(&client, cluster, &desired, owned(), true)
        .await
        .expect("create");
    let unmarked = client
        .create(
            vms::VM_PATH,
            json!({"name": "operator-made", "cluster": cluster, "status": "active"}),
        )
        .await
        .expect("operator VM")["id"]
        .as_u64()
        .unwrap();

    // Scope not read completely: nothing is deleted.
    let applied = vms::reconcile_cluster(&client, cluster, &desired[..1], owned(), false)
        .await
        .expect("partial");
    assert!(applied.deleted.is_empty());
    assert_eq!(applied.kept.len(), 3);

    // Complete scope: our two stale VMs go, the operator's VM stays.
    let applied = vms::reconcile_cluster(&client, cluster, &desired[..1], owned(), true)
        .await
        .expect("complete");
    assert_eq!(applied.deleted.len(), 2);
    assert_eq!(applied.kept, vec![unmarked]);
    let left: Vec<u64> = client
        .list(vms::VM_PATH, &[("cluster_id", cluster.to_string())])
        .await
        .expect("list")
        .iter()
        .filter_map(|v| v["id"].as_u64())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&unmarked));
}

#[tokio::test]
async fn list_reads_follow_pagination() {
    let Some(client) = netbox() else { return };
    let status = client.status().await.expect("status");
    let prereqs = prerequisites::ensure_all(&client, &status)
        .await
        .expect("prerequisites");
    let spec = KindSpec {
        path: "extras/tags/".into(),
        identity: Box::new(|o: &Map<String, Value>| o.get("slug").map(|s| vec![s.clone()])),
        owned: Default::default(),
        merge_tags: false,
        ownership_tag: "proxbox".into(),
    };
    let prefix = unique("pg");
    let desired: Vec<Desired> = (0..25)
        .map(|i| {
            let payload = json!({"name": format!("{prefix}-{i}"), "slug": format!("{prefix}-{i}")});
            let payload = payload.as_object().unwrap().clone();
            Desired {
                identity: (spec.identity)(&payload),
                payload,
            }
        })
        .collect();
    let plan = reconcile::plan::<Value>(&spec, &desired, &[]);
    let applied = reconcile::apply(&client, &spec, plan, false).await;
    assert_eq!(applied.created, 25);
    let gets = client.counts().gets();
    let listed = client
        .list(
            "extras/tags/",
            &[("slug__isw", prefix.clone()), ("limit", "10".into())],
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 25);
    // The first page in id order, the newest id, then up to four id ranges of ≤ 10.
    let used = client.counts().gets() - gets;
    assert!((3..=6).contains(&used), "{used} list requests");
    let by_slug: BTreeMap<String, u64> = listed
        .iter()
        .map(|t| {
            (
                t["slug"].as_str().unwrap().to_string(),
                t["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_slug.len(), 25);
    assert!(prereqs.ownership_tag().is_some());
}
