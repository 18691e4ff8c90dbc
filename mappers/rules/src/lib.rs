//! Field rules shared by the default mapper components.
//!
//! Everything here is plain Rust over plain values so it can be unit-tested on the
//! build machine; the component crates only convert between these values and the
//! WIT records.

pub mod network;

/// Bytes in one MiB.
pub const MIB: u64 = 1024 * 1024;

/// Largest value NetBox accepts for `disk`, `memory` and virtual disk `size`.
pub const NETBOX_MAX_INT: u64 = 2_147_483_647;

/// Name of the tag that marks objects this host created and owns.
pub const OWNERSHIP_TAG: &str = "Proxbox";

/// NetBox status of a virtual machine for a Proxmox guest status.
///
/// NetBox has a `paused` status, so paused and suspended guests map to it
/// (the reference maps them to `offline` / `active`). Unknown states map to `active`.
pub fn vm_status(proxmox_status: &str) -> &'static str {
    match proxmox_status.trim().to_ascii_lowercase().as_str() {
        "running" | "online" | "active" => "active",
        "stopped" | "offline" => "offline",
        "paused" | "suspended" | "suspending" => "paused",
        "planned" => "planned",
        _ => "active",
    }
}

/// NetBox status of a device for a node's online flag.
pub fn node_status(online: bool) -> &'static str {
    if online { "active" } else { "offline" }
}

/// Whole MiB for a byte count, rounded down (memory: Proxmox configures whole MiB).
pub fn bytes_to_mib_floor(bytes: u64) -> u64 {
    (bytes / MIB).min(NETBOX_MAX_INT)
}

/// Whole MiB for a disk size, rounded up so a small disk (a 528K EFI disk) is not 0.
pub fn disk_bytes_to_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB).min(NETBOX_MAX_INT)
}

/// Sum of disk sizes in MiB, each rounded as [`disk_bytes_to_mib`], clamped to NetBox's maximum.
pub fn total_disk_mib(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes
        .into_iter()
        .map(disk_bytes_to_mib)
        .fold(0u64, |acc, mib| acc.saturating_add(mib))
        .min(NETBOX_MAX_INT)
}

/// Slug of a cluster type for a cluster mode name.
pub fn cluster_type_slug(standalone: bool) -> &'static str {
    if standalone { "standalone" } else { "cluster" }
}

/// Backup subtype (`qemu`, `lxc` or `undefined`) from the reported subtype and the volume id.
pub fn backup_subtype(subtype: Option<&str>, volid: &str) -> &'static str {
    match subtype.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("ct" | "lxc" | "openvz") => return "lxc",
        Some("qemu" | "vm") => return "qemu",
        _ => {}
    }
    let volume = volid.split_once(':').map_or(volid, |(_, v)| v);
    if volume.contains("/ct/")
        || volume.starts_with("ct/")
        || volume.contains("vzdump-lxc-")
        || volume.contains("vzdump-openvz-")
    {
        "lxc"
    } else if volume.contains("/vm/")
        || volume.starts_with("vm/")
        || volume.contains("vzdump-qemu-")
    {
        "qemu"
    } else {
        "undefined"
    }
}

/// Backup format, one of the plugin's choices.
///
/// QEMU `vma.zst` archives are `zst`, container `tar.zst` archives are `tzst`
/// (the reference files both as `tzst`). Without a usable reported format the
/// volume id decides: PBS snapshots by their `vm/` or `ct/` path, files by extension.
pub fn backup_format(format: Option<&str>, volid: &str) -> &'static str {
    if let Some(known) = format.and_then(format_from_name) {
        return known;
    }
    let volume = volid.split_once(':').map_or(volid, |(_, v)| v);
    if let Some(known) = format_from_file_name(volume) {
        return known;
    }
    let pbs_path = volume.strip_prefix("backup/").unwrap_or(volume);
    if pbs_path.starts_with("vm/") || volume.contains("/vm/") {
        "pbs-vm"
    } else if pbs_path.starts_with("ct/") || volume.contains("/ct/") {
        "pbs-ct"
    } else {
        "undefined"
    }
}

fn format_from_name(format: &str) -> Option<&'static str> {
    Some(match format.trim().to_ascii_lowercase().as_str() {
        "tzst" | "tar.zst" => "tzst",
        "zst" | "vma.zst" | "vma.zstd" => "zst",
        "tgz" | "tar.gz" => "tgz",
        "tbz" | "tar.bz2" => "tbz",
        "tar" => "tar",
        "pbs-vm" => "pbs-vm",
        "pbs-ct" => "pbs-ct",
        "qcow2" => "qcow2",
        "raw" => "raw",
        "iso" => "iso",
        _ => return None,
    })
}

fn format_from_file_name(volume: &str) -> Option<&'static str> {
    let name = volume
        .rsplit('/')
        .next()
        .unwrap_or(volume)
        .to_ascii_lowercase();
    const SUFFIXES: [(&str, &str); 9] = [
        (".vma.zst", "zst"),
        (".vma.zstd", "zst"),
        (".tar.zst", "tzst"),
        (".tar.gz", "tgz"),
        (".tgz", "tgz"),
        (".tar.bz2", "tbz"),
        (".tar", "tar"),
        (".qcow2", "qcow2"),
        (".iso", "iso"),
    ];
    SUFFIXES
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, format)| *format)
}

