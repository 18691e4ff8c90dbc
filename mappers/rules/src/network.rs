//! Field rules of the network kinds: interface types and names, VLANs, which addresses
//! are recorded, their status, DNS names and the primary-IP choice.

/// Longest interface name NetBox accepts.
pub const INTERFACE_NAME_MAX: usize = 64;

/// The NetBox device interface type of a Proxmox node interface type.
///
/// NetBox has no loopback type, and a physical NIC's speed is not in
/// `/nodes/{node}/network`, so physical ports are `other`.
pub fn node_interface_type(proxmox_kind: &str) -> &'static str {
    match proxmox_kind {
        "bridge" | "OVSBridge" => "bridge",
        "bond" | "OVSBond" => "lag",
        "vlan" | "alias" | "OVSIntPort" | "vnet" | "fabric" => "virtual",
        _ => "other",
    }
}

/// An interface name NetBox accepts: control characters removed, trimmed, at most
/// [`INTERFACE_NAME_MAX`] characters; `fallback` when nothing is left.
pub fn interface_name(name: Option<&str>, fallback: &str) -> String {
    let clean: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let clean = clean.trim();
    let chosen = if clean.is_empty() { fallback } else { clean };
    chosen.chars().take(INTERFACE_NAME_MAX).collect()
}

/// The name of an automatically named VLAN.
pub fn vlan_name(vid: u16) -> String {
    format!("VLAN {vid}")
}

/// 802.1Q mode of an interface with an access `tag` and `trunks`: `tagged` when it
/// carries trunks, `access` with only a tag, none otherwise.
pub fn vlan_mode(tag: Option<u16>, trunks: &[u16]) -> Option<&'static str> {
    if !trunks.is_empty() {
        Some("tagged")
    } else if tag.is_some() {
        Some("access")
    } else {
        None
    }
}

/// Scope of an address, as the host classifies it (mirrors the WIT enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Any other unicast address.
    Global,
    /// RFC 1918 / shared IPv4 space.
    Private,
    /// IPv6 unique local.
    UniqueLocal,
    /// Link-local.
    LinkLocal,
    /// Loopback.
    Loopback,
}

/// Whether an address of `scope` is recorded in NetBox: never loopback; link-local only
/// when `keep_link_local`.
pub fn records_address(scope: Scope, keep_link_local: bool) -> bool {
    match scope {
        Scope::Loopback => false,
        Scope::LinkLocal => keep_link_local,
        _ => true,
    }
}

/// How a guest NIC's config says it gets its addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Methods {
    /// IPv4 DHCP.
    pub dhcp: bool,
    /// DHCPv6.
    pub dhcp6: bool,
    /// SLAAC.
    pub slaac: bool,
}

/// NetBox status of a guest address: a statically configured or link-local address is
/// `active`; otherwise `dhcp` when its family's config asks for DHCP, `slaac` for an
/// IPv6 address of a SLAAC NIC, `active` for anything else.
pub fn address_status(
    methods: Methods,
    ipv6: bool,
    scope: Scope,
    configured: bool,
) -> &'static str {
    if configured || scope == Scope::LinkLocal {
        "active"
    } else if (!ipv6 && methods.dhcp) || (ipv6 && methods.dhcp6) {
        "dhcp"
    } else if ipv6 && methods.slaac {
        "slaac"
    } else {
        "active"
    }
}

/// A DNS name NetBox accepts (`^([0-9A-Za-z_-]+|\*)(\.[0-9A-Za-z_-]+)*\.?$`, at most 255
/// characters), lower-cased without a trailing dot; `localhost` and anything else
/// is none.
pub fn dns_name(name: Option<&str>) -> Option<String> {
    let name = name?.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.len() > 255 || name == "localhost" || name.starts_with("localhost.")
    {
        return None;
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let mut labels = name.split('.');
    let first = labels.next()?;
    if !(first == "*" || label_ok(first)) || !labels.all(label_ok) {
        return None;
    }
    Some(name)
}

/// One primary-IP candidate (mirrors the WIT record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// CIDR.
    pub address: &'a str,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Scope.
    pub scope: Scope,
}

