//! Network sources -> the inputs of the network kinds: node interfaces from
//! `/nodes/{node}/network`, guest NICs from the config's `netN` entries joined with what
//! the guest reports (QEMU guest agent, running container), and their addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{NormalizeError, as_bool, as_str, as_u64, raw};
use crate::mapper::v1::{
    AddressInput, AddressScope, AddressSource, GuestInput, GuestNicInput, GuestType, IpFamily,
    NodeInterfaceInput, ObservedInterface,
};

/// An address as NetBox stores it: canonical CIDR, zone id removed. `text` may carry its
/// prefix (`10.0.0.1/24`) or get it from `prefix`; without either a host prefix (/32,
/// /128) is used. Unparseable addresses and impossible prefixes are none.
pub fn address(text: &str, prefix: Option<u8>, source: AddressSource) -> Option<AddressInput> {
    let text = text.trim();
    let (host, own_prefix) = match text.split_once('/') {
        Some((host, p)) => (host, Some(p.trim().parse::<u8>().ok()?)),
        None => (text, None),
    };
    let host = host.split('%').next().unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = own_prefix.or(prefix).unwrap_or(max);
    if prefix > max {
        return None;
    }
    Some(AddressInput {
        address: format!("{ip}/{prefix}"),
        family: if ip.is_ipv4() {
            IpFamily::Ipv4
        } else {
            IpFamily::Ipv6
        },
        scope: scope(ip),
        source,
    })
}

/// What kind of address `ip` is.
pub fn scope(ip: IpAddr) -> AddressScope {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                AddressScope::Loopback
            } else if v4.is_link_local() {
                AddressScope::LinkLocal
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                AddressScope::Private
            } else {
                AddressScope::Global
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                AddressScope::Loopback
            } else if first & 0xffc0 == 0xfe80 {
                AddressScope::LinkLocal
            } else if first & 0xfe00 == 0xfc00 {
                AddressScope::UniqueLocal
            } else {
                AddressScope::Global
            }
        }
    }
}

/// The entries of `/nodes/{node}/network` as node-interface inputs, each with the
/// bridge and bond it belongs to. An entry without `iface` is an error for that entry.
pub fn node_interfaces(
    node: &str,
    entries: &[Value],
) -> Vec<Result<NodeInterfaceInput, NormalizeError>> {
    let words = |v: Option<&Value>| -> Vec<String> {
        as_str(v)
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut in_bridge: BTreeMap<String, String> = BTreeMap::new();
    let mut in_bond: BTreeMap<String, String> = BTreeMap::new();
    for entry in entries {
        let Some(name) = as_str(entry.get("iface")) else {
            continue;
        };
        for port in words(entry.get("bridge_ports"))
            .into_iter()
            .chain(words(entry.get("ovs_ports")))
        {
            in_bridge.entry(port).or_insert_with(|| name.clone());
        }
        for member in words(entry.get("slaves"))
            .into_iter()
            .chain(words(entry.get("bond_slaves")))
            .chain(words(entry.get("ovs_bonds")))
        {
            in_bond.entry(member).or_insert_with(|| name.clone());
        }
    }
    entries
        .iter()
        .map(|entry| {
            let obj = entry
                .as_object()
                .ok_or_else(|| NormalizeError::new("network entry is not an object"))?;
            let name = as_str(obj.get("iface"))
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| NormalizeError::new("network entry has no `iface`"))?;
            let kind = as_str(obj.get("type")).unwrap_or_else(|| "unknown".into());
            let dotted = name.rsplit_once('.');
            let vlan_id = as_u64(obj.get("vlan-id"))
                .or_else(|| (kind == "vlan").then(|| dotted?.1.parse().ok()).flatten())
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| (1..=4094).contains(v));
            let vlan_raw_device = as_str(obj.get("vlan-raw-device"))
                .or_else(|| (kind == "vlan").then(|| dotted.map(|(d, _)| d.to_string()))?);
            let mut addresses = Vec::new();
            let v4 = as_str(obj.get("cidr")).or_else(|| {
                let address = as_str(obj.get("address"))?;
                let mask = as_str(obj.get("netmask"))?;
                Some(format!("{address}/{}", netmask_prefix(&mask)?))
            });
            let v6 = as_str(obj.get("cidr6")).or_else(|| {
                let address = as_str(obj.get("address6"))?;
                Some(format!("{address}/{}", as_str(obj.get("netmask6"))?))
            });
            for text in [v4, v6].into_iter().flatten() {
                addresses.extend(address(&text, None, AddressSource::Node));
            }
            let mac = obj
                .get("options")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find_map(|o| o.trim().strip_prefix("hwaddress").map(str::trim))
                .and_then(normalize_mac);
            Ok(NodeInterfaceInput {
                node: node.to_string(),
                in_bridge: in_bridge.get(&name).cloned(),
                in_bond: in_bond.get(&name).cloned(),
                active: as_bool(obj.get("active")).unwrap_or(false),
                autostart: as_bool(obj.get("autostart")).unwrap_or(false),
                mtu: as_u64(obj.get("mtu")).and_then(|m| u32::try_from(m).ok()),
                addresses,
                gateway: as_str(obj.get("gateway")),
                gateway6: as_str(obj.get("gateway6")),
                mac,
                bridge_ports: words(obj.get("bridge_ports"))
                    .into_iter()
                    .chain(words(obj.get("ovs_ports")))
                    .collect(),
                bond_slaves: words(obj.get("slaves"))
                    .into_iter()
                    .chain(words(obj.get("bond_slaves")))
                    .chain(words(obj.get("ovs_bonds")))
                    .collect(),
                bond_mode: as_str(obj.get("bond_mode")),
                ovs_bridge: as_str(obj.get("ovs_bridge")),
                vlan_id,
                vlan_raw_device,
                vlan_aware: as_bool(obj.get("bridge_vlan_aware")).unwrap_or(false),
                comments: as_str(obj.get("comments"))
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
                kind,
                name,
                raw: vec![raw("network", entry)],
            })
        })
        .collect()
}

