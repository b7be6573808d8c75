//! Receiving from a connection in async code: the same steps as a
//! blocking receive, with the wait for the doorbell socket handed to the
//! process's reactor instead of `poll`.
//!
//! A future dropped while it waits has taken nothing: the message it
//! waited for stays in the ring for the next receive.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_process::handoff;
use multiproc_process::reactor::readable;
use multiproc_process::{Error, Result};
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

    async fn recv_frame_async(&self, out: &mut Vec<u8>) -> Result<Vec<std::os::fd::OwnedFd>> {
        let rx = self.rx()?;
        loop {
            let max = self.inner.max_message.load(Ordering::SeqCst);
            match rx.get_into(false, None, max, out) {
                Ok(nfds) => return self.claim_fds(usize::from(nfds)),
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
