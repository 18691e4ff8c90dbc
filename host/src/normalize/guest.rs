//! Guests: `/cluster/resources` entry + `/nodes/{node}/{qemu|lxc}/{vmid}/config`.

use serde_json::{Map, Value};

use super::lenient::{as_bool, as_str, as_u64};
use super::{NormalizeError, raw};
use crate::mapper::v1::{DiskBus, DiskInput, GuestInput, GuestType, NicInput};

const MIB: u64 = 1024 * 1024;

/// Build a guest input from its resource entry and (when read) its config.
///
/// `guest_type` and `node` are used when the resource entry lacks them.
pub fn guest(
    resource: &Value,
    config: Option<&Value>,
    guest_type: Option<GuestType>,
    node: Option<&str>,
) -> Result<GuestInput, NormalizeError> {
    let empty = Map::new();
    let res = resource.as_object().unwrap_or(&empty);
    let cfg = config.and_then(Value::as_object).unwrap_or(&empty);
    if !resource.is_object() && config.is_none() {
        return Err(NormalizeError::new(
            "guest has neither a resource entry nor a config",
        ));
    }

    let vmid = as_u64(res.get("vmid"))
        .or_else(|| as_u64(cfg.get("vmid")))
        .or_else(|| {
            res.get("id")
                .and_then(Value::as_str)
                .and_then(|id| id.rsplit('/').next())
                .and_then(|s| s.parse().ok())
        })
        .ok_or_else(|| NormalizeError::new("guest has no vmid"))?;
    let vmid = u32::try_from(vmid)
        .map_err(|_| NormalizeError::new(format!("vmid {vmid} is out of range")))?;

    let guest_type = match res.get("type").and_then(Value::as_str) {
        Some("qemu") => GuestType::Qemu,
        Some("lxc") => GuestType::Lxc,
        Some(other) => {
            return Err(NormalizeError::new(format!(
                "guest {vmid} has unknown type `{other}`"
            )));
        }
        None => {
            guest_type.ok_or_else(|| NormalizeError::new(format!("guest {vmid} has no type")))?
        }
    };
    let node = as_str(res.get("node"))
        .or_else(|| node.map(str::to_string))
        .ok_or_else(|| NormalizeError::new(format!("guest {vmid} has no node")))?;
    let name = as_str(res.get("name"))
        .or_else(|| as_str(cfg.get("name")))
        .or_else(|| as_str(cfg.get("hostname")))
        .unwrap_or_default();

    let memory_bytes = as_u64(res.get("maxmem"))
        .filter(|&b| b > 0)
        .or_else(|| config_memory_mib(cfg.get("memory")).map(|mib| mib.saturating_mul(MIB)));
    let vcpus = as_u64(res.get("maxcpu"))
        .filter(|&n| n > 0)
        .or_else(|| config_vcpus(cfg, guest_type))
        .and_then(|n| u32::try_from(n).ok());

    let tags = cfg
        .get("tags")
        .or_else(|| res.get("tags"))
        .and_then(Value::as_str)
        .map(parse_tags)
        .unwrap_or_default();

    let mut disks: Vec<DiskInput> = cfg
        .iter()
        .filter_map(|(key, value)| value.as_str().and_then(|v| parse_disk(key, v)))
        .collect();
    disks.sort_by_key(|d| disk_order(&d.key));
    let mut nics: Vec<(u32, NicInput)> = cfg
        .iter()
        .filter_map(|(key, value)| {
            let index = key.strip_prefix("net")?.parse::<u32>().ok()?;
            Some((index, parse_nic(key, value.as_str()?)))
        })
        .collect();
    nics.sort_by_key(|(index, _)| *index);

    let mut sources = Vec::new();
    if resource.is_object() {
        sources.push(raw("resource", resource));
    }
    if let Some(config) = config {
        sources.push(raw("config", config));
    }

    Ok(GuestInput {
        vmid,
        guest_type,
        name,
        node,
        status: as_str(res.get("status")).unwrap_or_else(|| "unknown".to_string()),
        template: as_bool(res.get("template"))
            .or_else(|| as_bool(cfg.get("template")))
            .unwrap_or(false),
        vcpus,
        memory_bytes,
        maxdisk_bytes: as_u64(res.get("maxdisk")).filter(|&b| b > 0),
        tags,
        pool: as_str(res.get("pool")),
        lock: as_str(cfg.get("lock")).or_else(|| as_str(res.get("lock"))),
        onboot: as_bool(cfg.get("onboot")),
        agent: cfg.get("agent").and_then(parse_agent),
        unprivileged: as_bool(cfg.get("unprivileged")),
        ostype: as_str(cfg.get("ostype")),
        searchdomain: as_str(cfg.get("searchdomain")),
        hostname: as_str(cfg.get("hostname")),
        description: as_str(cfg.get("description")),
        disks,
        nics: nics.into_iter().map(|(_, nic)| nic).collect(),
        raw: sources,
    })
}

