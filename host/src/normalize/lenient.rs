//! Lenient readers for Proxmox JSON values.

use serde_json::Value;

/// A non-negative integer from a number or a numeric string (fractions truncated).
pub fn as_u64(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        }
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    }
}

/// A signed integer from a number or a numeric string.
pub fn as_i64(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// A boolean from `true`/`false`, `1`/`0`, `"1"`/`"0"`, `"yes"`/`"no"`, `"on"`/`"off"`.
/// An empty string is `false`, as Proxmox means it.
pub fn as_bool(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-empty string; numbers are rendered as text.
pub fn as_str(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_as_strings_and_numbers() {
        assert_eq!(as_u64(Some(&json!(2048))), Some(2048));
        assert_eq!(as_u64(Some(&json!("2048"))), Some(2048));
        assert_eq!(as_u64(Some(&json!(" 2048 "))), Some(2048));
        assert_eq!(as_u64(Some(&json!(1.9))), Some(1));
        assert_eq!(as_u64(Some(&json!("x"))), None);
        assert_eq!(as_u64(Some(&json!(-1))), None);
        assert_eq!(as_u64(None), None);
    }

    #[test]
    fn proxmox_booleans() {
        assert_eq!(as_bool(Some(&json!(1))), Some(true));
        assert_eq!(as_bool(Some(&json!("0"))), Some(false));
        assert_eq!(as_bool(Some(&json!(""))), Some(false));
        assert_eq!(as_bool(Some(&json!(true))), Some(true));
        assert_eq!(as_bool(Some(&json!("maybe"))), None);
    }
}
