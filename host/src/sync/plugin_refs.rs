//! The netbox-proxbox plugin's own records that other plugin records point at: its
//! Proxmox endpoint records (`/api/plugins/proxbox/endpoints/proxmox/`) and its node
//! records (`/api/plugins/proxbox/proxmox-nodes/`).
//!
//! A host endpoint is the plugin endpoint whose primary key its name carries (`"<name>
//! (nb:<pk>)"`, as the plugin pushes them); failing that, the one plugin endpoint with the
//! same domain (else IP address) and port. The reference guesses from the name and, with
//! a single plugin endpoint, takes that one whatever it points at.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::netbox::{NetBoxClient, NetBoxError};
use crate::server::sessions::Session;
use crate::store::plugin_pk;

/// The plugin's Proxmox endpoint records.
pub const ENDPOINTS_PATH: &str = "plugins/proxbox/endpoints/proxmox/";

/// The plugin's node records.
pub const NODES_PATH: &str = "plugins/proxbox/proxmox-nodes/";

/// The plugin's cluster records.
pub const CLUSTERS_PATH: &str = "plugins/proxbox/proxmox-clusters/";

/// One plugin endpoint record, as far as matching needs.
#[derive(Clone, Debug, PartialEq)]
struct PluginEndpoint {
    id: u64,
    domain: Option<String>,
    ip: Option<String>,
    port: Option<i64>,
}

/// The plugin's Proxmox endpoint records.
#[derive(Clone, Debug, Default)]
pub struct PluginEndpoints {
    records: Vec<PluginEndpoint>,
}

fn host_key(text: &str) -> String {
    text.trim().trim_end_matches('.').to_lowercase()
}

impl PluginEndpoints {
    /// Read every plugin endpoint record.
    pub async fn read(netbox: &NetBoxClient) -> Result<PluginEndpoints, NetBoxError> {
        let listed = netbox
            .list(
                ENDPOINTS_PATH,
                &[("fields", "id,domain,ip_address,port".to_string())],
            )
            .await?;
        Ok(PluginEndpoints::from_values(&listed))
    }

    /// From listed records (`ip_address` nested, its address with a mask).
    pub fn from_values(listed: &[Value]) -> PluginEndpoints {
        let records = listed
            .iter()
            .filter_map(|r| {
                Some(PluginEndpoint {
                    id: r.get("id")?.as_u64()?,
                    domain: r
                        .get("domain")
                        .and_then(Value::as_str)
                        .filter(|d| !d.trim().is_empty())
                        .map(host_key),
                    ip: r
                        .pointer("/ip_address/address")
                        .and_then(Value::as_str)
                        .map(|a| host_key(a.split('/').next().unwrap_or(a))),
                    port: r.get("port").and_then(Value::as_i64),
                })
            })
            .collect();
        PluginEndpoints { records }
    }

    /// The plugin endpoint of host endpoint `name` at `domain`/`ip`:`port`, or why there
    /// is none: the record whose pk the name carries, if it points at the same address;
    /// else the one record that does.
    pub fn resolve(
        &self,
        name: &str,
        domain: Option<&str>,
        ip: &str,
        port: i64,
    ) -> Result<u64, String> {
        let domain = domain.filter(|d| !d.trim().is_empty()).map(host_key);
        let ip = host_key(ip);
        let same_address = |r: &PluginEndpoint| {
            r.port == Some(port)
                && match (&domain, &r.domain) {
                    (Some(want), Some(have)) => want == have,
                    _ => r.ip.as_deref() == Some(ip.as_str()),
                }
        };
        let address = format!("{}:{port}", domain.as_deref().unwrap_or(&ip));
        if let Some(pk) = plugin_pk(name).and_then(|pk| u64::try_from(pk).ok()) {
            return match self.records.iter().find(|r| r.id == pk) {
                Some(record) if same_address(record) => Ok(pk),
                Some(_) => Err(format!(
                    "the netbox-proxbox Proxmox endpoint record {pk} named by endpoint \
                     '{name}' points at another address than {address}"
                )),
                None => Err(format!(
                    "the netbox-proxbox Proxmox endpoint record {pk} named by endpoint \
                     '{name}' does not exist"
                )),
            };
        }
        let matches: Vec<u64> = self
            .records
            .iter()
            .filter(|r| same_address(r))
            .map(|r| r.id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "no netbox-proxbox Proxmox endpoint record matches endpoint '{name}' \
                 ({address}); add it in the plugin"
            )),
            many => Err(format!(
                "{} netbox-proxbox Proxmox endpoint records match endpoint '{name}' ({address})",
                many.len()
            )),
        }
    }

    /// The plugin endpoint of a session's endpoint.
    pub fn of(&self, session: &Session) -> Result<u64, String> {
        let e = &session.endpoint;
        self.resolve(
            &e.name,
            e.domain.as_deref(),
            &e.ip_address,
            i64::from(e.port),
        )
    }
}

