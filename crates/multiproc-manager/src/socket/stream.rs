//! A connected stream socket (TCP or Unix) and reads that keep a deadline.
//!
//! A deadline here bounds the whole read, however the peer paces its bytes:
//! each `read` is preceded by a `poll` for the time that is left, so a peer
//! that drips one byte at a time cannot stretch it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use multiproc_process::fdio;

use crate::address::abstract_name;

/// How long a read may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// As long as it takes.
    Forever,
    /// All of it by this instant.
    Until(Instant),
    /// Each piece within this long of the one before.
    Idle(Duration),
}

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to a TCP address, giving up after `timeout`.
    pub(crate) fn connect_tcp(addr: &SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let s = TcpStream::connect_timeout(addr, timeout)?;
        // Request and reply are small: send each at once. A failure only
        // costs latency.
        let _ = s.set_nodelay(true);
        Ok(Stream::Tcp(s))
    }

    /// Connects to a Unix socket (a path, or an abstract name), giving up
    /// after `timeout` if its backlog stays full.
    pub(crate) fn connect_unix(path: &Path, timeout: Duration) -> io::Result<Stream> {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let addr = match abstract_name(path) {
            Some(name) => SocketAddrUnix::new_abstract_name(name)?,
            None => SocketAddrUnix::new(path)?,
        };
        let fd: OwnedFd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        let deadline = multiproc_process::deadline(timeout);
        loop {
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => break,
                // A full backlog: a non-blocking Unix connect does not
                // queue, so try again until the deadline.
                Err(rustix::io::Errno::AGAIN) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let s = UnixStream::from(fd);
        s.set_nonblocking(false)?;
        Ok(Stream::Unix(s))
    }

    /// Whether the socket becomes readable by `deadline`. A signal that
    /// cuts the wait short does not count as the deadline (`poll` reports
    /// nothing ready then).
    pub(crate) fn readable_by(&self, deadline: Instant) -> io::Result<bool> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            if fdio::poll_readable(&[self.as_fd()], Some(left))?[0] {
                return Ok(true);
            }
        }
    }

    /// Fills `buf`, at the pace `pace` allows.
    pub(crate) fn read_exact(&self, buf: &mut [u8], pace: Pace) -> io::Result<()> {
        let mut filled = 0;
        let mut last = Instant::now();
        while filled < buf.len() {
            let by = match pace {
                Pace::Forever => None,
                Pace::Until(d) => Some(d),
                Pace::Idle(t) => Some(last + t),
            };
            if let Some(by) = by
                && !self.readable_by(by)?
            {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match self.read(&mut buf[filled..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    filled += n;
                    last = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    pub(crate) fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).write_all(buf),
            Stream::Unix(s) => (&*s).write_all(buf),
        }
    }

    /// Bounds every write: a peer that stops reading cannot hold a
    /// writer for longer than `t`.
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    pub(crate) fn shutdown(&self) {
        // Already shut down or reset: nothing left to do either way.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}
