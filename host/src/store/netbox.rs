//! The NetBox endpoint: a singleton holding the URL and token the host writes NetBox with.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::crypto::{Crypto, Secret, Slot};
use super::error::{Entity, StoreError};
use super::messages;
use super::validate::{Checker, HostRule, Page, de, endpoint_host};
use super::{Store, next_id};

const TABLE: &str = "netboxendpoint";
const COLUMNS: &str =
    "id, name, ip_address, domain, port, token_version, token_key, token, verify_ssl, enabled";

/// The stored NetBox endpoint, secrets decrypted.
#[derive(Clone, Debug, PartialEq)]
pub struct NetBoxEndpoint {
    /// Row id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Address (may carry a `/mask`, which is ignored when dialling).
    pub ip_address: String,
    /// DNS name; preferred over `ip_address` when non-empty.
    pub domain: String,
    /// TCP port (default 443).
    pub port: u16,
    /// `"v1"` (`Authorization: Token <token>`) or `"v2"` (`Bearer nbt_<key>.<token>`).
    pub token_version: String,
    /// The v2 token key (`None` for v1).
    pub token_key: Option<Secret>,
    /// The token (v1) or token secret (v2).
    pub token: Secret,
    /// Verify the TLS certificate.
    pub verify_ssl: bool,
    /// Whether the endpoint is enabled.
    pub enabled: bool,
}

/// The NetBox endpoint as routes return it: no token, no token key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetBoxEndpointPublic {
    /// Row id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Address.
    pub ip_address: String,
    /// DNS name, or `""`.
    pub domain: String,
    /// TCP port.
    pub port: u16,
    /// `"v1"` or `"v2"`.
    pub token_version: String,
    /// Verify the TLS certificate.
    pub verify_ssl: bool,
    /// Whether the endpoint is enabled.
    pub enabled: bool,
}

