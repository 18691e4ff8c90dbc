//! The network stages end to end (node interfaces, VM interfaces, VM IP addresses): the
//! simulator as Proxmox with an estate built for it — a bonded node with a bridge and a
//! VLAN interface, a QEMU guest with its agent (alias NIC, link-local and loopback
//! addresses, a VLAN tag, an e1000 NIC), a 64-NIC guest, a container with static and
//! DHCP addresses, a guest without agent and one reporting another guest's address —
//! and the real NetBox read back object by object.
//!
//! Needs the env file of `tests/netbox/netbox.sh`; without it each test says it is
//! skipped, unless `PROXBOX_REQUIRE_NETBOX=1`. Addresses are made unique to the test
//! run (other tests share the NetBox).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};

use common::sse;
use common::world::{World, estate, now_iso, summary, world_with};
use proxbox_host::mapper::{Kind, Limits, MapperEngine, MapperSet};
use proxmox_sim::{Estate, Guest, GuestStatus, PveObject};
use serde_json::{Value, json};

const NODE_IFACES: &str = "/dcim/devices/interfaces/create/stream";
const VM_IFACES: &str = "/virtualization/virtual-machines/interfaces/create/stream";
const VM_IPS: &str = "/virtualization/virtual-machines/interfaces/ip-address/create/stream";
const PHASES: [(&str, &str); 3] = [
    (NODE_IFACES, "node-interfaces"),
    (VM_IFACES, "vm-interfaces"),
    (VM_IPS, "vm-ip-addresses"),
];

/// A third octet (and IPv6 group) unique to this test run and world.
fn unique_octet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let base = u8::try_from(nanos % 200).unwrap();
    base + NEXT.fetch_add(1, Ordering::Relaxed) * 23 % 50 + 1
}

fn mac(vmid: u32, nic: u32) -> String {
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        (vmid >> 8) & 0xff,
        vmid & 0xff,
        nic
    )
}

fn obj(value: Value) -> PveObject {
    value.as_object().unwrap().clone()
}

fn agent_iface(name: &str, mac: Option<&str>, addresses: &[(&str, u8)]) -> Value {
    let list: Vec<Value> = addresses
        .iter()
        .map(|(ip, prefix)| {
            let family = if ip.contains(':') { "ipv6" } else { "ipv4" };
            json!({"ip-address": ip, "ip-address-type": family, "prefix": prefix})
        })
        .collect();
    let mut entry = json!({"name": name, "ip-addresses": list});
    if let Some(mac) = mac {
        entry["hardware-address"] = json!(mac.to_ascii_lowercase());
    }
    entry
}

