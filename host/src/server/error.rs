//! Error answers in the reference's shapes (contract §2.3).
//!
//! - FastAPI `HTTPException`: `{"detail": <string or object>}`.
//! - Request validation: 422 `{"detail": [{"type", "loc", "msg"}, ...]}`.
//! - `ProxboxException`: `{"message", "detail", "python_exception": null}` (the
//!   exception text is never exposed: it can carry upstream details).
//! - Anything unexpected: 500 with the reference's generic body; the cause is logged,
//!   not returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::{FieldError, StoreError};

/// An error a route answers with.
#[derive(Debug)]
pub enum ApiError {
    /// `{"detail": detail}` with `status`.
    Detail {
        /// HTTP status.
        status: StatusCode,
        /// A string, or an object such as `{"code", "message"}`.
        detail: Value,
        /// `Retry-After` seconds, for 429 and 503.
        retry_after: Option<u64>,
    },
    /// 422 with FastAPI's list of field errors (`{"type", "loc", "msg"}` each).
    Validation(Vec<Value>),
    /// `{"message", "detail", "python_exception": null}` with `status`.
    Proxbox {
        /// HTTP status (the reference's class default is 400).
        status: StatusCode,
        /// Short message.
        message: String,
        /// Detail string or object.
        detail: Value,
    },
    /// 500; `context` is logged, never returned.
    Internal(String),
}

impl ApiError {
    /// `{"detail": message}` with `status`.
    pub fn detail(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Detail {
            status,
            detail: Value::String(message.into()),
            retry_after: None,
        }
    }

    /// Maps a store's not-found to 404 with the route's own `message` (the reference words
    /// it differently per route); other errors as usual.
    pub fn not_found_as(message: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |error| match error {
            StoreError::NotFound(_) => ApiError::detail(StatusCode::NOT_FOUND, message),
            other => other.into(),
        }
    }

    /// One 422 item: `{"type": kind, "loc": loc, "msg": message}`.
    pub fn invalid(kind: &str, loc: Value, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![
            json!({ "type": kind, "loc": loc, "msg": message.into() }),
        ])
    }

    /// A `ProxboxException`-shaped error.
    pub fn proxbox(
        status: StatusCode,
        message: impl Into<String>,
        detail: impl Into<Value>,
    ) -> Self {
        ApiError::Proxbox {
            status,
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Detail { status, .. } | ApiError::Proxbox { status, .. } => *status,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        match self {
            ApiError::Detail { detail, .. } => json!({ "detail": detail }),
            ApiError::Validation(errors) => json!({ "detail": errors }),
            ApiError::Proxbox {
                message, detail, ..
            } => json!({ "message": message, "detail": detail, "python_exception": null }),
            ApiError::Internal(_) => json!({
                "message": "Internal server error",
                "detail": "An unexpected error occurred.",
                "python_exception": null,
            }),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status =
            StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match error {
            StoreError::Unprocessable(errors) => {
                ApiError::Validation(errors.iter().map(FieldError::to_json).collect())
            }
            StoreError::Conflict {
                code: Some(code),
                message,
            } => ApiError::Detail {
                status,
                detail: json!({ "code": code, "message": message }),
                retry_after: None,
            },
            StoreError::Invalid(message)
            | StoreError::UnprocessableDetail(message)
            | StoreError::Conflict {
                code: None,
                message,
            } => ApiError::detail(status, message),
            StoreError::NotFound(entity) => ApiError::detail(status, format!("{entity} not found")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(context) = &self {
            tracing::error!(error = %context, "request failed");
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let ApiError::Detail {
            retry_after: Some(seconds),
            ..
        } = self
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Route result.
pub type ApiResult<T> = Result<T, ApiError>;
