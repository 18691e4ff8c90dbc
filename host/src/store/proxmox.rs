//! Proxmox endpoints: where to read Proxmox VE from, and with which credentials.
//!
//! The plugin pushes its endpoints as rows named `"<name> (nb:<pk>)"`
//! ([`plugin_endpoint_name`]), finds them again by that suffix ([`claims_plugin_pk`]),
//! and refuses a row whose `(domain or ip_address, port)` no longer matches its own
//! ([`ProxmoxEndpointPublic::connection_target`]).

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::crypto::{Crypto, Secret, Slot};
use super::error::{Entity, StoreError};
use super::validate::{Checker, HostRule, Page, de, endpoint_host};
use super::{Store, messages, next_id, template};

const TABLE: &str = "proxmoxendpoint";
const COLUMNS: &str = "id, name, node_device_name_template, ip_address, domain, port, username, \
     password, verify_ssl, allow_writes, allow_packer_template_builds, access_methods, enabled, \
     token_name, token_value, timeout, max_retries, retry_backoff, site_id, site_slug, site_name, \
     tenant_id, tenant_slug, tenant_name";

/// How an endpoint may be reached. SSH only ever complements the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum AccessMethod {
    /// The Proxmox HTTP API only (the default).
    #[default]
    #[serde(rename = "api")]
    Api,
    /// The API plus SSH.
    #[serde(rename = "api_ssh")]
    ApiSsh,
}

impl AccessMethod {
    /// The wire value: `"api"` or `"api_ssh"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AccessMethod::Api => "api",
            AccessMethod::ApiSsh => "api_ssh",
        }
    }

    /// Parse the wire value (exact match).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "api" => Some(AccessMethod::Api),
            "api_ssh" => Some(AccessMethod::ApiSsh),
            _ => None,
        }
    }

    /// Whether SSH is permitted.
    pub fn ssh_enabled(&self) -> bool {
        *self == AccessMethod::ApiSsh
    }
}

/// The stored Proxmox endpoint, secrets decrypted.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxmoxEndpoint {
    /// Everything but the credentials.
    pub public: ProxmoxEndpointPublic,
    /// Password (for ticket auth), if any.
    pub password: Option<Secret>,
    /// API token name (`user@realm!id` or the bare id), if any.
    pub token_name: Option<String>,
    /// API token secret, if any.
    pub token_value: Option<Secret>,
}

impl ProxmoxEndpoint {
    /// Whether a token pair is configured (both parts non-empty), which wins over the password.
    pub fn has_token(&self) -> bool {
        self.token_name.as_deref().is_some_and(|n| !n.is_empty())
            && self.token_value.as_ref().is_some_and(|v| !v.is_empty())
    }
}

/// A Proxmox endpoint as routes return it (the reference's `ProxmoxEndpointPublic`):
/// no password, token name or token value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxmoxEndpointPublic {
    /// Row id (the "backend id" the plugin scopes syncs with).
    pub id: i64,
    /// Unique name; plugin rows are `"<name> (nb:<pk>)"`.
    pub name: String,
    /// Template for node Device names (`""`: the global default).
    pub node_device_name_template: String,
    /// Address.
    pub ip_address: String,
    /// DNS name; preferred over `ip_address` when set.
    pub domain: Option<String>,
    /// API port (8006 by default on Proxmox).
    pub port: u16,
    /// `user@realm`.
    pub username: String,
    /// Verify the TLS certificate.
    pub verify_ssl: bool,
    /// Whether this host may write to Proxmox through it (default false; never set by the plugin).
    pub allow_writes: bool,
    /// Narrow permission for template-image builds (default false).
    pub allow_packer_template_builds: bool,
    /// `"api"` or `"api_ssh"`.
    pub access_methods: AccessMethod,
    /// Whether syncs use it.
    pub enabled: bool,
    /// NetBox site id to place nodes in.
    pub site_id: Option<i64>,
    /// NetBox site slug.
    pub site_slug: Option<String>,
    /// NetBox site name.
    pub site_name: Option<String>,
    /// NetBox tenant id.
    pub tenant_id: Option<i64>,
    /// NetBox tenant slug.
    pub tenant_slug: Option<String>,
    /// NetBox tenant name.
    pub tenant_name: Option<String>,
    /// Request timeout in seconds (1..=3600), or the global default.
    pub timeout: Option<u32>,
    /// Retries (0..=100), or the global default.
    pub max_retries: Option<u32>,
    /// Retry back-off in seconds (0..=300), or the global default.
    pub retry_backoff: Option<f64>,
}