/// The test estate (see the module doc); `a` makes its addresses unique.
fn network_estate(a: u8) -> Estate {
    let mut estate = estate(u64::from(a) + 7000, 0);
    let endpoint = &mut estate.endpoints[0];
    for (i, node) in endpoint.nodes.iter_mut().enumerate() {
        let ip = format!("198.19.{a}.{}", 200 + i);
        let mut network = vec![obj(json!({"iface": "lo", "type": "loopback", "active": 1}))];
        if i == 0 {
            network.extend([
                obj(json!({"iface": "eno1", "type": "eth", "active": 1})),
                obj(json!({"iface": "eno2", "type": "eth", "active": 1})),
                obj(
                    json!({"iface": "bond0", "type": "bond", "slaves": "eno1 eno2",
                           "bond_mode": "802.3ad", "mtu": "9000", "active": 1}),
                ),
                obj(
                    json!({"iface": "vmbr0", "type": "bridge", "bridge_ports": "bond0",
                           "bridge_vlan_aware": 1, "cidr": format!("{ip}/24"),
                           "address": ip, "netmask": "24", "active": 1}),
                ),
                obj(json!({"iface": "vmbr0.30", "type": "vlan", "vlan-id": "30",
                           "vlan-raw-device": "vmbr0", "cidr": format!("198.18.{a}.250/24"),
                           "active": 1})),
            ]);
        } else {
            network.extend([
                obj(json!({"iface": "eno1", "type": "eth", "active": 1})),
                obj(
                    json!({"iface": "vmbr0", "type": "bridge", "bridge_ports": "eno1",
                           "cidr": format!("{ip}/24"), "active": 1}),
                ),
            ]);
        }
        node.network = network;
    }
    let node = endpoint.nodes[0].name.clone();

    let mut agent = Guest::qemu(9101, &node, "net-agent");
    agent.config.insert("agent".into(), json!("1"));
    agent.config.insert(
        "net0".into(),
        json!(format!("virtio={},bridge=vmbr0,tag=30", mac(9101, 0))),
    );
    agent.config.insert(
        "net1".into(),
        json!(format!("e1000={},bridge=vmbr0", mac(9101, 1))),
    );
    agent.agent = Some(json!([
        agent_iface(
            "lo",
            Some("00:00:00:00:00:00"),
            &[("127.0.0.1", 8), ("::1", 128)]
        ),
        agent_iface(
            "eth0",
            Some(&mac(9101, 0)),
            &[
                (&format!("198.18.{a}.10"), 24),
                ("fe80::be24:11ff:fe00:1", 64)
            ]
        ),
        agent_iface("eth0:1", None, &[(&format!("198.18.{a}.11"), 24)]),
        agent_iface(
            "eth1",
            Some(&mac(9101, 1)),
            &[
                (&format!("198.19.{a}.10"), 24),
                (&format!("fd5e:{a:x}::10"), 64)
            ]
        ),
    ]));
    endpoint.guests.insert(9101, agent);

    let mut many = Guest::qemu(9102, &node, "net-many");
    many.config.insert("agent".into(), json!("1"));
    let mut reported = Vec::new();
    for n in 0..64u32 {
        many.config.insert(
            format!("net{n}"),
            json!(format!("virtio={},bridge=vmbr0", mac(9102, n))),
        );
        reported.push(agent_iface(
            &format!("ens{}", 18 + n),
            Some(&mac(9102, n)),
            &[(&format!("198.19.{a}.{}", 100 + n), 24)],
        ));
    }
    many.agent = Some(Value::Array(reported));
    endpoint.guests.insert(9102, many);

    let mut ct = Guest::lxc(9103, &node, "net-ct");
    ct.config.insert(
        "net0".into(),
        json!(format!(
            "name=eth0,bridge=vmbr0,hwaddr={},ip=198.18.{a}.30/24,ip6=fd5e:{a:x}::30/64,type=veth",
            mac(9103, 0)
        )),
    );
    ct.config.insert(
        "net1".into(),
        json!(format!(
            "name=eth1,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth",
            mac(9103, 1)
        )),
    );
    ct.interfaces = Some(vec![
        json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8"}),
        json!({"name": "eth0", "hwaddr": mac(9103, 0).to_ascii_lowercase(),
               "inet": format!("198.18.{a}.30/24")}),
        json!({"name": "eth1", "hwaddr": mac(9103, 1).to_ascii_lowercase(),
               "inet": format!("198.18.{a}.31/24"), "inet6": "fe80::be24:11ff:fe00:2/64"}),
    ]);
    endpoint.guests.insert(9103, ct);

    endpoint
        .guests
        .insert(9104, Guest::qemu(9104, &node, "net-noagent"));

    let mut dup = Guest::qemu(9105, &node, "net-dup");
    dup.config.insert("agent".into(), json!("1"));
    dup.agent = Some(json!([agent_iface(
        "eth0",
        Some(&mac(9105, 0)),
        &[(&format!("198.18.{a}.10"), 24)]
    )]));
    dup.config.insert(
        "net0".into(),
        json!(format!("virtio={},bridge=vmbr0", mac(9105, 0))),
    );
    endpoint.guests.insert(9105, dup);
    estate
}

