//! Pickles, for talking to CPython peers: a Python client of our manager,
//! or a Python manager we are a client of.
//!
//! [`dumps`] writes pickle protocol 3 (every CPython 3 reads it) through
//! serde-pickle. [`loads`] reads protocols 0 to 5: a small walker over the
//! opcodes first checks that the pickle holds plain data, or is one
//! exception instance (which becomes [`Error::Python`]), then serde-pickle
//! decodes the value. Nothing is ever imported or called: a class named in
//! a pickle is only a name to us. [`dumps_exception`] writes the exception
//! instances a Python client expects (`queue.Empty`, `KeyError`, ...).
//!
//! What a Rust value becomes in Python (checked against CPython 3.11):
//!
//! | Rust | Python |
//! |---|---|
//! | `()`, `None`, a unit struct | `None` |
//! | `bool` | `bool` |
//! | `i8` to `i64`, `u8` to `u64` | `int` (`u64::MAX` too) |
//! | `i128`, `u128` | refused, both ways (even `5u128`) |
//! | `f32`, `f64` | `float` |
//! | `char`, `&str`, `String` | `str` |
//! | `serde_bytes::ByteBuf`, `&serde_bytes::Bytes` | `bytes` |
//! | `Vec<u8>`, `[u8; N]` | `list` of `int` (not `bytes`) |
//! | `Vec<T>`, slices, `HashSet`, `BTreeSet` | `list` (serde has no set) |
//! | tuples, tuple structs | `tuple` |
//! | `HashMap`, `BTreeMap` | `dict` |
//! | a struct | `dict` of its fields by name |
//! | a unit enum variant | `str`, the variant's name |
//! | `E::V(x)`, `E::V { .. }` | `{'V': x}`, `{'V': {..}}` |
//!
//! A Python `set` cannot be written (serde has no set type). A map keyed by
//! `Vec`s is written with `list` keys, which Python refuses to load; key it
//! by tuples instead.
//!
//! Reading, a Python `set` or `frozenset` fills any Rust sequence (`Vec`,
//! `HashSet`, ...), `bytes` and `bytearray` fill a `ByteBuf` (not a
//! `Vec<u8>`), `tuple` and `list` a `Vec` or a tuple, `dict` a map or a
//! struct. A Python `int` outside `i64` is refused as [`Error::Decode`],
//! whatever the Rust type (`u64` too, so `u64::MAX` does not come back):
//! serde-pickle carries integers through serde as `i64` only.
//!
//! An exception instance at the top of a pickle becomes [`Error::Python`];
//! a class counts as an exception by its name (we never import it): one
//! ending in `Error`, `Exception`, `Warning` or `Exit`, the other builtin
//! exceptions, and `queue.Empty` and `queue.Full`. An instance of any other
//! class, or an exception inside other data (a manager's `('#ERROR', exc)`
//! reply), is [`Error::Decode`] naming the class. So is a pickle that
//! expands far beyond its own size (a shared object fetched from the memo
//! many times: serde-pickle copies each), nests deeper than [`MAX_DEPTH`],
//! has bytes after its `STOP`, or uses out-of-band buffers, persistent ids
//! or the extension registry.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::{DeOptions, HashableValue, SerOptions, Value};

use crate::{Error, Result};

mod repr;
#[cfg(test)]
mod tests;
mod walk;

use repr::repr;
pub(crate) use walk::MAX_DEPTH;
use walk::{Kind, Walker, op};

/// Encodes `value` as a protocol 3 pickle.
///
/// # Errors
///
/// [`Error::Encode`] if serde-pickle cannot write the value (an `i128` or
/// a `u128`).
pub(crate) fn dumps<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_pickle::to_vec(&value, SerOptions::new()).map_err(|e| Error::Encode(e.to_string()))
}

/// The canonical pickle of a value, as a manager that serves Python
/// programs stores it: the same bytes for equal values, whoever sent them
/// (a Rust value, or a Python pickle read by [`loads`] as a [`Value`]), so
/// that a dict's keys and a list's searches compare bytes.
///
/// # Errors
///
/// [`Error::Encode`] if serde-pickle cannot write the value.
pub(crate) fn canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let value = serde_pickle::to_value(&value).map_err(|e| Error::Encode(e.to_string()))?;
    canonical_of(&value)
}

