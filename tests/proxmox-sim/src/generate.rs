//! Deterministic generation of realistic estates from a seed.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::model::{
    Backup, Credentials, EndpointState, Estate, Firewall, FirewallGroup, FirewallIpSet, Guest,
    GuestStats, GuestStatus, GuestType, LimitedAcl, Node, Pool, PveObject, PveVersion, Snapshot,
    Storage, StorageStatus, StorageType, TimeStyle, Verification, format_time,
};

/// Parameters of [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct EstateSpec {
    /// RNG seed; the same spec always yields the same estate.
    pub seed: u64,
    /// Number of clusters (one endpoint each).
    pub clusters: usize,
    /// Nodes per cluster (at least 1).
    pub nodes_per_cluster: usize,
    /// Number of standalone nodes (one endpoint each).
    pub standalone_nodes: usize,
    /// Total guests across all endpoints.
    pub guests: usize,
    /// Fraction of LXC containers.
    pub lxc_ratio: f64,
    /// Fraction of templates.
    pub template_ratio: f64,
    /// Average backups per guest.
    pub backups_per_guest: f64,
    /// Average snapshots per guest.
    pub snapshots_per_guest: f64,
}

impl Default for EstateSpec {
    fn default() -> Self {
        EstateSpec {
            seed: 1,
            clusters: 2,
            nodes_per_cluster: 3,
            standalone_nodes: 1,
            guests: 60,
            lxc_ratio: 0.3,
            template_ratio: 0.03,
            backups_per_guest: 2.0,
            snapshots_per_guest: 1.0,
        }
    }
}

/// "Now" of generated estates (2025-10-09T08:53:20Z): backups, snapshots and tasks lie
/// before it.
pub const BASE_TIME: i64 = 1_760_000_000;

const CLUSTER_NAMES: &[&str] = &[
    "pve-prod",
    "pve-lab",
    "dc1-cluster",
    "fra-cluster",
    "ams-pve",
    "edge-cluster",
    "pve-dmz",
    "backup-site",
];
const STANDALONE_NAMES: &[&str] = &["pve", "proxmox", "homelab", "edge01", "nuc", "pve-branch"];
const VERSIONS: &[(&str, &str, &str)] = &[
    ("8.4.1", "8.4", "2a5fa54a8503f96d"),
    ("9.0.10", "9.0", "deb1ca707ec72a89"),
    ("8.3.5", "8.3", "dac3aa88bac3f300"),
    ("7.4-19", "7.4", "f98bf8d4ef1a6ef5"),
    ("8.2.4", "8.2", "faa83925c9641325"),
];
const CPU_MODELS: &[&str] = &[
    "AMD EPYC 7443P 24-Core Processor",
    "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
    "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
    "AMD EPYC 9354 32-Core Processor",
    "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz",
    "AMD Ryzen 9 5950X 16-Core Processor",
];
const ROLES: &[&str] = &[
    "web",
    "db",
    "app",
    "api",
    "cache",
    "proxy",
    "lb",
    "mail",
    "dns",
    "ldap",
    "git",
    "ci",
    "runner",
    "k8s-master",
    "k8s-worker",
    "mon",
    "grafana",
    "prometheus",
    "log",
    "elk",
    "backup",
    "vpn",
    "fw",
    "nas",
    "jump",
    "build",
    "redis",
    "mq",
    "kafka",
    "minio",
    "vault",
    "consul",
    "nginx",
    "haproxy",
    "postgres",
    "mariadb",
    "mongo",
    "es",
    "jenkins",
    "gitlab",
    "nextcloud",
    "plex",
    "unifi",
    "docker",
];
const ENVS: &[&str] = &["prod", "prd", "stg", "staging", "dev", "test", "qa", "uat"];
const DOMAINS: &[&str] = &["example.com", "corp.local", "lab.internal", "home.arpa"];
const WIN_ROLES: &[&str] = &[
    "DC", "SQL", "RDS", "FS", "EXCH", "ADFS", "WSUS", "APP", "IIS",
];
const TAGS: &[&str] = &[
    "prod",
    "Prod",
    "PROD",
    "web",
    "db",
    "backup",
    "k8s",
    "critical",
    "dev",
    "Staging",
    "team-a",
    "team-b",
    "windows",
    "linux",
    "monitored",
    "pci",
    "GPU",
    "no-backup",
    "customer-x",
];
const ISOS: &[(&str, u64)] = &[
    ("debian-12.7.0-amd64-netinst.iso", 661),
    ("ubuntu-24.04.1-live-server-amd64.iso", 2656),
    ("virtio-win-0.1.262.iso", 708),
    ("Win2022_20348.169_EN.iso", 4935),
    ("proxmox-backup-server_3.2-1.iso", 1243),
    ("rocky-9.4-x86_64-minimal.iso", 1778),
    ("alpine-virt-3.20.3-x86_64.iso", 63),
];
const CT_TEMPLATES: &[(&str, &str, u64)] = &[
    ("debian-12-standard_12.7-1_amd64.tar.zst", "tzst", 126),
    ("ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "tzst", 141),
    ("alpine-3.20-default_20240908_amd64.tar.xz", "txz", 3),
    ("rockylinux-9-default_20240912_amd64.tar.xz", "txz", 98),
    ("archlinux-base_20240911-1_amd64.tar.zst", "tzst", 173),
];
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

struct Gen {
    rng: ChaCha8Rng,
    macs: HashSet<[u8; 3]>,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.rng.random_range(lo..hi)
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.random_range(0..total.max(1));
        for (item, w) in items {
            if r < *w {
                return item;
            }
            r -= w;
        }
        &items[items.len() - 1].0
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.rng.random::<u8>()))
            .collect()
    }

    fn uuid(&mut self) -> String {
        let h = self.hex(16);
        let variant = ["8", "9", "a", "b"][self.rng.random_range(0..4)];
        format!(
            "{}-{}-4{}-{variant}{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    fn fingerprint(&mut self, bytes: usize, upper: bool) -> String {
        let parts: Vec<String> = (0..bytes)
            .map(|_| {
                let b = self.rng.random::<u8>();
                if upper {
                    format!("{b:02X}")
                } else {
                    format!("{b:02x}")
                }
            })
            .collect();
        parts.join(":")
    }

    /// A unique MAC with the given 3-byte prefix (Proxmox uses `BC:24:11`).
    fn mac(&mut self, prefix: [u8; 3]) -> [u8; 6] {
        loop {
            let tail = [
                self.rng.random::<u8>(),
                self.rng.random::<u8>(),
                self.rng.random::<u8>(),
            ];
            let key = [
                tail[0] ^ prefix[2],
                tail[1] ^ prefix[1],
                tail[2] ^ prefix[0],
            ];
            if self.macs.insert(key) {
                return [prefix[0], prefix[1], prefix[2], tail[0], tail[1], tail[2]];
            }
        }
    }

    /// A fraction in `0..max`, quantised so that it survives a JSON round trip exactly.
    fn fraction(&mut self, max: f64) -> f64 {
        let x = self.rng.random::<f64>() * max;
        (x * 1e16).round() / 1e16
    }

    /// A count with the given mean (uniform over `0..=2*mean`).
    fn count_around(&mut self, mean: f64) -> usize {
        if mean <= 0.0 {
            return 0;
        }
        (self.rng.random::<f64>() * (2.0 * mean + 1.0)).floor() as usize
    }
}

fn mac_upper(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn mac_lower(m: [u8; 6]) -> String {
    mac_upper(m).to_lowercase()
}

fn link_local(m: [u8; 6]) -> String {
    format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        (u16::from(m[0] ^ 0x02) << 8) | u16::from(m[1]),
        (u16::from(m[2]) << 8) | 0xff,
        0xfe00 | u16::from(m[3]),
        (u16::from(m[4]) << 8) | u16::from(m[5])
    )
}

fn obj(v: Value) -> PveObject {
    match v {
        Value::Object(m) => m,
        _ => PveObject::new(),
    }
}

/// Builds a property string: `head` first, then `key=value` pairs sorted by key.
fn propstr(head: &str, mut opts: Vec<(&str, String)>) -> String {
    opts.sort_by(|a, b| a.0.cmp(b.0));
    let mut s = head.to_string();
    for (k, v) in opts {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&v);
    }
    s
}

/// Generates an estate: clusters first, then standalone nodes, guests spread by node count.
pub fn generate(spec: &EstateSpec) -> Estate {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(spec.seed),
        macs: HashSet::new(),
    };
    let nodes_per_cluster = spec.nodes_per_cluster.max(1);
    let mut layout: Vec<(Option<usize>, usize)> = Vec::new();
    for c in 0..spec.clusters {
        layout.push((Some(c), nodes_per_cluster));
    }
    for s in 0..spec.standalone_nodes {
        layout.push((None, s));
    }
    let node_counts: Vec<usize> = layout
        .iter()
        .map(|(c, _)| if c.is_some() { nodes_per_cluster } else { 1 })
        .collect();
    let guest_counts = apportion(spec.guests, &node_counts);
    let endpoints = layout
        .iter()
        .enumerate()
        .map(|(e, (cluster, idx))| {
            let (mut ep, plan) = gen_endpoint(&mut g, e, *cluster, *idx, node_counts[e]);
            populate_guests(&mut g, &mut ep, &plan, e, guest_counts[e], spec);
            finish_endpoint(&mut g, &mut ep);
            firewall_and_replication(spec.seed, e, &mut ep);
            ep
        })
        .collect();
    Estate {
        seed: spec.seed,
        endpoints,
    }
}

