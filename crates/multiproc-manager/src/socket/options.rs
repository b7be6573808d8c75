//! The limits of listeners and clients, with their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest message a [`SocketConnection`](super::SocketConnection)
/// accepts unless told otherwise: 64 MiB.
pub const DEFAULT_MAX_SOCKET_MESSAGE: u64 = 64 << 20;

/// The limits of a [`Listener`](super::Listener) or of a served manager,
/// set like `std::fs::OpenOptions`:
///
/// ```
/// use std::time::Duration;
/// use multiproc::connection::ListenerOptions;
///
/// let options = ListenerOptions::new()
///     .handshake_timeout(Duration::from_secs(3))
///     .max_pending_handshakes(64)
///     .unix_mode(0o660);
/// # drop(options);
/// ```
///
/// Python's `Listener` has none of these: a peer there may take as long
/// as it likes over the handshake, and `accept` waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerOptions {
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_pending: usize,
    pub(crate) unix_mode: u32,
}

impl Default for ListenerOptions {
    fn default() -> ListenerOptions {
        ListenerOptions {
            handshake_timeout: Duration::from_secs(10),
            max_pending: 256,
            unix_mode: 0o600,
        }
    }
}

impl ListenerOptions {
    /// The defaults: a 10 s handshake, 256 handshakes at once, socket
    /// files of mode 0600.
    pub fn new() -> ListenerOptions {
        ListenerOptions::default()
    }

    /// How long a peer has to complete the whole handshake, however it
    /// paces its bytes (default 10 s). Then it is dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> ListenerOptions {
        self.handshake_timeout = timeout;
        self
    }

    /// How many connections may be in the handshake, or authenticated and
    /// not yet accepted, at once (default 256). A connection beyond that
    /// is closed as soon as it arrives.
    pub fn max_pending_handshakes(mut self, n: usize) -> ListenerOptions {
        self.max_pending = n.max(1);
        self
    }

    /// The permission bits of a Unix socket file (default 0o600: only the
    /// owner can connect). Ignored for TCP and abstract names.
    pub fn unix_mode(mut self, mode: u32) -> ListenerOptions {
        self.unix_mode = mode & 0o777;
        self
    }
}

/// How a client connects, set like `std::fs::OpenOptions`: the timeouts
/// of the connect and of the handshake, the longest message it accepts,
/// and, for a manager, how long the server may stay silent during a call.
///
/// Python's `Client` has no timeouts; ours are on by default so that a
/// silent server fails a call instead of hanging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_message: u64,
    pub(crate) reply_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_message: DEFAULT_MAX_SOCKET_MESSAGE,
            reply_timeout: Duration::from_secs(30),
        }
    }
}

impl ClientOptions {
    /// The defaults: 10 s to connect, 10 s for the handshake, messages up
    /// to 64 MiB, 30 s of server silence during a manager call.
    pub fn new() -> ClientOptions {
        ClientOptions::default()
    }

    /// How long to wait for the connection to be made (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.connect_timeout = timeout;
        self
    }

    /// How long the whole handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.handshake_timeout = timeout;
        self
    }

    /// The longest message this end accepts (default 64 MiB).
    pub fn max_message_size(mut self, bytes: u64) -> ClientOptions {
        self.max_message = bytes;
        self
    }

    /// For a manager's connections: how long the server may stay silent
    /// during a call before it fails with `Error::Timeout` (default 30 s).
    /// A call that waits (a queue's `get`) is not cut short by it: the
    /// server says a few times within the timeout that it is still waiting.
    pub fn reply_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.reply_timeout = timeout;
        self
    }
}
