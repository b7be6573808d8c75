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

    /// Sends a request and waits for its reply.
    pub(crate) fn call(&self, request: &[u8]) -> Result<Vec<u8>> {
        self.send(request)?;
        self.recv()
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
