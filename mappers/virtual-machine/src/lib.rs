//! Default mapper: Proxmox guest (QEMU or LXC) -> NetBox virtual machine.

wit_bindgen::generate!({ world: "virtual-machine-mapper", path: "../../wit" });

use exports::proxbox::mapper::virtual_machine::{DesiredVirtualMachine, Guest};
use proxbox::mapper::types::{Context, GuestInput, GuestType, MapperError};
use proxbox_mapper_rules as rules;

struct VirtualMachineMapper;

impl Guest for VirtualMachineMapper {
    fn map_guest(
        ctx: Context,
        guest: GuestInput,
    ) -> Result<Option<DesiredVirtualMachine>, MapperError> {
        let (type_name, role, vm_type) = match guest.guest_type {
            GuestType::Qemu => ("qemu", "virtual-machine-qemu", "qemu-virtual-machine"),
            GuestType::Lxc => ("lxc", "container-lxc", "lxc-container"),
        };
        let name = match guest.name.trim() {
            "" => format!("vm-{}", guest.vmid),
            name => name.to_string(),
        };
        let disk_mib = if guest.disks.is_empty() {
            guest.maxdisk_bytes.map(rules::disk_bytes_to_mib)
        } else {
            Some(rules::total_disk_mib(
                guest
                    .disks
                    .iter()
                    .filter(|d| !d.cdrom)
                    .filter_map(|d| d.size_bytes),
            ))
        };
        let tags = if rules::param_flag(&ctx.params, "proxmox-tags", true) {
            rules::tags_with_owner(guest.tags.iter().map(String::as_str))
        } else {
            rules::tags_with_owner([])
        };
        let custom_fields = if rules::param_flag(&ctx.params, "custom-fields", false) {
            let link = rules::param(&ctx.params, "proxmox-url").map(|url| {
                format!(
                    "{}/#v1:0:={}/{}",
                    url.trim_end_matches('/'),
                    type_name,
                    guest.vmid
                )
            });
            vec![
                ("proxmox_vm_id".to_string(), guest.vmid.to_string()),
                ("proxmox_vm_type".to_string(), rules::json_string(type_name)),
                (
                    "proxmox_start_at_boot".to_string(),
                    rules::json_opt_bool(guest.onboot),
                ),
                (
                    "proxmox_unprivileged_container".to_string(),
                    rules::json_opt_bool(guest.unprivileged),
                ),
                (
                    "proxmox_qemu_agent".to_string(),
                    rules::json_opt_bool(guest.agent),
                ),
                (
                    "proxmox_search_domain".to_string(),
                    rules::json_opt_string(guest.searchdomain.as_deref()),
                ),
                ("proxmox_node".to_string(), rules::json_string(&guest.node)),
                (
                    "proxmox_status".to_string(),
                    rules::json_string(&guest.status),
                ),
                (
                    "proxmox_cluster".to_string(),
                    rules::json_string(&ctx.cluster_name),
                ),
                (
                    "proxmox_link".to_string(),
                    rules::json_opt_string(link.as_deref()),
                ),
                (
                    "proxmox_endpoint_id".to_string(),
                    ctx.endpoint_id.to_string(),
                ),
                (
                    "proxmox_last_updated".to_string(),
                    rules::json_string(&ctx.now),
                ),
            ]
        } else {
            Vec::new()
        };
        Ok(Some(DesiredVirtualMachine {
            status: rules::vm_status(&guest.status).to_string(),
            cluster: ctx.cluster_name,
            device: Some(guest.node.clone()),
            site: ctx.site_hint,
            role: Some(role.to_string()),
            virtual_machine_type: Some(vm_type.to_string()),
            platform: None,
            tenant: None,
            vcpus: guest.vcpus.filter(|&n| n > 0),
            memory_mib: guest.memory_bytes.map(rules::bytes_to_mib_floor),
            disk_mib,
            description: format!("Synced from Proxmox node {}", guest.node),
            comments: None,
            custom_fields,
            tags,
            name,
        }))
    }
}

export!(VirtualMachineMapper);