/// vCPUs from the config when the resource entry has none.
fn config_vcpus(cfg: &Map<String, Value>, guest_type: GuestType) -> Option<u64> {
    if let Some(vcpus) = as_u64(cfg.get("vcpus")).filter(|&n| n > 0) {
        return Some(vcpus);
    }
    let cores = as_u64(cfg.get("cores"));
    let sockets = as_u64(cfg.get("sockets"));
    match guest_type {
        // Proxmox defaults both to 1 when only one is set.
        GuestType::Qemu if cores.is_some() || sockets.is_some() => {
            Some(cores.unwrap_or(1).max(1) * sockets.unwrap_or(1).max(1))
        }
        GuestType::Qemu => None,
        GuestType::Lxc => cores,
    }
}

/// Sort key for disk config keys: bus order, then numeric index.
fn disk_order(key: &str) -> (u8, u32) {
    let digits = key.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let index = digits.parse().unwrap_or(0);
    let bus = match &key[..key.len() - digits.len()] {
        "rootfs" => 0,
        "mp" => 1,
        "scsi" => 2,
        "virtio" => 3,
        "sata" => 4,
        "ide" => 5,
        "efidisk" => 6,
        "tpmstate" => 7,
        _ => 8,
    };
    (bus, index)
}

/// Proxmox tags (`a;b`, also `,` or space separated): trimmed, lower-cased, de-duplicated.
pub fn parse_tags(tags: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags.split([';', ',', ' ']) {
        let tag = tag.trim().to_lowercase();
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// The QEMU `agent` option: `1`, `0`, `1,fstrim_cloned_disks=1`, `enabled=1,type=virtio`.
fn parse_agent(value: &Value) -> Option<bool> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => return as_bool(Some(other)),
    };
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("enabled", v)) => return as_bool(Some(&Value::String(v.to_string()))),
            Some(_) => continue,
            None => return as_bool(Some(&Value::String(part.to_string()))),
        }
    }
    // Options without `enabled` (`fstrim_cloned_disks=1`): the agent stays off, as in Proxmox.
    (!text.trim().is_empty()).then_some(false)
}

/// The config `memory` in MiB: `2048`, `"2048"`, or the PVE 8.1+ form `"current=2048"`.
fn config_memory_mib(value: Option<&Value>) -> Option<u64> {
    if let Some(mib) = as_u64(value) {
        return Some(mib);
    }
    let text = value?.as_str()?;
    text.split(',')
        .find_map(|part| part.strip_prefix("current="))
        .and_then(|mib| mib.trim().parse().ok())
}

/// Split a Proxmox property string into its leading positional value and its `k=v` options.
fn property_string(
    value: &str,
    positional_keys: &[&str],
) -> (Option<String>, Vec<(String, String)>) {
    let mut positional = None;
    let mut options = Vec::new();
    for (i, part) in value.split(',').enumerate() {
        match part.split_once('=') {
            Some((k, v)) if positional_keys.contains(&k) && positional.is_none() => {
                positional = Some(v.to_string())
            }
            Some((k, v)) => options.push((k.trim().to_string(), v.trim().to_string())),
            None if i == 0 => positional = Some(part.trim().to_string()),
            None => options.push((part.trim().to_string(), String::new())),
        }
    }
    (positional, options)
}

/// Parse one disk config entry; `None` when `key` is not a disk (`unusedN`, `net0`, ...).
pub fn parse_disk(key: &str, value: &str) -> Option<DiskInput> {
    let digits = key.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let prefix = &key[..key.len() - digits.len()];
    let bus = match (prefix, digits.is_empty()) {
        ("rootfs", true) => DiskBus::Rootfs,
        ("mp", false) => DiskBus::Mountpoint,
        ("scsi", false) => DiskBus::Scsi,
        ("ide", false) => DiskBus::Ide,
        ("sata", false) => DiskBus::Sata,
        ("virtio", false) => DiskBus::Virtio,
        ("efidisk", false) => DiskBus::Efidisk,
        ("tpmstate", false) => DiskBus::Tpmstate,
        _ => return None,
    };
    if !digits.is_empty() && digits.parse::<u32>().is_err() {
        return None;
    }
    let (volume, options) = property_string(value, &["file", "volume"]);
    let volume = volume.unwrap_or_default();
    let option = |name: &str| {
        options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let cdrom = option("media").as_deref() == Some("cdrom") || volume == "cdrom";
    let storage = match volume.split_once(':') {
        Some((storage, _)) if !storage.is_empty() && !volume.starts_with('/') => {
            Some(storage.to_string())
        }
        _ => None,
    };
    Some(DiskInput {
        key: key.to_string(),
        bus,
        storage,
        size_bytes: option("size").and_then(|s| parse_disk_size(&s)),
        cdrom,
        format: option("format"),
        mount_path: option("mp"),
        raw: value.to_string(),
        volume,
    })
}

/// A Proxmox disk size in bytes: `32G`, `512K`, `1.5T`, `500M`, or a bare byte count.
///
/// The reference treats `K` and bare numbers as MiB; Proxmox means KiB and bytes.
pub fn parse_disk_size(size: &str) -> Option<u64> {
    let size = size.trim();
    let split = size
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(size.len());
    let (number, unit) = size.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_uppercase();
    let multiplier: u64 = match unit.trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        _ => return None,
    };
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    Some((number * multiplier as f64).round() as u64)
}

