//! JSON text exactly as CPython's `json.dumps` writes it.
//!
//! The reference serialises every SSE payload with `json.dumps(payload)` (default arguments:
//! separators `", "` / `": "`, `ensure_ascii=True`), and Starlette's `WebSocket.send_json` uses
//! `json.dumps(data, separators=(",", ":"), ensure_ascii=False)`. Both styles are a
//! [`serde_json::ser::Formatter`] here, so any `Serialize` value can be written either way.
//!
//! One deliberate difference: non-finite floats are written as `null` (serde_json's serializer
//! never hands them to a formatter), where Python would write the non-JSON tokens `NaN`/`Infinity`.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// The two `json.dumps` argument sets the reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `json.dumps(x)`: `", "` / `": "` separators, non-ASCII escaped as `\uXXXX` (SSE `data:` lines).
    Dumps,
    /// `json.dumps(x, separators=(",", ":"), ensure_ascii=False)` (Starlette `send_json`).
    CompactUtf8,
}

/// A [`Formatter`] that writes Python `json.dumps` output in the given [`Style`].
#[derive(Debug, Clone, Copy)]
pub struct PythonFormatter {
    style: Style,
}

impl PythonFormatter {
    /// A formatter for `style`.
    pub fn new(style: Style) -> Self {
        PythonFormatter { style }
    }

    fn item_separator(&self) -> &'static [u8] {
        match self.style {
            Style::Dumps => b", ",
            Style::CompactUtf8 => b",",
        }
    }
}

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(self.item_separator())
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(self.item_separator())
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match self.style {
            Style::Dumps => w.write_all(b": "),
            Style::CompactUtf8 => w.write_all(b":"),
        }
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        w.write_all(float_repr(f64::from(value)).as_bytes())
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(float_repr(value).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json has already escaped `"`, `\` and U+0000..U+001F exactly as Python does
        // (short forms for \b \f \n \r \t, lowercase `\u00xx` otherwise). With `ensure_ascii`
        // Python also escapes everything outside printable ASCII, i.e. DEL and all non-ASCII.
        if self.style == Style::CompactUtf8 {
            return w.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\x7f' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` serialised like Python's `json.dumps` in `style`.
pub fn to_string<T: Serialize + ?Sized>(
    value: &T,
    style: Style,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    write(&mut out, value, style)?;
    // The formatter writes only ASCII or whole UTF-8 fragments of valid strings.
    Ok(String::from_utf8(out).expect("JSON output is UTF-8"))
}

/// Appends `value` serialised like Python's `json.dumps` in `style` to `out`.
pub fn write<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    style: Style,
) -> Result<(), serde_json::Error> {
    let mut ser = serde_json::Serializer::with_formatter(out, PythonFormatter::new(style));
    value.serialize(&mut ser)
}

/// `repr(x)` of a Python float (also what `json.dumps` writes): the shortest digits that
/// round-trip, positional notation for exponents in `-4 < decpt <= 16`, scientific otherwise
/// (`1e+16`, `1e-05`), and a trailing `.0` for integral values. Non-finite values give
/// `nan`/`inf`/`-inf` as `repr` does.
pub fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sign = if value.is_sign_negative() { "-" } else { "" };
    // `{:e}` gives the shortest round-trip digits as `d[.ddd]e<exp>`.
    let sci = format!("{:e}", value.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` output has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = digits.len() as i32;
    // Python's `decpt`: the value is 0.<digits> * 10^decpt.
    let decpt = exp + 1;
    if decpt <= -4 || decpt > 16 {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{frac}e{exp_sign}{:02}", exp.abs());
    }
    if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= ndigits {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - ndigits) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Python's `round(value, 3)` for a finite float: the double nearest to the exactly rounded
/// decimal (ties to even on the exact binary value, as CPython does).
pub fn round3(value: f64) -> f64 {
    if !value.is_finite() {
        return value;
    }
    // Rust's fixed-precision formatting is exact and rounds half to even, like CPython's dtoa.
    format!("{value:.3}").parse().unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (33.33333333333333, "33.33333333333333"),
            (0.30000000000000004, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (1e300, "1e+300"),
            (-1.25, "-1.25"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_repr(value), expected, "{value:?}");
        }
    }

    #[test]
    fn round3_matches_python() {
        for (value, expected) in [
            (0.0625, 0.062),
            (0.0005, 0.001),
            (1.0005, 1.0),
            (2.675, 2.675),
            (0.1235, 0.123),
            (12.3456, 12.346),
            (0.0015, 0.002),
            (1234.5675, 1234.568),
        ] {
            assert_eq!(round3(value), expected, "{value:?}");
        }
    }

    #[test]
    fn escapes_like_ensure_ascii() {
        let s = "a\"b\\c/\n\t\x01\x7f é 日 😀";
        assert_eq!(
            to_string(s, Style::Dumps).unwrap(),
            r#""a\"b\\c/\n\t\u0001\u007f \u00e9 \u65e5 \ud83d\ude00""#
        );
        assert_eq!(
            to_string(s, Style::CompactUtf8).unwrap(),
            "\"a\\\"b\\\\c/\\n\\t\\u0001\x7f é 日 😀\""
        );
    }
}