/// Point the plugin's cluster record of each endpoint (`proxmox-clusters`, written by the
/// plugin's own cluster pass) at its NetBox cluster, `(session, NetBox cluster id)`: the
/// plugin's Sync Now buttons find an object's Proxmox endpoint through that link, and
/// netbox-proxbox 0.0.29 sets it nowhere itself. Records already linked are left alone;
/// an endpoint the plugin does not know is skipped. Returns the records changed.
pub async fn link_clusters(
    netbox: &NetBoxClient,
    links: &[(&Session, u64)],
) -> Result<usize, NetBoxError> {
    let endpoints = PluginEndpoints::read(netbox).await?;
    let mut patches = Vec::new();
    for (session, cluster) in links {
        let Ok(endpoint) = endpoints.of(session) else {
            continue;
        };
        let records = netbox
            .list(
                CLUSTERS_PATH,
                &[
                    ("endpoint", endpoint.to_string()),
                    ("fields", "id,name,netbox_cluster".to_string()),
                ],
            )
            .await?;
        for record in records {
            let named = record
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(&session.name));
            let linked = record.pointer("/netbox_cluster/id").and_then(Value::as_u64);
            if named && linked != Some(*cluster) {
                patches.push(serde_json::json!({"id": record["id"], "netbox_cluster": cluster}));
            }
        }
    }
    let count = patches.len();
    if count > 0 {
        for result in netbox.bulk_update(CLUSTERS_PATH, patches).await {
            result?;
        }
    }
    Ok(count)
}

/// The plugin's node records of plugin endpoint `endpoint`, by node name.
pub async fn plugin_nodes(
    netbox: &NetBoxClient,
    endpoint: u64,
) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let listed = netbox
        .list(
            NODES_PATH,
            &[
                ("endpoint", endpoint.to_string()),
                ("fields", "id,name".to_string()),
            ],
        )
        .await?;
    Ok(listed
        .iter()
        .filter_map(|n| Some((n.get("name")?.as_str()?.to_string(), n.get("id")?.as_u64()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints() -> PluginEndpoints {
        PluginEndpoints::from_values(&[
            json!({"id": 3, "domain": "PVE.example.com.", "ip_address": null, "port": 8006}),
            json!({"id": 5, "domain": null, "ip_address": {"address": "10.0.0.5/24"}, "port": 8006}),
            json!({"id": 6, "domain": "", "ip_address": {"address": "10.0.0.6/24"}, "port": 8006}),
            json!({"id": 7, "domain": "", "ip_address": {"address": "10.0.0.6/24"}, "port": 8006}),
        ])
    }

    #[test]
    fn the_pk_in_the_name_is_taken_when_its_record_has_the_same_address() {
        let e = endpoints();
        assert_eq!(e.resolve("pve (nb:6)", None, "10.0.0.6", 8006), Ok(6));
        let elsewhere = e
            .resolve("pve (nb:5)", None, "192.0.2.1", 8006)
            .unwrap_err();
        assert!(elsewhere.contains("another address"), "{elsewhere}");
        let gone = e
            .resolve("pve (nb:99)", None, "10.0.0.5", 8006)
            .unwrap_err();
        assert!(gone.contains("does not exist"), "{gone}");
    }

    #[test]
    fn domain_then_ip_and_port_match() {
        let e = endpoints();
        assert_eq!(
            e.resolve("a", Some("pve.example.com"), "127.0.0.1", 8006),
            Ok(3)
        );
        assert_eq!(e.resolve("b", None, "10.0.0.5", 8006), Ok(5));
        assert!(e.resolve("c", None, "10.0.0.5", 443).is_err());
        let ambiguous = e.resolve("d", None, "10.0.0.6", 8006).unwrap_err();
        assert!(ambiguous.contains("2 netbox-proxbox"), "{ambiguous}");
        let missing = e.resolve("e", None, "10.9.9.9", 8006).unwrap_err();
        assert!(missing.contains("add it in the plugin"), "{missing}");
    }
}