/// Prefix length of a netmask given as a length (`24`) or dotted (`255.255.255.0`).
fn netmask_prefix(mask: &str) -> Option<u8> {
    if let Ok(len) = mask.parse::<u8>() {
        return (len <= 32).then_some(len);
    }
    let ip: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(ip);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones() as u8)
}

/// The interfaces a QEMU guest agent reports (`network-get-interfaces`, with or without
/// its `result` wrapper); none when it answered something else (old releases answer an
/// unsupported command with `{"result": {"error": ...}}`). Alias entries (`ens20:1`) are
/// merged into their parent.
pub fn agent_interfaces(value: &Value) -> Option<Vec<ObservedInterface>> {
    let list = value.get("result").unwrap_or(value);
    let entries = list.as_array()?;
    Some(merge_aliases(entries.iter().filter_map(|entry| {
        let name = as_str(entry.get("name"))?;
        let addresses = entry
            .get("ip-addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let prefix = as_u64(a.get("prefix")).and_then(|p| u8::try_from(p).ok());
                address(
                    &as_str(a.get("ip-address"))?,
                    prefix,
                    AddressSource::GuestAgent,
                )
            })
            .collect();
        Some(ObservedInterface {
            name,
            mac: as_str(entry.get("hardware-address")).and_then(|m| normalize_mac(&m)),
            addresses,
        })
    })))
}

/// The interfaces a running container reports (`/nodes/{node}/lxc/{vmid}/interfaces`):
/// `inet`/`inet6`, or the agent-style `ip-addresses` of newer releases; none when the
/// answer is not a list.
pub fn container_interfaces(value: &Value) -> Option<Vec<ObservedInterface>> {
    let entries = value.as_array()?;
    Some(merge_aliases(entries.iter().filter_map(|entry| {
        let name = as_str(entry.get("name"))?;
        let mut addresses: Vec<AddressInput> = Vec::new();
        let listed = entry.get("ip-addresses").and_then(Value::as_array);
        for a in listed.into_iter().flatten() {
            let prefix = as_u64(a.get("prefix")).and_then(|p| u8::try_from(p).ok());
            if let Some(text) = as_str(a.get("ip-address")) {
                addresses.extend(address(&text, prefix, AddressSource::Container));
            }
        }
        if listed.is_none() {
            for key in ["inet", "inet6"] {
                if let Some(text) = as_str(entry.get(key)) {
                    addresses.extend(address(&text, None, AddressSource::Container));
                }
            }
        }
        let mac = as_str(entry.get("hwaddr"))
            .or_else(|| as_str(entry.get("hardware-address")))
            .and_then(|m| normalize_mac(&m));
        Some(ObservedInterface {
            name,
            mac,
            addresses,
        })
    })))
}

