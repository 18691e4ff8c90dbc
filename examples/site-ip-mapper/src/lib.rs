//! Example site mapper for the `ip-address` kind (WIT 1.1).
//!
//! A site whose management network is one subnet wants that subnet's address as every
//! VM's primary IP, whatever the NIC order. Site parameters:
//!
//! - `primary-subnet`: CIDRs, comma-separated (`10.20.0.0/16,fd00:20::/48`). The first
//!   candidate inside one of them becomes the primary of its family; a family without
//!   such a candidate keeps the default rule (first usable address in NIC order).
//! - `primary-subnet-replace` (`true`/`false`, default `true`): replace a primary IP
//!   someone else set in NetBox.
//!
//! Addresses are recorded `active` (`dhcp` on a DHCP NIC) with the container's hostname
//! as DNS name; loopback and link-local addresses are left out.

wit_bindgen::generate!({ world: "ip-address-mapper", path: "../../wit" });

use std::net::IpAddr;

use exports::proxbox::mapper::ip_address::{Guest, PrimaryCandidate, PrimaryChoice, PrimaryOwner};
use proxbox::mapper::network_types::{
    AddressInput, AddressScope, DesiredIpAddress, GuestNicInput, IpFamily,
};
use proxbox::mapper::types::{Context, GuestInput, MapperError};

struct SiteIpMapper;

fn param<'a>(ctx: &'a Context, name: &str) -> Option<&'a str> {
    ctx.params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A parsed `a.b.c.d/n` or `x::y/n`.
struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    fn parse(text: &str) -> Result<Subnet, String> {
        let (ip, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR"))?;
        let network: IpAddr = ip.parse().map_err(|_| format!("`{text}` is not a CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`{text}` is not a CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("`{text}`: prefix longer than {max}"));
        }
        Ok(Subnet { network, prefix })
    }

    fn contains(&self, address: &str) -> bool {
        let host = address.split('/').next().unwrap_or(address);
        let Ok(ip) = host.parse::<IpAddr>() else {
            return false;
        };
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((a, width_a), (b, width_b)) = (bits(ip), bits(self.network));
        if width_a != width_b {
            return false;
        }
        let shift = width_a - u32::from(self.prefix);
        shift >= width_a || (a >> shift) == (b >> shift)
    }
}

fn usable(scope: AddressScope) -> bool {
    !matches!(scope, AddressScope::Loopback | AddressScope::LinkLocal)
}

fn first_of(
    candidates: &[PrimaryCandidate],
    family: IpFamily,
    subnets: &[Subnet],
) -> Option<String> {
    let of_family = || {
        candidates
            .iter()
            .filter(move |c| c.family == family && usable(c.scope))
    };
    of_family()
        .find(|c| subnets.iter().any(|s| s.contains(&c.address)))
        .or_else(|| of_family().next())
        .map(|c| c.address.clone())
}

impl Guest for SiteIpMapper {
    fn map_vm_address(
        _ctx: Context,
        guest: GuestInput,
        nic: GuestNicInput,
        address: AddressInput,
    ) -> Result<Option<DesiredIpAddress>, MapperError> {
        if !usable(address.scope) {
            return Ok(None);
        }
        let dhcp = match address.family {
            IpFamily::Ipv4 => nic.dhcp,
            IpFamily::Ipv6 => nic.dhcp6,
        };
        Ok(Some(DesiredIpAddress {
            address: address.address,
            status: if dhcp { "dhcp" } else { "active" }.into(),
            role: None,
            dns_name: guest.hostname,
            vrf: None,
            tenant: None,
            description: None,
            custom_fields: Vec::new(),
            tags: vec!["Proxbox".into()],
        }))
    }

    fn choose_primary(
        ctx: Context,
        _owner: PrimaryOwner,
        candidates: Vec<PrimaryCandidate>,
    ) -> Result<PrimaryChoice, MapperError> {
        let subnets = param(&ctx, "primary-subnet")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Subnet::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| MapperError {
                code: "policy".into(),
                message: format!("site parameter primary-subnet: {message}"),
            })?;
        Ok(PrimaryChoice {
            ipv4: first_of(&candidates, IpFamily::Ipv4, &subnets),
            ipv6: first_of(&candidates, IpFamily::Ipv6, &subnets),
            replace_others: param(&ctx, "primary-subnet-replace")
                .is_none_or(|v| matches!(v.trim(), "true" | "1" | "yes" | "on")),
        })
    }
}

export!(SiteIpMapper);