impl ProxmoxEndpointPublic {
    /// The host sessions dial: `domain` if set and non-empty, else `ip_address`.
    pub fn host(&self) -> &str {
        self.domain
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or(&self.ip_address)
    }

    /// The plugin's view of where this row points: `(host, port)` with the domain
    /// trimmed, lower-cased and without a trailing dot, else the address without its
    /// `/mask`, lower-cased. `None` if neither is set.
    pub fn connection_target(&self) -> Option<(String, u16)> {
        let domain = self
            .domain
            .as_deref()
            .unwrap_or_default()
            .trim()
            .trim_end_matches('.')
            .to_lowercase();
        let host = if domain.is_empty() {
            self.ip_address
                .split('/')
                .next()
                .unwrap_or_default()
                .trim()
                .to_lowercase()
        } else {
            domain
        };
        (!host.is_empty()).then_some((host, self.port))
    }

    /// Whether this row points at `host:port` (compared as [`Self::connection_target`]).
    pub fn points_at(&self, host: &str, port: u16) -> bool {
        let want = host.trim().trim_end_matches('.').to_lowercase();
        self.connection_target() == Some((want, port))
    }

    /// The plugin primary key in this row's name, if it follows the push convention.
    pub fn plugin_pk(&self) -> Option<i64> {
        plugin_pk(&self.name)
    }
}

/// The name the plugin gives its endpoint `pk` on the backend: `"<name> (nb:<pk>)"`,
/// with a blank name replaced by `"Proxmox Endpoint"`.
pub fn plugin_endpoint_name(name: &str, pk: i64) -> String {
    let base = name.trim();
    let base = if base.is_empty() {
        "Proxmox Endpoint"
    } else {
        base
    };
    format!("{base} (nb:{pk})")
}

