//! Handing file descriptors to another process along with a value.
//!
//! A handle type (a shared-memory segment, a lock, one end of a pipe) holds
//! file descriptors that must be valid in the process that decodes it. While
//! a value is encoded with [`encode_with_fds`], each descriptor a handle
//! serializes is duplicated into a side table and only its index is written
//! into the bytes; [`decode_with_fds`] is given the descriptors as they
//! arrived in the other process (inherited at fork, or received with
//! `SCM_RIGHTS`) and maps each index back.
//!
//! A handle does this by holding a [`HandoffFd`], or by using the
//! [`fd`] module with `#[serde(with = "...")]` on an `OwnedFd` field. Encoded
//! any other way (into JSON, say), such a value is an encoding error rather
//! than a number that means nothing elsewhere.
//!
//! Python: `multiprocessing.reduction.DupFd`, and the fd passing of
//! `send_handle`/`recv_handle`.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::sys;

/// The most descriptors one value may carry (the kernel's limit for one
/// `SCM_RIGHTS` message).
pub const MAX_FDS: usize = 253;

thread_local! {
    /// Descriptors recorded by the encoding under way on this thread.
    static ENCODING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors available to the decoding under way on this thread.
    static DECODING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Encodes `value`, collecting the descriptors its handles hold. The
/// descriptors are duplicates (close-on-exec), owned by the caller, in the
/// order their indexes were written.
///
/// # Errors
///
/// [`Error::Encode`] if the value cannot be encoded or carries more than
/// [`MAX_FDS`] descriptors.
pub fn encode_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    collect_fds(|| crate::codec::encode(value))
}

/// Runs `encode` (an encoding of a value in any serde format: postcard,
/// [`codec::bulk`](crate::codec::bulk)), collecting the descriptors the
/// value's handles hold, as [`encode_with_fds`] does for postcard.
///
/// # Errors
///
/// `encode`'s error, or [`Error::Encode`] if the value carries more than
/// [`MAX_FDS`] descriptors.
pub fn collect_fds<T>(encode: impl FnOnce() -> Result<T>) -> Result<(T, Vec<OwnedFd>)> {
    let outer = ENCODING.with(|e| e.borrow_mut().replace(Vec::new()));
    let encoded = encode();
    let fds = ENCODING.with(|e| std::mem::replace(&mut *e.borrow_mut(), outer));
    let fds = fds.unwrap_or_default();
    let encoded = encoded?;
    if fds.len() > MAX_FDS {
        return Err(Error::Encode(format!(
            "a value may carry at most {MAX_FDS} file descriptors, this one has {}",
            fds.len()
        )));
    }
    Ok((encoded, fds))
}

/// Runs `decode` (a decoding in any serde format) with `fds`, the
/// descriptors that arrived with the bytes, as the ones the value's handles
/// claim, as [`decode_with_fds`] does for postcard. Those not claimed are
/// closed.
///
/// # Errors
///
/// `decode`'s error.
pub fn provide_fds<T>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    let table = fds.into_iter().map(Some).collect();
    let outer = DECODING.with(|d| d.borrow_mut().replace(table));
    let value = decode();
    DECODING.with(|d| *d.borrow_mut() = outer);
    value
}

/// Decodes bytes produced by [`encode_with_fds`] in another process, with
/// the descriptors that arrived with them. Descriptors the value does not
/// claim are closed.
///
/// # Errors
///
/// [`Error::Decode`] if the bytes are not a valid encoding, or name a
/// descriptor that did not arrive.
pub fn decode_with_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    provide_fds(fds, || crate::codec::decode(bytes))
}

fn record(fd: BorrowedFd<'_>) -> std::result::Result<u32, String> {
    ENCODING.with(|e| match e.borrow_mut().as_mut() {
        Some(list) => {
            let dup = sys::dup_cloexec(fd).map_err(|e| format!("cannot duplicate fd: {e}"))?;
            list.push(dup);
            u32::try_from(list.len() - 1).map_err(|_| "too many file descriptors".to_owned())
        }
        None => Err(
            "a file descriptor can only be encoded for another process by \
                     multiproc (handoff::encode_with_fds)"
                .to_owned(),
        ),
    })
}

fn claim(index: u32) -> std::result::Result<OwnedFd, String> {
    DECODING.with(|d| match d.borrow_mut().as_mut() {
        Some(table) => table
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("file descriptor #{index} did not arrive or was claimed twice")),
        None => Err("a file descriptor can only be decoded by multiproc \
                     (handoff::decode_with_fds)"
            .to_owned()),
    })
}