/// Merge `base:N` alias entries into `base` (appending addresses not already there); an
/// alias without its base becomes the base.
fn merge_aliases(entries: impl Iterator<Item = ObservedInterface>) -> Vec<ObservedInterface> {
    let mut out: Vec<ObservedInterface> = Vec::new();
    for mut entry in entries {
        if let Some((base, label)) = entry.name.split_once(':')
            && !base.is_empty()
            && !label.is_empty()
        {
            entry.name = base.to_string();
        }
        match out.iter_mut().find(|o| o.name == entry.name) {
            Some(existing) => {
                if existing.mac.is_none() {
                    existing.mac = entry.mac;
                }
                for a in entry.addresses {
                    if !existing.addresses.iter().any(|e| e.address == a.address) {
                        existing.addresses.push(a);
                    }
                }
            }
            None => out.push(entry),
        }
    }
    out
}

/// The NICs of `guest` (from its config `netN` entries, in key order), each joined with
/// the interface the guest reports for it: the one with its MAC, else its name.
/// `observed` is none when the guest was not asked or did not answer.
pub fn guest_nics(
    guest: &GuestInput,
    config: Option<&Value>,
    observed: Option<&[ObservedInterface]>,
) -> Vec<GuestNicInput> {
    let empty = Map::new();
    let config = config.and_then(Value::as_object).unwrap_or(&empty);
    guest
        .nics
        .iter()
        .map(|nic| {
            let options = key_values(&nic.raw);
            let option = |key: &str| options.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            let mtu_value = option("mtu").and_then(|m| m.parse::<u32>().ok());
            let mtu_from_bridge = guest.guest_type == GuestType::Qemu && mtu_value == Some(1);
            let trunks = option("trunks").map(parse_trunks).unwrap_or_default();
            let mut configured = Vec::new();
            let (mut dhcp, mut dhcp6, mut slaac) = (false, false, false);
            let index = nic.key.trim_start_matches("net");
            let ipconfig = as_str(config.get(&format!("ipconfig{index}")));
            let sources: Vec<(&str, &str)> = match guest.guest_type {
                GuestType::Lxc => options.clone(),
                GuestType::Qemu => ipconfig.as_deref().map(key_values).unwrap_or_default(),
            };
            for (k, v) in sources {
                if k != "ip" && k != "ip6" {
                    continue;
                }
                match (k, v) {
                    ("ip", "dhcp") => dhcp = true,
                    ("ip6", "dhcp") => dhcp6 = true,
                    ("ip6", "auto") => slaac = true,
                    (_, "manual" | "" | "dhcp" | "auto") => {}
                    (_, text) => configured.extend(address(text, None, AddressSource::Config)),
                }
            }
            let matched = observed.and_then(|list| {
                nic.mac
                    .as_ref()
                    .and_then(|mac| list.iter().find(|o| o.mac.as_ref() == Some(mac)))
                    .or_else(|| {
                        let name = nic.name.as_ref()?;
                        list.iter().find(|o| o.name.eq_ignore_ascii_case(name))
                    })
                    .cloned()
            });
            GuestNicInput {
                nic: nic.clone(),
                mtu: mtu_value.filter(|_| !mtu_from_bridge),
                mtu_from_bridge,
                trunks,
                configured,
                dhcp,
                dhcp6,
                slaac,
                observed: matched,
                guest_answered: observed.is_some(),
            }
        })
        .collect()
}

/// The addresses of one NIC: what the guest reports, then the configured ones it does
/// not report.
pub fn nic_addresses(nic: &GuestNicInput) -> Vec<AddressInput> {
    let mut out: Vec<AddressInput> = nic
        .observed
        .as_ref()
        .map(|o| o.addresses.clone())
        .unwrap_or_default();
    for a in &nic.configured {
        let host = |x: &AddressInput| x.address.split('/').next().map(str::to_string);
        if !out.iter().any(|o| host(o) == host(a)) {
            out.push(a.clone());
        }
    }
    out
}

/// `trunks=10;20-22` as `[10, 20, 21, 22]` (invalid parts are skipped).
fn parse_trunks(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.split(';') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(low), Ok(high)) = (low.trim().parse::<u16>(), high.trim().parse::<u16>()) {
            for vid in low..=high.min(4094) {
                if vid >= 1 && !out.contains(&vid) {
                    out.push(vid);
                }
            }
        }
    }
    out
}

/// A reported MAC as [`super::guest::normalize_mac`] has it; the all-zero MAC (loopback)
/// is none.
fn normalize_mac(value: &str) -> Option<String> {
    super::guest::normalize_mac(value.trim()).filter(|mac| mac != "00:00:00:00:00:00")
}

