//! How values cross process boundaries: serde, encoded with postcard.
//!
//! Kept in one place so every crate encodes the same way and no postcard
//! type appears in a public signature.

use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

thread_local! {
    /// The message of the last custom serde error raised on this thread.
    /// postcard keeps only the fact of a custom error, not its text.
    static CUSTOM: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `message` as the reason of the custom serde error about to be
/// returned, so the caller's [`Error`] can carry it: a `Deserialize` or
/// `Serialize` impl of a handle writes `D::Error::custom(custom_error(m))`.
pub fn custom_error(message: String) -> String {
    CUSTOM.with(|c| *c.borrow_mut() = Some(message.clone()));
    message
}

fn reason(e: &postcard::Error) -> String {
    match e {
        postcard::Error::SerdeSerCustom | postcard::Error::SerdeDeCustom => CUSTOM
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| e.to_string()),
        _ => e.to_string(),
    }
}

/// Encodes `value` into bytes another process can decode with [`decode`].
///
/// # Errors
///
/// [`Error::Encode`] if the value's `Serialize` implementation fails.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::Encode(reason(&e)))
}

/// Encodes `value` after the bytes already in `out` (a header, say), so
/// that a message is built without copying its body again.
///
/// # Errors
///
/// [`Error::Encode`] if the value cannot be encoded.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>> {
    postcard::to_extend(value, out).map_err(|e| Error::Encode(reason(&e)))
}

/// Decodes a `T` from the front of `bytes`, returning it and the bytes
/// after it.
///
/// # Errors
///
/// [`Error::Decode`] if the front of the bytes is not an encoding of `T`.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8])> {
    postcard::take_from_bytes(bytes).map_err(|e| Error::Decode(reason(&e)))
}

/// Decodes bytes produced by [`encode`].
///
/// # Errors
///
/// [`Error::Decode`] if the bytes are not a valid encoding of `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Decode(reason(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear_errors() {
        let v = (1u8, "two".to_string(), vec![3.0f64]);
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u8, String, Vec<f64>)>(&bytes).unwrap(), v);
        assert!(matches!(decode::<String>(&[200]), Err(Error::Decode(_))));
    }
}
