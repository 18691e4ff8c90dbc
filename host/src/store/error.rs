//! The store's error type, with the HTTP status each variant maps to.

use std::fmt;

/// Which kind of record a [`StoreError::NotFound`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    /// The NetBox endpoint singleton.
    NetBoxEndpoint,
    /// A Proxmox endpoint.
    ProxmoxEndpoint,
    /// An API key.
    ApiKey,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::NetBoxEndpoint => "NetBox endpoint",
            Entity::ProxmoxEndpoint => "Proxmox endpoint",
            Entity::ApiKey => "API key",
        })
    }
}

/// One field-level validation failure, shaped like a FastAPI/pydantic 422 item.
///
/// The offending input is deliberately not kept: it may be a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `"body"` or `"query"` (FastAPI's `loc[0]`).
    pub location: &'static str,
    /// The field; `None` for a whole-body (model-level) error.
    pub field: Option<&'static str>,
    /// The pydantic error type, e.g. `string_too_long`, `less_than_equal`, `value_error`.
    pub kind: &'static str,
    /// The pydantic message, e.g. `"Input should be less than or equal to 65535"`.
    pub message: String,
}

impl FieldError {
    /// The FastAPI JSON item: `{"type", "loc", "msg"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut loc = vec![serde_json::Value::from(self.location)];
        if let Some(field) = self.field {
            loc.push(field.into());
        }
        serde_json::json!({ "type": self.kind, "loc": loc, "msg": self.message })
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything the store can fail with.
///
/// Validation variants carry the reference backend's exact messages, so a route can
/// answer with [`StoreError::http_status`] and the message as `{"detail": ...}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation (database directory, key file) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The encryption key is missing, malformed, or its file is insecure.
    #[error("encryption key: {0}")]
    Key(String),
    /// A stored secret could not be decrypted: another key, a tampered value, or a
    /// ciphertext moved from another field or row.
    #[error(
        "cannot decrypt {field}: wrong encryption key, or the stored value was altered or moved"
    )]
    Decrypt {
        /// `table.column (id N)`.
        field: String,
    },
    /// The schema could not be brought to the version this build needs.
    #[error("schema migration: {0}")]
    Migration(String),
    /// A request rule failed (HTTP 400); the message is the reference's, verbatim.
    #[error("{0}")]
    Invalid(String),
    /// Field validation failed (HTTP 422, FastAPI list shape: see [`FieldError::to_json`]).
    #[error("validation failed: {}", join(.0))]
    Unprocessable(Vec<FieldError>),
    /// A check the reference reports as HTTP 422 with a plain string `detail`.
    #[error("{0}")]
    UnprocessableDetail(String),
    /// No such record (HTTP 404). The reference's wording differs per route: see
    /// [`crate::store::messages`].
    #[error("{0} not found")]
    NotFound(Entity),
    /// The request conflicts with the stored state (HTTP 409). With a `code`, the
    /// reference answers `{"detail": {"code", "message"}}`; without, `{"detail": message}`.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code, when the reference sends one.
        code: Option<&'static str>,
        /// The reference's message.
        message: String,
    },
}

impl StoreError {
    /// The HTTP status a route should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::Invalid(_) => 400,
            StoreError::NotFound(_) => 404,
            StoreError::Conflict { .. } => 409,
            StoreError::Unprocessable(_) | StoreError::UnprocessableDetail(_) => 422,
            _ => 500,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}