/// The NetBox VM id of each guest (by VMID), through the plugin's VM sync-state records.
async fn vm_ids(w: &World) -> BTreeMap<u32, u64> {
    let cluster = w.netbox_cluster().await["id"].as_u64().unwrap();
    let query: Vec<(&str, String)> = w
        .netbox_vms(cluster)
        .await
        .values()
        .filter_map(|vm| vm["id"].as_u64())
        .map(|id| ("virtual_machine_id", id.to_string()))
        .collect();
    w.nb.client
        .list("plugins/proxbox/sync-state/virtual-machines/", &query)
        .await
        .expect("VM sync-state")
        .iter()
        .map(|record| {
            (
                u32::try_from(record["proxmox_vm_id"].as_u64().unwrap()).unwrap(),
                record["virtual_machine"]["id"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A VM's interfaces by name.
async fn vm_interfaces(w: &World, vm: u64) -> BTreeMap<String, Value> {
    w.nb.client
        .list(
            "virtualization/interfaces/",
            &[("virtual_machine_id", vm.to_string())],
        )
        .await
        .expect("VM interfaces")
        .into_iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i))
        .collect()
}

/// The addresses on an interface (`vminterface_id` or `interface_id`), by address.
async fn addresses_on(w: &World, filter: &str, iface: u64) -> BTreeMap<String, Value> {
    w.nb.client
        .list("ipam/ip-addresses/", &[(filter, iface.to_string())])
        .await
        .expect("IP addresses")
        .into_iter()
        .map(|i| (i["address"].as_str().unwrap().to_string(), i))
        .collect()
}

/// The NetBox object `id` at `path`.
async fn one(w: &World, path: &str, id: u64) -> Value {
    w.nb.client
        .list(path, &[("id", id.to_string())])
        .await
        .expect("object")
        .remove(0)
}

/// Every address on the interfaces of VM `vm`.
async fn addresses_of_vm(w: &World, vm: u64) -> Vec<Value> {
    w.nb.client
        .list(
            "ipam/ip-addresses/",
            &[("virtual_machine_id", vm.to_string())],
        )
        .await
        .expect("addresses")
}

fn keys(map: &BTreeMap<String, Value>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

/// Devices, VMs, then the three network stages; their frames by phase.
async fn sync_network(w: &World) -> BTreeMap<&'static str, Vec<(String, Value)>> {
    let mut out = BTreeMap::new();
    for (path, phase) in PHASES {
        out.insert(phase, w.stream(path, "").await);
    }
    out
}

fn warnings(frames: &[(String, Value)]) -> Vec<String> {
    sse::named(frames, "item_progress")
        .into_iter()
        .filter_map(|i| i["warning"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_stages_write_interfaces_macs_vlans_ips_and_primaries_then_nothing() {
    let a = unique_octet();
    let Some(w) = world_with(network_estate(a), |b| b).await else {
        return;
    };
    w.stream("/dcim/devices/create/stream", "").await;
    let vms = w
        .stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    assert_eq!(summary(&vms, "virtual-machines")["result"]["failed"], 0);
    let first = sync_network(&w).await;
    for (_, phase) in PHASES {
        assert_eq!(
            summary(&first[phase], phase)["result"]["failed"],
            0,
            "{phase}: {:?}",
            sse::named(&first[phase], "item_progress")
                .iter()
                .filter(|i| i["status"] == "failed")
                .collect::<Vec<_>>()
        );
    }

    // Node interfaces: types, links, VLAN, addresses and the primary IP.
    let node = w.sim.state().nodes[0].name.clone();
    let cluster = w.netbox_cluster().await["id"].as_u64().unwrap();
    let device =
        w.nb.client
            .list(
                "dcim/devices/",
                &[("name", node.clone()), ("cluster_id", cluster.to_string())],
            )
            .await
            .expect("device")
            .remove(0);
    let device_id = device["id"].as_u64().unwrap();
    let ifaces: BTreeMap<String, Value> =
        w.nb.client
            .list("dcim/interfaces/", &[("device_id", device_id.to_string())])
            .await
            .expect("device interfaces")
            .into_iter()
            .map(|i| (i["name"].as_str().unwrap().to_string(), i))
            .collect();
    assert_eq!(
        keys(&ifaces),
        ["bond0", "eno1", "eno2", "vmbr0", "vmbr0.30"]
    );
    assert_eq!(ifaces["bond0"]["type"]["value"], "lag");
    assert_eq!(ifaces["bond0"]["mtu"], 9000);
    assert_eq!(ifaces["vmbr0"]["type"]["value"], "bridge");
    assert_eq!(ifaces["vmbr0.30"]["type"]["value"], "virtual");
    assert_eq!(ifaces["eno1"]["lag"]["id"], ifaces["bond0"]["id"]);
    assert_eq!(ifaces["eno2"]["lag"]["id"], ifaces["bond0"]["id"]);
    assert_eq!(ifaces["bond0"]["bridge"]["id"], ifaces["vmbr0"]["id"]);
    assert_eq!(ifaces["vmbr0.30"]["parent"]["id"], ifaces["vmbr0"]["id"]);
    let tagged: Vec<u64> = ifaces["vmbr0.30"]["tagged_vlans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vid"].as_u64().unwrap())
        .collect();
    assert_eq!(tagged, [30]);
    let vmbr0 = ifaces["vmbr0"]["id"].as_u64().unwrap();
    let node_ips = addresses_on(&w, "interface_id", vmbr0).await;
    assert_eq!(keys(&node_ips), [format!("198.19.{a}.200/24").as_str()]);
    let device = one(&w, "dcim/devices/", device_id).await;
    assert_eq!(
        device["primary_ip4"]["address"],
        format!("198.19.{a}.200/24")
    );

    // The agent guest: both NICs (e1000 MAC included), VLAN, alias merged, no
    // loopback or link-local, primary IPs.
    let vm_of = vm_ids(&w).await;
    let agent = vm_interfaces(&w, vm_of[&9101]).await;
    assert_eq!(keys(&agent), ["net0", "net1"]);
    assert_eq!(agent["net0"]["mode"]["value"], "access");
    assert_eq!(agent["net0"]["untagged_vlan"]["vid"], 30);
    for (name, nic) in [("net0", 0), ("net1", 1)] {
        assert_eq!(
            agent[name]["primary_mac_address"]["mac_address"],
            mac(9101, nic),
            "{name}"
        );
    }
    let net0 = addresses_on(&w, "vminterface_id", agent["net0"]["id"].as_u64().unwrap()).await;
    assert_eq!(
        keys(&net0),
        [format!("198.18.{a}.10/24"), format!("198.18.{a}.11/24")]
    );
    assert!(net0.values().all(|ip| ip["status"]["value"] == "active"));
    let net1 = addresses_on(&w, "vminterface_id", agent["net1"]["id"].as_u64().unwrap()).await;
    assert_eq!(
        keys(&net1),
        [format!("198.19.{a}.10/24"), format!("fd5e:{a:x}::10/64")]
    );
    let vm = one(&w, "virtualization/virtual-machines/", vm_of[&9101]).await;
    assert_eq!(vm["primary_ip4"]["address"], format!("198.18.{a}.10/24"));
    assert_eq!(vm["primary_ip6"]["address"], format!("fd5e:{a:x}::10/64"));

    // 64 NICs, each with its MAC and address.
    let many = vm_interfaces(&w, vm_of[&9102]).await;
    assert_eq!(many.len(), 64);
    let many_ips = addresses_of_vm(&w, vm_of[&9102]).await;
    assert_eq!(many_ips.len(), 64);
    assert_eq!(
        many["net63"]["primary_mac_address"]["mac_address"],
        mac(9102, 63)
    );

    // The container: static addresses active (the IPv6 one from its config), DHCP as dhcp.
    let ct = vm_interfaces(&w, vm_of[&9103]).await;
    assert_eq!(keys(&ct), ["eth0", "eth1"]);
    let eth0 = addresses_on(&w, "vminterface_id", ct["eth0"]["id"].as_u64().unwrap()).await;
    assert_eq!(
        keys(&eth0),
        [format!("198.18.{a}.30/24"), format!("fd5e:{a:x}::30/64")]
    );
    assert!(eth0.values().all(|ip| ip["status"]["value"] == "active"));
    assert!(eth0.values().all(|ip| ip["dns_name"] == "net-ct"));
    let eth1 = addresses_on(&w, "vminterface_id", ct["eth1"]["id"].as_u64().unwrap()).await;
    assert_eq!(keys(&eth1), [format!("198.18.{a}.31/24")]);
    assert_eq!(
        eth1[&format!("198.18.{a}.31/24")]["status"]["value"],
        "dhcp"
    );

    // No agent: the interface and its MAC, no address.
    let plain = vm_interfaces(&w, vm_of[&9104]).await;
    assert_eq!(keys(&plain), ["net0"]);
    assert!(
        addresses_on(&w, "vminterface_id", plain["net0"]["id"].as_u64().unwrap())
            .await
            .is_empty()
    );

    // The same address reported by two guests: the first keeps it, the other is warned.
    let dup = vm_interfaces(&w, vm_of[&9105]).await;
    assert!(
        addresses_on(&w, "vminterface_id", dup["net0"]["id"].as_u64().unwrap())
            .await
            .is_empty()
    );
    let warned = warnings(&first["vm-ip-addresses"]);
    assert!(
        warned
            .iter()
            .any(|w| w.contains(&format!("198.18.{a}.10")) && w.contains("net-agent")),
        "{warned:?}"
    );

    // A re-run writes nothing: every object unchanged, no NetBox change to our objects.
    let since = now_iso();
    let again = sync_network(&w).await;
    for (_, phase) in PHASES {
        let result = &summary(&again[phase], phase)["result"];
        for count in ["created", "updated", "deleted", "failed"] {
            assert_eq!(result[count], 0, "{phase} {count} on a re-run: {result}");
        }
    }
    let mut ours: BTreeSet<(String, u64)> = BTreeSet::new();
    for vm in vm_of.values() {
        for iface in vm_interfaces(&w, *vm).await.values() {
            ours.insert((
                "virtualization.vminterface".into(),
                iface["id"].as_u64().unwrap(),
            ));
        }
    }
    for iface in ifaces.values() {
        ours.insert(("dcim.interface".into(), iface["id"].as_u64().unwrap()));
    }
    let changed: Vec<Value> =
        w.nb.client
            .list("core/object-changes/", &[("time_after", since.clone())])
            .await
            .expect("changes")
            .into_iter()
            .filter(|c| {
                let assigned = |side: &str| {
                    (
                        c[side]["assigned_object_type"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        c[side]["assigned_object_id"].as_u64().unwrap_or_default(),
                    )
                };
                let object = (
                    c["changed_object_type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["changed_object_id"].as_u64().unwrap_or_default(),
                );
                ours.contains(&object)
                    || ours.contains(&assigned("postchange_data"))
                    || ours.contains(&assigned("prechange_data"))
            })
            .collect();
    assert!(changed.is_empty(), "a re-run changed: {changed:#?}");

    // The alias address goes away; a stopped guest keeps its addresses.
    w.sim.mutate(|st| {
        let agent = st.guests.get_mut(&9101).unwrap();
        let list = agent.agent.as_mut().unwrap().as_array_mut().unwrap();
        list.retain(|i| i["name"] != "eth0:1");
        st.guests.get_mut(&9102).unwrap().status = GuestStatus::Stopped;
    });
    let after = w.stream(VM_IPS, "").await;
    let result = &summary(&after, "vm-ip-addresses")["result"];
    assert_eq!(result["deleted"], 1, "{result}");
    let net0 = addresses_on(&w, "vminterface_id", agent["net0"]["id"].as_u64().unwrap()).await;
    assert_eq!(keys(&net0), [format!("198.18.{a}.10/24")]);
    let many_ips = addresses_of_vm(&w, vm_of[&9102]).await;
    assert_eq!(many_ips.len(), 64, "a stopped guest's addresses are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_ip_mapper_prefers_its_subnet_for_the_primary_ip() {
    let a = unique_octet();
    let engine = MapperEngine::new(
        Limits::default(),
        Some(std::env::temp_dir().join("proxbox-host-test-mappers")),
    )
    .expect("engine");
    let overrides = BTreeMap::from([(Kind::IpAddress, common::example_ip_component())]);
    let mappers = MapperSet::load(&engine, &overrides).expect("site IP mapper");
    let params = vec![("primary-subnet".to_string(), format!("198.19.{a}.0/24"))];
    let Some(w) = world_with(network_estate(a), move |b| {
        b.mappers(mappers).mapper_params(params)
    })
    .await
    else {
        return;
    };
    w.stream("/dcim/devices/create/stream", "").await;
    w.stream("/virtualization/virtual-machines/create/stream", "")
        .await;
    w.stream(VM_IFACES, "").await;
    let frames = w.stream(VM_IPS, "").await;
    assert_eq!(summary(&frames, "vm-ip-addresses")["result"]["failed"], 0);
    let vm_of = vm_ids(&w).await;
    let vm = one(&w, "virtualization/virtual-machines/", vm_of[&9101]).await;
    assert_eq!(
        vm["primary_ip4"]["address"],
        format!("198.19.{a}.10/24"),
        "the site mapper's subnet wins over NIC order"
    );
}
