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