/// Serde functions for an `OwnedFd` field of a handle, for
/// `#[serde(with = "multiproc::handoff::fd")]`.
pub mod fd {
    use super::*;

    /// Records the descriptor in the encoding under way and writes its index.
    ///
    /// # Errors
    ///
    /// Outside [`encode_with_fds`], or if the
    /// descriptor cannot be duplicated.
    pub fn serialize<S: Serializer>(fd: &impl AsFd, s: S) -> std::result::Result<S::Ok, S::Error> {
        let index =
            record(fd.as_fd()).map_err(|m| S::Error::custom(crate::codec::custom_error(m)))?;
        index.serialize(s)
    }

    /// Reads an index and claims the descriptor that arrived for it.
    ///
    /// # Errors
    ///
    /// Outside [`decode_with_fds`], or if the
    /// descriptor did not arrive.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<OwnedFd, D::Error> {
        let index = u32::deserialize(d)?;
        claim(index).map_err(|m| D::Error::custom(crate::codec::custom_error(m)))
    }
}

/// An owned file descriptor that stays valid when passed to another process
/// as an argument, a pool task, or a message.
///
/// Python: `multiprocessing.reduction.DupFd`.
///
/// # Examples
///
/// ```
/// use multiproc as mp;
/// use std::io::{Read, Write};
/// use std::os::fd::OwnedFd;
///
/// fn write_hello(out: mp::handoff::HandoffFd) -> bool {
///     let mut f = std::fs::File::from(OwnedFd::from(out));
///     f.write_all(b"hello from the child").is_ok()
/// }
///
/// # fn main() -> mp::Result<()> {
/// let (mut reader, writer) = std::io::pipe()?;
/// let mut p = mp::Process::new(write_hello, (mp::handoff::HandoffFd::from(OwnedFd::from(writer)),));
/// p.start()?;
/// p.join()?;
/// assert!(p.take_result()?);
/// // Our copy of the write end went with the arguments at `start`.
/// let mut text = String::new();
/// reader.read_to_string(&mut text)?;
/// assert_eq!(text, "hello from the child");
/// # Ok(())
/// # }
/// ```
pub struct HandoffFd(OwnedFd);

impl HandoffFd {
    /// The descriptor.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for HandoffFd {
    fn from(fd: OwnedFd) -> HandoffFd {
        HandoffFd(fd)
    }
}

impl From<HandoffFd> for OwnedFd {
    fn from(fd: HandoffFd) -> OwnedFd {
        fd.0
    }
}

impl AsFd for HandoffFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for HandoffFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl fmt::Debug for HandoffFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandoffFd")
            .field(&self.0.as_raw_fd())
            .finish()
    }
}

impl Serialize for HandoffFd {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        fd::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for HandoffFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<HandoffFd, D::Error> {
        fd::deserialize(d).map(HandoffFd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_travel_beside_the_bytes() {
        let (r, w) = sys::pipe().unwrap();
        let value = (7u8, HandoffFd::from(w), "x".to_string(), HandoffFd::from(r));
        let (bytes, fds) = encode_with_fds(&value).unwrap();
        assert_eq!(fds.len(), 2);
        let back: (u8, HandoffFd, String, HandoffFd) = decode_with_fds(&bytes, fds).unwrap();
        assert_eq!((back.0, back.2.as_str()), (7, "x"));
        sys::write_all(back.1.as_fd(), b"ok").unwrap();
        let mut buf = Vec::new();
        sys::set_nonblocking(back.3.as_fd()).unwrap();
        sys::read_nonblocking(back.3.as_fd(), &mut buf).unwrap();
        assert_eq!(buf, b"ok");
    }

    #[test]
    fn outside_a_handoff_a_descriptor_is_an_error() {
        let (r, _w) = sys::pipe().unwrap();
        let err = crate::codec::encode(&HandoffFd::from(r)).unwrap_err();
        assert!(
            err.to_string()
                .contains("can only be encoded for another process"),
            "{err}"
        );
        let (bytes, fds) = encode_with_fds(&0u32).unwrap();
        assert!(fds.is_empty());
        // Index 0 names a descriptor that did not arrive.
        let err = decode_with_fds::<HandoffFd>(&bytes, Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
        assert!(err.to_string().contains("#0 did not arrive"), "{err}");
    }
}
