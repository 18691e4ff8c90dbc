//! Stage `devices` (contract §7.1): Proxmox nodes become NetBox devices, in the NetBox
//! cluster their Proxmox cluster becomes. Clusters are matched by name, devices by
//! `(name, cluster)`; an existing device's site is never changed. Nothing is deleted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::apply::{list_by, reconcile_kind};
use super::mapping::{self, map_batch};
use super::report::{Item, Outcome, Phase};
use super::resolve::{default_site, ensure_sites, ensure_tags, ids_by};
use super::{EndpointRead, StageSummary, SyncRun, custom_fields, read_inventories};
use crate::events::{ErrorCategory, ErrorDetail, EventSink, Failure};
use crate::mapper::v1::{DesiredCluster, DesiredDevice};
use crate::mapper::{Kind, MapInput, MapOutput};
use crate::netbox::Listed;
use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::reconcile::{Desired, KindSpec, normalise};
use crate::normalize;
use crate::proxmox::models::ClusterStatusEntry;

/// Stage and phase name.
pub const PHASE: &str = "devices";

/// A NetBox cluster the sync resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterRef {
    /// NetBox id (`None` only on a dry run, for a cluster that would be created).
    pub id: Option<u64>,
    /// The site it is scoped to.
    pub site: Option<u64>,
}

/// Clusters and node devices as NetBox holds them after the stage.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// By NetBox cluster name.
    pub clusters: BTreeMap<String, ClusterRef>,
    /// Device ids by `(NetBox cluster name, device name)`.
    pub devices: BTreeMap<(String, String), u64>,
    /// Device id and name by `(Proxmox endpoint id, node name)`.
    pub nodes: BTreeMap<(i64, String), (u64, String)>,
}

/// Run the stage with its events.
pub async fn stage(run: &SyncRun, sink: &EventSink) -> Result<StageSummary, Failure> {
    let reads = read_inventories(run, sink, PHASE).await;
    let (topology, summary) = reconcile(run, &reads, Some(sink)).await?;
    if !run.options.dry_run && run.netbox_status.has_proxbox_plugin() {
        let links: Vec<(&crate::server::sessions::Session, u64)> = reads
            .iter()
            .filter_map(|r| {
                let cluster = topology.clusters.get(&r.inventory.name)?.id?;
                Some((r.session, cluster))
            })
            .collect();
        if let Err(e) = super::plugin_refs::link_clusters(&run.netbox, &links).await {
            let mut detail = ErrorDetail::new(
                ErrorCategory::Internal,
                "Cannot link the plugin's cluster records to their NetBox clusters",
            );
            detail.phase = Some(PHASE.to_string());
            detail.detail = Some(e.to_string());
            sink.emit(detail);
        }
    }
    Ok(summary)
}

struct Node {
    item: Item,
    endpoint: i64,
    cluster: String,
    desired: Result<Option<DesiredDevice>, String>,
    site_hint: Option<String>,
    tenant_hint: Option<String>,
}