/// [`canonical`] of a pickle's value.
///
/// # Errors
///
/// As [`canonical`].
pub(crate) fn canonical_of(value: &Value) -> Result<Vec<u8>> {
    serde_pickle::value_to_vec(value, SerOptions::new()).map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes a pickle of protocol 0 to 5 into a `T`.
///
/// # Errors
///
/// [`Error::Python`] if the pickle is an exception instance;
/// [`Error::Decode`] if it is malformed or truncated, holds an object of
/// another class (`datetime.datetime`, a user class), or is not a `T`.
pub(crate) fn loads<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let walked = Walker::new(bytes).walk()?;
    let patched = walked.patched(bytes);
    let plain = patched.as_deref().unwrap_or(bytes);
    match walked.top.kind {
        Kind::Instance(class) if is_exception(&class.module(bytes), class.name(bytes)) => {
            Err(exception(plain, class.full_name(bytes)))
        }
        Kind::Global(class) | Kind::Instance(class) | Kind::Token(class) => {
            Err(not_plain(&class.full_name(bytes)))
        }
        Kind::Data | Kind::EmptyTuple | Kind::Str(_) => {
            serde_pickle::from_slice(plain, DeOptions::new())
                .map_err(|e| Error::Decode(format!("pickle: {e}")))
        }
    }
}

/// Decodes a CPython manager's reply, `(kind, value)`: the kind
/// (`#RETURN`, `#ERROR`, ...) and the value, where an `#ERROR`'s exception
/// instance is already [`Error::Python`] (in `Err`).
///
/// # Errors
///
/// [`Error::Decode`] if the pickle is not such a pair of plain data.
pub(crate) fn loads_reply(bytes: &[u8]) -> Result<(String, std::result::Result<Value, Error>)> {
    let walked = Walker::new(bytes).allowing_an_exception().walk()?;
    let patched = walked.patched(bytes);
    let plain = patched.as_deref().unwrap_or(bytes);
    let value = serde_pickle::value_from_slice(plain, DeOptions::new())
        .map_err(|e| decode(format!("pickle: {e}")))?;
    let Value::Tuple(mut pair) = value else {
        return Err(decode("a manager's reply is not a pair"));
    };
    let (Some(value), Some(Value::String(kind)), None) = (pair.pop(), pair.pop(), pair.pop())
    else {
        return Err(decode("a manager's reply is not a (kind, value) pair"));
    };
    if walked.tokens && kind != "#PROXY" {
        return Err(not_plain("multiprocessing.managers.Token"));
    }
    match walked.nested {
        Some(class) if kind == "#ERROR" => {
            let e = exception_of(value, class.full_name(bytes));
            Ok((kind, Err(e)))
        }
        Some(class) => Err(not_plain(&class.full_name(bytes))),
        None => Ok((kind, Ok(value))),
    }
}

/// Decodes a pickle of plain data into serde-pickle's [`Value`], which
/// keeps Python's tuples apart from its lists (serde's data model does
/// not): what a manager serving Python programs reads.
///
/// # Errors
///
/// As [`loads`]; an exception instance is [`Error::Decode`] here.
pub(crate) fn loads_value(bytes: &[u8]) -> Result<Value> {
    let walked = Walker::new(bytes).walk()?;
    if let Kind::Global(class) | Kind::Instance(class) | Kind::Token(class) = walked.top.kind {
        return Err(not_plain(&class.full_name(bytes)));
    }
    let patched = walked.patched(bytes);
    let plain = patched.as_deref().unwrap_or(bytes);
    serde_pickle::value_from_slice(plain, DeOptions::new())
        .map_err(|e| decode(format!("pickle: {e}")))
}