/// Parse one `netN` entry. The MAC is taken from whichever key carries it: the model key
/// of a QEMU NIC (`virtio=`, `e1000=`, `vmxnet3=`, `rtl8139=`, ...), `macaddr=`, or LXC `hwaddr=`.
pub fn parse_nic(key: &str, value: &str) -> NicInput {
    let mut nic = NicInput {
        key: key.to_string(),
        name: None,
        model: None,
        mac: None,
        bridge: None,
        vlan: None,
        firewall: false,
        link_down: false,
        raw: value.to_string(),
    };
    for (i, part) in value.split(',').enumerate() {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (k.trim(), v.trim());
        match k {
            "name" => nic.name = Some(v.to_string()),
            "bridge" => nic.bridge = Some(v.to_string()),
            "tag" => nic.vlan = v.parse().ok(),
            "firewall" => nic.firewall = v == "1",
            "link_down" => nic.link_down = v == "1",
            "hwaddr" | "macaddr" => nic.mac = normalize_mac(v).or(nic.mac),
            "type" => nic.model = nic.model.or_else(|| Some(v.to_string())),
            "model" => nic.model = Some(v.to_string()),
            _ if is_mac(v) => {
                nic.model = Some(k.to_string());
                nic.mac = normalize_mac(v);
            }
            _ if i == 0 && v.is_empty() && !k.is_empty() => nic.model = Some(k.to_string()),
            _ => {}
        }
    }
    nic
}

