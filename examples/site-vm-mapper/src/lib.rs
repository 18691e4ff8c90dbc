//! Example site mapper: Proxmox guest (QEMU VM or LXC container) -> NetBox virtual machine.
//!
//! A site's own policy, replacing the built-in `virtual-machine` mapper:
//!
//! - **Skipped** (`Ok(None)`, nothing is written to NetBox): templates, and guests
//!   tagged `no-netbox` in Proxmox.
//! - **Name**: the Proxmox name, trimmed and lower-cased. A guest without a name fails
//!   with `invalid-input` (this site wants such guests fixed, not invented names).
//! - **Tenant**: from a Proxmox tag `tenant-<slug>` (first one wins, every `tenant-*`
//!   tag is dropped from the tag list), else the endpoint's tenant hint.
//! - **Site**: the endpoint's site hint, else the site parameter `default-site`.
//! - **Platform**: from `ostype`: `l24`/`l26` -> `linux`, Windows types (`win10`,
//!   `win11`, `w2k8`, ...) -> `windows`, LXC distributions (`debian`, `ubuntu`,
//!   `alpine`, ...) -> the same slug; anything else (`other`, `unmanaged`) -> none.
//! - **Role**: parameter `role-qemu` (default `server`) or `role-lxc` (default `container`).
//! - **Status**: running -> `active`, stopped -> `offline`, paused/suspended -> `paused`,
//!   anything else -> `active`.
//! - **Resources**: vCPUs as given, memory in whole MiB (rounded down), disk = sum of
//!   the non-CD-ROM disks, each rounded up to whole MiB (none when no disk has a size).
//! - **Text**: comments = the Proxmox notes; description = `<cluster>/<node> vmid <vmid>`.
//! - **Custom field** `proxmox_vmid` (integer) and tags `Proxbox` + the remaining
//!   Proxmox tags. The NetBox tags and the custom field must exist (or be created by
//!   the host).
//!
//! Site parameters come from the host configuration (`context.params`).

wit_bindgen::generate!({ world: "virtual-machine-mapper", path: "../../wit" });

use exports::proxbox::mapper::virtual_machine::{DesiredVirtualMachine, Guest};
use proxbox::mapper::types::{Context, GuestInput, GuestType, MapperError};

const MIB: u64 = 1024 * 1024;
const SKIP_TAG: &str = "no-netbox";
const TENANT_TAG_PREFIX: &str = "tenant-";

struct SiteVmMapper;

impl Guest for SiteVmMapper {
    fn map_guest(
        ctx: Context,
        guest: GuestInput,
    ) -> Result<Option<DesiredVirtualMachine>, MapperError> {
        if guest.template || guest.tags.iter().any(|t| t == SKIP_TAG) {
            return Ok(None);
        }
        let name = guest.name.trim().to_lowercase();
        if name.is_empty() {
            return Err(MapperError {
                code: "invalid-input".to_string(),
                message: format!(
                    "guest {} on node {} has no name: name it in Proxmox or tag it {SKIP_TAG}",
                    guest.vmid, guest.node
                ),
            });
        }

        // Tenant tags become the tenant; the other Proxmox tags are kept as NetBox tags.
        let (tenant_tags, other_tags): (Vec<&String>, Vec<&String>) = guest
            .tags
            .iter()
            .partition(|t| t.starts_with(TENANT_TAG_PREFIX));
        let tenant = tenant_tags
            .iter()
            .map(|t| &t[TENANT_TAG_PREFIX.len()..])
            .find(|slug| !slug.is_empty())
            .map(str::to_string)
            .or(ctx.tenant_hint);
        let mut tags = vec!["Proxbox".to_string()];
        tags.extend(
            other_tags
                .into_iter()
                .filter(|t| !t.eq_ignore_ascii_case("proxbox"))
                .cloned(),
        );

        let site = ctx
            .site_hint
            .filter(|s| !s.is_empty())
            .or_else(|| param(&ctx.params, "default-site").map(str::to_string));
        let role = match guest.guest_type {
            GuestType::Qemu => param(&ctx.params, "role-qemu").unwrap_or("server"),
            GuestType::Lxc => param(&ctx.params, "role-lxc").unwrap_or("container"),
        };
        let sized_disks: Vec<u64> = guest
            .disks
            .iter()
            .filter(|d| !d.cdrom)
            .filter_map(|d| d.size_bytes)
            .collect();
        let disk_mib = (!sized_disks.is_empty()).then(|| {
            sized_disks
                .iter()
                .fold(0u64, |sum, bytes| sum.saturating_add(bytes.div_ceil(MIB)))
        });

        Ok(Some(DesiredVirtualMachine {
            name,
            status: status(&guest.status).to_string(),
            description: format!("{}/{} vmid {}", ctx.cluster_name, guest.node, guest.vmid),
            cluster: ctx.cluster_name,
            device: Some(guest.node),
            site,
            role: Some(role.to_string()),
            virtual_machine_type: None,
            platform: guest
                .ostype
                .as_deref()
                .and_then(platform)
                .map(str::to_string),
            tenant,
            vcpus: guest.vcpus,
            memory_mib: guest.memory_bytes.map(|bytes| bytes / MIB),
            disk_mib,
            comments: guest.description.filter(|d| !d.trim().is_empty()),
            custom_fields: vec![("proxmox_vmid".to_string(), guest.vmid.to_string())],
            tags,
        }))
    }
}

/// NetBox virtual machine status for a Proxmox guest status.
fn status(proxmox: &str) -> &'static str {
    match proxmox {
        "running" => "active",
        "stopped" => "offline",
        "paused" | "suspended" => "paused",
        _ => "active",
    }
}

/// NetBox platform slug for a Proxmox `ostype`, if this site has one.
fn platform(ostype: &str) -> Option<&'static str> {
    Some(match ostype.trim().to_ascii_lowercase().as_str() {
        // QEMU
        "l24" | "l26" => "linux",
        "wxp" | "w2k" | "w2k3" | "w2k8" | "wvista" => "windows",
        w if w.starts_with("win") => "windows",
        "solaris" => "solaris",
        // LXC
        "debian" => "debian",
        "devuan" => "devuan",
        "ubuntu" => "ubuntu",
        "centos" => "centos",
        "fedora" => "fedora",
        "opensuse" => "opensuse",
        "archlinux" => "archlinux",
        "alpine" => "alpine",
        "gentoo" => "gentoo",
        "nixos" => "nixos",
        _ => return None,
    })
}

/// Value of a site parameter; the last one wins, blank values count as unset.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

export!(SiteVmMapper);
