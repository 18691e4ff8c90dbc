//! Authentication: API tokens, tickets (`PVEAuthCookie`) and CSRF tokens.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::Credentials;

/// User of the full-access token and of ticket logins.
pub const ROOT_USER: &str = "root@pam";
/// Token id of the full-access token.
pub const ROOT_TOKEN_ID: &str = "proxbox";
/// User of the limited token.
pub const LIMITED_USER: &str = "audit@pve";
/// Token id of the limited token.
pub const LIMITED_TOKEN_ID: &str = "limited";

/// An API token (`USER@REALM!TOKENID=SECRET`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenCredentials {
    /// User, e.g. `root@pam`.
    pub user: String,
    /// Token id, e.g. `proxbox`.
    pub token_id: String,
    /// Secret (UUID).
    pub secret: String,
}

impl TokenCredentials {
    /// `root@pam!proxbox`.
    pub fn full_id(&self) -> String {
        format!("{}!{}", self.user, self.token_id)
    }

    /// The `Authorization` header value: `PVEAPIToken=root@pam!proxbox=<secret>`.
    pub fn header_value(&self) -> String {
        format!("PVEAPIToken={}={}", self.full_id(), self.secret)
    }
}

/// Who a request is authenticated as.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Principal {
    /// Full access (root token or root ticket).
    Root,
    /// The limited token.
    Limited,
}

/// How the request authenticated.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AuthMethod {
    Token,
    Ticket,
}

/// Outcome of checking a request's credentials; `Err` carries PVE's 401 reason.
pub(crate) type AuthResult = Result<(Principal, AuthMethod), String>;

/// Checks the `Cookie` / `Authorization` headers like pve-http-server: the cookie is
/// preferred, then `PVEAuthCookie` in `Authorization`, then `PVEAPIToken`.
pub(crate) fn authenticate(
    cookie: Option<&str>,
    authorization: Option<&str>,
    creds: &Credentials,
    lifetime: Duration,
) -> AuthResult {
    let ticket = cookie
        .and_then(|c| extract_auth_value(c, "PVEAuthCookie"))
        .or_else(|| authorization.and_then(|a| extract_auth_value(a, "PVEAuthCookie")));
    if let Some(ticket) = ticket {
        let user = verify_ticket(&ticket, creds, lifetime)?;
        let principal = if user == ROOT_USER {
            Principal::Root
        } else {
            return Err(format!("no such user ('{user}')"));
        };
        return Ok((principal, AuthMethod::Ticket));
    }
    let Some(token) = authorization.and_then(|a| extract_auth_value(a, "PVEAPIToken")) else {
        return Err("No ticket".to_string());
    };
    let Some((tokenid, value)) = token.rsplit_once('=') else {
        return Err("no tokenid specified".to_string());
    };
    let Some((user, subid)) = tokenid.split_once('!') else {
        return Err(format!(
            "'{tokenid}' is not a valid token ID - not able to split into user and token parts"
        ));
    };
    let (principal, expected) = match (user, subid) {
        (ROOT_USER, ROOT_TOKEN_ID) => (Principal::Root, &creds.token_secret),
        (LIMITED_USER, LIMITED_TOKEN_ID) => (Principal::Limited, &creds.limited_token_secret),
        (ROOT_USER | LIMITED_USER, _) => {
            return Err(format!("no such token '{subid}' for user '{user}'"));
        }
        _ => return Err(format!("no such user ('{user}')")),
    };
    if value != expected {
        return Err("invalid token value!".to_string());
    }
    Ok((principal, AuthMethod::Token))
}

/// `(?:^|\s)KEY(?:=| )([^;]*)`, then URI-unescaped (like `extract_auth_value`).
fn extract_auth_value(header: &str, key: &str) -> Option<String> {
    let mut search = 0;
    while let Some(pos) = header[search..].find(key) {
        let start = search + pos;
        let boundary_ok = start == 0
            || header[..start]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace);
        let rest = &header[start + key.len()..];
        if boundary_ok && (rest.starts_with('=') || rest.starts_with(' ')) {
            let value = rest[1..].split(';').next().unwrap_or("");
            if value.is_empty() {
                return None;
            }
            return Some(percent_decode(value));
        }
        search = start + key.len();
    }
    None
}

/// Decodes `%XX` escapes (and nothing else: `+` stays, as in tickets).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn signature(key: &str, data: &str, len: usize) -> String {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update(data.as_bytes())
        .finalize()
        .to_vec();
    while bytes.len() < len {
        bytes.extend_from_slice(&block);
        block = Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update(&block)
            .finalize()
            .to_vec();
    }
    bytes.truncate(len);
    base64(&bytes)
}

/// `PVE:<user>:<HEXTIME>::<signature>` (signature length like a 2048-bit RSA signature).
pub(crate) fn assemble_ticket(user: &str, creds: &Credentials) -> String {
    let plain = format!("PVE:{user}:{:08X}", now_f64() as u64);
    let sig = signature(&creds.ticket_key, &plain, 256);
    format!("{plain}::{sig}")
}