/// Image format of a guest disk: the `format=` option, else the volume's extension,
/// else `raw` for a volume on a storage (block storages hold raw images).
pub fn disk_format(format: Option<&str>, volume: &str) -> Option<String> {
    if let Some(f) = format.filter(|f| !f.is_empty()) {
        return Some(f.to_string());
    }
    let path = volume.split_once(':').map_or(volume, |(_, v)| v);
    let name = path.rsplit('/').next().unwrap_or(path);
    for ext in ["qcow2", "vmdk", "raw", "subvol"] {
        if name.ends_with(&format!(".{ext}")) {
            return Some(ext.to_string());
        }
    }
    if name.starts_with("subvol-") {
        return Some("subvol".to_string());
    }
    volume.contains(':').then(|| "raw".to_string())
}

/// Value of a site parameter, the last one wins.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a boolean site parameter is set (`true`, `1`, `yes`, `on`).
pub fn param_flag(params: &[(String, String)], name: &str, default: bool) -> bool {
    match param(params, name).map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) => matches!(v.as_str(), "true" | "1" | "yes" | "on"),
        None => default,
    }
}

/// JSON text of a string value.
pub fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON text of an optional string (`null` when absent).
pub fn json_opt_string(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_string(), json_string)
}

/// JSON text of an optional bool (`null` when absent).
pub fn json_opt_bool(value: Option<bool>) -> String {
    value.map_or_else(|| "null".to_string(), |b| b.to_string())
}

/// Tag list: the ownership tag followed by `extra` without duplicates (case-insensitive).
pub fn tags_with_owner<'a>(extra: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut tags = vec![OWNERSHIP_TAG.to_string()];
    for tag in extra {
        let tag = tag.trim();
        if !tag.is_empty() && !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.to_string());
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_status_maps_every_known_state() {
        assert_eq!(vm_status("running"), "active");
        assert_eq!(vm_status("stopped"), "offline");
        assert_eq!(vm_status("paused"), "paused");
        assert_eq!(vm_status("suspended"), "paused");
        assert_eq!(vm_status("prelaunch"), "active");
        assert_eq!(vm_status("RUNNING"), "active");
    }

    #[test]
    fn disk_mib_rounds_up_and_clamps() {
        assert_eq!(disk_bytes_to_mib(0), 0);
        assert_eq!(disk_bytes_to_mib(528 * 1024), 1);
        assert_eq!(disk_bytes_to_mib(32 * 1024 * MIB), 32768);
        assert_eq!(disk_bytes_to_mib(u64::MAX), NETBOX_MAX_INT);
        assert_eq!(total_disk_mib([MIB, 528 * 1024, 4 * 1024 * 1024]), 6);
    }

    #[test]
    fn backup_rules() {
        assert_eq!(backup_subtype(Some("qemu"), "x"), "qemu");
        assert_eq!(
            backup_subtype(None, "pbs:backup/ct/101/2024-01-01T00:00:00Z"),
            "lxc"
        );
        assert_eq!(
            backup_subtype(
                None,
                "local:backup/vzdump-qemu-100-2023_08_28-12_00_00.vma.zst"
            ),
            "qemu"
        );
        assert_eq!(backup_subtype(None, "local:backup/other"), "undefined");
        assert_eq!(backup_format(Some("vma.zst"), "x"), "zst");
        assert_eq!(backup_format(Some("tar.zst"), "x"), "tzst");
        assert_eq!(
            backup_format(None, "pbs:backup/vm/100/2024-01-01T00:00:00Z"),
            "pbs-vm"
        );
        assert_eq!(
            backup_format(Some("weird"), "local:backup/vzdump-lxc-101.tar.gz"),
            "tgz"
        );
        assert_eq!(backup_format(None, "local:backup/unknown"), "undefined");
        assert_eq!(
            backup_format(None, "local:backup/vzdump-qemu-1.vma.zstd"),
            "zst"
        );
        assert_eq!(
            backup_subtype(None, "local:backup/vzdump-openvz-1.tar"),
            "lxc"
        );
    }

    #[test]
    fn disk_formats() {
        assert_eq!(
            disk_format(None, "local-lvm:subvol-102-disk-0").as_deref(),
            Some("subvol")
        );
        assert_eq!(
            disk_format(None, "local:101/subvol-101-disk-0.subvol").as_deref(),
            Some("subvol")
        );
        assert_eq!(
            disk_format(None, "local:100/vm-100-disk-0.qcow2").as_deref(),
            Some("qcow2")
        );
        assert_eq!(
            disk_format(None, "local-lvm:vm-100-disk-0").as_deref(),
            Some("raw")
        );
        assert_eq!(disk_format(Some("vmdk"), "x:y").as_deref(), Some("vmdk"));
        assert_eq!(disk_format(None, "/dev/sdb"), None);
    }

    #[test]
    fn json_text_escapes() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(json_opt_string(None), "null");
    }

    #[test]
    fn owner_tag_first_and_deduplicated() {
        assert_eq!(
            tags_with_owner(["prod", "proxbox", "Prod", " "]),
            vec!["Proxbox", "prod"]
        );
    }
}
