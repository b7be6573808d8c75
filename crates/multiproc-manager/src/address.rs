//! Where a listener waits for connections: a TCP address or a Unix socket
//! path. Python: the `address` argument of `Listener`, `Client` and
//! `BaseManager`, a `(host, port)` tuple or a path string.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use multiproc_process::{Error, Result};
use serde::{Deserialize, Serialize};

/// A TCP address or a Unix socket path.
///
/// Parses from `"host:port"` (TCP, names resolved) and from a string
/// holding a `/` or starting with `unix:` (a Unix socket path), and prints
/// back the same way. A Unix path that starts with a NUL byte (`"\0name"`)
/// names a socket in Linux's abstract namespace, with no file, as in
/// CPython.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A TCP address. Port 0 asks the system for a free port; the bound
    /// address is then the listener's [`address`](crate::Listener::address).
    Tcp(SocketAddr),
    /// A Unix stream socket at this path (created by the listener, removed
    /// when it is dropped), or, when the path starts with a NUL byte, the
    /// rest of it as a name in the abstract namespace.
    Unix(PathBuf),
}

impl Address {
    /// The TCP address `host:port`, resolving `host`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the name does not resolve.
    pub fn tcp(host: &str, port: u16) -> Result<Address> {
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .map(Address::Tcp)
            .ok_or_else(|| Error::InvalidArgument(format!("cannot resolve {host}:{port}")))
    }

    /// A Unix socket at `path` (`"\0name"`: in the abstract namespace).
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::Unix(path.into())
    }
}

/// The name of an abstract Unix address (its path after the NUL byte).
pub(crate) fn abstract_name(path: &Path) -> Option<&[u8]> {
    match path.as_os_str().as_bytes().split_first() {
        Some((0, name)) => Some(name),
        _ => None,
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Address::Unix(path.into()));
        }
        if s.contains('/') || s.starts_with('\0') {
            return Ok(Address::Unix(s.into()));
        }
        s.to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .map(Address::Tcp)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{s:?} is neither host:port nor a Unix socket path"))
            })
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_prints_them_back() {
        let tcp: Address = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(tcp, Address::Tcp("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(tcp.to_string().parse::<Address>().unwrap(), tcp);
        let unix: Address = "/tmp/mgr.sock".parse().unwrap();
        assert_eq!(unix, Address::unix("/tmp/mgr.sock"));
        assert_eq!(unix.to_string().parse::<Address>().unwrap(), unix);
        assert!("no port here".parse::<Address>().is_err());
        let hidden: Address = "\0multiproc-name".parse().unwrap();
        assert_eq!(hidden, Address::unix("\0multiproc-name"));
        assert_eq!(hidden.to_string().parse::<Address>().unwrap(), hidden);
    }
}
