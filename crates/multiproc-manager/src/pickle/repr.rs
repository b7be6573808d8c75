//! Python's `repr` of a decoded value, for the message of an exception.

use super::*;

/// Writes `value` as Python's `repr` shows it (sets in serde-pickle's order).
pub(super) fn repr(value: &Value, out: &mut String) {
    let seq = |out: &mut String, items: &mut dyn Iterator<Item = Value>, open, close| {
        out.push_str(open);
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            repr(&item, out);
        }
        out.push_str(close);
    };
    let hashed = |set: &std::collections::BTreeSet<HashableValue>| {
        set.iter()
            .cloned()
            .map(HashableValue::into_value)
            .collect::<Vec<_>>()
    };
    match value {
        Value::None => out.push_str("None"),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F64(f) => float_repr(*f, out),
        Value::String(s) => str_repr(s, out),
        Value::Bytes(b) => bytes_repr(b, out),
        Value::List(items) => seq(out, &mut items.iter().cloned(), "[", "]"),
        Value::Tuple(items) if items.len() == 1 => {
            out.push('(');
            repr(&items[0], out);
            out.push_str(",)");
        }
        Value::Tuple(items) => seq(out, &mut items.iter().cloned(), "(", ")"),
        Value::Set(set) if set.is_empty() => out.push_str("set()"),
        Value::Set(set) => seq(out, &mut hashed(set).into_iter(), "{", "}"),
        Value::FrozenSet(set) if set.is_empty() => out.push_str("frozenset()"),
        Value::FrozenSet(set) => seq(out, &mut hashed(set).into_iter(), "frozenset({", "})"),
        Value::Dict(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(&k.clone().into_value(), out);
                out.push_str(": ");
                repr(v, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr` of a float: the shortest round-trip digits, with an
/// exponent below 1e-4 and from 1e16, written `1e+16`.
fn float_repr(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        let s = format!("{f:?}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
                let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
            }
            None => out.push_str(&s),
        }
    }
}

/// Python's `repr` of a str: single quotes unless it holds one and no
/// double quote; control characters escaped.
fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = match u32::from(c) {
                    n @ 0..=0xff => write!(out, "\\x{n:02x}"),
                    n => write!(out, "\\u{n:04x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr` of bytes.
fn bytes_repr(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(char::from(quote));
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(char::from(c));
            }
            0x20..=0x7e => out.push(char::from(c)),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(char::from(quote));
}