/// The default primary IP of one family: the first candidate of that family in
/// interface order that is neither loopback nor link-local, preferring, for IPv6,
/// global addresses over unique-local ones.
pub fn choose_primary<'a>(candidates: &[Candidate<'a>], ipv6: bool) -> Option<&'a str> {
    let usable: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|c| c.ipv6 == ipv6 && !matches!(c.scope, Scope::Loopback | Scope::LinkLocal))
        .collect();
    let rank = |c: &Candidate<'_>| match c.scope {
        Scope::UniqueLocal if ipv6 => 1,
        _ => 0,
    };
    usable
        .into_iter()
        .min_by_key(|c| rank(c))
        .map(|c| c.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_interface_types_follow_netbox_choices() {
        assert_eq!(node_interface_type("bridge"), "bridge");
        assert_eq!(node_interface_type("OVSBridge"), "bridge");
        assert_eq!(node_interface_type("bond"), "lag");
        assert_eq!(node_interface_type("OVSBond"), "lag");
        assert_eq!(node_interface_type("vlan"), "virtual");
        assert_eq!(node_interface_type("eth"), "other");
        assert_eq!(node_interface_type("unknown"), "other");
    }

    #[test]
    fn interface_names_are_cleaned_and_bounded() {
        assert_eq!(interface_name(Some(" eth0\n"), "net0"), "eth0");
        assert_eq!(interface_name(Some(""), "net0"), "net0");
        assert_eq!(interface_name(None, "net1"), "net1");
        assert_eq!(interface_name(Some(&"x".repeat(80)), "net0").len(), 64);
    }

    #[test]
    fn vlan_modes() {
        assert_eq!(vlan_mode(None, &[]), None);
        assert_eq!(vlan_mode(Some(20), &[]), Some("access"));
        assert_eq!(vlan_mode(Some(20), &[30, 31]), Some("tagged"));
        assert_eq!(vlan_name(120), "VLAN 120");
    }

    #[test]
    fn loopback_is_never_recorded_and_link_local_only_when_asked() {
        assert!(!records_address(Scope::Loopback, true));
        assert!(!records_address(Scope::LinkLocal, false));
        assert!(records_address(Scope::LinkLocal, true));
        assert!(records_address(Scope::Private, false));
    }

    #[test]
    fn dynamic_addresses_are_dhcp_or_slaac() {
        let m = |dhcp, dhcp6, slaac| Methods { dhcp, dhcp6, slaac };
        let g = Scope::Private;
        assert_eq!(
            address_status(m(true, false, false), false, g, false),
            "dhcp"
        );
        assert_eq!(
            address_status(m(true, false, false), false, g, true),
            "active"
        );
        assert_eq!(
            address_status(m(true, false, false), true, g, false),
            "active"
        );
        assert_eq!(
            address_status(m(false, true, false), true, g, false),
            "dhcp"
        );
        assert_eq!(
            address_status(m(false, false, true), true, g, false),
            "slaac"
        );
        assert_eq!(
            address_status(m(false, false, true), true, Scope::LinkLocal, false),
            "active"
        );
        assert_eq!(
            address_status(Methods::default(), false, g, false),
            "active"
        );
    }

    #[test]
    fn dns_names_netbox_refuses_are_dropped() {
        assert_eq!(
            dns_name(Some("Web01.Example.COM.")),
            Some("web01.example.com".into())
        );
        assert_eq!(dns_name(Some("localhost")), None);
        assert_eq!(dns_name(Some("my host")), None);
        assert_eq!(dns_name(Some("a..b")), None);
        assert_eq!(dns_name(Some("*.apps")), Some("*.apps".into()));
        assert_eq!(dns_name(Some("")), None);
    }

    #[test]
    fn primary_skips_link_local_and_prefers_global_v6() {
        let c = |address, ipv6, scope| Candidate {
            address,
            ipv6,
            scope,
        };
        let list = [
            c("169.254.1.1/16", false, Scope::LinkLocal),
            c("fe80::1/64", true, Scope::LinkLocal),
            c("10.0.0.5/24", false, Scope::Private),
            c("fd00::5/64", true, Scope::UniqueLocal),
            c("192.0.2.5/24", false, Scope::Global),
            c("2001:db8::5/64", true, Scope::Global),
        ];
        assert_eq!(choose_primary(&list, false), Some("10.0.0.5/24"));
        assert_eq!(choose_primary(&list, true), Some("2001:db8::5/64"));
        assert_eq!(choose_primary(&list[..4], true), Some("fd00::5/64"));
        assert_eq!(choose_primary(&list[..2], false), None);
    }
}