/// Splits `total` proportionally to `weights` (largest remainder).
fn apportion(total: usize, weights: &[usize]) -> Vec<usize> {
    let sum: usize = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let mut out: Vec<usize> = weights.iter().map(|w| total * w / sum).collect();
    let mut rest = total - out.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((total * weights[i]) % sum));
    for i in order {
        if rest == 0 {
            break;
        }
        out[i] += 1;
        rest -= 1;
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Topology {
    Simple,
    Bonded,
    TwoBridges,
}

struct NetPlan {
    bridges: Vec<&'static str>,
    vlans: Vec<u16>,
}

fn gen_endpoint(
    g: &mut Gen,
    e: usize,
    cluster: Option<usize>,
    idx: usize,
    node_count: usize,
) -> (EndpointState, NetPlan) {
    let version = if e == 0 {
        VERSIONS[0]
    } else {
        VERSIONS[g.range(0, VERSIONS.len() as u64) as usize]
    };
    let version = PveVersion {
        version: version.0.into(),
        release: version.1.into(),
        repoid: version.2.into(),
    };
    let major = version.major();
    let (kernel, build) = match major {
        7 => (
            "5.15.158-2-pve",
            "#1 SMP PVE 5.15.158-2 (2024-07-26T13:30Z)",
        ),
        9 => (
            "6.14.11-2-pve",
            "#1 SMP PREEMPT_DYNAMIC PMX 6.14.11-2 (2025-09-12T09:46Z)",
        ),
        _ => (
            "6.8.12-9-pve",
            "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9 (2025-03-16T19:18Z)",
        ),
    };
    let cluster_name = cluster.map(|c| {
        let base = CLUSTER_NAMES[c % CLUSTER_NAMES.len()];
        if c < CLUSTER_NAMES.len() {
            base.to_string()
        } else {
            format!("{base}-{c}")
        }
    });
    let topology = match cluster {
        Some(_) => *g.weighted(&[
            (Topology::Bonded, 5),
            (Topology::TwoBridges, 3),
            (Topology::Simple, 2),
        ]),
        None => *g.weighted(&[(Topology::Simple, 7), (Topology::TwoBridges, 3)]),
    };
    let mut vlans: Vec<u16> = [10u16, 20, 30, 40, 50, 100, 110, 120, 200, 300]
        .into_iter()
        .filter(|_| g.chance(0.55))
        .collect();
    if vlans.is_empty() {
        vlans.push(10);
    }
    let plan = NetPlan {
        bridges: if topology == Topology::Simple {
            vec!["vmbr0"]
        } else {
            vec!["vmbr0", "vmbr1"]
        },
        vlans,
    };
    let subnet = match cluster {
        Some(c) => format!("10.{}.0", (c % 200) + 1),
        None => format!("192.168.{}", (idx % 200) + 1),
    };
    let node_names: Vec<String> = match cluster {
        Some(c) => (1..=node_count)
            .map(|n| match c % 4 {
                0 => format!("pve{n}"),
                1 => format!("hv{n:02}"),
                2 => format!("{}-node{n}", cluster_name.as_deref().unwrap_or("pve")),
                _ => format!("px-{n}"),
            })
            .collect(),
        None => vec![match STANDALONE_NAMES.get(idx) {
            Some(n) => n.to_string(),
            None => format!("pve-sa{idx}"),
        }],
    };
    let migration_vlan = *g.pick(&[50u16, 60, 90, 99]);
    let nodes: Vec<Node> = node_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let cpus = *g.pick(&[16u32, 24, 32, 48, 64, 96, 128]);
            let memory = *g.pick(&[64u64, 128, 192, 256, 384, 512, 768]) * GIB;
            let rootfs_total = *g.pick(&[94u64, 100, 200, 450, 900]) * GIB;
            let ip = format!("{subnet}.{}", 11 + i);
            Node {
                name: name.clone(),
                nodeid: if cluster.is_some() { i as u32 + 1 } else { 0 },
                online: true,
                cpus,
                sockets: if cpus >= 64 && g.chance(0.5) { 2 } else { 1 },
                cpu_model: g.pick(CPU_MODELS).to_string(),
                memory,
                memory_used: (memory as f64 * (0.2 + g.rng.random::<f64>() * 0.55)) as u64,
                rootfs_total,
                rootfs_used: (rootfs_total as f64 * (0.05 + g.rng.random::<f64>() * 0.4)) as u64,
                uptime: g.range(86_400, 400 * 86_400),
                cpu_usage: g.fraction(0.35),
                level: g.weighted(&[("", 6), ("c", 3), ("b", 1)]).to_string(),
                ssl_fingerprint: g.fingerprint(32, true),
                kernel: kernel.to_string(),
                kernel_build: build.to_string(),
                boot_mode: if g.chance(0.7) { "efi" } else { "legacy-bios" }.to_string(),
                network: node_network(g, topology, &ip, &subnet, migration_vlan, i),
                ip,
            }
        })
        .collect();
    let storages = gen_storages(g, cluster.is_some(), &nodes, &subnet);
    let pools: Vec<Pool> = if cluster.is_some() {
        vec![
            Pool {
                poolid: "prod".into(),
                comment: Some("Production workloads".into()),
            },
            Pool {
                poolid: "dev".into(),
                comment: Some("Development".into()),
            },
            Pool {
                poolid: "infra".into(),
                comment: None,
            },
            Pool {
                poolid: "customer-a".into(),
                comment: Some("Customer A (managed)".into()),
            },
        ]
    } else {
        vec![Pool {
            poolid: "home".into(),
            comment: None,
        }]
    };
    let mut options = obj(json!({"keyboard": "en-us"}));
    if cluster.is_some() {
        options.insert("mac_prefix".into(), json!("BC:24:11"));
        options.insert(
            "migration".into(),
            json!({"type": "secure", "network": format!("10.{}.{migration_vlan}.0/24", e + 1)}),
        );
        options.insert("ha".into(), json!({"shutdown_policy": "conditional"}));
        if g.chance(0.5) {
            options.insert("console".into(), json!("html5"));
        }
    }
    let credentials = Credentials {
        token_secret: g.uuid(),
        limited_token_secret: g.uuid(),
        root_password: format!("sim-{}", g.hex(6)),
        ticket_key: g.hex(32),
    };
    let mut ep = EndpointState {
        cluster_name,
        config_version: g.range(3, 40) as u32,
        version,
        nodes,
        guests: BTreeMap::new(),
        storages,
        pools,
        options,
        backup_jobs: Vec::new(),
        sdn_vnets: Vec::new(),
        firewall: Firewall::default(),
        replication_jobs: Vec::new(),
        tasks: Vec::new(),
        credentials,
        limited_acl: LimitedAcl::default(),
    };
    ep.options.insert(
        "description".into(),
        json!(format!("Simulated endpoint {e}")),
    );
    (ep, plan)
}

fn node_network(
    g: &mut Gen,
    topology: Topology,
    ip: &str,
    subnet: &str,
    migration_vlan: u16,
    i: usize,
) -> Vec<PveObject> {
    let mut prio = 1;
    let mut next = || {
        prio += 1;
        prio
    };
    let mut out = vec![obj(json!({
        "iface": "lo", "type": "loopback", "method": "loopback", "method6": "manual",
        "families": ["inet"], "autostart": 1, "active": 1, "priority": 1
    }))];
    let eth = |name: &str, p: i64| {
        obj(json!({
            "iface": name, "type": "eth", "method": "manual", "method6": "manual",
            "families": ["inet"], "active": 1, "exists": 1, "priority": p
        }))
    };
    let mgmt_bridge = |ports: &str, p: i64, vlan_aware: bool| {
        let mut b = obj(json!({
            "iface": "vmbr0", "type": "bridge", "method": "static", "method6": "manual",
            "families": ["inet"], "address": ip, "netmask": "24", "cidr": format!("{ip}/24"),
            "gateway": format!("{subnet}.1"), "bridge_ports": ports, "bridge_stp": "off",
            "bridge_fd": "0", "autostart": 1, "active": 1, "priority": p
        }));
        if vlan_aware {
            b.insert("bridge_vlan_aware".into(), json!(1));
            b.insert("bridge_vids".into(), json!("2-4094"));
        }
        b
    };
    match topology {
        Topology::Simple => {
            out.push(eth("eno1", next()));
            if g.chance(0.5) {
                out.push(eth("eno2", next()));
            }
            out.push(mgmt_bridge("eno1", next(), true));
        }
        Topology::Bonded => {
            out.push(eth("eno1", next()));
            out.push(eth("eno2", next()));
            out.push(eth("enp65s0f0", next()));
            out.push(eth("enp65s0f1", next()));
            out.push(obj(json!({
                "iface": "bond0", "type": "bond", "method": "manual", "method6": "manual",
                "families": ["inet"], "slaves": "enp65s0f0 enp65s0f1", "bond_mode": "802.3ad",
                "bond_xmit_hash_policy": "layer3+4", "mtu": "9000", "autostart": 1,
                "active": 1, "priority": next()
            })));
            out.push(mgmt_bridge("eno1", next(), false));
            out.push(obj(json!({
                "iface": "vmbr1", "type": "bridge", "method": "manual", "method6": "manual",
                "families": ["inet"], "bridge_ports": "bond0", "bridge_stp": "off",
                "bridge_fd": "0", "bridge_vlan_aware": 1, "bridge_vids": "2-4094",
                "mtu": "9000", "comments": "VM traffic\n", "autostart": 1, "active": 1,
                "priority": next()
            })));
            let mig_ip = format!("10.{}.{migration_vlan}.{}", subnet_octet(subnet), 11 + i);
            out.push(obj(json!({
                "iface": format!("vmbr1.{migration_vlan}"), "type": "vlan", "method": "static",
                "method6": "manual", "families": ["inet"], "address": mig_ip,
                "netmask": "24", "cidr": format!("{mig_ip}/24"),
                "vlan-id": migration_vlan.to_string(), "vlan-raw-device": "vmbr1",
                "comments": "migration\n", "autostart": 1, "active": 1, "priority": next()
            })));
        }
        Topology::TwoBridges => {
            out.push(eth("eno1", next()));
            out.push(eth("eno2", next()));
            out.push(mgmt_bridge("eno1", next(), false));
            out.push(obj(json!({
                "iface": "vmbr1", "type": "bridge", "method": "manual", "method6": "manual",
                "families": ["inet"], "bridge_ports": "eno2", "bridge_stp": "off",
                "bridge_fd": "0", "bridge_vlan_aware": 1, "bridge_vids": "2-4094",
                "autostart": 1, "active": 1, "priority": next()
            })));
            let st_ip = format!("172.16.{}.{}", subnet_octet(subnet), 11 + i);
            out.push(obj(json!({
                "iface": "eno2.40", "type": "vlan", "method": "static", "method6": "manual",
                "families": ["inet"], "address": st_ip, "netmask": "24",
                "cidr": format!("{st_ip}/24"), "vlan-id": "40", "vlan-raw-device": "eno2",
                "options": ["mtu 9000"], "autostart": 1, "active": 1, "priority": next()
            })));
        }
    }
    out
}

