//! Proxmox credentials: API tokens and passwords, in every form the plugin pushes.

use std::fmt;

/// A secret string: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to authenticate against one Proxmox endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// An API token: `USER@REALM!TOKENID` and its secret.
    Token {
        /// `user@realm`.
        user: String,
        /// Token id (the part after `!`).
        token_id: String,
        /// The token secret (a UUID).
        secret: Secret,
    },
    /// A user and password, for ticket authentication.
    Password {
        /// `user@realm`.
        user: String,
        /// The password.
        password: Secret,
    },
}

impl Credentials {
    /// Credentials from the fields of a plugin endpoint record.
    ///
    /// Accepts the token forms seen in the wild: `token_name` as a bare id (`proxbox`),
    /// as `user@realm!id`, or the whole `PVEAPIToken=user@realm!id=secret` in either field;
    /// `token_value` as the bare secret. Without a token pair, the password is used.
    pub fn from_endpoint(
        username: Option<&str>,
        password: Option<&str>,
        token_name: Option<&str>,
        token_value: Option<&str>,
    ) -> Result<Self, String> {
        let username = username
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or("root@pam");
        let name = token_name.map(str::trim).filter(|s| !s.is_empty());
        let value = token_value.map(str::trim).filter(|s| !s.is_empty());
        if let Some(full) = [name, value]
            .into_iter()
            .flatten()
            .find_map(parse_full_token)
        {
            return Ok(full);
        }
        match (name, value) {
            (Some(name), Some(secret)) => {
                let (user, token_id) = match name.split_once('!') {
                    Some((user, id)) => (user.to_string(), id.to_string()),
                    None => (username.to_string(), name.to_string()),
                };
                if token_id.is_empty() || user.is_empty() {
                    return Err("the token name is empty".into());
                }
                Ok(Credentials::Token {
                    user,
                    token_id,
                    secret: Secret::new(secret),
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                Err("token name and token value must be provided together".into())
            }
            (None, None) => match password.filter(|p| !p.is_empty()) {
                Some(password) => Ok(Credentials::Password {
                    user: username.to_string(),
                    password: Secret::new(password),
                }),
                None => Err("provide a password or a token name and value".into()),
            },
        }
    }

    /// The `Authorization` header value of a token (`PVEAPIToken=user@realm!id=secret`).
    pub fn token_header(&self) -> Option<String> {
        match self {
            Credentials::Token {
                user,
                token_id,
                secret,
            } => Some(format!("PVEAPIToken={user}!{token_id}={}", secret.expose())),
            Credentials::Password { .. } => None,
        }
    }

    /// The user the credentials act as.
    pub fn user(&self) -> &str {
        match self {
            Credentials::Token { user, .. } | Credentials::Password { user, .. } => user,
        }
    }
}

/// `PVEAPIToken=user@realm!id=secret`, `PVEAPIToken user@realm!id=secret` or `user@realm!id=secret`.
fn parse_full_token(text: &str) -> Option<Credentials> {
    let rest = text
        .strip_prefix("PVEAPIToken=")
        .or_else(|| text.strip_prefix("PVEAPIToken "))
        .unwrap_or(text);
    let (user, rest) = rest.split_once('!')?;
    let (token_id, secret) = rest.split_once('=')?;
    (!user.is_empty() && !token_id.is_empty() && !secret.is_empty()).then(|| Credentials::Token {
        user: user.to_string(),
        token_id: token_id.to_string(),
        secret: Secret::new(secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(user: &str, id: &str, secret: &str) -> Credentials {
        Credentials::Token {
            user: user.into(),
            token_id: id.into(),
            secret: Secret::new(secret),
        }
    }

    #[test]
    fn every_token_form_normalises() {
        let want = token("root@pam", "proxbox", "abc-123");
        let forms = [
            (Some("root@pam"), Some("proxbox"), Some("abc-123")),
            (None, Some("root@pam!proxbox"), Some("abc-123")),
            (Some("other@pve"), Some("root@pam!proxbox"), Some("abc-123")),
            (None, Some("PVEAPIToken=root@pam!proxbox=abc-123"), None),
            (None, None, Some("PVEAPIToken=root@pam!proxbox=abc-123")),
            (None, Some("x"), Some("root@pam!proxbox=abc-123")),
        ];
        for (user, name, value) in forms {
            assert_eq!(
                Credentials::from_endpoint(user, None, name, value).unwrap(),
                want,
                "{name:?} {value:?}"
            );
        }
        assert_eq!(
            want.token_header().unwrap(),
            "PVEAPIToken=root@pam!proxbox=abc-123"
        );
    }

    #[test]
    fn password_and_errors() {
        let creds = Credentials::from_endpoint(Some("admin@pve"), Some("pw"), None, None).unwrap();
        assert!(matches!(creds, Credentials::Password { ref user, .. } if user == "admin@pve"));
        assert!(Credentials::from_endpoint(None, None, Some("proxbox"), None).is_err());
        assert!(Credentials::from_endpoint(None, None, None, None).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let creds = token("root@pam", "proxbox", "very-secret");
        assert!(!format!("{creds:?}").contains("very-secret"));
    }
}
