//! Default mapper: Proxmox node network interface -> NetBox device interface.
//!
//! Types follow NetBox's choices (bridge, lag, virtual, other); a VLAN interface sits on
//! its raw device as its parent and carries its VLAN tagged; bridge ports and bond
//! members point at their bridge and LAG. Addresses other than loopback and link-local
//! become active IP addresses. Site parameters: `vlan-scope` (`global`, the default, or
//! `site`: VLANs in the endpoint's site), `keep-link-local` (false).

wit_bindgen::generate!({ world: "node-interface-mapper", path: "../../wit" });

use exports::proxbox::mapper::node_interface::{DesiredNodeInterface, Guest, NodeInterfaceInput};
use proxbox::mapper::network_types::{AddressScope, DesiredIpAddress, VlanRef};
use proxbox::mapper::types::{Context, MapperError};
use proxbox_mapper_rules as rules;
use proxbox_mapper_rules::network as net;

struct NodeInterfaceMapper;

fn scope(scope: AddressScope) -> net::Scope {
    match scope {
        AddressScope::Global => net::Scope::Global,
        AddressScope::Private => net::Scope::Private,
        AddressScope::UniqueLocal => net::Scope::UniqueLocal,
        AddressScope::LinkLocal => net::Scope::LinkLocal,
        AddressScope::Loopback => net::Scope::Loopback,
    }
}

impl Guest for NodeInterfaceMapper {
    fn map_node_interface(
        ctx: Context,
        iface: NodeInterfaceInput,
    ) -> Result<Option<DesiredNodeInterface>, MapperError> {
        if iface.name.trim().is_empty() {
            return Err(MapperError {
                code: "invalid-input".into(),
                message: "interface has no name".into(),
            });
        }
        if iface.name == "lo" {
            return Ok(None);
        }
        let keep_link_local = rules::param_flag(&ctx.params, "keep-link-local", false);
        let site = match rules::param(&ctx.params, "vlan-scope") {
            Some("site") => ctx.site_hint.clone(),
            _ => None,
        };
        let vlan = iface.vlan_id.map(|vid| VlanRef {
            vid,
            name: net::vlan_name(vid),
            site: site.clone(),
            group: None,
        });
        let parent = if iface.kind == "vlan" {
            iface.vlan_raw_device.clone()
        } else {
            None
        };
        let addresses = iface
            .addresses
            .iter()
            .filter(|a| net::records_address(scope(a.scope), keep_link_local))
            .map(|a| DesiredIpAddress {
                address: a.address.clone(),
                status: "active".into(),
                role: None,
                dns_name: None,
                vrf: None,
                tenant: ctx.tenant_hint.clone(),
                description: None,
                custom_fields: Vec::new(),
                tags: rules::tags_with_owner([]),
            })
            .collect();
        Ok(Some(DesiredNodeInterface {
            name: net::interface_name(Some(&iface.name), &iface.name),
            interface_type: net::node_interface_type(&iface.kind).into(),
            enabled: iface.active,
            mtu: iface.mtu,
            description: iface.comments.map(|c| c.trim().to_string()),
            mac: iface.mac,
            parent,
            bridge: iface.in_bridge.or(iface.ovs_bridge),
            lag: iface.in_bond,
            mode: vlan.as_ref().map(|_| "tagged".to_string()),
            untagged_vlan: None,
            tagged_vlans: vlan.into_iter().collect(),
            addresses,
            custom_fields: Vec::new(),
            tags: rules::tags_with_owner([]),
        }))
    }
}

export!(NodeInterfaceMapper);