/// The plugin primary key at the end of a name (`"pve (nb:7)"` → 7).
pub fn plugin_pk(name: &str) -> Option<i64> {
    let inner = name.trim().strip_suffix(')')?;
    let start = inner.rfind("(nb:")?;
    let digits = &inner[start + 4..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a row name claims plugin endpoint `pk` (the plugin's own test: the trimmed
/// name ends with `"(nb:<pk>)"`).
pub fn claims_plugin_pk(name: &str, pk: i64) -> bool {
    name.trim().ends_with(&format!("(nb:{pk})"))
}

fn default_access_methods() -> String {
    "api".into()
}

fn yes() -> bool {
    true
}

/// Body of `POST /proxmox/endpoints` (the reference's `ProxmoxEndpointCreate`).
#[derive(Clone, Debug, Deserialize)]
pub struct ProxmoxEndpointCreate {
    /// Unique name (≤ 255).
    pub name: String,
    /// Node Device name template (≤ 128; see [`template`]); default `""`.
    #[serde(default)]
    pub node_device_name_template: String,
    /// Address (≤ 45).
    pub ip_address: String,
    /// DNS name (≤ 255).
    #[serde(default)]
    pub domain: Option<String>,
    /// Port, 1..=65535 (required).
    #[serde(deserialize_with = "de::int")]
    pub port: i64,
    /// `user@realm` (≤ 255).
    pub username: String,
    /// Password (≤ 1000).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Verify TLS; default true.
    #[serde(default = "yes")]
    pub verify_ssl: bool,
    /// Enabled; default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Allow writes to Proxmox; default false.
    #[serde(default)]
    pub allow_writes: bool,
    /// Allow template-image builds; default false.
    #[serde(default)]
    pub allow_packer_template_builds: bool,
    /// `"api"` (default) or `"api_ssh"`.
    #[serde(default = "default_access_methods")]
    pub access_methods: String,
    /// API token name (≤ 255).
    #[serde(default)]
    pub token_name: Option<String>,
    /// API token secret (≤ 1000).
    #[serde(default)]
    pub token_value: Option<Secret>,
    /// NetBox site id (≥ 1).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub site_id: Option<i64>,
    /// NetBox site slug (≤ 255).
    #[serde(default)]
    pub site_slug: Option<String>,
    /// NetBox site name (≤ 255).
    #[serde(default)]
    pub site_name: Option<String>,
    /// NetBox tenant id (≥ 1).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub tenant_id: Option<i64>,
    /// NetBox tenant slug (≤ 255).
    #[serde(default)]
    pub tenant_slug: Option<String>,
    /// NetBox tenant name (≤ 255).
    #[serde(default)]
    pub tenant_name: Option<String>,
    /// Timeout in seconds, 1..=3600.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub timeout: Option<i64>,
    /// Retries, 0..=100.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub max_retries: Option<i64>,
    /// Back-off in seconds, 0..=300.
    #[serde(default)]
    pub retry_backoff: Option<f64>,
}

impl ProxmoxEndpointCreate {
    /// An endpoint with the reference's defaults and no credentials yet.
    pub fn new(name: &str, ip_address: &str, port: u16, username: &str) -> Self {
        ProxmoxEndpointCreate {
            name: name.into(),
            node_device_name_template: String::new(),
            ip_address: ip_address.into(),
            domain: None,
            port: port.into(),
            username: username.into(),
            password: None,
            verify_ssl: true,
            enabled: true,
            allow_writes: false,
            allow_packer_template_builds: false,
            access_methods: default_access_methods(),
            token_name: None,
            token_value: None,
            site_id: None,
            site_slug: None,
            site_name: None,
            tenant_id: None,
            tenant_slug: None,
            tenant_name: None,
            timeout: None,
            max_retries: None,
            retry_backoff: None,
        }
    }
}

/// Body of `PUT /proxmox/endpoints/{id}`: only the fields present change. For nullable
/// fields, `Some(None)` (JSON `null`) clears; `null` on a non-nullable field is ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProxmoxEndpointUpdate {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New node Device name template (`""` resets to the global default).
    #[serde(default)]
    pub node_device_name_template: Option<String>,
    /// New address.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// New DNS name.
    #[serde(default, deserialize_with = "de::patch")]
    pub domain: Option<Option<String>>,
    /// New port.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub port: Option<i64>,
    /// New username.
    #[serde(default)]
    pub username: Option<String>,
    /// New password.
    #[serde(default, deserialize_with = "de::patch")]
    pub password: Option<Option<Secret>>,
    /// New TLS verification flag.
    #[serde(default)]
    pub verify_ssl: Option<bool>,
    /// New enabled flag.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// New write permission.
    #[serde(default)]
    pub allow_writes: Option<bool>,
    /// New template-build permission.
    #[serde(default)]
    pub allow_packer_template_builds: Option<bool>,
    /// New access method.
    #[serde(default)]
    pub access_methods: Option<String>,
    /// New token name.
    #[serde(default, deserialize_with = "de::patch")]
    pub token_name: Option<Option<String>>,
    /// New token secret.
    #[serde(default, deserialize_with = "de::patch")]
    pub token_value: Option<Option<Secret>>,
    /// New site id.
    #[serde(default, deserialize_with = "de::patch_int")]
    pub site_id: Option<Option<i64>>,
    /// New site slug.
    #[serde(default, deserialize_with = "de::patch")]
    pub site_slug: Option<Option<String>>,
    /// New site name.
    #[serde(default, deserialize_with = "de::patch")]
    pub site_name: Option<Option<String>>,
    /// New tenant id.
    #[serde(default, deserialize_with = "de::patch_int")]
    pub tenant_id: Option<Option<i64>>,
    /// New tenant slug.
    #[serde(default, deserialize_with = "de::patch")]
    pub tenant_slug: Option<Option<String>>,
    /// New tenant name.
    #[serde(default, deserialize_with = "de::patch")]
    pub tenant_name: Option<Option<String>>,
    /// New timeout.
    #[serde(default, deserialize_with = "de::patch_int")]
    pub timeout: Option<Option<i64>>,
    /// New retry count.
    #[serde(default, deserialize_with = "de::patch_int")]
    pub max_retries: Option<Option<i64>>,
    /// New back-off.
    #[serde(default, deserialize_with = "de::patch")]
    pub retry_backoff: Option<Option<f64>>,
}

/// The values a request gives, for the pydantic-level checks.
struct Fields<'a> {
    name: Option<&'a str>,
    template: Option<&'a str>,
    ip_address: Option<&'a str>,
    domain: Option<&'a str>,
    port: Option<i64>,
    username: Option<&'a str>,
    password: Option<&'a str>,
    access_methods: Option<&'a str>,
    token_name: Option<&'a str>,
    token_value: Option<&'a str>,
    site_id: Option<i64>,
    site_slug: Option<&'a str>,
    site_name: Option<&'a str>,
    tenant_id: Option<i64>,
    tenant_slug: Option<&'a str>,
    tenant_name: Option<&'a str>,
    timeout: Option<i64>,
    max_retries: Option<i64>,
    retry_backoff: Option<f64>,
}

/// Field checks for the values given, in the model's field order. Returns the cleaned
/// template when one was given and is valid.
fn check_fields(f: &Fields<'_>, check: &mut Checker) -> Option<String> {
    check.max_len_opt("name", f.name, 255);
    let mut template = None;
    if let Some(t) = f.template {
        if t.chars().count() > 128 {
            check.max_len("node_device_name_template", t, 128);
        } else if t.trim().is_empty() {
            template = Some(String::new());
        } else {
            match template::validate_template(t) {
                Ok(clean) => template = Some(clean),
                Err(e) => check.value_error(Some("node_device_name_template"), &e),
            }
        }
    }
    check.max_len_opt("ip_address", f.ip_address, 45);
    check.max_len_opt("domain", f.domain, 255);
    if let Some(port) = f.port {
        check.int_range("port", port, Some(1), Some(65535));
    }
    check.max_len_opt("username", f.username, 255);
    check.max_len_opt("password", f.password, 1000);
    if let Some(a) = f.access_methods
        && AccessMethod::parse(a).is_none()
    {
        check.value_error(Some("access_methods"), messages::ACCESS_METHODS_INVALID);
    }
    check.max_len_opt("token_name", f.token_name, 255);
    check.max_len_opt("token_value", f.token_value, 1000);
    if let Some(id) = f.site_id {
        check.int_range("site_id", id, Some(1), None);
    }
    check.max_len_opt("site_slug", f.site_slug, 255);
    check.max_len_opt("site_name", f.site_name, 255);
    if let Some(id) = f.tenant_id {
        check.int_range("tenant_id", id, Some(1), None);
    }
    check.max_len_opt("tenant_slug", f.tenant_slug, 255);
    check.max_len_opt("tenant_name", f.tenant_name, 255);
    if let Some(t) = f.timeout {
        check.int_range("timeout", t, Some(1), Some(3600));
    }
    if let Some(r) = f.max_retries {
        check.int_range("max_retries", r, Some(0), Some(100));
    }
    if let Some(b) = f.retry_backoff {
        check.float_range("retry_backoff", b, 0.0, 300.0);
    }
    template
}

/// The reference's credential rules; "given" means non-empty.
fn check_credentials(
    password: bool,
    token_name: bool,
    token_value: bool,
) -> Result<(), StoreError> {
    if token_name != token_value {
        return Err(StoreError::Invalid(messages::PROXMOX_TOKEN_PAIR.into()));
    }
    if !(password || token_name && token_value) {
        return Err(StoreError::Invalid(
            messages::PROXMOX_CREDENTIALS_REQUIRED.into(),
        ));
    }
    Ok(())
}

struct RawRow {
    public: ProxmoxEndpointPublic,
    password: Option<String>,
    token_name: Option<String>,
    token_value: Option<String>,
}

impl RawRow {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let access: String = row.get(11)?;
        Ok(RawRow {
            public: ProxmoxEndpointPublic {
                id: row.get(0)?,
                name: row.get(1)?,
                node_device_name_template: row.get(2)?,
                ip_address: row.get(3)?,
                domain: row.get(4)?,
                port: row.get(5)?,
                username: row.get(6)?,
                verify_ssl: row.get(8)?,
                allow_writes: row.get(9)?,
                allow_packer_template_builds: row.get(10)?,
                access_methods: AccessMethod::parse(&access).unwrap_or_default(),
                enabled: row.get(12)?,
                timeout: row.get(15)?,
                max_retries: row.get(16)?,
                retry_backoff: row.get(17)?,
                site_id: row.get(18)?,
                site_slug: row.get(19)?,
                site_name: row.get(20)?,
                tenant_id: row.get(21)?,
                tenant_slug: row.get(22)?,
                tenant_name: row.get(23)?,
            },
            password: row.get(7)?,
            token_name: row.get(13)?,
            token_value: row.get(14)?,
        })
    }

    fn slot(&self, column: &'static str) -> Slot<'static> {
        Slot {
            table: TABLE,
            column,
            row: self.public.id,
        }
    }

    fn open(
        &self,
        crypto: &Crypto,
        column: &'static str,
        value: &Option<String>,
    ) -> Result<Option<Secret>, StoreError> {
        value
            .as_deref()
            .map(|c| crypto.decrypt(self.slot(column), c))
            .transpose()
    }

    fn decrypt(self, crypto: &Crypto) -> Result<ProxmoxEndpoint, StoreError> {
        let password = self.open(crypto, "password", &self.password)?;
        let token_value = self.open(crypto, "token_value", &self.token_value)?;
        Ok(ProxmoxEndpoint {
            public: self.public,
            password,
            token_name: self.token_name,
            token_value,
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

fn load_page(conn: &Connection, page: Page) -> Result<Vec<RawRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM {TABLE} ORDER BY id LIMIT ?1 OFFSET ?2"
    ))?;
    let rows = stmt.query_map([page.sql_limit(), page.sql_offset()], RawRow::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn name_taken(conn: &Connection, name: &str, except: Option<i64>) -> Result<bool, StoreError> {
    let other: Option<i64> = conn
        .query_row(
            &format!("SELECT id FROM {TABLE} WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(other.is_some_and(|id| Some(id) != except))
}

fn non_empty(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// A stored secret during an update: `None` = leave as is.
enum SecretChange {
    Keep,
    Set(Option<Secret>),
}

/// Whether a patched secret differs from the stored one (an unreadable stored value
/// always differs, so re-pushing a secret repairs a lost key).
fn secret_differs(
    crypto: &Crypto,
    slot: Slot<'_>,
    stored: &Option<String>,
    new: &Option<Secret>,
) -> bool {
    let new = new.as_ref().filter(|s| !s.is_empty());
    match (stored, new) {
        (None, None) => false,
        (Some(c), Some(n)) => crypto.decrypt(slot, c).map_or(true, |old| &old != n),
        _ => true,
    }
}

impl Store {
    /// `POST /proxmox/endpoints`. Checks, in the reference's order: field limits and
    /// `access_methods` / template (422), the credential rules
    /// ([`messages::PROXMOX_TOKEN_PAIR`], [`messages::PROXMOX_CREDENTIALS_REQUIRED`]),
    /// the endpoint hosts, then [`messages::PROXMOX_NAME_EXISTS`] (400).
    pub fn create_proxmox_endpoint(
        &self,
        input: ProxmoxEndpointCreate,
    ) -> Result<ProxmoxEndpointPublic, StoreError> {
        let mut check = Checker::body();
        let template = check_fields(
            &Fields {
                name: Some(&input.name),
                template: Some(&input.node_device_name_template),
                ip_address: Some(&input.ip_address),
                domain: input.domain.as_deref(),
                port: Some(input.port),
                username: Some(&input.username),
                password: input.password.as_ref().map(Secret::expose),
                access_methods: Some(&input.access_methods),
                token_name: input.token_name.as_deref(),
                token_value: input.token_value.as_ref().map(Secret::expose),
                site_id: input.site_id,
                site_slug: input.site_slug.as_deref(),
                site_name: input.site_name.as_deref(),
                tenant_id: input.tenant_id,
                tenant_slug: input.tenant_slug.as_deref(),
                tenant_name: input.tenant_name.as_deref(),
                timeout: input.timeout,
                max_retries: input.max_retries,
                retry_backoff: input.retry_backoff,
            },
            &mut check,
        )
        .unwrap_or_default();
        if !check.has_errors()
            && let Err(e) = template::check_for_endpoint(&template, &input.name)
        {
            check.value_error(None, &e);
        }
        check.finish()?;
        let password = input.password.filter(|p| !p.is_empty());
        let token_value = input.token_value.filter(|t| !t.is_empty());
        check_credentials(
            password.is_some(),
            non_empty(input.token_name.as_deref()),
            token_value.is_some(),
        )?;
        endpoint_host("IP address", &input.ip_address, HostRule::Bare)?;
        if let Some(domain) = input.domain.as_deref().filter(|d| !d.is_empty()) {
            endpoint_host("domain", domain, HostRule::Bare)?;
        }
        let access = AccessMethod::parse(&input.access_methods).unwrap_or_default();
        self.with_conn(|conn, crypto| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if name_taken(&tx, &input.name, None)? {
                return Err(StoreError::Invalid(messages::PROXMOX_NAME_EXISTS.into()));
            }
            let id = next_id(&tx, TABLE)?;
            let seal = |column, value: &Option<Secret>| {
                value
                    .as_ref()
                    .map(|s| {
                        crypto.encrypt(
                            Slot {
                                table: TABLE,
                                column,
                                row: id,
                            },
                            s.expose(),
                        )
                    })
                    .transpose()
            };
            tx.execute(
                &format!(
                    "INSERT INTO {TABLE} ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                     ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
                ),
                params![
                    id,
                    input.name,
                    template,
                    input.ip_address,
                    input.domain,
                    input.port,
                    input.username,
                    seal("password", &password)?,
                    input.verify_ssl,
                    input.allow_writes,
                    input.allow_packer_template_builds,
                    access.as_str(),
                    input.enabled,
                    input.token_name,
                    seal("token_value", &token_value)?,
                    input.timeout,
                    input.max_retries,
                    input.retry_backoff,
                    input.site_id,
                    input.site_slug,
                    input.site_name,
                    input.tenant_id,
                    input.tenant_slug,
                    input.tenant_name,
                ],
            )?;
            let row = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::ProxmoxEndpoint))?;
            tx.commit()?;
            Ok(row.public)
        })
    }

    /// `GET /proxmox/endpoints`: a page, by id.
    pub fn list_proxmox_endpoints(
        &self,
        page: Page,
    ) -> Result<Vec<ProxmoxEndpointPublic>, StoreError> {
        self.with_conn(|conn, _| {
            Ok(load_page(conn, page)?
                .into_iter()
                .map(|r| r.public)
                .collect())
        })
    }

    /// `GET /proxmox/endpoints/{id}`, without secrets.
    pub fn get_proxmox_endpoint(
        &self,
        id: i64,
    ) -> Result<Option<ProxmoxEndpointPublic>, StoreError> {
        self.with_conn(|conn, _| Ok(load(conn, id)?.map(|r| r.public)))
    }

    /// One endpoint with its secrets decrypted ([`StoreError::Decrypt`] on a wrong key).
    pub fn proxmox_endpoint_with_secrets(
        &self,
        id: i64,
    ) -> Result<Option<ProxmoxEndpoint>, StoreError> {
        self.with_conn(|conn, crypto| load(conn, id)?.map(|r| r.decrypt(crypto)).transpose())
    }

    /// The endpoint with exactly this name.
    pub fn proxmox_endpoint_by_name(
        &self,
        name: &str,
    ) -> Result<Option<ProxmoxEndpointPublic>, StoreError> {
        self.with_conn(|conn, _| {
            Ok(conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM {TABLE} WHERE name = ?1"),
                    [name],
                    RawRow::from_row,
                )
                .optional()?
                .map(|r| r.public))
        })
    }

    /// Every row whose name claims plugin endpoint `pk` (more than one is ambiguous; the
    /// plugin then refuses to choose).
    pub fn proxmox_endpoints_for_plugin_pk(
        &self,
        pk: i64,
    ) -> Result<Vec<ProxmoxEndpointPublic>, StoreError> {
        self.with_conn(|conn, _| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE name LIKE ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([format!("%(nb:{pk})%")], RawRow::from_row)?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                if claims_plugin_pk(&row.public.name, pk) {
                    out.push(row.public);
                }
            }
            Ok(out)
        })
    }

    /// Every enabled endpoint with its secrets, for building sessions (`source=database`).
    /// A row whose secrets cannot be decrypted is an inner error, so one bad row does not
    /// hide the others.
    #[allow(clippy::type_complexity)]
    pub fn enabled_proxmox_endpoints(
        &self,
    ) -> Result<Vec<Result<ProxmoxEndpoint, StoreError>>, StoreError> {
        self.with_conn(|conn, crypto| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE enabled = 1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([], RawRow::from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.decrypt(crypto));
            }
            Ok(out)
        })
    }

    /// `PUT /proxmox/endpoints/{id}`: partial update. Field checks (422) first; an update
    /// that changes nothing writes nothing; then the template against the (new) name
    /// (422, plain detail), the unique name, and, when credentials are touched, the
    /// credential rules on the merged record (400).
    pub fn update_proxmox_endpoint(
        &self,
        id: i64,
        patch: ProxmoxEndpointUpdate,
    ) -> Result<ProxmoxEndpointPublic, StoreError> {
        let mut check = Checker::body();
        let template = check_fields(
            &Fields {
                name: patch.name.as_deref(),
                template: patch.node_device_name_template.as_deref(),
                ip_address: patch.ip_address.as_deref(),
                domain: patch.domain.as_ref().and_then(Option::as_deref),
                port: patch.port,
                username: patch.username.as_deref(),
                password: patch
                    .password
                    .as_ref()
                    .and_then(|p| p.as_ref().map(Secret::expose)),
                access_methods: patch.access_methods.as_deref(),
                token_name: patch.token_name.as_ref().and_then(Option::as_deref),
                token_value: patch
                    .token_value
                    .as_ref()
                    .and_then(|t| t.as_ref().map(Secret::expose)),
                site_id: patch.site_id.flatten(),
                site_slug: patch.site_slug.as_ref().and_then(Option::as_deref),
                site_name: patch.site_name.as_ref().and_then(Option::as_deref),
                tenant_id: patch.tenant_id.flatten(),
                tenant_slug: patch.tenant_slug.as_ref().and_then(Option::as_deref),
                tenant_name: patch.tenant_name.as_ref().and_then(Option::as_deref),
                timeout: patch.timeout.flatten(),
                max_retries: patch.max_retries.flatten(),
                retry_backoff: patch.retry_backoff.flatten(),
            },
            &mut check,
        );
        check.finish()?;
        self.with_conn(|conn, crypto| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::ProxmoxEndpoint))?;
            let old = &row.public;
            let mut new = old.clone();
            macro_rules! set {
                ($field:ident) => {
                    if let Some(v) = patch.$field.clone() {
                        new.$field = v;
                    }
                };
            }
            set!(name);
            set!(ip_address);
            set!(domain);
            set!(username);
            set!(verify_ssl);
            set!(enabled);
            set!(allow_writes);
            set!(allow_packer_template_builds);
            set!(site_id);
            set!(site_slug);
            set!(site_name);
            set!(tenant_id);
            set!(tenant_slug);
            set!(tenant_name);
            set!(retry_backoff);
            if let Some(t) = template {
                new.node_device_name_template = t;
            }
            if let Some(p) = patch.port {
                new.port = u16::try_from(p).unwrap_or(old.port);
            }
            if let Some(a) = patch
                .access_methods
                .as_deref()
                .and_then(AccessMethod::parse)
            {
                new.access_methods = a;
            }
            if let Some(t) = patch.timeout {
                new.timeout = t.and_then(|t| u32::try_from(t).ok());
            }
            if let Some(r) = patch.max_retries {
                new.max_retries = r.and_then(|r| u32::try_from(r).ok());
            }
            let token_name = match &patch.token_name {
                Some(t) => t.clone(),
                None => row.token_name.clone(),
            };
            let password = match &patch.password {
                Some(p) if secret_differs(crypto, row.slot("password"), &row.password, p) => {
                    SecretChange::Set(p.clone().filter(|s| !s.is_empty()))
                }
                _ => SecretChange::Keep,
            };
            let token_value = match &patch.token_value {
                Some(t) if secret_differs(crypto, row.slot("token_value"), &row.token_value, t) => {
                    SecretChange::Set(t.clone().filter(|s| !s.is_empty()))
                }
                _ => SecretChange::Keep,
            };
            let unchanged = new == *old
                && token_name == row.token_name
                && matches!(password, SecretChange::Keep)
                && matches!(token_value, SecretChange::Keep);
            if unchanged {
                return Ok(row.public);
            }

            template::check_for_endpoint(&new.node_device_name_template, &new.name)
                .map_err(StoreError::UnprocessableDetail)?;
            if let Some(ip) = patch.ip_address.as_deref().filter(|h| !h.is_empty()) {
                endpoint_host("IP address", ip, HostRule::WithSettingsHint)?;
            }
            if let Some(domain) = patch
                .domain
                .as_ref()
                .and_then(Option::as_deref)
                .filter(|d| !d.is_empty())
            {
                endpoint_host("domain", domain, HostRule::WithSettingsHint)?;
            }
            if new.name != old.name && name_taken(&tx, &new.name, Some(id))? {
                return Err(StoreError::Invalid(messages::PROXMOX_NAME_EXISTS.into()));
            }
            let touches_credentials = patch.password.is_some()
                || patch.token_name.is_some()
                || patch.token_value.is_some();
            if touches_credentials {
                let has = |change: &SecretChange, stored: &Option<String>| match change {
                    SecretChange::Keep => stored.is_some(),
                    SecretChange::Set(v) => v.is_some(),
                };
                check_credentials(
                    has(&password, &row.password),
                    non_empty(token_name.as_deref()),
                    has(&token_value, &row.token_value),
                )?;
            }
            let seal = |column, change: &SecretChange, stored: &Option<String>| match change {
                SecretChange::Keep => Ok(stored.clone()),
                SecretChange::Set(v) => v
                    .as_ref()
                    .map(|s| crypto.encrypt(row.slot(column), s.expose()))
                    .transpose(),
            };
            tx.execute(
                &format!(
                    "UPDATE {TABLE} SET name = ?2, node_device_name_template = ?3, \
                     ip_address = ?4, domain = ?5, port = ?6, username = ?7, password = ?8, \
                     verify_ssl = ?9, allow_writes = ?10, allow_packer_template_builds = ?11, \
                     access_methods = ?12, enabled = ?13, token_name = ?14, token_value = ?15, \
                     timeout = ?16, max_retries = ?17, retry_backoff = ?18, site_id = ?19, \
                     site_slug = ?20, site_name = ?21, tenant_id = ?22, tenant_slug = ?23, \
                     tenant_name = ?24 WHERE id = ?1"
                ),
                params![
                    id,
                    new.name,
                    new.node_device_name_template,
                    new.ip_address,
                    new.domain,
                    new.port,
                    new.username,
                    seal("password", &password, &row.password)?,
                    new.verify_ssl,
                    new.allow_writes,
                    new.allow_packer_template_builds,
                    new.access_methods.as_str(),
                    new.enabled,
                    token_name,
                    seal("token_value", &token_value, &row.token_value)?,
                    new.timeout,
                    new.max_retries,
                    new.retry_backoff,
                    new.site_id,
                    new.site_slug,
                    new.site_name,
                    new.tenant_id,
                    new.tenant_slug,
                    new.tenant_name,
                ],
            )?;
            let updated = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::ProxmoxEndpoint))?;
            tx.commit()?;
            Ok(updated.public)
        })
    }

    /// `DELETE /proxmox/endpoints/{id}`.
    pub fn delete_proxmox_endpoint(&self, id: i64) -> Result<(), StoreError> {
        self.with_conn(|conn, _| {
            match conn.execute(&format!("DELETE FROM {TABLE} WHERE id = ?1"), [id])? {
                0 => Err(StoreError::NotFound(Entity::ProxmoxEndpoint)),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        assert_eq!(plugin_endpoint_name(" pve ", 7), "pve (nb:7)");
        assert_eq!(plugin_endpoint_name("", 7), "Proxmox Endpoint (nb:7)");
        assert_eq!(plugin_pk("pve (nb:7)"), Some(7));
        assert_eq!(plugin_pk("pve (nb:7) "), Some(7));
        assert_eq!(plugin_pk("a (nb:1) b (nb:42)"), Some(42));
        assert_eq!(plugin_pk("pve (nb:)"), None);
        assert_eq!(plugin_pk("pve (nb:x7)"), None);
        assert_eq!(plugin_pk("pve"), None);
        assert!(claims_plugin_pk("pve (nb:1)", 1));
        assert!(!claims_plugin_pk("pve (nb:11)", 1));
    }
}