fn subnet_octet(subnet: &str) -> &str {
    subnet.split('.').nth(1).unwrap_or("0")
}

fn status_for(
    nodes: &[Node],
    only: Option<&[String]>,
    shared: bool,
    total: u64,
    fill: f64,
    active: bool,
    g: &mut Gen,
) -> BTreeMap<String, StorageStatus> {
    let mut out = BTreeMap::new();
    let shared_used = (total as f64 * fill) as u64;
    for n in nodes {
        if only.is_some_and(|o| !o.contains(&n.name)) {
            continue;
        }
        let used = if shared {
            shared_used
        } else {
            (total as f64 * (fill * (0.5 + g.rng.random::<f64>()))).min(total as f64) as u64
        };
        let (total, used) = if active { (total, used) } else { (0, 0) };
        out.insert(
            n.name.clone(),
            StorageStatus {
                total,
                used,
                avail: total - used,
                active,
            },
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn storage(
    id: &str,
    t: StorageType,
    content: &str,
    nodes: Option<Vec<String>>,
    properties: Value,
    status: BTreeMap<String, StorageStatus>,
    disable: bool,
    shared: bool,
) -> Storage {
    Storage {
        storage: id.into(),
        storage_type: t,
        content: content.into(),
        nodes,
        shared,
        disable,
        properties: obj(properties),
        status,
        backups: Vec::new(),
        volumes: Vec::new(),
    }
}

fn gen_storages(g: &mut Gen, is_cluster: bool, nodes: &[Node], subnet: &str) -> Vec<Storage> {
    let mut out = Vec::new();
    let local_total = *g.pick(&[94u64, 100, 200, 450]) * GIB;
    let st = status_for(nodes, None, false, local_total, 0.3, true, g);
    out.push(storage(
        "local",
        StorageType::Dir,
        g.pick::<&str>(&[
            "iso,vztmpl,backup",
            "backup,iso,vztmpl",
            "vztmpl,iso,backup,snippets",
        ]),
        None,
        json!({"path": "/var/lib/vz"}),
        st,
        false,
        false,
    ));
    let thin_total = *g.pick(&[1u64, 2, 4, 8]) * TIB;
    if g.chance(0.6) {
        let st = status_for(nodes, None, false, thin_total, 0.4, true, g);
        out.push(storage(
            "local-lvm",
            StorageType::LvmThin,
            "rootdir,images",
            None,
            json!({"thinpool": "data", "vgname": "pve"}),
            st,
            false,
            false,
        ));
    } else {
        let st = status_for(nodes, None, false, thin_total, 0.4, true, g);
        out.push(storage(
            "local-zfs",
            StorageType::ZfsPool,
            "images,rootdir",
            None,
            json!({"pool": "rpool/data", "sparse": 1}),
            st,
            false,
            false,
        ));
    }
    let octet = subnet_octet(subnet).to_string();
    if is_cluster {
        if g.chance(0.75) {
            let total = *g.pick(&[20u64, 40, 80]) * TIB;
            let st = status_for(nodes, None, true, total, 0.45, true, g);
            out.push(storage(
                "ceph-vm",
                StorageType::Rbd,
                "images,rootdir",
                None,
                json!({"pool": "ceph-vm", "krbd": 0}),
                st,
                false,
                false,
            ));
            let st = status_for(nodes, None, true, total / 4, 0.3, true, g);
            out.push(storage(
                "cephfs",
                StorageType::CephFs,
                "backup,iso,vztmpl",
                None,
                json!({"path": "/mnt/pve/cephfs", "fs-name": "cephfs"}),
                st,
                false,
                false,
            ));
        }
        let total = *g.pick(&[50u64, 100, 200]) * TIB;
        let st = status_for(nodes, None, true, total, 0.6, true, g);
        out.push(storage(
            "nfs-backup",
            StorageType::Nfs,
            "backup",
            None,
            json!({
                "server": format!("10.{octet}.9.20"), "export": "/export/pve-backup",
                "path": "/mnt/pve/nfs-backup", "options": "vers=4.2",
                "prune-backups": "keep-daily=7,keep-weekly=4"
            }),
            st,
            false,
            false,
        ));
        if nodes.len() >= 2 {
            let half: Vec<String> = nodes[..nodes.len().div_ceil(2)]
                .iter()
                .map(|n| n.name.clone())
                .collect();
            let st = status_for(nodes, Some(&half), true, 30 * TIB, 0.5, true, g);
            out.push(storage(
                "nfs-images",
                StorageType::Nfs,
                "images",
                Some(half),
                json!({
                    "server": format!("10.{octet}.9.21"), "export": "/export/vmstore",
                    "path": "/mnt/pve/nfs-images", "options": "vers=3"
                }),
                st,
                false,
                false,
            ));
        }
        if g.chance(0.5) {
            let st = status_for(nodes, None, true, 0, 0.0, false, g);
            out.push(storage(
                "old-nfs",
                StorageType::Nfs,
                "backup,iso",
                None,
                json!({
                    "server": format!("10.{octet}.9.5"), "export": "/volume1/pve",
                    "path": "/mnt/pve/old-nfs"
                }),
                st,
                true,
                false,
            ));
        }
        if g.chance(0.4) {
            let st = status_for(nodes, None, true, 8 * TIB, 0.7, true, g);
            out.push(storage(
                "cifs-iso",
                StorageType::Cifs,
                "iso",
                None,
                json!({
                    "server": format!("10.{octet}.9.30"), "share": "iso",
                    "path": "/mnt/pve/cifs-iso", "username": "pve", "smbversion": "3"
                }),
                st,
                false,
                false,
            ));
        }
    }
    if is_cluster || g.chance(0.6) {
        let total = *g.pick(&[40u64, 100, 250]) * TIB;
        let st = status_for(nodes, None, true, total, 0.55, true, g);
        let server = if is_cluster {
            format!("10.{octet}.9.40")
        } else {
            format!("192.168.{octet}.40")
        };
        out.push(storage(
            "pbs",
            StorageType::Pbs,
            "backup",
            None,
            json!({
                "server": server, "datastore": g.pick(&["store1", "backup", "datastore"]),
                "username": "sync@pbs", "fingerprint": g.fingerprint(32, false),
                "prune-backups": "keep-all=1"
            }),
            st,
            false,
            false,
        ));
    }
    if !is_cluster && g.chance(0.4) {
        let st = status_for(nodes, None, false, 4 * TIB, 0.5, true, g);
        out.push(storage(
            "usb-backup",
            StorageType::Dir,
            "backup",
            None,
            json!({"path": "/mnt/usb-backup", "is_mountpoint": "yes", "prune-backups": "keep-last=3"}),
            st,
            false,
            false,
        ));
    }
    for s in &mut out {
        if s.storage == "local" || s.storage == "cephfs" || s.storage == "cifs-iso" {
            s.volumes = iso_volumes(g, &s.storage, s.has_content("vztmpl"));
        }
    }
    out
}

fn iso_volumes(g: &mut Gen, storage: &str, templates: bool) -> Vec<PveObject> {
    let mut out = Vec::new();
    for (name, mib) in ISOS {
        if g.chance(0.6) {
            out.push(obj(json!({
                "volid": format!("{storage}:iso/{name}"), "content": "iso", "format": "iso",
                "size": mib * 1024 * 1024 + g.range(0, 1 << 20), "ctime": BASE_TIME - g.range(0, 400 * 86_400) as i64
            })));
        }
    }
    if templates {
        for (name, fmt, mib) in CT_TEMPLATES {
            if g.chance(0.5) {
                out.push(obj(json!({
                    "volid": format!("{storage}:vztmpl/{name}"), "content": "vztmpl",
                    "format": fmt, "size": mib * 1024 * 1024 + g.range(0, 1 << 20),
                    "ctime": BASE_TIME - g.range(0, 400 * 86_400) as i64
                })));
            }
        }
    }
    out
}

struct IpAlloc {
    counters: BTreeMap<(usize, usize), u32>,
}

impl IpAlloc {
    /// `(address, prefix, gateway)` on VLAN index `vi` of endpoint `e` (`vi` 0 = untagged).
    fn next(&mut self, e: usize, vi: usize) -> (String, u8, String) {
        let c = self.counters.entry((e, vi)).or_insert(0);
        *c += 1;
        let second = ((e * 11 + vi) % 250) + 1;
        let third = 100 + (*c / 250) % 150;
        let fourth = (*c % 250) + 2;
        (
            format!("10.{second}.{third}.{fourth}"),
            16,
            format!("10.{second}.0.1"),
        )
    }
}

struct NicPlan {
    mac: [u8; 6],
    ip: Option<(String, u8, String)>,
    v6: Option<String>,
}

fn guest_name(g: &mut Gen, windows: bool, lower_only: bool, spread: u64) -> String {
    if windows {
        let role = g.pick(WIN_ROLES);
        let nn = g.range(1, spread.clamp(3, 99));
        return match g.range(0, 3) {
            0 => format!("WIN-{role}{nn:02}"),
            1 => format!("{role}{nn:02}"),
            _ => format!("{role}-{nn:02}"),
        };
    }
    let role = *g.pick(ROLES);
    let env = *g.pick(ENVS);
    let nn = g.range(1, spread.clamp(3, 99));
    let style = g.range(0, if lower_only { 4 } else { 5 });
    match style {
        0 => format!("{role}-{env}-{nn:02}"),
        1 => format!("{role}{nn:02}"),
        2 => format!("{role}-{nn:02}.{}", g.pick(DOMAINS)),
        3 => format!("{env}-{role}-{nn}"),
        _ => format!("{}{nn:02}", role.to_uppercase()),
    }
}

fn gen_tags(g: &mut Gen) -> Option<String> {
    if !g.chance(0.45) {
        return None;
    }
    let n = g.range(1, 4) as usize;
    let mut tags: Vec<&str> = Vec::new();
    while tags.len() < n {
        let t = *g.pick(TAGS);
        if !tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
            tags.push(t);
        }
    }
    let sep = *g.weighted(&[(";", 95), (", ", 2), (",", 2), (" ", 1)]);
    Some(tags.join(sep))
}

/// Image-capable storages usable by a guest on `node`: `(id, type)`.
fn image_storages(ep: &EndpointState, node: &str, rootdir: bool) -> Vec<(String, StorageType)> {
    ep.storages
        .iter()
        .filter(|s| !s.disable && s.available_on(node))
        .filter(|s| s.has_content(if rootdir { "rootdir" } else { "images" }))
        .map(|s| (s.storage.clone(), s.storage_type))
        .collect()
}

fn pick_image_storage(g: &mut Gen, choices: &[(String, StorageType)]) -> (String, StorageType) {
    if choices.is_empty() {
        return ("local-lvm".into(), StorageType::LvmThin);
    }
    let local: Vec<&(String, StorageType)> = choices
        .iter()
        .filter(|(_, t)| matches!(t, StorageType::LvmThin | StorageType::ZfsPool))
        .collect();
    if !local.is_empty() && g.chance(0.55) {
        return (*g.pick(&local)).clone();
    }
    g.pick(choices).clone()
}

fn volume_name(sid: &str, t: StorageType, vmid: u32, n: usize, lxc: bool, qcow: bool) -> String {
    match t {
        StorageType::Dir | StorageType::Nfs | StorageType::Cifs | StorageType::CephFs => {
            if lxc {
                format!("{sid}:{vmid}/vm-{vmid}-disk-{n}.raw")
            } else if qcow {
                format!("{sid}:{vmid}/vm-{vmid}-disk-{n}.qcow2")
            } else {
                format!("{sid}:{vmid}/vm-{vmid}-disk-{n}.raw")
            }
        }
        StorageType::ZfsPool if lxc => format!("{sid}:subvol-{vmid}-disk-{n}"),
        _ => format!("{sid}:vm-{vmid}-disk-{n}"),
    }
}

fn populate_guests(
    g: &mut Gen,
    ep: &mut EndpointState,
    plan: &NetPlan,
    e: usize,
    count: usize,
    spec: &EstateSpec,
) {
    let mut ips = IpAlloc {
        counters: BTreeMap::new(),
    };
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut next_vmid: u32 = 100;
    let mut next_template: u32 = 9000;
    let spread = (count as u64 / 6).max(5);
    let is_cluster = ep.cluster_name.is_some();
    let major = ep.version.major();
    let node_names: Vec<String> = ep.nodes.iter().map(|n| n.name.clone()).collect();
    for k in 0..count {
        let lxc = g.chance(spec.lxc_ratio);
        let template = g.chance(spec.template_ratio);
        let vmid = if template {
            while used.contains(&next_template) {
                next_template += 1;
            }
            next_template
        } else {
            if g.chance(0.02) {
                next_vmid = (next_vmid / 100 + 1) * 100;
            } else {
                next_vmid += g.range(1, 4) as u32;
            }
            while used.contains(&next_vmid) {
                next_vmid += 1;
            }
            next_vmid
        };
        used.insert(vmid);
        let node = g.pick(&node_names).clone();
        let windows = !lxc && g.chance(0.15);
        let status = if template {
            GuestStatus::Stopped
        } else if !lxc && g.chance(0.03) {
            GuestStatus::Paused
        } else if g.chance(0.8) {
            GuestStatus::Running
        } else {
            GuestStatus::Stopped
        };
        let fixed = ["docker01", "monitoring", "pihole"];
        let name = if template {
            if lxc {
                g.pick(&["debian-12-ct-template", "alpine-3.20-ct", "ubuntu-2404-ct"])
                    .to_string()
            } else if windows {
                "win2022-template".to_string()
            } else {
                g.pick(&["debian-12-template", "ubuntu-2404-cloudinit", "rocky9-tmpl"])
                    .to_string()
            }
        } else if k < fixed.len() {
            fixed[k].to_string()
        } else {
            guest_name(g, windows, lxc, spread)
        };
        let nic_count = *g.weighted(&[(1usize, 75), (2, 18), (3, 7)]);
        let mut nics = Vec::new();
        for _ in 0..nic_count {
            let prefix = if g.chance(0.95) {
                [0xBC, 0x24, 0x11]
            } else {
                *g.pick(&[[0x2E, 0x5A, 0x91], [0x00, 0x50, 0x56], [0x5E, 0x0C, 0x3D]])
            };
            let mac = g.mac(prefix);
            let vi = if g.chance(0.4) {
                0
            } else {
                1 + g.range(0, plan.vlans.len() as u64) as usize
            };
            let ip = ips.next(e, vi);
            let v6 = g
                .chance(0.3)
                .then(|| format!("2001:db8:{e:x}:{vi:x}::{:x}", g.range(2, 0xffff)));
            nics.push((
                NicPlan {
                    mac,
                    ip: Some(ip),
                    v6,
                },
                vi,
            ));
        }
        let mut guest = if lxc {
            lxc_guest(g, ep, vmid, &node, &name, &nics, plan, major)
        } else {
            qemu_guest(g, ep, vmid, &node, &name, windows, &nics, plan)
        };
        guest.status = status;
        guest.template = template;
        if template {
            guest.config.insert("template".into(), json!(1));
        }
        if !template && !lxc && k >= fixed.len() && g.chance(0.02) {
            guest.config.remove("name");
        }
        if let Some(tags) = gen_tags(g) {
            guest.config.insert("tags".into(), json!(tags));
        }
        if g.chance(0.3) {
            let pool = g.pick(&ep.pools).poolid.clone();
            guest.pool = Some(pool);
        }
        if is_cluster && !template && g.chance(0.1) {
            guest.ha_state = Some(
                if status.is_running() {
                    "started"
                } else {
                    "stopped"
                }
                .into(),
            );
        }
        if !status.is_running() {
            guest.agent = None;
            guest.interfaces = None;
        }
        guest.stats = gen_stats(g, &guest);
        if !template {
            gen_snapshots(g, &mut guest, spec.snapshots_per_guest);
        }
        ep.guests.insert(vmid, guest);
    }
    gen_backups(g, ep, spec.backups_per_guest);
}

#[allow(clippy::too_many_arguments)]
fn qemu_guest(
    g: &mut Gen,
    ep: &EndpointState,
    vmid: u32,
    node: &str,
    name: &str,
    windows: bool,
    nics: &[(NicPlan, usize)],
    plan: &NetPlan,
) -> Guest {
    let mut c = PveObject::new();
    c.insert("name".into(), json!(name));
    let ostype = if windows {
        *g.weighted(&[
            ("win11", 35),
            ("win10", 35),
            ("win8", 15),
            ("win7", 5),
            ("w2k8", 2),
        ])
    } else {
        *g.weighted(&[("l26", 95), ("other", 4), ("solaris", 1)])
    };
    c.insert("ostype".into(), json!(ostype));
    let mem = *g.pick(&[
        512u64, 1024, 2048, 2048, 4096, 4096, 8192, 16384, 32768, 65536,
    ]);
    c.insert(
        "memory".into(),
        if g.chance(0.6) {
            json!(mem.to_string())
        } else {
            json!(mem)
        },
    );
    if g.chance(0.15) {
        c.insert(
            "balloon".into(),
            json!(if g.chance(0.5) { 0 } else { mem / 2 }),
        );
    }
    c.insert("cores".into(), json!(*g.pick(&[1u32, 2, 2, 4, 4, 8, 16])));
    c.insert("sockets".into(), json!(if g.chance(0.85) { 1 } else { 2 }));
    if g.chance(0.6) {
        c.insert(
            "cpu".into(),
            json!(*g.pick(&[
                "x86-64-v2-AES",
                "host",
                "kvm64",
                "x86-64-v3",
                "host,flags=+aes"
            ])),
        );
    }
    let choices = image_storages(ep, node, false);
    let (sid, st) = pick_image_storage(g, &choices);
    let qcow = g.chance(0.7);
    let mut disk_n = 0usize;
    let mut vol = || {
        let v = volume_name(&sid, st, vmid, disk_n, false, qcow);
        disk_n += 1;
        v
    };
    let uefi = windows || g.chance(0.3);
    if uefi {
        c.insert("bios".into(), json!("ovmf"));
        c.insert(
            "machine".into(),
            json!(if windows { "pc-q35-8.1" } else { "q35" }),
        );
        let size = *g.weighted(&[("528K", 6), ("4M", 2), ("1M", 2)]);
        let v = vol();
        c.insert(
            "efidisk0".into(),
            json!(propstr(
                &v,
                vec![
                    ("efitype", "4m".into()),
                    ("pre-enrolled-keys", "1".into()),
                    ("size", size.into())
                ]
            )),
        );
    }
    if ostype == "win11" || (windows && g.chance(0.3)) {
        let v = vol();
        c.insert(
            "tpmstate0".into(),
            json!(propstr(
                &v,
                vec![("size", "4M".into()), ("version", "v2.0".into())]
            )),
        );
    }
    let bus = if windows {
        *g.weighted(&[("sata", 40), ("scsi", 30), ("ide", 20), ("virtio", 10)])
    } else {
        *g.weighted(&[("scsi", 70), ("virtio", 20), ("sata", 7), ("ide", 3)])
    };
    let scsihw = *g.weighted(&[
        ("virtio-scsi-single", 50),
        ("virtio-scsi-pci", 35),
        ("lsi", 8),
        ("pvscsi", 4),
        ("megasas", 3),
    ]);
    let disks = *g.weighted(&[(1usize, 60), (2, 25), (3, 10), (4, 5)]);
    let mut used_slots: BTreeMap<&str, usize> = BTreeMap::new();
    let mut boot_disk = String::new();
    let mut uses_scsi = false;
    for i in 0..disks {
        let b = if i > 0 && g.chance(0.1) {
            *g.pick(&["scsi", "virtio", "sata"])
        } else {
            bus
        };
        let slot = used_slots.entry(b).or_insert(0);
        if b == "ide" && *slot == 2 {
            *slot = 3;
        }
        let key = format!("{b}{slot}");
        *slot += 1;
        uses_scsi |= b == "scsi";
        let size = if i == 0 {
            format!(
                "{}G",
                g.pick(&[8u32, 16, 20, 32, 32, 40, 50, 64, 80, 100, 128])
            )
        } else if g.chance(0.03) {
            format!("{}M", g.range(1000, 9000) * 2 + 1)
        } else if g.chance(0.15) {
            format!("{}T", g.pick(&[1u32, 2, 4]))
        } else {
            format!("{}G", g.pick(&[50u32, 100, 200, 250, 500, 750]))
        };
        let mut opts = vec![("size", size)];
        if b == "scsi" && scsihw == "virtio-scsi-single" && g.chance(0.8) {
            opts.push(("iothread", "1".into()));
        }
        if b == "virtio" && g.chance(0.5) {
            opts.push(("iothread", "1".into()));
        }
        if g.chance(0.4) {
            opts.push(("discard", "on".into()));
        }
        if b != "virtio" && g.chance(0.3) {
            opts.push(("ssd", "1".into()));
        }
        if g.chance(0.15) {
            opts.push(("cache", "writeback".into()));
        }
        if i > 0 && g.chance(0.1) {
            opts.push(("backup", "0".into()));
        }
        let value = if i > 0 && g.chance(0.01) {
            propstr(
                &format!(
                    "/dev/disk/by-id/ata-ST4000VN008-2DR166_ZDH{:05}",
                    vmid % 100_000
                ),
                vec![("size", "3907018584K".into())],
            )
        } else {
            let v = vol();
            propstr(&v, opts)
        };
        if i == 0 {
            boot_disk = key.clone();
        }
        c.insert(key, json!(value));
    }
    if uses_scsi || g.chance(0.5) {
        c.insert("scsihw".into(), json!(scsihw));
    }
    let cloud_init = !windows && g.chance(0.15);
    let mut boot_order = vec![boot_disk.clone()];
    if !c.contains_key("ide2") && g.chance(0.6) {
        let v = if g.chance(0.5) {
            "none,media=cdrom".to_string()
        } else {
            let (iso, mib) = *g.pick(ISOS);
            format!("local:iso/{iso},media=cdrom,size={mib}M")
        };
        c.insert("ide2".into(), json!(v));
        boot_order.push("ide2".into());
    }
    if cloud_init {
        let slot = if !c.contains_key("ide0") {
            "ide0"
        } else if !c.contains_key("ide1") {
            "ide1"
        } else {
            "ide3"
        };
        let ci_sid = if matches!(st, StorageType::Dir | StorageType::Nfs | StorageType::Cifs) {
            format!("{sid}:{vmid}/vm-{vmid}-cloudinit.qcow2")
        } else {
            format!("{sid}:vm-{vmid}-cloudinit")
        };
        c.insert(slot.into(), json!(format!("{ci_sid},media=cdrom")));
        c.insert(
            "ciuser".into(),
            json!(*g.pick(&["debian", "ubuntu", "admin"])),
        );
        if let Some((nic, _)) = nics.first() {
            let ipc = match (&nic.ip, g.chance(0.8)) {
                (Some((ip, prefix, gw)), true) => format!("ip={ip}/{prefix},gw={gw}"),
                _ => "ip=dhcp".to_string(),
            };
            c.insert("ipconfig0".into(), json!(ipc));
        }
        if g.chance(0.5) {
            c.insert("serial0".into(), json!("socket"));
            c.insert("vga".into(), json!("serial0"));
        }
    }
    for (i, (nic, vi)) in nics.iter().enumerate() {
        let model = if windows {
            *g.weighted(&[
                ("e1000", 35),
                ("e1000e", 30),
                ("virtio", 25),
                ("vmxnet3", 8),
                ("rtl8139", 2),
            ])
        } else if nic.mac[0] == 0x00 {
            "vmxnet3"
        } else {
            *g.weighted(&[
                ("virtio", 80),
                ("e1000", 8),
                ("e1000e", 4),
                ("vmxnet3", 5),
                ("rtl8139", 3),
            ])
        };
        let bridge = if *vi > 0 && plan.bridges.len() > 1 {
            plan.bridges[1]
        } else {
            plan.bridges[0]
        };
        let mut opts = vec![("bridge", bridge.to_string())];
        if g.chance(0.6) {
            opts.push(("firewall", "1".into()));
        }
        if *vi > 0 {
            opts.push(("tag", plan.vlans[vi - 1].to_string()));
        }
        if model == "virtio" && g.chance(0.1) {
            opts.push(("queues", g.pick(&["2", "4", "8"]).to_string()));
        }
        if g.chance(0.05) {
            opts.push(("mtu", "1500".into()));
        }
        if g.chance(0.03) {
            opts.push(("rate", "12.5".into()));
        }
        if g.chance(0.02) {
            opts.push(("link_down", "1".into()));
        }
        if *vi == 0 && g.chance(0.03) {
            opts.push(("trunks", "10;20;30".into()));
        }
        c.insert(
            format!("net{i}"),
            json!(propstr(&format!("{model}={}", mac_upper(nic.mac)), opts)),
        );
    }
    if !nics.is_empty() {
        boot_order.push("net0".into());
    }
    if g.chance(0.05) {
        c.insert("boot".into(), json!("cdn"));
        c.insert("bootdisk".into(), json!(boot_disk));
    } else {
        c.insert(
            "boot".into(),
            json!(format!("order={}", boot_order.join(";"))),
        );
    }
    let agent = if windows {
        *g.weighted(&[(Some("1"), 60), (None, 40)])
    } else {
        *g.weighted(&[
            (Some("1"), 25),
            (Some("1,fstrim_cloned_disks=1"), 20),
            (Some("enabled=1"), 10),
            (Some("1,type=virtio"), 5),
            (Some("0"), 5),
            (None, 35),
        ])
    };
    if let Some(a) = agent {
        c.insert("agent".into(), json!(a));
    }
    if g.chance(0.95) {
        c.insert("smbios1".into(), json!(format!("uuid={}", g.uuid())));
    }
    if g.chance(0.8) {
        c.insert("vmgenid".into(), json!(g.uuid()));
    }
    if g.chance(0.6) {
        let qv = *g.pick(&["7.2.0", "8.0.2", "8.1.5", "9.0.2"]);
        let ctime = BASE_TIME - g.range(86_400, 900 * 86_400) as i64;
        c.insert(
            "meta".into(),
            json!(format!("creation-qemu={qv},ctime={ctime}")),
        );
    }
    match g.range(0, 10) {
        0..=4 => {
            c.insert("onboot".into(), json!(1));
        }
        5 => {
            c.insert("onboot".into(), json!(0));
        }
        _ => {}
    }
    if g.chance(0.3) {
        c.insert("numa".into(), json!(if g.chance(0.5) { 1 } else { 0 }));
    }
    if g.chance(0.1) {
        c.insert("hotplug".into(), json!("network,disk,usb"));
    }
    if g.chance(0.2) {
        c.insert(
            "description".into(),
            json!(format!(
                "Owner: {}\nTicket: OPS-{}\n",
                g.pick(&["team-a", "team-b", "ops"]),
                g.range(100, 9999)
            )),
        );
    }
    if g.chance(0.03) {
        c.insert("protection".into(), json!(1));
    }
    if g.chance(0.05) {
        c.insert(
            "startup".into(),
            json!(format!("order={},up=30", g.range(1, 10))),
        );
    }
    if g.chance(0.01) {
        c.insert("hostpci0".into(), json!("0000:41:00.0,pcie=1"));
    }
    if g.chance(0.01) {
        c.insert("usb0".into(), json!("host=1234:5678"));
    }
    if g.chance(0.03) {
        let v = volume_name(&sid, st, vmid, 9, false, qcow);
        c.insert("unused0".into(), json!(v));
    }
    if g.chance(0.05) {
        c.insert("tablet".into(), json!(0));
    }
    let agent_data = agent_result(g, windows, nics);
    let mut guest = Guest::qemu(vmid, node, name);
    guest.config = c;
    guest.agent = agent_data;
    guest
}

fn agent_result(g: &mut Gen, windows: bool, nics: &[(NicPlan, usize)]) -> Option<Value> {
    if g.chance(0.1) {
        return None;
    }
    if g.chance(0.005) {
        return Some(
            json!({"error": {"class": "Unsupported", "desc": "this feature or command is not currently supported"}}),
        );
    }
    let stats = |g: &mut Gen| {
        let rx = g.range(1 << 20, 1 << 40);
        let tx = g.range(1 << 20, 1 << 38);
        json!({
            "rx-bytes": rx, "rx-dropped": g.range(0, 20), "rx-errs": 0, "rx-packets": rx / 900,
            "tx-bytes": tx, "tx-dropped": 0, "tx-errs": 0, "tx-packets": tx / 700
        })
    };
    let mut out = Vec::new();
    if windows {
        out.push(json!({
            "name": "Loopback Pseudo-Interface 1",
            "ip-addresses": [
                {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
                {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}
            ],
            "statistics": stats(g)
        }));
    } else {
        out.push(json!({
            "name": "lo", "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [
                {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}
            ],
            "statistics": stats(g)
        }));
    }
    let style = g.range(0, 3);
    for (i, (nic, _)) in nics.iter().enumerate() {
        let name = if windows {
            if i == 0 {
                "Ethernet".to_string()
            } else {
                format!("Ethernet {}", i + 1)
            }
        } else {
            match style {
                0 => format!("eth{i}"),
                1 => format!("ens{}", 18 + i),
                _ => format!("enp6s{}", 18 + i),
            }
        };
        let mut addrs = Vec::new();
        if let Some((ip, prefix, _)) = &nic.ip {
            addrs.push(json!({"ip-address": ip, "ip-address-type": "ipv4", "prefix": prefix}));
        }
        if let Some(v6) = &nic.v6 {
            addrs.push(json!({"ip-address": v6, "ip-address-type": "ipv6", "prefix": 64}));
        }
        addrs.push(
            json!({"ip-address": link_local(nic.mac), "ip-address-type": "ipv6", "prefix": 64}),
        );
        out.push(json!({
            "name": name, "hardware-address": mac_lower(nic.mac),
            "ip-addresses": addrs, "statistics": stats(g)
        }));
    }
    if !windows && g.chance(0.15) {
        let m = g.mac([0x02, 0x42, 0xac]);
        out.push(json!({
            "name": "docker0", "hardware-address": mac_lower(m),
            "ip-addresses": [{"ip-address": "172.17.0.1", "ip-address-type": "ipv4", "prefix": 16}],
            "statistics": stats(g)
        }));
        let v = g.mac([0x9a, 0x3e, 0x01]);
        out.push(json!({"name": format!("veth{}", g.hex(3)), "hardware-address": mac_lower(v), "statistics": stats(g)}));
    }
    Some(Value::Array(out))
}

#[allow(clippy::too_many_arguments)]
fn lxc_guest(
    g: &mut Gen,
    ep: &EndpointState,
    vmid: u32,
    node: &str,
    name: &str,
    nics: &[(NicPlan, usize)],
    plan: &NetPlan,
    major: u32,
) -> Guest {
    let mut c = PveObject::new();
    c.insert("hostname".into(), json!(name));
    c.insert("arch".into(), json!("amd64"));
    if g.chance(0.85) {
        c.insert("cores".into(), json!(*g.pick(&[1u32, 1, 2, 2, 4])));
    }
    let mem = *g.pick(&[256u64, 512, 512, 1024, 2048, 4096, 8192]);
    c.insert("memory".into(), json!(mem));
    c.insert("swap".into(), json!(*g.pick(&[0u64, 256, 512, 512, 1024])));
    let ostype = *g.weighted(&[
        ("debian", 45),
        ("ubuntu", 30),
        ("alpine", 10),
        ("centos", 5),
        ("archlinux", 3),
        ("fedora", 3),
        ("opensuse", 2),
        ("nixos", 1),
        ("unmanaged", 1),
    ]);
    c.insert("ostype".into(), json!(ostype));
    let choices = image_storages(ep, node, true);
    let (sid, st) = pick_image_storage(g, &choices);
    let size = format!("{}G", g.pick(&[2u32, 4, 8, 8, 16, 32, 64]));
    let mut opts = vec![("size", size)];
    if g.chance(0.05) {
        opts.push(("mountoptions", "noatime".into()));
    }
    c.insert(
        "rootfs".into(),
        json!(propstr(&volume_name(&sid, st, vmid, 0, true, false), opts)),
    );
    let mut mp = 0;
    if g.chance(0.25) {
        let size = if g.chance(0.2) {
            format!("{}T", g.pick(&[1u32, 2]))
        } else {
            format!("{}G", g.pick(&[10u32, 50, 100, 200, 500]))
        };
        let path = *g.pick(&[
            "/srv/data",
            "/var/lib/docker",
            "/opt/app",
            "/var/lib/postgresql",
        ]);
        let mut opts = vec![
            ("mp", path.to_string()),
            ("backup", "1".into()),
            ("size", size),
        ];
        if g.chance(0.1) {
            opts.push(("replicate", "0".into()));
        }
        c.insert(
            format!("mp{mp}"),
            json!(propstr(&volume_name(&sid, st, vmid, 1, true, false), opts)),
        );
        mp += 1;
    }
    if g.chance(0.15) {
        let (host, guest_path) = *g.pick(&[
            ("/mnt/pve/nfs-media", "/media"),
            ("/srv/share", "/share"),
            ("/mnt/host/backups", "/mnt/backups"),
        ]);
        let mut opts = vec![("mp", guest_path.to_string())];
        if g.chance(0.3) {
            opts.push(("ro", "1".into()));
        }
        c.insert(format!("mp{mp}"), json!(propstr(host, opts)));
    }
    let mut ifaces = vec![
        json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"}),
    ];
    for (i, (nic, vi)) in nics.iter().enumerate() {
        let bridge = if *vi > 0 && plan.bridges.len() > 1 {
            plan.bridges[1]
        } else {
            plan.bridges[0]
        };
        let mut opts = vec![
            ("bridge", bridge.to_string()),
            ("hwaddr", mac_upper(nic.mac)),
            ("type", "veth".to_string()),
        ];
        if g.chance(0.6) {
            opts.push(("firewall", "1".into()));
        }
        let mode = *g.weighted(&[("dhcp", 40), ("static", 55), ("manual", 5)]);
        match (mode, &nic.ip) {
            ("static", Some((ip, prefix, gw))) => {
                opts.push(("ip", format!("{ip}/{prefix}")));
                if i == 0 {
                    opts.push(("gw", gw.clone()));
                }
            }
            ("manual", _) => opts.push(("ip", "manual".into())),
            _ => opts.push(("ip", "dhcp".into())),
        }
        if g.chance(0.3) {
            opts.push(("ip6", g.pick(&["auto", "dhcp", "manual"]).to_string()));
        }
        if *vi > 0 {
            opts.push(("tag", plan.vlans[vi - 1].to_string()));
        }
        c.insert(
            format!("net{i}"),
            json!(propstr(&format!("name=eth{i}"), opts)),
        );
        let mut entry = PveObject::new();
        entry.insert("name".into(), json!(format!("eth{i}")));
        entry.insert("hwaddr".into(), json!(mac_lower(nic.mac)));
        let mut addrs = Vec::new();
        if mode != "manual"
            && let Some((ip, prefix, _)) = &nic.ip
        {
            entry.insert("inet".into(), json!(format!("{ip}/{prefix}")));
            addrs.push(json!({"ip-address": ip, "ip-address-type": "ipv4", "prefix": prefix}));
        }
        entry.insert("inet6".into(), json!(format!("{}/64", link_local(nic.mac))));
        addrs.push(
            json!({"ip-address": link_local(nic.mac), "ip-address-type": "ipv6", "prefix": 64}),
        );
        if major >= 9 {
            entry.insert("hardware-address".into(), json!(mac_lower(nic.mac)));
            entry.insert("ip-addresses".into(), Value::Array(addrs));
        }
        ifaces.push(Value::Object(entry));
    }
    if major >= 9
        && let Some(lo) = ifaces.first_mut().and_then(Value::as_object_mut)
    {
        lo.insert("hardware-address".into(), json!("00:00:00:00:00:00"));
        lo.insert(
            "ip-addresses".into(),
            json!([
                {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}
            ]),
        );
    }
    let features = *g.weighted(&[
        (Some("nesting=1"), 60),
        (Some("keyctl=1,nesting=1"), 10),
        (Some("fuse=1,mknod=1,nesting=1"), 3),
        (None, 27),
    ]);
    if let Some(f) = features {
        c.insert("features".into(), json!(f));
    }
    if g.chance(0.85) {
        c.insert("unprivileged".into(), json!(1));
    }
    if g.chance(0.5) {
        c.insert("onboot".into(), json!(1));
    }
    if g.chance(0.15) {
        c.insert("description".into(), json!(format!("Service: {name}\n")));
    }
    if g.chance(0.05) {
        c.insert("startup".into(), json!(format!("order={}", g.range(1, 10))));
    }
    if g.chance(0.03) {
        c.insert("protection".into(), json!(1));
    }
    if g.chance(0.05) {
        c.insert("nameserver".into(), json!("10.0.0.53 1.1.1.1"));
        c.insert("searchdomain".into(), json!("corp.local"));
    }
    if g.chance(0.02) {
        c.insert("dev0".into(), json!("/dev/dri/renderD128,gid=104"));
        c.insert(
            "lxc".into(),
            json!([
                ["lxc.cgroup2.devices.allow", "c 226:128 rwm"],
                [
                    "lxc.mount.entry",
                    "/dev/dri dev/dri none bind,optional,create=dir"
                ]
            ]),
        );
    }
    let mut guest = Guest::lxc(vmid, node, name);
    guest.config = c;
    guest.interfaces = Some(ifaces);
    guest
}

fn gen_stats(g: &mut Gen, guest: &Guest) -> GuestStats {
    if !guest.status.is_running() {
        return GuestStats::default();
    }
    let maxmem = guest.memory_mib() << 20;
    let uptime = g.range(300, 120 * 86_400);
    let traffic = uptime * g.range(1_000, 2_000_000);
    GuestStats {
        uptime,
        cpu: g.fraction(0.3),
        mem: (maxmem as f64 * (0.15 + g.rng.random::<f64>() * 0.75)) as u64,
        disk: match guest.guest_type {
            GuestType::Lxc => {
                (guest.boot_disk_size() as f64 * (0.1 + g.rng.random::<f64>() * 0.7)) as u64
            }
            GuestType::Qemu => 0,
        },
        netin: traffic,
        netout: traffic / g.range(2, 20),
        diskread: uptime * g.range(1_000, 500_000),
        diskwrite: uptime * g.range(1_000, 900_000),
        pid: g.range(1_000, 4_000_000) as u32,
    }
}

fn gen_snapshots(g: &mut Gen, guest: &mut Guest, mean: f64) {
    let n = g.count_around(mean);
    let mut t = BASE_TIME - g.range(30, 400) as i64 * 86_400;
    let mut parent: Option<String> = None;
    for i in 0..n {
        t += g.range(3_600, 40 * 86_400) as i64;
        let base = match g.range(0, 6) {
            0 => "pre-upgrade".to_string(),
            1 => "before-patch".to_string(),
            2 => "clean-install".to_string(),
            3 => format!(
                "autodaily{}",
                format_time(t, TimeStyle::Vzdump).replace(['_', '-'], "")
            ),
            4 => format!("snap{}", i + 1),
            _ => format!("pre_kernel_{}", g.range(5, 7)),
        };
        let name = if guest.snapshots.iter().any(|s| s.name == base) {
            format!("{base}_{i}")
        } else {
            base
        };
        let description = *g.weighted(&[
            ("", 5),
            ("before apt dist-upgrade", 2),
            ("cv4pve-autosnap", 2),
            ("Known good state\nchecked by ops", 1),
        ]);
        guest.snapshots.push(Snapshot {
            name: name.clone(),
            description: description.to_string(),
            snaptime: t,
            parent: parent.clone(),
            vmstate: guest.guest_type == GuestType::Qemu
                && guest.status.is_running()
                && g.chance(0.3),
        });
        parent = Some(name);
    }
}

fn gen_backups(g: &mut Gen, ep: &mut EndpointState, mean: f64) {
    let targets: Vec<(usize, StorageType, bool)> = ep
        .storages
        .iter()
        .enumerate()
        .filter(|(_, s)| s.has_content("backup") && !s.disable)
        .map(|(i, s)| (i, s.storage_type, s.is_shared()))
        .collect();
    if targets.is_empty() {
        return;
    }
    let pbs: Vec<usize> = targets
        .iter()
        .filter(|t| t.1 == StorageType::Pbs)
        .map(|t| t.0)
        .collect();
    let other: Vec<usize> = targets
        .iter()
        .filter(|t| t.1 != StorageType::Pbs)
        .map(|t| t.0)
        .collect();
    let enc_fp = g.fingerprint(32, false);
    let guests: Vec<(u32, GuestType, String, String, u64, bool)> = ep
        .guests
        .values()
        .map(|gu| {
            (
                gu.vmid,
                gu.guest_type,
                gu.node.clone(),
                gu.display_name(),
                gu.boot_disk_size(),
                gu.template,
            )
        })
        .collect();
    let max_vmid = guests.iter().map(|g| g.0).max().unwrap_or(100);
    let mut orphans = Vec::new();
    for k in 0..(guests.len() / 50).max(1) {
        let gt = if g.chance(0.3) {
            GuestType::Lxc
        } else {
            GuestType::Qemu
        };
        orphans.push((
            max_vmid + 1000 + k as u32,
            gt,
            String::new(),
            format!("deleted-vm-{k}"),
            32 * GIB,
            false,
        ));
    }
    for (vmid, gt, node, name, disk, template) in guests.into_iter().chain(orphans) {
        let n = if template {
            g.count_around(mean / 4.0)
        } else {
            g.count_around(mean)
        };
        if n == 0 {
            continue;
        }
        let idx = if !pbs.is_empty() && (other.is_empty() || g.chance(0.6)) {
            *g.pick(&pbs)
        } else {
            *g.pick(&other)
        };
        let sid = ep.storages[idx].storage.clone();
        let stype = ep.storages[idx].storage_type;
        let shared = ep.storages[idx].is_shared();
        let node = if node.is_empty() {
            ep.nodes[0].name.clone()
        } else {
            node
        };
        for day in 0..n {
            let ctime = BASE_TIME - (day as i64 + 1) * 86_400 - 30_000 + g.range(0, 3_600) as i64;
            let size = ((disk.max(GIB)) as f64 * (0.05 + g.rng.random::<f64>() * 0.55)) as u64;
            let mut b = if stype == StorageType::Pbs {
                let mut b = Backup::pbs(&sid, vmid, gt, ctime, size);
                if g.chance(0.7) {
                    let ok = g.chance(0.95);
                    b.verification = Some(Verification {
                        state: if ok { "ok" } else { "failed" }.into(),
                        upid: format!(
                            "UPID:pbs:{:08X}:{:08X}:{:08X}:{:08X}:verificationjob:{}:root@pam:",
                            g.range(1_000, 90_000),
                            g.range(0, u32::MAX as u64),
                            g.range(0, 4),
                            ctime + 7_200,
                            "v-daily"
                        ),
                    });
                }
                if g.chance(0.15) {
                    b.encrypted = Some(enc_fp.clone());
                }
                if g.chance(0.5) {
                    b.notes = Some(name.clone());
                }
                b
            } else {
                let mut b = Backup::vzdump(&sid, vmid, gt, ctime, size);
                if g.chance(0.1) {
                    let archive = if gt == GuestType::Qemu { "vma" } else { "tar" };
                    let comp = *g.pick(&["lzo", "gz"]);
                    b.volid = format!(
                        "{sid}:backup/vzdump-{}-{vmid}-{}.{archive}.{comp}",
                        gt.as_str(),
                        format_time(ctime, TimeStyle::Vzdump)
                    );
                    b.format = format!("{archive}.{comp}");
                }
                if g.chance(0.3) {
                    b.notes = Some(name.clone());
                }
                if !shared {
                    b.node = Some(node.clone());
                }
                b
            };
            b.protected = g.chance(0.04);
            ep.storages[idx].backups.push(b);
        }
    }
    if let Some(local) = ep.storages.iter_mut().find(|s| s.storage == "local") {
        local.backups.push(Backup {
            volid: "local:backup/manual-export-2024_11_02.tar.zst".into(),
            vmid: None,
            subtype: None,
            format: "tar.zst".into(),
            size: 734_003_200,
            ctime: BASE_TIME - 340 * 86_400,
            notes: None,
            protected: false,
            verification: None,
            encrypted: None,
            node: Some(ep.nodes[0].name.clone()),
        });
    }
}

fn finish_endpoint(g: &mut Gen, ep: &mut EndpointState) {
    let is_cluster = ep.cluster_name.is_some();
    let vmids: Vec<u32> = ep.guests.keys().copied().collect();
    let first_pool = ep.pools.first().map(|p| p.poolid.clone());
    let visible_pool = if is_cluster {
        "dev".to_string()
    } else {
        first_pool.unwrap_or_default()
    };
    let mut extra = Vec::new();
    for vmid in &vmids {
        let in_pool = ep.guests[vmid].pool.as_deref() == Some(visible_pool.as_str());
        if !in_pool && extra.len() < 3 && g.chance(0.2) {
            extra.push(*vmid);
        }
    }
    if extra.is_empty()
        && let Some(v) = vmids.first()
    {
        extra.push(*v);
    }
    let backup_storage = ep
        .storages
        .iter()
        .find(|s| s.storage_type == StorageType::Pbs)
        .or_else(|| ep.storages.iter().find(|s| s.storage == "nfs-backup"))
        .map(|s| s.storage.clone());
    let mut storages = vec!["local".to_string()];
    storages.extend(backup_storage.clone());
    ep.limited_acl = LimitedAcl {
        pools: vec![visible_pool],
        vmids: extra,
        storages,
    };

    let store = backup_storage.unwrap_or_else(|| "local".into());
    let jobs = if is_cluster { g.range(1, 4) } else { 1 };
    for j in 0..jobs {
        let mut job = obj(json!({
            "id": format!("backup-{}-{}", g.hex(4), g.hex(2)), "type": "vzdump",
            "schedule": *g.pick(&["02:00", "sat 03:30", "mon..fri 22:00", "*-*-01 01:00"]),
            "storage": store, "mode": if j == 0 { "snapshot" } else { *g.pick(&["snapshot", "stop", "suspend"]) },
            "compress": "zstd", "enabled": if g.chance(0.85) { 1 } else { 0 },
            "notes-template": "{{guestname}}", "mailnotification": "failure",
            "next-run": BASE_TIME + g.range(3_600, 7 * 86_400) as i64
        }));
        match j {
            0 => {
                job.insert("all".into(), json!(1));
                if vmids.len() > 2 {
                    job.insert(
                        "exclude".into(),
                        json!(format!("{},{}", vmids[0], vmids[1])),
                    );
                }
            }
            1 => {
                job.insert("pool".into(), json!("prod"));
            }
            _ => {
                let list: Vec<String> = vmids.iter().take(3).map(u32::to_string).collect();
                job.insert("vmid".into(), json!(list.join(",")));
            }
        }
        ep.backup_jobs.push(job);
    }
    if is_cluster && g.chance(0.5) {
        for tag in [100u16, 200, 300].into_iter().take(g.range(1, 4) as usize) {
            ep.sdn_vnets.push(obj(json!({
                "vnet": format!("vnet{tag}"), "zone": "vlanzone", "type": "vnet",
                "tag": tag, "digest": g.hex(20)
            })));
        }
    }
    let names: Vec<String> = ep.nodes.iter().map(|n| n.name.clone()).collect();
    for node in &names {
        let count = g.range(3, 9);
        for _ in 0..count {
            let start = BASE_TIME - g.range(60, 5 * 86_400) as i64;
            let pid = g.range(1_000, 4_000_000);
            let pstart = g.range(100_000, 90_000_000);
            let (kind, id) = match g.range(0, 5) {
                0 => ("vzdump", String::new()),
                1 => (
                    "qmstart",
                    vmids.first().map(u32::to_string).unwrap_or_default(),
                ),
                2 => (
                    "vncproxy",
                    vmids.last().map(u32::to_string).unwrap_or_default(),
                ),
                3 => ("aptupdate", String::new()),
                _ => (
                    "qmsnapshot",
                    vmids.first().map(u32::to_string).unwrap_or_default(),
                ),
            };
            let user = if kind == "vncproxy" {
                "admin@pve"
            } else {
                "root@pam"
            };
            let upid =
                format!("UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{kind}:{id}:{user}:");
            let mut task = obj(json!({
                "upid": upid, "node": node, "pid": pid, "pstart": pstart, "starttime": start,
                "type": kind, "id": id, "user": user
            }));
            task.insert("endtime".into(), json!(start + g.range(2, 3_000) as i64));
            task.insert(
                "status".into(),
                json!(*g.weighted(&[("OK", 90), ("job errors", 5), ("unexpected status", 5)])),
            );
            ep.tasks.push(task);
        }
    }
}

/// The datacenter firewall, node rules and replication jobs of an endpoint, from their own
/// generator (seeded by the estate seed and the endpoint index) so that the rest of the
/// estate stays what it was before they existed.
fn firewall_and_replication(seed: u64, e: usize, ep: &mut EndpointState) {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6669_7265_7761_6c6c ^ (e as u64 + 1)),
        macs: HashSet::new(),
    };
    let rule = |g: &mut Gen, pos: usize, kind: &str| {
        let mut rule = obj(json!({
            "pos": pos, "type": kind,
            "action": *g.pick(&["ACCEPT", "DROP", "REJECT"]),
            "enable": if g.chance(0.85) { 1 } else { 0 },
        }));
        match g.range(0, 4) {
            0 => {
                rule.insert(
                    "macro".into(),
                    json!(*g.pick(&["SSH", "HTTPS", "Ping", "DNS"])),
                );
            }
            1 => {
                rule.insert("proto".into(), json!("tcp"));
                rule.insert(
                    "dport".into(),
                    json!(*g.pick(&["22", "80,443", "8006", "3128"])),
                );
            }
            2 => {
                rule.insert("proto".into(), json!("icmp"));
                rule.insert("icmp-type".into(), json!("echo-request"));
            }
            _ => {
                rule.insert("proto".into(), json!("udp"));
                rule.insert("dport".into(), json!("53"));
                rule.insert("sport".into(), json!("1024:65535"));
            }
        }
        if g.chance(0.5) {
            rule.insert(
                "source".into(),
                json!(format!("10.{}.0.0/16", g.range(0, 40))),
            );
        }
        if g.chance(0.3) {
            rule.insert("iface".into(), json!(format!("net{}", g.range(0, 2))));
        }
        if g.chance(0.4) {
            rule.insert("log".into(), json!(*g.pick(&["nolog", "info", "warning"])));
        }
        if g.chance(0.5) {
            rule.insert("comment".into(), json!(format!("rule {pos}")));
        }
        rule
    };
    let fw = &mut ep.firewall;
    let groups = ["webservers", "databases", "management"];
    for (i, name) in groups.iter().take(g.range(1, 4) as usize).enumerate() {
        let rules = (0..g.range(1, 5) as usize)
            .map(|pos| rule(&mut g, pos, "in"))
            .collect();
        fw.groups.push(FirewallGroup {
            group: (*name).to_string(),
            comment: (i % 2 == 0).then(|| format!("{name} tier")),
            digest: g.hex(20),
            rules,
        });
    }
    let group_names: Vec<String> = fw.groups.iter().map(|gr| gr.group.clone()).collect();
    for pos in 0..g.range(2, 6) as usize {
        if pos == 0 {
            fw.rules.push(obj(json!({
                "pos": 0, "type": "group", "action": group_names[0], "enable": 1
            })));
        } else {
            let kind = *g.pick(&["in", "out"]);
            fw.rules.push(rule(&mut g, pos, kind));
        }
    }
    for (name, net) in [
        ("management", "10.10.0.0/24"),
        ("blocklist", "192.0.2.0/24"),
    ] {
        let entries = (0..g.range(1, 4))
            .map(|i| {
                let mut entry = obj(json!({
                    "cidr": if i == 0 { net.to_string() } else { format!("10.{}.{}.{}", g.range(0, 40), g.range(0, 255), g.range(1, 255)) },
                    "digest": g.hex(20),
                }));
                if i == 2 {
                    entry.insert("nomatch".into(), json!(true));
                }
                if g.chance(0.5) {
                    entry.insert("comment".into(), json!(format!("entry {i}")));
                }
                entry
            })
            .collect();
        fw.ipsets.push(FirewallIpSet {
            name: name.to_string(),
            comment: (name == "management").then(|| "admin networks".to_string()),
            digest: g.hex(20),
            entries,
        });
    }
    for (name, cidr) in [
        ("gateway", "10.0.0.1"),
        ("backup-server", "10.20.0.5/32"),
        ("dns", "10.0.0.53"),
    ] {
        let mut alias = obj(json!({"name": name, "cidr": cidr, "digest": g.hex(20)}));
        if g.chance(0.5) {
            alias.insert("comment".into(), json!(format!("the {name}")));
        }
        fw.aliases.push(alias);
    }
    fw.options = obj(json!({
        "enable": if g.chance(0.7) { 1 } else { 0 },
        "policy_in": *g.pick(&["DROP", "REJECT", "ACCEPT"]),
        "policy_out": "ACCEPT",
        "ebtables": true,
        "log_ratelimit": "burst=5,enable=1,rate=1/second",
    }));
    let nodes: Vec<String> = ep.nodes.iter().map(|n| n.name.clone()).collect();
    for node in &nodes {
        let rules = (0..g.range(0, 4) as usize)
            .map(|pos| rule(&mut g, pos, "in"))
            .collect();
        ep.firewall.node_rules.insert(node.clone(), rules);
    }
    if nodes.len() > 1 {
        let vmids: Vec<(u32, String)> = ep
            .guests
            .values()
            .filter(|guest| guest.guest_type == GuestType::Qemu)
            .map(|guest| (guest.vmid, guest.node.clone()))
            .collect();
        let count = g.range(1, 4).min(vmids.len() as u64) as usize;
        for (guest, source) in vmids.into_iter().take(count) {
            let target = nodes
                .iter()
                .find(|n| **n != source)
                .cloned()
                .unwrap_or_default();
            let mut job = obj(json!({
                "id": format!("{guest}-0"), "type": "local", "guest": guest, "jobnum": 0,
                "target": target, "source": source,
                "schedule": *g.pick(&["*/15", "*/30", "hourly"]),
            }));
            if g.chance(0.5) {
                job.insert("rate".into(), json!(g.range(10, 200) as f64 / 2.0));
            }
            if g.chance(0.3) {
                job.insert("comment".into(), json!("replicated for HA"));
            }
            if g.chance(0.2) {
                job.insert("disable".into(), json!(true));
            }
            ep.replication_jobs.push(job);
        }
    }
}
