//! Request parsing with FastAPI's answers: JSON bodies, query parameters and path ids
//! that fail validation get 422 with `{"detail": [{"type", "loc", "msg"}]}`. Unknown
//! query parameters and unknown body fields are ignored, as FastAPI does.
//!
//! Offending input values are never echoed back (FastAPI includes an `input` key): a
//! rejected field may hold a secret.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::detail(StatusCode::BAD_REQUEST, e.body_text()))?;
        parse_body(&bytes).map(Body)
    }
}

/// Parse a JSON body, mapping failures to FastAPI's 422 items.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "missing",
            json!(["body"]),
            "Field required",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(body_error)?;
    de.end().map_err(|e| json_invalid(&e))?;
    Ok(value)
}

fn json_invalid(error: &serde_json::Error) -> ApiError {
    ApiError::Validation(vec![json!({
        "type": "json_invalid",
        "loc": ["body", error.column().saturating_sub(1)],
        "msg": "JSON decode error",
    })])
}

fn body_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let mut loc = vec![Value::from("body")];
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => loc.push(key.clone().into()),
            serde_path_to_error::Segment::Seq { index } => loc.push((*index).into()),
            _ => {}
        }
    }
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return json_invalid(&inner);
    }
    let text = inner.to_string();
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(t, _)| t);
    let (kind, message) = if let Some(rest) = text.strip_prefix("missing field `") {
        loc.push(rest.trim_end_matches('`').into());
        ("missing", "Field required")
    } else if text.contains("expected struct") || text.contains("expected a map") {
        (
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
    } else if text.ends_with("expected a string") {
        ("string_type", "Input should be a valid string")
    } else if text.ends_with("expected a boolean") {
        ("bool_type", "Input should be a valid boolean")
    } else if text.contains("valid integer") || text.contains("expected i64") {
        ("int_parsing", "Input should be a valid integer")
    } else if text.contains("expected f64") || text.contains("valid number") {
        ("float_parsing", "Input should be a valid number")
    } else {
        ("value_error", "Input is not valid for this field")
    };
    ApiError::Validation(vec![json!({ "type": kind, "loc": loc, "msg": message })])
}

/// The query string as name/value pairs, read leniently: unknown names are ignored,
/// and typed getters fail with FastAPI's 422 items.
#[derive(Clone, Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(QueryParams::parse(parts.uri.query().unwrap_or("")))
    }
}

impl QueryParams {
    /// Parse a raw query string.
    pub fn parse(query: &str) -> Self {
        QueryParams(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// With `name=value` added (it wins over an earlier value).
    #[must_use]
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.to_string(), value.to_string()));
        self
    }

    /// The last value of `name` (FastAPI reads the last one for scalars).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|raw| {
                raw.trim().parse::<i64>().map_err(|_| {
                    ApiError::invalid(
                        "int_parsing",
                        json!(["query", name]),
                        "Input should be a valid integer, unable to parse string as an integer",
                    )
                })
            })
            .transpose()
    }

    /// A boolean parameter, with pydantic's accepted spellings.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|raw| {
                parse_bool(raw).ok_or_else(|| {
                    ApiError::invalid(
                        "bool_parsing",
                        json!(["query", name]),
                        "Input should be a valid boolean, unable to interpret input",
                    )
                })
            })
            .transpose()
    }

    /// A string parameter no longer than `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            Some(value) if value.chars().count() > max => Err(ApiError::invalid(
                "string_too_long",
                json!(["query", name]),
                format!("String should have at most {max} characters"),
            )),
            other => Ok(other),
        }
    }
}

/// pydantic's lax booleans.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// A path segment that must be an integer (`{id}` routes): 422 otherwise.
pub fn path_int(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.trim().parse().map_err(|_| {
        ApiError::invalid(
            "int_parsing",
            json!(["path", name]),
            "Input should be a valid integer, unable to parse string as an integer",
        )
    })
}