fn is_mac(value: &str) -> bool {
    let parts: Vec<&str> = value.split([':', '-']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A MAC address upper-case with colons, or none when `value` is not one.
pub(super) fn normalize_mac(value: &str) -> Option<String> {
    is_mac(value).then(|| value.replace('-', ":").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn disk_sizes_in_every_unit() {
        assert_eq!(parse_disk_size("32G"), Some(32 << 30));
        assert_eq!(parse_disk_size("512K"), Some(512 << 10));
        assert_eq!(parse_disk_size("528K"), Some(528 << 10));
        assert_eq!(parse_disk_size("4M"), Some(4 << 20));
        assert_eq!(parse_disk_size("1.5T"), Some(3 << 39));
        assert_eq!(parse_disk_size("1024"), Some(1024));
        assert_eq!(parse_disk_size("10g"), Some(10 << 30));
        assert_eq!(parse_disk_size("12X"), None);
        assert_eq!(parse_disk_size(""), None);
    }

    #[test]
    fn disks_of_every_bus() {
        let d = parse_disk("scsi0", "local-lvm:vm-100-disk-0,iothread=1,size=32G").unwrap();
        assert_eq!(
            (d.storage.as_deref(), d.size_bytes, d.cdrom),
            (Some("local-lvm"), Some(32 << 30), false)
        );
        let d = parse_disk("ide2", "local:iso/debian-12.iso,media=cdrom").unwrap();
        assert!(d.cdrom && d.size_bytes.is_none());
        let d = parse_disk("ide2", "none,media=cdrom").unwrap();
        assert!(d.cdrom && d.storage.is_none());
        let d = parse_disk(
            "efidisk0",
            "local-lvm:vm-100-disk-1,efitype=4m,pre-enrolled-keys=1,size=528K",
        )
        .unwrap();
        assert!(matches!(d.bus, DiskBus::Efidisk) && d.size_bytes == Some(528 << 10));
        let d = parse_disk("tpmstate0", "local-lvm:vm-100-disk-2,size=4M,version=v2.0").unwrap();
        assert!(matches!(d.bus, DiskBus::Tpmstate));
        let d = parse_disk("rootfs", "local-lvm:vm-101-disk-0,size=8G").unwrap();
        assert!(matches!(d.bus, DiskBus::Rootfs));
        let d = parse_disk("mp0", "/mnt/foo/bar,mp=/storage").unwrap();
        assert!(
            matches!(d.bus, DiskBus::Mountpoint)
                && d.storage.is_none()
                && d.mount_path.as_deref() == Some("/storage")
        );
        let d = parse_disk("sata1", "/dev/disk/by-id/ata-X,size=1000204886016").unwrap();
        assert_eq!((d.storage, d.size_bytes), (None, Some(1_000_204_886_016)));
        assert!(parse_disk("unused0", "local-lvm:vm-100-unused").is_none());
        assert!(parse_disk("net0", "virtio=AA:BB:CC:DD:EE:FF").is_none());
        assert!(parse_disk("scsihw", "virtio-scsi-pci").is_none());
    }

    #[test]
    fn macs_of_every_nic_model() {
        for model in [
            "virtio", "e1000", "e1000e", "vmxnet3", "rtl8139", "ne2k_pci", "i82551", "pcnet",
        ] {
            let nic = parse_nic(
                "net0",
                &format!("{model}=bc:24:11:2e:c5:4a,bridge=vmbr0,tag=20,firewall=1"),
            );
            assert_eq!(nic.mac.as_deref(), Some("BC:24:11:2E:C5:4A"), "{model}");
            assert_eq!(nic.model.as_deref(), Some(model));
            assert_eq!(
                (nic.bridge.as_deref(), nic.vlan, nic.firewall),
                (Some("vmbr0"), Some(20), true)
            );
        }
        let lxc = parse_nic(
            "net0",
            "name=eth0,bridge=vmbr0,firewall=1,hwaddr=5D:CF:BD:B2:C5:39,ip=dhcp,type=veth",
        );
        assert_eq!(lxc.mac.as_deref(), Some("5D:CF:BD:B2:C5:39"));
        assert_eq!(
            (lxc.name.as_deref(), lxc.model.as_deref()),
            (Some("eth0"), Some("veth"))
        );
    }

    #[test]
    fn tags_split_lowercase_dedup() {
        assert_eq!(
            parse_tags("Production;webserver;production"),
            vec!["production", "webserver"]
        );
        assert_eq!(parse_tags("a,b c"), vec!["a", "b", "c"]);
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn agent_forms() {
        assert_eq!(parse_agent(&json!("1,fstrim_cloned_disks=1")), Some(true));
        assert_eq!(parse_agent(&json!("enabled=1,type=virtio")), Some(true));
        assert_eq!(parse_agent(&json!("enabled=0")), Some(false));
        assert_eq!(parse_agent(&json!(0)), Some(false));
        assert_eq!(parse_agent(&json!("1")), Some(true));
        assert_eq!(parse_agent(&json!("fstrim_cloned_disks=1")), Some(false));
    }

    #[test]
    fn memory_as_string_or_number() {
        let res = json!({"vmid": 100, "type": "qemu", "node": "pve1", "name": "a"});
        let g = guest(&res, Some(&json!({"memory": "2048"})), None, None).unwrap();
        assert_eq!(g.memory_bytes, Some(2048 * MIB));
        let g = guest(&res, Some(&json!({"memory": 4096})), None, None).unwrap();
        assert_eq!(g.memory_bytes, Some(4096 * MIB));
        let g = guest(
            &res,
            Some(&json!({"memory": "current=1024,shares=50"})),
            None,
            None,
        )
        .unwrap();
        assert_eq!(g.memory_bytes, Some(1024 * MIB));
        let res = json!({"vmid": "100", "type": "lxc", "node": "pve1", "maxmem": "1073741824"});
        let g = guest(&res, None, None, None).unwrap();
        assert_eq!((g.vmid, g.memory_bytes), (100, Some(1 << 30)));
    }

    #[test]
    fn vcpus_from_cores_and_sockets() {
        let res = json!({"vmid": 100, "type": "qemu", "node": "pve1"});
        let vcpus = |cfg| guest(&res, Some(&cfg), None, None).unwrap().vcpus;
        assert_eq!(vcpus(json!({"cores": 2, "sockets": 2})), Some(4));
        assert_eq!(vcpus(json!({"sockets": 2})), Some(2));
        assert_eq!(vcpus(json!({"cores": "3"})), Some(3));
        assert_eq!(vcpus(json!({"vcpus": 3, "cores": 4})), Some(3));
        assert_eq!(vcpus(json!({})), None);
    }

    #[test]
    fn guest_without_vmid_is_an_error() {
        let err = guest(&json!({"type": "qemu", "node": "n"}), None, None, None).unwrap_err();
        assert!(err.0.contains("no vmid"));
    }
}
