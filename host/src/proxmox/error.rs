//! Errors of Proxmox API calls.

use std::collections::BTreeMap;

/// A failed Proxmox API call. Never carries credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxmoxError {
    /// Proxmox answered with an error status.
    #[error("{method} {path}: HTTP {status} {message}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// API path (without the base URL or query).
        path: String,
        /// HTTP status (Proxmox uses 595/596 for node-to-node proxy failures).
        status: u16,
        /// The reason phrase or body `message`, whichever says more.
        message: String,
        /// Per-parameter errors of a 400 answer.
        errors: BTreeMap<String, String>,
    },
    /// The credentials were refused (401). Not retried: Proxmox delays failed auth by 3 s.
    #[error("{path}: authentication failed ({message})")]
    Unauthorized {
        /// API path.
        path: String,
        /// What Proxmox said.
        message: String,
    },
    /// The token or user lacks a privilege (403).
    #[error("{path}: permission denied ({message})")]
    Forbidden {
        /// API path.
        path: String,
        /// What Proxmox said, e.g. `Permission check failed (/vms/100, VM.Audit)`.
        message: String,
    },
    /// No answer in time.
    #[error("{path}: timed out after {seconds} s")]
    Timeout {
        /// API path.
        path: String,
        /// The per-request timeout.
        seconds: u64,
    },
    /// The connection could not be made or broke (TLS errors included).
    #[error("{path}: connection failed: {message}")]
    Connect {
        /// API path.
        path: String,
        /// The transport error.
        message: String,
    },
    /// The answer was not the JSON envelope expected.
    #[error("{path}: cannot decode the answer: {message}")]
    Decode {
        /// API path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The client could not be built (bad URL, TLS settings, credentials).
    #[error("invalid Proxmox endpoint configuration: {0}")]
    Config(String),
}

impl ProxmoxError {
    /// Whether a GET that failed this way may be repeated: transport failures, timeouts,
    /// gateway and proxy statuses, and 500s that do not state a definite answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProxmoxError::Connect { .. } | ProxmoxError::Timeout { .. } => true,
            ProxmoxError::Status {
                status, message, ..
            } => match status {
                500 => !is_definite(message),
                501 => false,
                502..=599 => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxmoxError::Status { status, .. } => Some(*status),
            ProxmoxError::Unauthorized { .. } => Some(401),
            ProxmoxError::Forbidden { .. } => Some(403),
            _ => None,
        }
    }
}

/// Proxmox answers "not found" and "agent not running" with 500; those are answers, not faults.
fn is_definite(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "does not exist",
        "no such",
        "not running",
        "not configured",
        "not implemented",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}
