//! Field checks with pydantic's messages, and lenient number deserializers.

use serde::{Deserialize, Deserializer};

use super::error::{FieldError, StoreError};

/// Collects field errors for one request, like pydantic does (all fields, then fail).
pub(crate) struct Checker {
    location: &'static str,
    errors: Vec<FieldError>,
}

impl Checker {
    pub(crate) fn body() -> Self {
        Checker {
            location: "body",
            errors: Vec::new(),
        }
    }

    pub(crate) fn query() -> Self {
        Checker {
            location: "query",
            errors: Vec::new(),
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    fn push(&mut self, field: Option<&'static str>, kind: &'static str, message: String) {
        self.errors.push(FieldError {
            location: self.location,
            field,
            kind,
            message,
        });
    }

    /// `Field(max_length=max)`: counted in characters, as Python does.
    pub(crate) fn max_len(&mut self, field: &'static str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.push(
                Some(field),
                "string_too_long",
                format!("String should have at most {max} characters"),
            );
        }
    }

    /// `max_len` for an optional value.
    pub(crate) fn max_len_opt(&mut self, field: &'static str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.max_len(field, value, max);
        }
    }

    /// `Field(ge=min, le=max)` on an integer.
    pub(crate) fn int_range(
        &mut self,
        field: &'static str,
        value: i64,
        min: Option<i64>,
        max: Option<i64>,
    ) {
        if let Some(min) = min.filter(|min| value < *min) {
            self.push(
                Some(field),
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            );
        } else if let Some(max) = max.filter(|max| value > *max) {
            self.push(
                Some(field),
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
            );
        }
    }

    /// `Field(ge=min, le=max)` on a float (NaN fails the lower bound, as in pydantic).
    pub(crate) fn float_range(&mut self, field: &'static str, value: f64, min: f64, max: f64) {
        if value.is_nan() || value < min {
            self.push(
                Some(field),
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            );
        } else if value > max {
            self.push(
                Some(field),
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
            );
        }
    }

    /// A custom validator's `ValueError` (pydantic prefixes `"Value error, "`).
    pub(crate) fn value_error(&mut self, field: Option<&'static str>, message: &str) {
        self.push(field, "value_error", format!("Value error, {message}"));
    }

    pub(crate) fn finish(self) -> Result<(), StoreError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Unprocessable(self.errors))
        }
    }
}

/// A page of a list: `offset` and `limit` (at most 100, as the reference's `Query(le=100)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    offset: u64,
    limit: u64,
}

impl Page {
    /// The most rows one page may hold.
    pub const MAX_LIMIT: i64 = 100;

    /// Validate query parameters: `limit` in `0..=100` (422 otherwise); a negative
    /// `offset` counts as 0 (as SQLite treats it in the reference).
    pub fn new(offset: i64, limit: i64) -> Result<Self, StoreError> {
        let mut check = Checker::query();
        check.int_range("limit", limit, Some(0), Some(Self::MAX_LIMIT));
        check.finish()?;
        Ok(Page {
            offset: offset.max(0).unsigned_abs(),
            limit: limit.unsigned_abs(),
        })
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Rows to return at most.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn sql_offset(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }

    pub(crate) fn sql_limit(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }
}

impl Default for Page {
    /// The reference's defaults: offset 0, limit 100.
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 100,
        }
    }
}

/// Serde helpers accepting what pydantic's lax mode accepts for integers: JSON
/// integers, floats without a fractional part, and numeric strings.
pub mod de {
    use super::*;

    fn to_int<E: serde::de::Error>(value: serde_json::Value) -> Result<i64, E> {
        let invalid = || E::custom("Input should be a valid integer");
        match value {
            serde_json::Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(invalid),
            serde_json::Value::String(s) => s.trim().parse().map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }

    /// An integer.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        to_int(serde_json::Value::deserialize(d)?)
    }

    /// An optional integer (`null` is `None`).
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            value => to_int(value).map(Some),
        }
    }

    /// A patch integer: absent is `None` (with `#[serde(default)]`), `null` is `Some(None)`.
    pub fn patch_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        opt_int(d).map(Some)
    }

    /// A patch value: absent is `None` (with `#[serde(default)]`), `null` is `Some(None)`.
    pub fn patch<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_bounds_print_like_pydantic() {
        let mut c = Checker::body();
        c.float_range("retry_backoff", -1.0, 0.0, 300.0);
        c.float_range("retry_backoff", 300.5, 0.0, 300.0);
        c.float_range("retry_backoff", f64::NAN, 0.0, 300.0);
        let Err(StoreError::Unprocessable(errors)) = c.finish() else {
            panic!("expected errors")
        };
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Input should be greater than or equal to 0",
                "Input should be less than or equal to 300",
                "Input should be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn lenient_ints() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "de::int")]
            a: i64,
            #[serde(default, deserialize_with = "de::patch_int")]
            b: Option<Option<i64>>,
            #[serde(default, deserialize_with = "de::patch_int")]
            c: Option<Option<i64>>,
        }
        let t: T = serde_json::from_str(r#"{"a": "8006", "b": null}"#).unwrap();
        assert_eq!((t.a, t.b, t.c), (8006, Some(None), None));
        let t: T = serde_json::from_str(r#"{"a": 5.0, "b": 3}"#).unwrap();
        assert_eq!((t.a, t.b), (5, Some(Some(3))));
        assert!(serde_json::from_str::<T>(r#"{"a": 5.5}"#).is_err());
    }

    #[test]
    fn page_limits() {
        assert_eq!(Page::new(-3, 100).unwrap().offset(), 0);
        let Err(StoreError::Unprocessable(e)) = Page::new(0, 101) else {
            panic!()
        };
        assert_eq!(e[0].message, "Input should be less than or equal to 100");
        assert_eq!(e[0].location, "query");
        assert!(Page::new(0, -1).is_err());
    }
}

/// How the reference words a rejected endpoint host.
#[derive(Clone, Copy, Debug)]
pub(crate) enum HostRule {
    /// NetBox endpoint create/update, and Proxmox endpoint update: the message ends
    /// with a hint about the plugin's SSRF settings.
    WithSettingsHint,
    /// Proxmox endpoint create: the bare reason.
    Bare,
}

/// The reference's endpoint host check (its SSRF guard with the request's own hosts
/// allowed): a host must be non-empty and not an unspecified address (`0.0.0.0`, `::`).
/// `label` is `"IP address"` or `"domain"`; fails with 400 and the reference's message.
pub(crate) fn endpoint_host(label: &str, host: &str, rule: HostRule) -> Result<(), StoreError> {
    let host = host.trim();
    let reason = if host.is_empty() {
        "Host cannot be empty".to_string()
    } else if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        format!("Host '{host}' is an unspecified IP address")
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid(match rule {
        HostRule::WithSettingsHint => {
            format!("Invalid {label}: {reason}. Adjust SSRF settings in ProxboxPluginSettings.")
        }
        HostRule::Bare => format!("Invalid {label}: {reason}"),
    }))
}