/// `<HEXTIME>:<signature>`.
pub(crate) fn assemble_csrf_token(user: &str, creds: &Credentials) -> String {
    let stamp = format!("{:08X}", now_f64() as u64);
    let sig = signature(&creds.ticket_key, &format!("{stamp}:{user}"), 32);
    format!("{stamp}:{}", sig.trim_end_matches('='))
}

/// Verifies a CSRF token for `user`.
pub(crate) fn verify_csrf_token(token: &str, user: &str, creds: &Credentials) -> bool {
    let Some((stamp, sig)) = token.split_once(':') else {
        return false;
    };
    let expected = signature(&creds.ticket_key, &format!("{stamp}:{user}"), 32);
    expected.trim_end_matches('=') == sig
}

/// Returns the user of a valid ticket or PVE's 401 reason.
pub(crate) fn verify_ticket(
    ticket: &str,
    creds: &Credentials,
    lifetime: Duration,
) -> Result<String, String> {
    let invalid = || "permission denied - invalid PVE ticket".to_string();
    let (plain, sig) = ticket.split_once("::").ok_or_else(invalid)?;
    let mut parts = plain.splitn(3, ':');
    let (Some("PVE"), Some(user), Some(stamp)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if signature(&creds.ticket_key, plain, 256) != sig {
        return Err(invalid());
    }
    let issued = u64::from_str_radix(stamp, 16).map_err(|_| invalid())? as f64;
    let age = now_f64() - issued;
    if age < -300.0 || age >= lifetime.as_secs_f64() {
        return Err(invalid());
    }
    Ok(user.to_string())
}

/// The `cap` object of a root login.
pub(crate) fn root_caps() -> Value {
    json!({
        "access": {"Group.Allocate": 1, "Permissions.Modify": 1, "User.Modify": 1},
        "dc": {"SDN.Allocate": 1, "SDN.Audit": 1, "SDN.Use": 1, "Sys.Audit": 1, "Sys.Modify": 1},
        "mapping": {"Mapping.Audit": 1, "Mapping.Modify": 1, "Mapping.Use": 1, "Permissions.Modify": 1},
        "nodes": {
            "Permissions.Modify": 1, "Sys.Audit": 1, "Sys.Console": 1, "Sys.Incoming": 1,
            "Sys.Modify": 1, "Sys.PowerMgmt": 1, "Sys.Syslog": 1
        },
        "sdn": {"Permissions.Modify": 1, "SDN.Allocate": 1, "SDN.Audit": 1, "SDN.Use": 1},
        "storage": {
            "Datastore.Allocate": 1, "Datastore.AllocateSpace": 1,
            "Datastore.AllocateTemplate": 1, "Datastore.Audit": 1, "Permissions.Modify": 1
        },
        "vms": {
            "Permissions.Modify": 1, "VM.Allocate": 1, "VM.Audit": 1, "VM.Backup": 1,
            "VM.Clone": 1, "VM.Config.CDROM": 1, "VM.Config.CPU": 1, "VM.Config.Cloudinit": 1,
            "VM.Config.Disk": 1, "VM.Config.HWType": 1, "VM.Config.Memory": 1,
            "VM.Config.Network": 1, "VM.Config.Options": 1, "VM.Console": 1,
            "VM.Migrate": 1, "VM.Monitor": 1, "VM.PowerMgmt": 1, "VM.Snapshot": 1,
            "VM.Snapshot.Rollback": 1
        }
    })
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            token_secret: "11111111-2222-3333-4444-555555555555".into(),
            limited_token_secret: "66666666-7777-8888-9999-000000000000".into(),
            root_password: "pw".into(),
            ticket_key: "abcd".into(),
        }
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn token_header_forms() {
        let c = creds();
        let good = format!("PVEAPIToken=root@pam!proxbox={}", c.token_secret);
        assert!(authenticate(None, Some(&good), &c, Duration::from_secs(60)).is_ok());
        let spaced = format!("PVEAPIToken root@pam!proxbox={}", c.token_secret);
        assert!(authenticate(None, Some(&spaced), &c, Duration::from_secs(60)).is_ok());
        let bad = "PVEAPIToken=root@pam!proxbox=nope";
        assert_eq!(
            authenticate(None, Some(bad), &c, Duration::from_secs(60)),
            Err("invalid token value!".into())
        );
        assert_eq!(
            authenticate(None, None, &c, Duration::from_secs(60)),
            Err("No ticket".into())
        );
    }

    #[test]
    fn tickets_verify_and_expire() {
        let c = creds();
        let t = assemble_ticket(ROOT_USER, &c);
        assert_eq!(
            verify_ticket(&t, &c, Duration::from_secs(60)),
            Ok(ROOT_USER.into())
        );
        assert!(verify_ticket(&t, &c, Duration::ZERO).is_err());
        let tampered = t.replace("root@pam", "evil@pam");
        assert!(verify_ticket(&tampered, &c, Duration::from_secs(60)).is_err());
        let cookie = format!("other=1; PVEAuthCookie={}", t.replace(':', "%3A"));
        assert!(authenticate(Some(&cookie), None, &c, Duration::from_secs(60)).is_ok());
        let csrf = assemble_csrf_token(ROOT_USER, &c);
        assert!(verify_csrf_token(&csrf, ROOT_USER, &c));
    }
}
