//! The reference backend's user-facing messages, verbatim (proxbox-api 0.0.30.post2).
//!
//! Routes answer with these so the plugin sees what it saw from the Python backend.
//! Some 404 texts differ between methods in the reference; they are kept apart here.

/// 400 on a second `POST /netbox/endpoint`.
pub const NETBOX_SINGLETON: &str = "Only one NetBox endpoint is allowed";
/// 400 on a duplicate NetBox endpoint name.
pub const NETBOX_NAME_EXISTS: &str = "NetBox endpoint name already exists";
/// 400 when a v1 NetBox endpoint has no token.
pub const NETBOX_TOKEN_V1_REQUIRED: &str = "token is required for NetBox API token v1";
/// 400 when a v2 NetBox endpoint lacks its key or secret.
pub const NETBOX_TOKEN_V2_PAIR: &str =
    "token_key and token (secret) must both be set for NetBox API token v2";
/// 400 on a `token_version` other than `v1`/`v2`.
pub const NETBOX_TOKEN_VERSION_INVALID: &str = "Invalid token_version. Must be 'v1' or 'v2'.";
/// 404 of `GET /netbox/endpoint/{id}`.
pub const NETBOX_NOT_FOUND: &str = "Netbox Endpoint not found";
/// 404 of `PUT /netbox/endpoint/{id}` (and of its probe route).
pub const NETBOX_NOT_FOUND_UPDATE: &str = "NetBox Endpoint not found";
/// 404 of `DELETE /netbox/endpoint/{id}`.
pub const NETBOX_NOT_FOUND_DELETE: &str = "Netbox Endpoint not found.";
/// `{"message": ...}` of a successful `DELETE /netbox/endpoint/{id}`.
pub const NETBOX_DELETED: &str = "NetBox Endpoint deleted.";

/// 400 when only one of `token_name` / `token_value` is given.
pub const PROXMOX_TOKEN_PAIR: &str = "token_name and token_value must be provided together";
/// 400 when neither a password nor a token pair is given.
pub const PROXMOX_CREDENTIALS_REQUIRED: &str = "Provide password or both token_name/token_value";
/// 400 on a duplicate Proxmox endpoint name.
pub const PROXMOX_NAME_EXISTS: &str = "Proxmox endpoint name already exists";
/// 404 of `GET` and `DELETE /proxmox/endpoints/{id}`.
pub const PROXMOX_NOT_FOUND: &str = "Proxmox endpoint not found";
/// 404 of `PUT /proxmox/endpoints/{id}`.
pub const PROXMOX_NOT_FOUND_UPDATE: &str = "Proxmox Endpoint not found";
/// `{"message": ...}` of a successful `DELETE /proxmox/endpoints/{id}`.
pub const PROXMOX_DELETED: &str = "Proxmox endpoint deleted.";
/// 422 (`value_error`) on an `access_methods` other than `api` / `api_ssh`.
pub const ACCESS_METHODS_INVALID: &str = "access_methods must be one of ['api', 'api_ssh'] \
     (SSH-only is not allowed; SSH only complements API)";

/// 400 of `POST /auth/register-key` with a short key.
pub const API_KEY_TOO_SHORT: &str = "API key must be at least 32 characters.";
/// 409 of `POST /auth/register-key` once bootstrap was claimed (forever).
pub const API_KEY_ALREADY_CONFIGURED: &str = "An API key is already configured.";
/// `{"detail": ...}` of a successful `POST /auth/register-key`.
pub const API_KEY_REGISTERED: &str = "API key registered.";
/// 404 of the `/auth/keys/{id}` routes.
pub const API_KEY_NOT_FOUND: &str = "API key not found.";
/// 409 `detail.code` when the last active key would be deleted or deactivated.
pub const LAST_ACTIVE_KEY_CODE: &str = "last_active_api_key_required";
/// 409 `detail.message` when the last active key would be deleted or deactivated.
pub const LAST_ACTIVE_KEY: &str =
    "Create and verify another active API key before retiring this key.";
/// 409 `detail.code` when creating or activating a key would exceed the active-key cap.
pub const ACTIVE_KEY_LIMIT_CODE: &str = "active_api_key_limit_reached";

/// 409 `detail.message` when creating or activating a key would exceed the cap.
pub fn active_key_limit(limit: usize) -> String {
    format!(
        "The configured active API-key limit is {limit}. Deactivate an active key with \
         POST /auth/keys/{{id}}/deactivate before creating or reactivating another key."
    )
}

/// 401 when no active API key exists yet.
pub const NO_API_KEY_CONFIGURED: &str =
    "No API key configured. Register a key via POST /auth/register-key or use an existing key.";
/// 429 while a client is locked out.
pub const LOCKED_OUT: &str = "Too many failed authentication attempts. Please try again later.";

/// 401 when the `X-Proxbox-API-Key` header is missing, given the attempts left.
pub fn api_key_required(remaining: u32) -> String {
    if remaining > 0 {
        format!("API key required. {remaining} attempts remaining.")
    } else {
        "API key required.".to_string()
    }
}

/// 401 when the key is wrong, given the attempts left.
pub fn invalid_api_key(remaining: u32) -> String {
    if remaining > 0 {
        format!("Invalid API key. {remaining} attempts remaining.")
    } else {
        "Invalid API key.".to_string()
    }
}