/// The `key=value` parts of a Proxmox option string, trimmed (a bare part has an empty value).
fn key_values(text: &str) -> Vec<(&str, &str)> {
    text.split(',')
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (k.trim(), v.trim())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addr(list: &[AddressInput]) -> Vec<&str> {
        list.iter().map(|a| a.address.as_str()).collect()
    }

    #[test]
    fn addresses_are_canonical_with_zone_ids_removed() {
        let a = address("fe80::0001%eth0", Some(64), AddressSource::GuestAgent).unwrap();
        assert_eq!(a.address, "fe80::1/64");
        assert_eq!(a.scope, AddressScope::LinkLocal);
        assert_eq!(
            address("10.1.2.3", Some(24), AddressSource::Node)
                .unwrap()
                .address,
            "10.1.2.3/24"
        );
        assert_eq!(
            address("192.0.2.1", None, AddressSource::Node)
                .unwrap()
                .address,
            "192.0.2.1/32"
        );
        assert!(address("10.0.0.1/33", None, AddressSource::Node).is_none());
        assert!(address("dhcp", None, AddressSource::Config).is_none());
        let scope_of = |t: &str| address(t, None, AddressSource::Node).unwrap().scope;
        assert_eq!(scope_of("127.0.0.1"), AddressScope::Loopback);
        assert_eq!(scope_of("::1"), AddressScope::Loopback);
        assert_eq!(scope_of("169.254.3.4"), AddressScope::LinkLocal);
        assert_eq!(scope_of("100.64.1.1"), AddressScope::Private);
        assert_eq!(scope_of("fd8c::1"), AddressScope::UniqueLocal);
        assert_eq!(scope_of("2001:db8::1"), AddressScope::Global);
    }

    #[test]
    fn node_interfaces_know_their_bridge_bond_vlan_and_strings_as_numbers() {
        let entries = vec![
            json!({"iface": "bond0", "type": "bond", "slaves": "eno1 eno2", "active": "1", "mtu": "9000"}),
            json!({"iface": "eno1", "type": "eth", "active": 1}),
            json!({"iface": "vmbr0", "type": "bridge", "bridge_ports": "bond0", "cidr": "10.0.0.2/24",
                   "cidr6": "fd00::2/64", "options": ["hwaddress aa:bb:cc:dd:ee:ff"], "active": "0"}),
            json!({"iface": "vmbr0.20", "type": "vlan", "vlan-id": "20", "vlan-raw-device": "vmbr0"}),
            json!({"iface": "eno2.30", "type": "vlan", "address": "192.168.30.2", "netmask": "255.255.255.0"}),
            json!({"type": "eth"}),
        ];
        let out = node_interfaces("pve1", &entries);
        let ok: Vec<&NodeInterfaceInput> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 5);
        assert!(out[5].is_err());
        assert_eq!(ok[0].mtu, Some(9000));
        assert!(ok[0].active);
        assert_eq!(ok[0].bond_slaves, ["eno1", "eno2"]);
        assert_eq!(ok[0].in_bridge.as_deref(), Some("vmbr0"));
        assert_eq!(ok[1].in_bond.as_deref(), Some("bond0"));
        assert!(!ok[2].active);
        assert_eq!(addr(&ok[2].addresses), ["10.0.0.2/24", "fd00::2/64"]);
        assert_eq!(ok[2].mac.as_deref(), Some("AA:BB:CC:DD:EE:FF"));
        assert_eq!(ok[3].vlan_id, Some(20));
        assert_eq!(ok[3].vlan_raw_device.as_deref(), Some("vmbr0"));
        assert_eq!(ok[4].vlan_id, Some(30));
        assert_eq!(ok[4].vlan_raw_device.as_deref(), Some("eno2"));
        assert_eq!(addr(&ok[4].addresses), ["192.168.30.2/24"]);
    }

    #[test]
    fn agent_aliases_merge_into_their_parent() {
        let result = json!({"result": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
            {"name": "ens20", "hardware-address": "bc:24:11:00:00:01",
             "ip-addresses": [{"ip-address": "10.0.0.5", "ip-address-type": "ipv4", "prefix": 24}]},
            {"name": "ens20:1",
             "ip-addresses": [{"ip-address": "10.0.0.6", "ip-address-type": "ipv4", "prefix": 24},
                              {"ip-address": "10.0.0.5", "ip-address-type": "ipv4", "prefix": 24}]},
            {"name": "nomacorip"}
        ]});
        let list = agent_interfaces(&result).unwrap();
        let unsupported = json!({"result": {"error": {"class": "Unsupported"}}});
        assert!(agent_interfaces(&unsupported).is_none());
        let names: Vec<&str> = list.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["lo", "ens20", "nomacorip"]);
        assert_eq!(list[0].mac, None);
        assert_eq!(list[1].mac.as_deref(), Some("BC:24:11:00:00:01"));
        assert_eq!(addr(&list[1].addresses), ["10.0.0.5/24", "10.0.0.6/24"]);
        assert!(list[2].addresses.is_empty());
    }

    #[test]
    fn container_interfaces_in_both_shapes() {
        let old = json!([{"name": "eth0", "hwaddr": "bc:24:11:89:67:07",
                          "inet": "192.168.3.95/22", "inet6": "fe80::be24:11ff:fe89:6707/64"}]);
        let list = container_interfaces(&old).unwrap();
        assert_eq!(
            addr(&list[0].addresses),
            ["192.168.3.95/22", "fe80::be24:11ff:fe89:6707/64"]
        );
        let new = json!([{"name": "eth0", "hardware-address": "bc:24:11:89:67:07",
                          "ip-addresses": [{"ip-address": "10.9.0.2", "prefix": 16}]}]);
        let list = container_interfaces(&new).unwrap();
        assert_eq!(addr(&list[0].addresses), ["10.9.0.2/16"]);
        assert_eq!(list[0].mac.as_deref(), Some("BC:24:11:89:67:07"));
    }

    #[test]
    fn guest_nics_join_config_extras_and_the_guest_view() {
        let resource = json!({"vmid": 101, "type": "lxc", "node": "pve1", "name": "ct1"});
        let config = json!({
            "hostname": "ct1",
            "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:2E:C5:7E,ip=10.1.1.3/24,ip6=auto,tag=20,trunks=30;40-41,mtu=1450",
            "net1": "name=eth1,bridge=vmbr1,ip=dhcp",
        });
        let guest = crate::normalize::guest(&resource, Some(&config), None, None).unwrap();
        let observed = container_interfaces(&json!([
            {"name": "eth0", "hwaddr": "bc:24:11:2e:c5:7e", "inet": "10.1.1.3/24"},
            {"name": "eth1", "hwaddr": "bc:24:11:00:00:02", "inet": "10.2.0.9/16"},
        ]))
        .unwrap();
        let nics = guest_nics(&guest, Some(&config), Some(&observed));
        assert_eq!(nics.len(), 2);
        assert_eq!(nics[0].mtu, Some(1450));
        assert_eq!(nics[0].trunks, [30, 40, 41]);
        assert!(nics[0].slaac && !nics[0].dhcp && !nics[0].dhcp6, "ip6=auto");
        assert_eq!(addr(&nics[0].configured), ["10.1.1.3/24"]);
        assert_eq!(nics[0].observed.as_ref().unwrap().name, "eth0");
        assert_eq!(addr(&nic_addresses(&nics[0])), ["10.1.1.3/24"]);
        assert!(nics[1].dhcp && !nics[1].slaac);
        assert_eq!(nics[1].observed.as_ref().unwrap().name, "eth1");
        assert_eq!(addr(&nic_addresses(&nics[1])), ["10.2.0.9/16"]);
        assert!(nics[1].guest_answered);
        let unasked = guest_nics(&guest, Some(&config), None);
        assert!(!unasked[0].guest_answered && unasked[0].observed.is_none());
    }

    #[test]
    fn qemu_nics_take_cloud_init_addresses_and_bridge_mtu() {
        let resource = json!({"vmid": 100, "type": "qemu", "node": "pve1", "name": "vm"});
        let config = json!({
            "net0": "virtio=BC:24:11:2E:C5:4A,bridge=vmbr0,mtu=1",
            "ipconfig0": "ip=192.0.2.10/24,gw=192.0.2.1,ip6=2001:db8::10/64",
        });
        let guest = crate::normalize::guest(&resource, Some(&config), None, None).unwrap();
        let nics = guest_nics(&guest, Some(&config), None);
        assert!(nics[0].mtu_from_bridge);
        assert_eq!(nics[0].mtu, None);
        assert_eq!(
            addr(&nics[0].configured),
            ["192.0.2.10/24", "2001:db8::10/64"]
        );
        assert!(!nics[0].dhcp && !nics[0].dhcp6 && !nics[0].slaac);
    }

    #[test]
    fn trunks_expand_ranges() {
        assert_eq!(parse_trunks("10;20-22;x;5000"), [10, 20, 21, 22]);
    }
}
