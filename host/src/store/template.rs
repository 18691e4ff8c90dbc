//! `node_device_name_template` of a Proxmox endpoint: how its nodes' NetBox Device names
//! are built. Validated with the reference's rules and messages: Python `str.format`
//! syntax, placeholders `{node}` (required), `{cluster}`, `{cluster_slug}`, `{endpoint}`,
//! no format specs or conversions, and a DNS-safe result of at most 64 characters.

use crate::py_repr::py_repr;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 4] = ["node", "cluster", "cluster_slug", "endpoint"];

/// One parsed piece: literal text, then optionally a replacement field.
struct Piece {
    literal: String,
    field: Option<Field>,
}

struct Field {
    name: String,
    spec: String,
    conversion: Option<char>,
}

/// Python's `string.Formatter().parse`, with its error messages.
fn parse(template: &str) -> Result<Vec<Piece>, &'static str> {
    let c: Vec<char> = template.chars().collect();
    let n = c.len();
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < n {
        let mut literal = String::new();
        let mut field_follows = false;
        while i < n {
            let ch = c[i];
            if ch == '{' || ch == '}' {
                if i + 1 < n && c[i + 1] == ch {
                    literal.push(ch);
                    i += 2;
                    continue;
                }
                if ch == '}' {
                    return Err("Single '}' encountered in format string");
                }
                if i + 1 == n {
                    return Err("Single '{' encountered in format string");
                }
                i += 1;
                field_follows = true;
                break;
            }
            literal.push(ch);
            i += 1;
        }
        let field = if field_follows {
            Some(parse_field(&c, &mut i)?)
        } else {
            None
        };
        pieces.push(Piece { literal, field });
    }
    Ok(pieces)
}

fn parse_field(c: &[char], i: &mut usize) -> Result<Field, &'static str> {
    let n = c.len();
    let start = *i;
    let mut delimiter = None;
    while *i < n {
        let ch = c[*i];
        *i += 1;
        match ch {
            '{' => return Err("unexpected '{' in field name"),
            '[' => {
                while *i < n && c[*i] != ']' {
                    *i += 1;
                }
                if *i < n {
                    *i += 1;
                }
            }
            '}' | ':' | '!' => {
                delimiter = Some(ch);
                break;
            }
            _ => {}
        }
    }
    let Some(mut delimiter) = delimiter else {
        return Err("expected '}' before end of string");
    };
    let name: String = c[start..*i - 1].iter().collect();
    let mut conversion = None;
    if delimiter == '!' {
        let Some(&conv) = c.get(*i) else {
            return Err("end of string while looking for conversion specifier");
        };
        conversion = Some(conv);
        *i += 1;
        let Some(&next) = c.get(*i) else {
            return Err("unmatched '{' in format spec");
        };
        *i += 1;
        if next != ':' && next != '}' {
            return Err("expected ':' after conversion specifier");
        }
        delimiter = next;
    }
    let mut spec = String::new();
    if delimiter == ':' {
        let spec_start = *i;
        let mut depth = 1;
        loop {
            let Some(&ch) = c.get(*i) else {
                return Err("unmatched '{' in format spec");
            };
            *i += 1;
            if ch == '{' {
                depth += 1;
            } else if ch == '}' {
                depth -= 1;
                if depth == 0 {
                    spec = c[spec_start..*i - 1].iter().collect();
                    break;
                }
            }
        }
    }
    Ok(Field {
        name,
        spec,
        conversion,
    })
}

fn dns_safe(name: &str, allow_dots: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || (allow_dots && c == '.');
    let first = name.chars().next();
    let last = name.chars().last();
    matches!(first, Some(c) if c.is_ascii_alphanumeric())
        && matches!(last, Some(c) if c.is_ascii_alphanumeric())
        && name.chars().all(ok)
}

/// A rendered Device name: 1-64 DNS-safe characters, every label 1-63.
fn validate_rendered(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > 64 || !dns_safe(name, true) {
        return Err(
            "Rendered node device name must be 1-64 DNS-safe letters, digits, hyphens, or dots.",
        );
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63 || !dns_safe(label, false))
    {
        return Err("Rendered node device name contains an invalid DNS label.");
    }
    Ok(())
}

fn render(pieces: &[Piece], values: [&str; 4]) -> String {
    let mut out = String::new();
    for piece in pieces {
        out.push_str(&piece.literal);
        if let Some(field) = &piece.field
            && let Some(i) = PLACEHOLDERS.iter().position(|p| *p == field.name)
        {
            out.push_str(values[i]);
        }
    }
    out
}

