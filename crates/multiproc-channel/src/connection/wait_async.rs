//! Receiving from and sending to a connection in async code: the same
//! steps as the blocking calls, with the wait for the socket handed to the
//! process's reactor instead of `poll`.
//!
//! A receive's future dropped while it waits has taken nothing: the
//! message it waited for stays in the ring for the next receive. A send's
//! future dropped while it waits for room has sent nothing.
//!
//! A sender waits for room on its own end of the socket: it counts itself
//! in the ring's `room_waiters`, and a reader that takes a message while
//! the count is not zero sends a doorbell byte, which arrives there.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_process::bell::{ASYNC_SLICE, next_slice};
use multiproc_process::handoff;
use multiproc_process::reactor::readable;
use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Connection, SLICE};
use crate::ring::{GetFail, Ring};

/// How long an async receive waits while another reader of the same end
/// takes a message, before it looks again.
const BUSY: Duration = Duration::from_millis(1);

/// Clears a ring's doorbell when the wait that set it ends, however it
/// ends (a dropped future too).
struct Armed<'a>(&'a Ring);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.doorbell().store(0, Ordering::SeqCst);
    }
}

impl Connection {
    /// Receives a value without blocking a thread: under any async runtime
    /// (tokio, smol, ...), woken through the process's reactor. Dropping
    /// the future stops waiting and loses nothing: an unreceived message
    /// stays for the next receive. Python (asyncio):
    /// `await loop.run_in_executor(None, conn.recv)`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub async fn recv_async<T: DeserializeOwned>(&self) -> Result<T> {
        let mut bytes = Vec::new();
        let fds = self.recv_frame_async(&mut bytes).await?;
        handoff::decode_with_fds(&bytes, fds)
    }

    /// As [`recv_async`](Connection::recv_async), one message as bytes.
    /// Python (asyncio): `await loop.run_in_executor(None, conn.recv_bytes)`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        // Descriptors sent with a message read as bytes are closed here.
        self.recv_frame_async(&mut bytes).await?;
        Ok(bytes)
    }

    /// Sends a value without blocking a thread: when the other end's ring
    /// is full, the future waits for its reader to take a message. Dropping
    /// it while it waits sends nothing. Python (asyncio):
    /// `await loop.run_in_executor(None, conn.send, obj)`.
    ///
    /// A message larger than the ring (4 MiB for `Pipe::new`) is the
    /// exception: once its first chunk is in, the rest is sent as
    /// [`send`](Connection::send) sends it, blocking the thread until the
    /// reader has taken all but the last chunk.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub async fn send_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let tx = self.tx()?;
        let (bytes, fds) = handoff::encode_with_fds(value)?;
        self.send_frame_async(tx, &bytes, &fds).await
    }

    /// As [`send_async`](Connection::send_async), bytes as one message.
    /// Python (asyncio): `await loop.run_in_executor(None, conn.send_bytes, buf)`.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    pub async fn send_bytes_async(&self, bytes: &[u8]) -> Result<()> {
        let tx = self.tx()?;
        self.send_frame_async(tx, bytes, &[]).await
    }

    async fn send_frame_async(&self, tx: &Ring, bytes: &[u8], fds: &[OwnedFd]) -> Result<()> {
        if self.send_frame(tx, bytes, fds, false)? {
            return Ok(());
        }
        let _wanted = tx.want_room();
        let mut slice = ASYNC_SLICE;
        loop {
            // Stale doorbells (and the end of the other side) first; one
            // rung after this stays in the socket for the wait below.
            self.drain_socket();
            if self.send_frame(tx, bytes, fds, false)? {
                return Ok(());
            }
            let sock = self.sock()?;
            // Sliced: a receive of this end in this process may read the
            // doorbell meant for us.
            readable(sock.as_fd(), Some(slice)).await;
            slice = next_slice(slice);
        }
    }

    async fn recv_frame_async(&self, out: &mut Vec<u8>) -> Result<Vec<OwnedFd>> {
        let rx = self.rx()?;
        loop {
            let max = self.inner.max_message.load(Ordering::SeqCst);
            match rx.get_into(false, None, max, out) {
                Ok(nfds) => {
                    self.room_freed(rx);
                    return self.claim_fds(usize::from(nfds));
                }
                Err(GetFail::Empty) => self.readable_async(rx).await?,
                Err(GetFail::Busy) => {
                    // Another reader of this end is taking a message.
                    let sock = self.sock()?;
                    readable(sock.as_fd(), Some(BUSY)).await;
                }
                Err(fail @ (GetFail::TooLarge(_) | GetFail::Corrupt(_))) => {
                    return Err(self.broken(fail, max));
                }
            }
        }
    }

    /// Waits until a message is there; `Closed` when nothing is there and
    /// the other end is gone. As `wait_readable`, without a deadline.
    async fn readable_async(&self, rx: &Ring) -> Result<()> {
        // As the blocking wait: a short adaptive spin first, a few
        // microseconds of the executor's thread against two thread hops.
        if self.inner.spin.spin(|| rx.has_data()) {
            return Ok(());
        }
        loop {
            rx.doorbell().store(1, Ordering::SeqCst);
            let armed = Armed(rx);
            // Stale doorbells first, then the check (see `wait_readable`).
            self.drain_socket();
            if rx.has_data() {
                return Ok(());
            }
            if self.inner.hung_up.load(Ordering::SeqCst) {
                return if rx.has_data() {
                    Ok(())
                } else {
                    Err(Error::Closed)
                };
            }
            let sock = self.sock()?;
            // Sliced, as the blocking wait: another reader of this process
            // may have drained the doorbell meant for us.
            readable(sock.as_fd(), Some(SLICE)).await;
            drop(armed);
            if rx.has_data() {
                return Ok(());
            }
        }
    }
}