/// The reference's URL rule: `https` if `port == 443` or `verify_ssl`, else `http`; host
/// = `domain` if non-empty, else `ip_address` without its `/mask` (IPv6 bracketed).
pub fn netbox_url(domain: &str, ip_address: &str, port: u16, verify_ssl: bool) -> String {
    let scheme = if port == 443 || verify_ssl {
        "https"
    } else {
        "http"
    };
    let host = if domain.is_empty() {
        ip_address.split('/').next().unwrap_or_default()
    } else {
        domain
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

impl NetBoxEndpoint {
    /// The base URL (see [`netbox_url`]).
    pub fn url(&self) -> String {
        netbox_url(&self.domain, &self.ip_address, self.port, self.verify_ssl)
    }

    /// The view without secrets.
    pub fn public(&self) -> NetBoxEndpointPublic {
        NetBoxEndpointPublic {
            id: self.id,
            name: self.name.clone(),
            ip_address: self.ip_address.clone(),
            domain: self.domain.clone(),
            port: self.port,
            token_version: self.token_version.clone(),
            verify_ssl: self.verify_ssl,
            enabled: self.enabled,
        }
    }
}

impl NetBoxEndpointPublic {
    /// The base URL (see [`netbox_url`]).
    pub fn url(&self) -> String {
        netbox_url(&self.domain, &self.ip_address, self.port, self.verify_ssl)
    }
}

fn default_port() -> i64 {
    443
}

fn default_token_version() -> String {
    "v1".into()
}

fn yes() -> bool {
    true
}

/// Body of `POST /netbox/endpoint` (the reference's `NetBoxEndpointCreate`).
#[derive(Clone, Debug, Deserialize)]
pub struct NetBoxEndpointCreate {
    /// Display name (≤ 255 characters).
    pub name: String,
    /// Address (≤ 45 characters).
    pub ip_address: String,
    /// DNS name (≤ 255 characters); default `""`.
    #[serde(default)]
    pub domain: String,
    /// TCP port, 1..=65535; default 443.
    #[serde(default = "default_port", deserialize_with = "de::int")]
    pub port: i64,
    /// `"v1"` or `"v2"` (case and spaces ignored); default `"v1"`.
    #[serde(default = "default_token_version")]
    pub token_version: String,
    /// The v2 token key (≤ 1000 characters); dropped for v1.
    #[serde(default)]
    pub token_key: Option<Secret>,
    /// The token or token secret (≤ 1000 characters).
    pub token: Secret,
    /// Verify TLS; default true.
    #[serde(default = "yes")]
    pub verify_ssl: bool,
    /// Enabled; default true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl NetBoxEndpointCreate {
    /// A v1 endpoint with the reference's defaults (port 443, verify TLS, enabled).
    pub fn new(name: &str, ip_address: &str, token: &str) -> Self {
        NetBoxEndpointCreate {
            name: name.into(),
            ip_address: ip_address.into(),
            domain: String::new(),
            port: default_port(),
            token_version: default_token_version(),
            token_key: None,
            token: Secret::new(token),
            verify_ssl: true,
            enabled: true,
        }
    }
}

/// Body of `PUT /netbox/endpoint/{id}`: only the fields present change.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetBoxEndpointUpdate {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New address.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// New DNS name.
    #[serde(default)]
    pub domain: Option<String>,
    /// New port.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub port: Option<i64>,
    /// New token version; switching to v1 drops the token key.
    #[serde(default)]
    pub token_version: Option<String>,
    /// New token key; `Some(None)` (JSON `null`) clears it.
    #[serde(default, deserialize_with = "de::patch")]
    pub token_key: Option<Option<Secret>>,
    /// New token; `Some(None)` (JSON `null`) sets it empty, which v1 rejects.
    #[serde(default, deserialize_with = "de::patch")]
    pub token: Option<Option<Secret>>,
    /// New TLS verification flag.
    #[serde(default)]
    pub verify_ssl: Option<bool>,
    /// New enabled flag.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A secret during an update: the stored ciphertext (and its plaintext when readable),
/// or a new value.
#[derive(Clone)]
enum Held {
    Stored {
        ciphertext: String,
        plain: Option<Secret>,
    },
    New(Secret),
    Absent,
}

impl Held {
    fn stored(crypto: &Crypto, slot: Slot<'_>, ciphertext: Option<String>) -> Held {
        match ciphertext {
            None => Held::Absent,
            Some(ciphertext) => {
                let plain = crypto.decrypt(slot, &ciphertext).ok();
                Held::Stored { ciphertext, plain }
            }
        }
    }

    /// Non-empty after trimming; an unreadable stored value counts as set.
    fn is_set(&self) -> bool {
        match self {
            Held::Stored { plain, .. } => plain.as_ref().is_none_or(|p| !p.expose().is_empty()),
            Held::New(s) => !s.expose().trim().is_empty(),
            Held::Absent => false,
        }
    }

    /// A new value equal to the readable stored one is not a change.
    fn settle(self, before: &Held) -> Held {
        match (&self, before) {
            (
                Held::New(new),
                Held::Stored {
                    plain: Some(old), ..
                },
            ) if new == old => before.clone(),
            _ => self,
        }
    }

    fn changed_from(&self, before: &Held) -> bool {
        !matches!(
            (self, before),
            (Held::Stored { .. }, Held::Stored { .. }) | (Held::Absent, Held::Absent)
        )
    }

    fn seal(&self, crypto: &Crypto, slot: Slot<'_>) -> Result<Option<String>, StoreError> {
        match self {
            Held::Stored { ciphertext, .. } => Ok(Some(ciphertext.clone())),
            Held::New(s) => crypto.encrypt(slot, s.expose()).map(Some),
            Held::Absent => Ok(None),
        }
    }
}

struct RawRow {
    id: i64,
    name: String,
    ip_address: String,
    domain: String,
    port: u16,
    token_version: String,
    token_key: Option<String>,
    token: String,
    verify_ssl: bool,
    enabled: bool,
}

impl RawRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            id: row.get(0)?,
            name: row.get(1)?,
            ip_address: row.get(2)?,
            domain: row.get(3)?,
            port: row.get(4)?,
            token_version: row.get(5)?,
            token_key: row.get(6)?,
            token: row.get(7)?,
            verify_ssl: row.get(8)?,
            enabled: row.get(9)?,
        })
    }

    fn slot(&self, column: &'static str) -> Slot<'static> {
        Slot {
            table: TABLE,
            column,
            row: self.id,
        }
    }

    fn public(&self) -> NetBoxEndpointPublic {
        NetBoxEndpointPublic {
            id: self.id,
            name: self.name.clone(),
            ip_address: self.ip_address.clone(),
            domain: self.domain.clone(),
            port: self.port,
            token_version: self.token_version.clone(),
            verify_ssl: self.verify_ssl,
            enabled: self.enabled,
        }
    }

    fn decrypt(self, crypto: &Crypto) -> Result<NetBoxEndpoint, StoreError> {
        let token = crypto.decrypt(self.slot("token"), &self.token)?;
        let token_key = match &self.token_key {
            Some(c) => Some(crypto.decrypt(self.slot("token_key"), c)?),
            None => None,
        };
        Ok(NetBoxEndpoint {
            id: self.id,
            name: self.name,
            ip_address: self.ip_address,
            domain: self.domain,
            port: self.port,
            token_version: self.token_version,
            token_key,
            token,
            verify_ssl: self.verify_ssl,
            enabled: self.enabled,
        })
    }
}

