//! Errors of NetBox API calls.

use reqwest::Method;
use serde_json::Value;

/// A failed NetBox request. Never carries the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetBoxError {
    /// NetBox answered with an error status; `body` is its JSON (validation errors per field).
    #[error("{method} {path}: HTTP {status}: {}", summary(body))]
    Status {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The error body (validation messages by field, or `detail`).
        body: Value,
    },
    /// The request did not complete.
    #[error("{path}: {message}")]
    Transport {
        /// API path.
        path: String,
        /// What failed.
        message: String,
        /// It timed out.
        timeout: bool,
        /// The connection could not be made (nothing was sent).
        connect: bool,
    },
    /// The answer could not be understood.
    #[error("{0}: cannot decode the answer: {1}")]
    Decode(String, String),
    /// The client is misconfigured.
    #[error("invalid NetBox configuration: {0}")]
    Config(String),
}

impl NetBoxError {
    /// Whether repeating `method` after this error is safe and useful: 429 always (nothing
    /// was done); 502/503/504 and connection failures for reads, PATCH and DELETE; a failed
    /// connection also for POST (nothing was sent). A POST that may have been processed is
    /// never repeated: it could create duplicates.
    pub fn is_retryable(&self, method: &Method) -> bool {
        let idempotent = matches!(
            *method,
            Method::GET | Method::PATCH | Method::PUT | Method::DELETE
        );
        match self {
            NetBoxError::Status { status: 429, .. } => true,
            NetBoxError::Status {
                status: 502..=504, ..
            } => idempotent,
            NetBoxError::Transport { connect: true, .. } => true,
            NetBoxError::Transport { .. } => idempotent,
            _ => false,
        }
    }

    /// HTTP status, if NetBox answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            NetBoxError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// NetBox's messages in one line: `field: message; field: message`.
pub fn summary(body: &Value) -> String {
    match body {
        Value::Object(map) => map
            .iter()
            .map(|(field, messages)| {
                let text = match messages {
                    Value::Array(list) => list
                        .iter()
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if field == "__all__" || field == "detail" {
                    text
                } else {
                    format!("{field}: {text}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Array(items) => items
            .iter()
            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
            .map(summary)
            .collect::<Vec<_>>()
            .join(" | "),
        Value::Null => String::new(),
        other => other
            .as_str()
            .map_or_else(|| other.to_string(), str::to_string),
    }
}
