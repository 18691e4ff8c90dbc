//! Default mapper: guest NIC (`netN`) -> NetBox VM interface.
//!
//! The name is the container's interface name (LXC `name=`), else the config key
//! (`net0`); the link state gives `enabled`; the config MAC, else the one the guest
//! reports, becomes the interface's MAC address; `tag=` is the untagged (access) VLAN
//! and `trunks=` the tagged ones. Site parameter `vlan-scope`: `global` (the default)
//! or `site` (VLANs in the endpoint's site).

wit_bindgen::generate!({ world: "vm-interface-mapper", path: "../../wit" });

use exports::proxbox::mapper::vm_interface::{DesiredVmInterface, Guest};
use proxbox::mapper::network_types::{GuestNicInput, VlanRef};
use proxbox::mapper::types::{Context, GuestInput, MapperError};
use proxbox_mapper_rules as rules;
use proxbox_mapper_rules::network as net;

struct VmInterfaceMapper;

impl Guest for VmInterfaceMapper {
    fn map_vm_interface(
        ctx: Context,
        _guest: GuestInput,
        nic: GuestNicInput,
    ) -> Result<Option<DesiredVmInterface>, MapperError> {
        let site = match rules::param(&ctx.params, "vlan-scope") {
            Some("site") => ctx.site_hint.clone(),
            _ => None,
        };
        let vlan = |vid: u16| VlanRef {
            vid,
            name: net::vlan_name(vid),
            site: site.clone(),
            group: None,
        };
        let mac = nic
            .nic
            .mac
            .clone()
            .or_else(|| nic.observed.as_ref().and_then(|o| o.mac.clone()));
        Ok(Some(DesiredVmInterface {
            name: net::interface_name(nic.nic.name.as_deref(), &nic.nic.key),
            enabled: !nic.nic.link_down,
            mtu: nic.mtu,
            description: None,
            mac,
            mode: net::vlan_mode(nic.nic.vlan, &nic.trunks).map(str::to_string),
            untagged_vlan: nic.nic.vlan.map(vlan),
            tagged_vlans: nic.trunks.iter().copied().map(vlan).collect(),
            custom_fields: Vec::new(),
            tags: rules::tags_with_owner([]),
        }))
    }
}

export!(VmInterfaceMapper);
