//! How values cross process boundaries: serde, encoded with postcard.
//!
//! Kept in one place so every crate encodes the same way and no postcard
//! type appears in a public signature. [`bulk`] is a second encoding, of
//! fixed width, for large payloads of numbers.

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
    postcard::to_allocvec(value).map_err(|e| Error::Encode(encode_reason(&e, value)))
}

/// Why `value` did not encode. postcard keeps nothing of a `Serialize`
/// impl's own message (`S::Error::custom("...")`); bincode does, so the
/// value is measured by bincode once more to learn it.
fn encode_reason<T: Serialize + ?Sized>(e: &postcard::Error, value: &T) -> String {
    let reason = reason(e);
    if !matches!(e, postcard::Error::SerdeSerCustom) || reason != e.to_string() {
        return reason;
    }
    match bincode::serialized_size(value).map_err(|e| *e) {
        Err(bincode::ErrorKind::Custom(message)) => message,
        _ => reason,
    }
}

/// Encodes `value` after the bytes already in `out` (a header, say), so
/// that a message is built without copying its body again.
///
/// # Errors
///
/// [`Error::Encode`] if the value cannot be encoded.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Result<Vec<u8>> {
    postcard::to_extend(value, out).map_err(|e| Error::Encode(encode_reason(&e, value)))
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

/// A fixed-width encoding (bincode's), for the large payloads of a pool's
/// tasks: a `u64` is 8 bytes, so encoding and decoding a `Vec` of numbers
/// runs at memory speed, where postcard's variable-width integers cost
/// several nanoseconds each. Small messages use [`encode`].
pub mod bulk {
    use bincode::Options;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::error::{Error, Result};

    fn options() -> impl Options + Copy {
        bincode::DefaultOptions::new().with_fixint_encoding()
    }

    /// Encodes `value` after the bytes already in `out` (a header, say).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the value's `Serialize` implementation fails.
    pub fn encode_into<T: Serialize + ?Sized>(value: &T, mut out: Vec<u8>) -> Result<Vec<u8>> {
        let options = options();
        // Sized first: one allocation, and no copy as the buffer grows.
        let size = options
            .serialized_size(value)
            .map_err(|e| Error::Encode(e.to_string()))?;
        out.reserve(usize::try_from(size).unwrap_or(0));
        options
            .serialize_into(&mut out, value)
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// As [`encode_into`].
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        encode_into(value, Vec::new())
    }

    /// Decodes bytes produced by [`encode`]; trailing bytes are an error.
    /// A length that the bytes cannot hold is an error, not an allocation.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the bytes are not a valid encoding of `T`.
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        options()
            .deserialize(bytes)
            .map_err(|e| Error::Decode(e.to_string()))
    }
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

    #[test]
    fn bulk_round_trip_and_clear_errors() {
        let v: Vec<(u64, String, Option<f64>)> = (0..1000)
            .map(|i| (i * i, format!("n{i}"), Some(0.5)))
            .collect();
        let bytes = bulk::encode_into(&v, vec![7]).unwrap();
        assert_eq!(bytes[0], 7);
        assert_eq!(
            bulk::decode::<Vec<(u64, String, Option<f64>)>>(&bytes[1..]).unwrap(),
            v
        );
        // Fixed width: eight bytes of length, eight per number.
        assert_eq!(bulk::encode(&vec![1u64, 2]).unwrap().len(), 24);
        // A length far beyond the bytes, a cut message, trailing bytes.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            bulk::decode::<Vec<u64>>(&huge),
            Err(Error::Decode(_))
        ));
        let whole = bulk::encode(&vec![1u64, 2]).unwrap();
        assert!(matches!(
            bulk::decode::<Vec<u64>>(&whole[..20]),
            Err(Error::Decode(_))
        ));
        let mut longer = whole.clone();
        longer.push(0);
        assert!(matches!(
            bulk::decode::<Vec<u64>>(&longer),
            Err(Error::Decode(_))
        ));
    }
}
