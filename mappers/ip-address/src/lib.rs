//! Default mapper: guest addresses -> NetBox IP addresses, and the primary-IP choice.
//!
//! Loopback addresses are never recorded and link-local ones only with the site
//! parameter `keep-link-local`. An address the guest got by DHCP or SLAAC (as its NIC's
//! config asks) is `dhcp` or `slaac`, any other `active`. The DNS name is the container's hostname when
//! NetBox accepts it. The primary IP of each family is the first address in interface
//! order that is neither loopback nor link-local (for IPv6, global before unique-local);
//! an operator's own choice is kept unless the site parameter `primary-ip-replace` is set.

wit_bindgen::generate!({ world: "ip-address-mapper", path: "../../wit" });

use exports::proxbox::mapper::ip_address::{Guest, PrimaryCandidate, PrimaryChoice, PrimaryOwner};
use proxbox::mapper::network_types::{
    AddressInput, AddressScope, AddressSource, DesiredIpAddress, GuestNicInput, IpFamily,
};
use proxbox::mapper::types::{Context, GuestInput, MapperError};
use proxbox_mapper_rules as rules;
use proxbox_mapper_rules::network as net;

struct IpAddressMapper;

fn scope(scope: AddressScope) -> net::Scope {
    match scope {
        AddressScope::Global => net::Scope::Global,
        AddressScope::Private => net::Scope::Private,
        AddressScope::UniqueLocal => net::Scope::UniqueLocal,
        AddressScope::LinkLocal => net::Scope::LinkLocal,
        AddressScope::Loopback => net::Scope::Loopback,
    }
}

impl Guest for IpAddressMapper {
    fn map_vm_address(
        ctx: Context,
        guest: GuestInput,
        nic: GuestNicInput,
        address: AddressInput,
    ) -> Result<Option<DesiredIpAddress>, MapperError> {
        let keep_link_local = rules::param_flag(&ctx.params, "keep-link-local", false);
        if !net::records_address(scope(address.scope), keep_link_local) {
            return Ok(None);
        }
        let methods = net::Methods {
            dhcp: nic.dhcp,
            dhcp6: nic.dhcp6,
            slaac: nic.slaac,
        };
        let status = net::address_status(
            methods,
            address.family == IpFamily::Ipv6,
            scope(address.scope),
            address.source == AddressSource::Config,
        );
        Ok(Some(DesiredIpAddress {
            address: address.address,
            status: status.into(),
            role: None,
            dns_name: net::dns_name(guest.hostname.as_deref()),
            vrf: None,
            tenant: ctx.tenant_hint.clone(),
            description: None,
            custom_fields: Vec::new(),
            tags: rules::tags_with_owner([]),
        }))
    }

    fn choose_primary(
        ctx: Context,
        _owner: PrimaryOwner,
        candidates: Vec<PrimaryCandidate>,
    ) -> Result<PrimaryChoice, MapperError> {
        let list: Vec<net::Candidate<'_>> = candidates
            .iter()
            .map(|c| net::Candidate {
                address: &c.address,
                ipv6: c.family == IpFamily::Ipv6,
                scope: scope(c.scope),
            })
            .collect();
        Ok(PrimaryChoice {
            ipv4: net::choose_primary(&list, false).map(str::to_string),
            ipv6: net::choose_primary(&list, true).map(str::to_string),
            replace_others: rules::param_flag(&ctx.params, "primary-ip-replace", false),
        })
    }
}

export!(IpAddressMapper);