/// Map and reconcile the nodes of `reads`; with `sink`, report each device (the VM
/// stages call this quietly to get the topology).
pub async fn reconcile(
    run: &SyncRun,
    reads: &[EndpointRead<'_>],
    sink: Option<&EventSink>,
) -> Result<(Topology, StageSummary), Failure> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut inputs = Vec::new();
    let mut input_of = Vec::new();
    for read in reads {
        let status = Value::Array(read.inventory.status.iter().map(raw_entry).collect());
        for entry in &read.inventory.status {
            let ClusterStatusEntry::Node { name, .. } = entry else {
                continue;
            };
            let resource = read
                .inventory
                .nodes
                .iter()
                .find(|r| r.node.as_deref() == Some(name))
                .map(|r| &r.raw);
            let endpoint = &read.session.endpoint;
            let mut node = Node {
                item: Item::new(name.clone(), "node"),
                endpoint: endpoint.id,
                cluster: read.inventory.name.clone(),
                desired: Ok(None),
                site_hint: endpoint.site_slug.clone().filter(|s| !s.is_empty()),
                tenant_hint: endpoint.tenant_slug.clone().filter(|s| !s.is_empty()),
            };
            match normalize::node(&status, name, None, resource) {
                Ok(input) => {
                    let ctx = mapping::context(read.session, name, &run.params, &run.now);
                    inputs.push((ctx, MapInput::Device(input)));
                    input_of.push(nodes.len());
                }
                Err(e) => node.desired = Err(format!("invalid Proxmox data: {e}")),
            }
            nodes.push(node);
        }
    }
    for (index, result) in input_of
        .into_iter()
        .zip(map_batch(run.mappers.clone(), Kind::Device, inputs).await)
    {
        nodes[index].desired = match result {
            Ok(Some(MapOutput::Device(device))) => Ok(Some(device)),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err("the mapper returned another kind".into()),
            Err(e) => Err(e.to_string()),
        };
    }
    let items: Vec<Item> = nodes.iter().map(|n| n.item.clone()).collect();
    let mut phase = sink.map(|s| Phase::start(s, PHASE, "device", &items, run.options.dry_run));
    let mut report = |item: &Item, outcome: Outcome| {
        if let Some(phase) = phase.as_mut() {
            phase.item(item, outcome);
        }
    };

    // Clusters: one per NetBox cluster name (the first node's mapper output wins).
    let mut clusters: BTreeMap<String, (DesiredCluster, Option<String>, Option<String>)> =
        BTreeMap::new();
    for node in &nodes {
        if let Ok(Some(device)) = &node.desired {
            let cluster = device
                .cluster
                .clone()
                .unwrap_or_else(|| fallback_cluster(&node.cluster));
            clusters.entry(cluster.name.clone()).or_insert((
                cluster,
                node.site_hint.clone(),
                node.tenant_hint.clone(),
            ));
        }
    }
    let topology = reconcile_clusters(run, &clusters)
        .await
        .map_err(Failure::from)?;

    // Devices.
    let netbox = &run.netbox;
    let mut site_slugs = BTreeSet::new();
    let mut tenant_slugs = BTreeSet::new();
    let mut role_slugs = BTreeSet::new();
    let mut models = BTreeSet::new();
    let mut platform_slugs = BTreeSet::new();
    let mut tag_names = BTreeSet::new();
    for device in nodes
        .iter()
        .filter_map(|n| n.desired.as_ref().ok().and_then(Option::as_ref))
    {
        site_slugs.extend(device.site.clone());
        tenant_slugs.extend(device.tenant.clone());
        role_slugs.insert(device.role.clone());
        models.insert(device.device_type.clone());
        platform_slugs.extend(device.platform.clone());
        tag_names.extend(device.tags.iter().cloned());
    }
    let dry_run = run.options.dry_run;
    let sites = ids_by(netbox, "dcim/sites/", "slug", &site_slugs).await?;
    let tenants = ids_by(netbox, "tenancy/tenants/", "slug", &tenant_slugs).await?;
    let roles = ids_by(netbox, "dcim/device-roles/", "slug", &role_slugs).await?;
    let device_types = ids_by(netbox, "dcim/device-types/", "model", &models).await?;
    let platforms = ids_by(netbox, "dcim/platforms/", "slug", &platform_slugs).await?;
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let discovered = run
        .prerequisites
        .tags
        .get("proxbox-discovered-node")
        .copied();

    let mut desired = Vec::new();
    let mut desired_node = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let device = match &node.desired {
            Err(e) => {
                report(&node.item, Outcome::Failed(e.clone()));
                continue;
            }
            Ok(None) => {
                report(
                    &node.item,
                    Outcome::Skipped("the mapper does not sync it".into()),
                );
                continue;
            }
            Ok(Some(device)) => device,
        };
        let cluster_name = device
            .cluster
            .as_ref()
            .map_or_else(|| node.cluster.clone(), |c| c.name.clone());
        let cluster = topology.clusters.get(&cluster_name).copied();
        if cluster.is_none() {
            report(
                &node.item,
                Outcome::Failed(format!("its cluster `{cluster_name}` could not be written")),
            );
            continue;
        }
        match device_payload(
            device,
            cluster,
            &sites,
            &tenants,
            &roles,
            &device_types,
            &platforms,
            &tags,
        ) {
            Ok(payload) => {
                let identity = vec![json!(device.name), json!(cluster.and_then(|c| c.id))];
                let mut payload = payload;
                if let Some(tag) = discovered {
                    push_tag(&mut payload, tag);
                }
                desired.push(Desired {
                    identity: Some(identity),
                    payload,
                });
                desired_node.push((index, cluster_name));
            }
            Err(e) => report(&node.item, Outcome::Failed(e)),
        }
    }
    let names: BTreeSet<String> = desired
        .iter()
        .filter_map(|d| {
            d.payload
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let existing = list_by(netbox, "dcim/devices/", "name", &names, &[]).await?;
    let spec = KindSpec {
        path: "dcim/devices/".into(),
        identity: Box::new(|o: &Map<String, Value>| {
            Some(vec![
                o.get("name").cloned().unwrap_or(Value::Null),
                o.get("cluster").map(normalise).unwrap_or(Value::Null),
            ])
        }),
        owned: run.options.overwrite.device_fields(),
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    };
    let result = reconcile_kind(netbox, &spec, &desired, &existing, false, dry_run).await;
    let mut out = topology;
    let mut count = 0;
    for (d_index, (node_index, cluster_name)) in desired_node.iter().enumerate() {
        let node = &nodes[*node_index];
        let (outcome, id) = result.outcome(d_index);
        if let Some(id) = id {
            count += 1;
            let name = desired[d_index]
                .payload
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.nodes
                .insert((node.endpoint, node.item.name.clone()), (id, name.clone()));
            out.devices.insert((cluster_name.clone(), name), id);
        }
        report(&node.item.clone().with_id(id), outcome);
    }
    let counts = phase.map(Phase::finish).unwrap_or_default();
    Ok((out, StageSummary { counts, count }))
}

fn raw_entry(entry: &ClusterStatusEntry) -> Value {
    match entry {
        ClusterStatusEntry::Cluster { raw, .. }
        | ClusterStatusEntry::Node { raw, .. }
        | ClusterStatusEntry::Other(raw) => raw.clone(),
    }
}

fn fallback_cluster(name: &str) -> DesiredCluster {
    DesiredCluster {
        name: name.to_string(),
        cluster_type: "cluster".into(),
        description: String::new(),
        site: None,
        tenant: None,
        custom_fields: Vec::new(),
        tags: vec!["Proxbox".into()],
    }
}

fn push_tag(payload: &mut Map<String, Value>, tag: u64) {
    let tags = payload
        .entry("tags")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = tags
        && !list.iter().any(|t| t.as_u64() == Some(tag))
    {
        list.push(json!(tag));
    }
}

fn lookup(map: &BTreeMap<String, u64>, what: &str, key: &str) -> Result<u64, String> {
    map.get(key)
        .copied()
        .ok_or_else(|| format!("{what} `{key}` does not exist in NetBox"))
}

#[allow(clippy::too_many_arguments)]
fn device_payload(
    device: &DesiredDevice,
    cluster: Option<ClusterRef>,
    sites: &BTreeMap<String, u64>,
    tenants: &BTreeMap<String, u64>,
    roles: &BTreeMap<String, u64>,
    device_types: &BTreeMap<String, u64>,
    platforms: &BTreeMap<String, u64>,
    tags: &BTreeMap<String, u64>,
) -> Result<Map<String, Value>, String> {
    let site = match &device.site {
        Some(slug) => Some(lookup(sites, "site", slug)?),
        None => cluster.and_then(|c| c.site),
    };
    let mut payload = Map::new();
    payload.insert("name".into(), json!(device.name));
    payload.insert("status".into(), json!(device.status));
    payload.insert("description".into(), json!(device.description));
    payload.insert(
        "role".into(),
        json!(lookup(roles, "device role", &device.role)?),
    );
    payload.insert(
        "device_type".into(),
        json!(lookup(device_types, "device type", &device.device_type)?),
    );
    if let Some(site) = site {
        payload.insert("site".into(), json!(site));
    } else if cluster.is_some_and(|c| c.id.is_some()) {
        return Err("no site: the mapper gave none and the cluster has none".into());
    }
    payload.insert("cluster".into(), json!(cluster.and_then(|c| c.id)));
    if let Some(tenant) = &device.tenant {
        payload.insert("tenant".into(), json!(lookup(tenants, "tenant", tenant)?));
    }
    if let Some(platform) = &device.platform {
        payload.insert(
            "platform".into(),
            json!(lookup(platforms, "platform", platform)?),
        );
    }
    if let Some(serial) = &device.serial {
        payload.insert("serial".into(), json!(serial));
    }
    payload.insert("tags".into(), tag_ids(&device.tags, tags));
    if let Some(fields) = custom_fields(&device.custom_fields)? {
        payload.insert("custom_fields".into(), Value::Object(fields));
    }
    Ok(payload)
}

/// Tag ids for tag names, sorted (unknown names are dropped: they could not be created).
pub fn tag_ids(names: &[String], tags: &BTreeMap<String, u64>) -> Value {
    let ids: BTreeSet<u64> = names.iter().filter_map(|n| tags.get(n).copied()).collect();
    Value::Array(ids.into_iter().map(Value::from).collect())
}

/// Reconcile the clusters (matched by name): type and name always owned, description,
/// tags and custom fields per the overwrite flags; never deleted.
async fn reconcile_clusters(
    run: &SyncRun,
    clusters: &BTreeMap<String, (DesiredCluster, Option<String>, Option<String>)>,
) -> Result<Topology, crate::netbox::NetBoxError> {
    let netbox = &run.netbox;
    let dry_run = run.options.dry_run;
    let mut site_slugs = BTreeSet::new();
    let mut defaults = BTreeMap::new();
    let mut tenant_slugs = BTreeSet::new();
    let mut type_slugs = BTreeSet::new();
    let mut tag_names = BTreeSet::new();
    let mut site_of = BTreeMap::new();
    for (name, (cluster, site_hint, tenant_hint)) in clusters {
        let site = match cluster.site.clone().or_else(|| site_hint.clone()) {
            Some(slug) => slug,
            None => {
                let (slug, site_name) = default_site(name);
                defaults.insert(slug.clone(), site_name);
                slug
            }
        };
        site_slugs.insert(site.clone());
        site_of.insert(name.clone(), site);
        tenant_slugs.extend(cluster.tenant.clone().or_else(|| tenant_hint.clone()));
        type_slugs.insert(cluster.cluster_type.clone());
        tag_names.extend(cluster.tags.iter().cloned());
    }
    let owner = run.prerequisites.ownership_tag();
    let sites = ensure_sites(netbox, &site_slugs, &defaults, owner, dry_run).await?;
    let tenants = ids_by(netbox, "tenancy/tenants/", "slug", &tenant_slugs).await?;
    let mut types = run.prerequisites.cluster_types.clone();
    let missing_types: BTreeSet<String> = type_slugs
        .iter()
        .filter(|t| !types.contains_key(*t))
        .cloned()
        .collect();
    types.extend(
        ids_by(
            netbox,
            "virtualization/cluster-types/",
            "slug",
            &missing_types,
        )
        .await?,
    );
    let tags = ensure_tags(netbox, &tag_names, dry_run).await?;
    let discovered = run
        .prerequisites
        .tags
        .get("proxbox-discovered-cluster")
        .copied();

    let mut desired = Vec::new();
    let mut names = Vec::new();
    for (name, (cluster, _, tenant_hint)) in clusters {
        let mut payload = Map::new();
        payload.insert("name".into(), json!(name));
        payload.insert("type".into(), json!(types.get(&cluster.cluster_type)));
        payload.insert("description".into(), json!(cluster.description));
        if let Some(site) = site_of.get(name).and_then(|s| sites.get(s)) {
            payload.insert("scope_type".into(), json!("dcim.site"));
            payload.insert("scope_id".into(), json!(site));
        }
        if let Some(tenant) = cluster
            .tenant
            .clone()
            .or_else(|| tenant_hint.clone())
            .and_then(|t| tenants.get(&t).copied())
        {
            payload.insert("tenant".into(), json!(tenant));
        }
        let mut tag_list = tag_ids(&cluster.tags, &tags);
        if let (Some(tag), Value::Array(list)) = (discovered, &mut tag_list) {
            list.push(json!(tag));
        }
        payload.insert("tags".into(), tag_list);
        if let Ok(Some(fields)) = custom_fields(&cluster.custom_fields) {
            payload.insert("custom_fields".into(), Value::Object(fields));
        }
        desired.push(Desired {
            identity: Some(vec![json!(name)]),
            payload,
        });
        names.push(name.clone());
    }
    // Only the fields the diff and the topology read: a full cluster carries VM counts
    // and allocation sums that cost NetBox seconds per cluster of thousands of VMs.
    let existing = list_by(
        netbox,
        "virtualization/clusters/",
        "name",
        &names.iter().cloned().collect(),
        &[(
            "fields",
            "id,name,type,description,tags,custom_fields,scope_type,scope_id,tenant".into(),
        )],
    )
    .await?;
    let mut owned: BTreeSet<String> = ["name", "type"].into_iter().map(String::from).collect();
    for (flag, field) in [
        ("overwrite_cluster_description", "description"),
        ("overwrite_cluster_tags", "tags"),
        ("overwrite_cluster_custom_fields", "custom_fields"),
    ] {
        if run.options.overwrite.allows(flag) {
            owned.insert(field.into());
        }
    }
    let spec = KindSpec {
        path: "virtualization/clusters/".into(),
        identity: Box::new(|o: &Map<String, Value>| o.get("name").map(|n| vec![n.clone()])),
        owned,
        merge_tags: true,
        ownership_tag: OWNERSHIP_TAG_SLUG.into(),
    };
    let result = reconcile_kind(netbox, &spec, &desired, &existing, false, dry_run).await;
    let mut topology = Topology::default();
    for (index, name) in names.iter().enumerate() {
        if let Some((super::report::Outcome::Failed(e), _)) = result.items.get(&index) {
            tracing::warn!(cluster = %name, "cluster not reconciled: {e}");
            continue;
        }
        let id = result.id(index);
        let site = existing
            .iter()
            .map(Listed::value)
            .find(|o| o.get("id").and_then(Value::as_u64) == id && id.is_some())
            .and_then(|o| o.get("scope_id").and_then(Value::as_u64))
            .or_else(|| site_of.get(name).and_then(|s| sites.get(s).copied()));
        topology
            .clusters
            .insert(name.clone(), ClusterRef { id, site });
    }
    Ok(topology)
}
