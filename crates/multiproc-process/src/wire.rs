//! Length-prefixed messages with file descriptors over a Unix stream socket:
//! how a parent hands a launch to a spawned or fork-server child, and how it
//! talks to the fork server.
//!
//! A message is `[len: u32 LE][postcard bytes]`, with its descriptors
//! attached to the first byte (`SCM_RIGHTS`). A length above the reader's
//! limit is refused before anything is allocated.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::sys;

/// The bytes of `value` as one message: its length, then its encoding.
pub(crate) fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let body = crate::codec::encode(value)?;
    let len = u32::try_from(body.len())
        .map_err(|_| Error::Encode(format!("message of {} bytes is too large", body.len())))?;
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Sends `value` and `fds` as one message.
pub(crate) fn send<T: Serialize>(sock: BorrowedFd<'_>, value: &T, fds: &[OwnedFd]) -> Result<()> {
    let bytes = frame(value)?;
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    sys::send_with_fds(sock, &bytes, &borrowed)?;
    Ok(())
}

/// Receives one message of at most `max` bytes, blocking. `Ok(None)` if the
/// peer closed the socket before sending anything.
pub(crate) fn recv<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
    max: usize,
) -> Result<Option<(T, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = sys::recv_with_fds(sock, &mut header[got..], &mut fds)?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(Error::Decode(
                "connection closed inside a message header".into(),
            ));
        }
        got += n;
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(Error::Decode(format!(
            "message of {len} bytes exceeds the limit of {max}"
        )));
    }
    // A length from a peer that lies must not abort the process.
    let mut body = Vec::new();
    body.try_reserve_exact(len)
        .map_err(|_| Error::Decode(format!("cannot hold a message of {len} bytes")))?;
    body.resize(len, 0);
    let mut got = 0;
    while got < len {
        let n = sys::recv_with_fds(sock, &mut body[got..], &mut fds)?;
        if n == 0 {
            return Err(Error::Decode("connection closed inside a message".into()));
        }
        got += n;
    }
    Ok(Some((crate::codec::decode(&body)?, fds)))
}
