//! One connection between a manager's client and its server: a
//! shared-memory `Pipe` end for a process of the program, or an
//! authenticated socket for another program. Both sides use it.

use std::time::Duration;

use multiproc_channel::Connection;
use multiproc_process::Result;

use crate::socket::SocketConnection;

pub(crate) enum Chan {
    Local(Connection),
    Remote(SocketConnection),
}

impl Chan {
    pub(crate) fn send(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Chan::Local(c) => c.send_bytes(bytes),
            Chan::Remote(c) => c.send_bytes(bytes),
        }
    }

    pub(crate) fn recv(&self) -> Result<Vec<u8>> {
        match self {
            Chan::Local(c) => c.recv_bytes(),
            Chan::Remote(c) => c.recv_bytes(),
        }
    }

    /// Receives a message, waiting at most `timeout` for it to start (the
    /// local pipe's server is known gone when its end closes, so it waits
    /// as long as it takes).
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        match self {
            Chan::Local(c) => c.recv_bytes(),
            Chan::Remote(c) => c.recv_bytes_timeout(timeout),
        }
    }

    /// As [`send`](Chan::send), waiting for room in a local pipe without
    /// a thread (a socket's send goes at once, or within its send timeout).
    pub(crate) async fn send_async(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Chan::Local(c) => c.send_bytes_async(bytes).await,
            Chan::Remote(c) => c.send_bytes(bytes),
        }
    }

    /// As [`recv_timeout`](Chan::recv_timeout), waiting without a thread.
    pub(crate) async fn recv_timeout_async(&self, timeout: Duration) -> Result<Vec<u8>> {
        match self {
            Chan::Local(c) => c.recv_bytes_async().await,
            Chan::Remote(c) => c.recv_bytes_within_async(Some(timeout)).await,
        }
    }

    /// Whether the other side went away (or, against the protocol, sent
    /// more while waiting for a reply) during a request.
    pub(crate) fn gone(&self) -> bool {
        let ready = match self {
            Chan::Local(c) => c.poll(Some(Duration::ZERO)),
            Chan::Remote(c) => c.poll(Some(Duration::ZERO)),
        };
        ready.unwrap_or(true)
    }
}