/// Validate a non-blank template; returns it trimmed. Errors are the reference's
/// `ValueError` texts (pydantic reports them as `"Value error, <text>"`).
pub fn validate_template(template: &str) -> Result<String, String> {
    let value = template.trim();
    if value.is_empty() {
        return Err("Node device name template must not be blank.".into());
    }
    let pieces = parse(value).map_err(|e| format!("Invalid node device name template: {e}"))?;
    let mut has_node = false;
    for field in pieces.iter().filter_map(|p| p.field.as_ref()) {
        if !PLACEHOLDERS.contains(&field.name.as_str()) {
            return Err(format!(
                "Unknown node device name placeholder: {}.",
                py_repr(&field.name)
            ));
        }
        if !field.spec.is_empty() {
            return Err("Node device name placeholders do not support format specs.".into());
        }
        if field.conversion.is_some() {
            return Err("Node device name placeholders do not support conversions.".into());
        }
        has_node |= field.name == "node";
    }
    if !has_node {
        return Err("Node device name template must contain {node}.".into());
    }
    validate_rendered(&render(&pieces, ["node", "cluster", "cluster", "endpoint"]))?;
    Ok(value.to_string())
}

/// The reference's check of a (valid) template against the endpoint's own name: render
/// it for a sample node with `{endpoint}` = `endpoint_name`. Empty templates pass.
pub fn check_for_endpoint(template: &str, endpoint_name: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Ok(());
    }
    // An invalid template falls back to the default `{node}` in the reference.
    let Ok(resolved) = validate_template(template) else {
        return Ok(());
    };
    let pieces = parse(&resolved).map_err(str::to_string)?;
    let rendered = render(&pieces, ["node", "cluster", "cluster", endpoint_name]);
    validate_rendered(&rendered).map_err(|reason| {
        format!(
            "Node {} in cluster {} rendered an invalid NetBox Device name from template {} \
             (length {}): {reason}",
            py_repr("node"),
            py_repr("cluster"),
            py_repr(&resolved),
            rendered.chars().count()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_parse_errors() {
        let cases = [
            ("{node", "expected '}' before end of string"),
            ("node}", "Single '}' encountered in format string"),
            ("{", "Single '{' encountered in format string"),
            ("{node!}", "unmatched '{' in format spec"),
            ("{node!rx}", "expected ':' after conversion specifier"),
            ("{a{b}c}", "unexpected '{' in field name"),
            ("{node}}", "Single '}' encountered in format string"),
        ];
        for (template, message) in cases {
            assert_eq!(parse(template).err(), Some(message), "{template}");
        }
    }

    #[test]
    fn template_rules() {
        assert_eq!(
            validate_template(" {node}.{cluster_slug} ").unwrap(),
            "{node}.{cluster_slug}"
        );
        assert_eq!(
            validate_template("{host}").unwrap_err(),
            "Unknown node device name placeholder: 'host'."
        );
        assert_eq!(
            validate_template("{node:>5}").unwrap_err(),
            "Node device name placeholders do not support format specs."
        );
        assert_eq!(
            validate_template("{node!r}").unwrap_err(),
            "Node device name placeholders do not support conversions."
        );
        assert_eq!(
            validate_template("{cluster}").unwrap_err(),
            "Node device name template must contain {node}."
        );
        assert_eq!(
            validate_template("{node}_x").unwrap_err(),
            "Rendered node device name must be 1-64 DNS-safe letters, digits, hyphens, or dots."
        );
        assert_eq!(
            validate_template("{node}..x").unwrap_err(),
            "Rendered node device name contains an invalid DNS label."
        );
        assert_eq!(
            validate_template("{node").unwrap_err(),
            "Invalid node device name template: expected '}' before end of string"
        );
        assert_eq!(
            validate_template("   ").unwrap_err(),
            "Node device name template must not be blank."
        );
    }

    #[test]
    fn endpoint_name_check() {
        assert!(check_for_endpoint("{endpoint}-{node}", "pve1").is_ok());
        assert_eq!(
            check_for_endpoint("{endpoint}-{node}", "pve (nb:3)").unwrap_err(),
            "Node 'node' in cluster 'cluster' rendered an invalid NetBox Device name from \
             template '{endpoint}-{node}' (length 15): Rendered node device name must be \
             1-64 DNS-safe letters, digits, hyphens, or dots."
        );
        assert!(check_for_endpoint("", "pve (nb:3)").is_ok());
    }

    #[test]
    fn repr_like_python() {
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("x\ny\\é\u{1}"), "'x\\ny\\\\é\\x01'");
    }
}