fn load(conn: &Connection, id: i64) -> Result<Option<RawRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = ?1"),
            [id],
            RawRow::from_row,
        )
        .optional()?)
}

/// Pydantic-level checks shared by create and update (only the fields given).
struct Fields<'a> {
    name: Option<&'a str>,
    ip_address: Option<&'a str>,
    domain: Option<&'a str>,
    port: Option<i64>,
    token_version: Option<&'a str>,
    token_key: Option<&'a Secret>,
    token: Option<&'a Secret>,
}

fn check_fields(f: Fields<'_>) -> Result<(), StoreError> {
    let mut check = Checker::body();
    check.max_len_opt("name", f.name, 255);
    check.max_len_opt("ip_address", f.ip_address, 45);
    check.max_len_opt("domain", f.domain, 255);
    if let Some(port) = f.port {
        check.int_range("port", port, Some(1), Some(65535));
    }
    check.max_len_opt("token_version", f.token_version, 2);
    check.max_len_opt("token_key", f.token_key.map(Secret::expose), 1000);
    check.max_len_opt("token", f.token.map(Secret::expose), 1000);
    check.finish()
}

/// The reference's normalization then credential rules. Returns the normalized version.
fn check_credentials(
    token_version: &str,
    token: &Held,
    token_key: &mut Held,
) -> Result<String, StoreError> {
    let version = token_version.trim().to_lowercase();
    let version = if version.is_empty() {
        "v1".to_string()
    } else {
        version
    };
    if version != "v1" && version != "v2" {
        return Err(StoreError::Invalid(
            messages::NETBOX_TOKEN_VERSION_INVALID.into(),
        ));
    }
    if version == "v1" {
        *token_key = Held::Absent;
        if !token.is_set() {
            return Err(StoreError::Invalid(
                messages::NETBOX_TOKEN_V1_REQUIRED.into(),
            ));
        }
    } else {
        if let Held::New(key) = token_key {
            let trimmed = key.expose().trim();
            *token_key = if trimmed.is_empty() {
                Held::Absent
            } else {
                Held::New(Secret::new(trimmed))
            };
        }
        if !token.is_set() || !token_key.is_set() {
            return Err(StoreError::Invalid(messages::NETBOX_TOKEN_V2_PAIR.into()));
        }
    }
    Ok(version)
}

/// The host checks: the address when given, the domain when given and non-empty.
fn check_hosts(ip_address: Option<&str>, domain: Option<&str>) -> Result<(), StoreError> {
    if let Some(ip) = ip_address {
        endpoint_host("IP address", ip, HostRule::WithSettingsHint)?;
    }
    if let Some(domain) = domain.filter(|d| !d.is_empty()) {
        endpoint_host("domain", domain, HostRule::WithSettingsHint)?;
    }
    Ok(())
}

fn trimmed(secret: &Secret) -> Held {
    Held::New(Secret::new(secret.expose().trim()))
}