/// Writes the pickle (protocol 3) of an instance of the exception class
/// `class`, given as `module.Name` (`_queue.Empty`, `builtins.KeyError`),
/// made with `args`: what `pickle.dumps(KeyError('k'))` gives, which a
/// Python peer unpickles into the exception. A class without a dot is
/// taken from `builtins`; it must not contain a newline.
pub(crate) fn dumps_exception(class: &str, args: &[&str]) -> Vec<u8> {
    debug_assert!(
        !class.contains('\n'),
        "class name {class:?} holds a newline"
    );
    let (module, name) = class.rsplit_once('.').unwrap_or(("builtins", class));
    let mut out = Vec::with_capacity(32 + module.len() + name.len());
    out.extend_from_slice(&[op::PROTO, 3, op::GLOBAL]);
    for part in [module, name] {
        out.extend_from_slice(part.as_bytes());
        out.push(b'\n');
    }
    if args.len() > 3 {
        out.push(op::MARK);
    }
    for arg in args {
        match u32::try_from(arg.len()) {
            Ok(len) => {
                out.push(op::BINUNICODE);
                out.extend_from_slice(&len.to_le_bytes());
            }
            // Beyond 4 GiB: protocol 4's opcode, which CPython reads in any pickle.
            Err(_) => {
                out.push(op::BINUNICODE8);
                out.extend_from_slice(&(arg.len() as u64).to_le_bytes());
            }
        }
        out.extend_from_slice(arg.as_bytes());
    }
    out.push(match args.len() {
        0 => op::EMPTY_TUPLE,
        1 => op::TUPLE1,
        2 => op::TUPLE2,
        3 => op::TUPLE3,
        _ => op::TUPLE,
    });
    out.extend_from_slice(&[op::REDUCE, op::STOP]);
    out
}

/// A manager's `('#ERROR', exc)` reply, `exc` as [`dumps_exception`]
/// writes it: what CPython's server sends when a method raised.
pub(crate) fn error_reply(class: &str, args: &[&str]) -> Vec<u8> {
    let exc = dumps_exception(class, args);
    // Its body, without the protocol mark and the STOP.
    let body = exc.get(2..exc.len() - 1).unwrap_or_default();
    let kind = b"#ERROR";
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(&[op::PROTO, 3, op::BINUNICODE]);
    out.extend_from_slice(&(kind.len() as u32).to_le_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out.extend_from_slice(&[op::TUPLE2, op::STOP]);
    out
}

/// Python's `repr` of a plain value, as an exception's text shows it.
pub(crate) fn repr_of(value: &Value, out: &mut String) {
    repr(value, out);
}

fn decode(message: impl Into<String>) -> Error {
    Error::Decode(message.into())
}

fn not_plain(class: &str) -> Error {
    decode(format!("a pickle of class {class} is not plain data"))
}

fn too_deep() -> Error {
    decode(format!("pickle nests deeper than {MAX_DEPTH}"))
}

/// Whether a class is taken for an exception, by its name (we never import
/// it): the builtins that do not end in `Error`, `Exception`, `Warning` or
/// `Exit`, any class that does, and `queue`'s `Empty` and `Full`.
fn is_exception(module: &str, name: &str) -> bool {
    ["Error", "Exception", "Warning", "Exit"]
        .iter()
        .any(|end| name.ends_with(end))
        || matches!(
            (module, name),
            (
                "builtins",
                "KeyboardInterrupt"
                    | "StopIteration"
                    | "StopAsyncIteration"
                    | "ExceptionGroup"
                    | "BaseExceptionGroup"
            ) | ("queue" | "_queue", "Empty")
                | ("queue", "Full")
                | (
                    "multiprocessing" | "multiprocessing.context",
                    "BufferTooShort"
                )
        )
}

/// The [`Error::Python`] for the (patched) pickle of an exception of
/// `class`, which serde-pickle reads as `(None, args)`.
fn exception(patched: &[u8], class: String) -> Error {
    match serde_pickle::value_from_slice(patched, DeOptions::new()) {
        Ok(value) => exception_of(value, class),
        Err(e) => decode(format!("pickle of {class}: {e}")),
    }
}

/// The [`Error::Python`] for an exception of `class` as serde-pickle read
/// it (patched): `(None, args)`.
fn exception_of(value: Value, class: String) -> Error {
    let args = match value {
        Value::Tuple(mut pair) if pair.len() == 2 => match pair.pop() {
            Some(Value::Tuple(args)) => args,
            _ => return decode(format!("a pickle of {class} without an argument tuple")),
        },
        _ => return decode(format!("a pickle of {class} of an unexpected shape")),
    };
    let mut message = String::new();
    match &args[..] {
        [] => {}
        [Value::String(s)] if class != "builtins.KeyError" => message.push_str(s),
        [one] => repr(one, &mut message),
        _ => repr(&Value::Tuple(args.clone()), &mut message),
    }
    Error::Python { class, message }
}