impl Store {
    /// `POST /netbox/endpoint`: create the singleton. Checks, in the reference's order:
    /// field limits (422), [`messages::NETBOX_SINGLETON`], [`messages::NETBOX_NAME_EXISTS`],
    /// the endpoint hosts, token version and credentials (400).
    pub fn create_netbox_endpoint(
        &self,
        input: NetBoxEndpointCreate,
    ) -> Result<NetBoxEndpointPublic, StoreError> {
        check_fields(Fields {
            name: Some(&input.name),
            ip_address: Some(&input.ip_address),
            domain: Some(&input.domain),
            port: Some(input.port),
            token_version: Some(&input.token_version),
            token_key: input.token_key.as_ref(),
            token: Some(&input.token),
        })?;
        self.with_conn(|conn, crypto| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let count: i64 =
                tx.query_row(&format!("SELECT COUNT(*) FROM {TABLE}"), [], |r| r.get(0))?;
            if count > 0 {
                return Err(StoreError::Invalid(messages::NETBOX_SINGLETON.into()));
            }
            check_hosts(Some(&input.ip_address), Some(&input.domain))?;
            let token = trimmed(&input.token);
            let mut token_key = input
                .token_key
                .as_ref()
                .map_or(Held::Absent, |k| Held::New(k.clone()));
            let version = check_credentials(&input.token_version, &token, &mut token_key)?;
            let id = next_id(&tx, TABLE)?;
            let slot = |column| Slot {
                table: TABLE,
                column,
                row: id,
            };
            tx.execute(
                &format!(
                    "INSERT INTO {TABLE} (id, name, ip_address, domain, port, token_version, \
                     token_key, token, verify_ssl, enabled) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    id,
                    input.name,
                    input.ip_address,
                    input.domain,
                    input.port,
                    version,
                    token_key.seal(crypto, slot("token_key"))?,
                    token.seal(crypto, slot("token"))?,
                    input.verify_ssl,
                    input.enabled,
                ],
            )?;
            let row = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::NetBoxEndpoint))?;
            tx.commit()?;
            Ok(row.public())
        })
    }

    /// `GET /netbox/endpoint`: a page of endpoints (at most one exists).
    pub fn list_netbox_endpoints(
        &self,
        page: Page,
    ) -> Result<Vec<NetBoxEndpointPublic>, StoreError> {
        self.with_conn(|conn, _| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM {TABLE} ORDER BY id LIMIT ?1 OFFSET ?2"
            ))?;
            let rows = stmt.query_map([page.sql_limit(), page.sql_offset()], RawRow::from_row)?;
            rows.map(|r| Ok(r?.public())).collect()
        })
    }

    /// `GET /netbox/endpoint/{id}`, without secrets.
    pub fn get_netbox_endpoint(&self, id: i64) -> Result<Option<NetBoxEndpointPublic>, StoreError> {
        self.with_conn(|conn, _| Ok(load(conn, id)?.map(|r| r.public())))
    }

    /// One endpoint with its secrets decrypted ([`StoreError::Decrypt`] on a wrong key).
    pub fn netbox_endpoint_with_secrets(
        &self,
        id: i64,
    ) -> Result<Option<NetBoxEndpoint>, StoreError> {
        self.with_conn(|conn, crypto| load(conn, id)?.map(|r| r.decrypt(crypto)).transpose())
    }

    /// The singleton with its secrets, what a NetBox session is built from; `None` if
    /// none is registered (the reference's 400 `"No NetBox endpoint found"`).
    pub fn netbox_singleton(&self) -> Result<Option<NetBoxEndpoint>, StoreError> {
        self.with_conn(|conn, crypto| {
            let row = conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM {TABLE} ORDER BY id LIMIT 1"),
                    [],
                    RawRow::from_row,
                )
                .optional()?;
            row.map(|r| r.decrypt(crypto)).transpose()
        })
    }

    /// `PUT /netbox/endpoint/{id}`: partial update. The merged record is normalized and
    /// checked like a create; an update that changes nothing writes nothing (the plugin
    /// pushes its unchanged endpoint before every sync).
    pub fn update_netbox_endpoint(
        &self,
        id: i64,
        patch: NetBoxEndpointUpdate,
    ) -> Result<NetBoxEndpointPublic, StoreError> {
        let empty = Secret::default();
        check_fields(Fields {
            name: patch.name.as_deref(),
            ip_address: patch.ip_address.as_deref(),
            domain: patch.domain.as_deref(),
            port: patch.port,
            token_version: patch.token_version.as_deref(),
            token_key: patch.token_key.as_ref().and_then(Option::as_ref),
            token: patch.token.as_ref().map(|t| t.as_ref().unwrap_or(&empty)),
        })?;
        self.with_conn(|conn, crypto| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::NetBoxEndpoint))?;
            check_hosts(patch.ip_address.as_deref(), patch.domain.as_deref())?;
            let old_token = Held::stored(crypto, row.slot("token"), Some(row.token.clone()));
            let old_key = Held::stored(crypto, row.slot("token_key"), row.token_key.clone());

            let token = match &patch.token {
                Some(t) => trimmed(t.as_ref().unwrap_or(&empty)),
                None => old_token.clone(),
            };
            let mut token_key = match &patch.token_key {
                Some(Some(k)) => Held::New(k.clone()),
                Some(None) => Held::Absent,
                None => old_key.clone(),
            };
            let version = patch.token_version.as_deref().unwrap_or(&row.token_version);
            let version = check_credentials(version, &token, &mut token_key)?;
            let token = token.settle(&old_token);
            let token_key = token_key.settle(&old_key);

            let name = patch.name.unwrap_or_else(|| row.name.clone());
            let ip_address = patch.ip_address.unwrap_or_else(|| row.ip_address.clone());
            let domain = patch.domain.unwrap_or_else(|| row.domain.clone());
            let port = match patch.port {
                Some(p) => u16::try_from(p).unwrap_or(row.port),
                None => row.port,
            };
            let verify_ssl = patch.verify_ssl.unwrap_or(row.verify_ssl);
            let enabled = patch.enabled.unwrap_or(row.enabled);
            let unchanged = name == row.name
                && ip_address == row.ip_address
                && domain == row.domain
                && port == row.port
                && version == row.token_version
                && verify_ssl == row.verify_ssl
                && enabled == row.enabled
                && !token.changed_from(&old_token)
                && !token_key.changed_from(&old_key);
            if unchanged {
                return Ok(row.public());
            }
            tx.execute(
                &format!(
                    "UPDATE {TABLE} SET name = ?2, ip_address = ?3, domain = ?4, port = ?5, \
                     token_version = ?6, token_key = ?7, token = ?8, verify_ssl = ?9, \
                     enabled = ?10 WHERE id = ?1"
                ),
                params![
                    id,
                    name,
                    ip_address,
                    domain,
                    port,
                    version,
                    token_key.seal(crypto, row.slot("token_key"))?,
                    token.seal(crypto, row.slot("token"))?,
                    verify_ssl,
                    enabled,
                ],
            )?;
            let updated = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::NetBoxEndpoint))?;
            tx.commit()?;
            Ok(updated.public())
        })
    }

    /// `DELETE /netbox/endpoint/{id}`.
    pub fn delete_netbox_endpoint(&self, id: i64) -> Result<(), StoreError> {
        self.with_conn(|conn, _| {
            match conn.execute(&format!("DELETE FROM {TABLE} WHERE id = ?1"), [id])? {
                0 => Err(StoreError::NotFound(Entity::NetBoxEndpoint)),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rule() {
        assert_eq!(
            netbox_url("", "10.0.0.5/24", 443, false),
            "https://10.0.0.5:443"
        );
        assert_eq!(
            netbox_url("nb.lan", "10.0.0.5", 8000, false),
            "http://nb.lan:8000"
        );
        assert_eq!(
            netbox_url("", "10.0.0.5", 8000, true),
            "https://10.0.0.5:8000"
        );
        assert_eq!(
            netbox_url("", "fd00::5/64", 80, false),
            "http://[fd00::5]:80"
        );
    }
}
