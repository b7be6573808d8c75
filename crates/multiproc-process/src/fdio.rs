//! Descriptor-level I/O for the crates above: a socket pair, sending and
//! receiving bytes with descriptors (`SCM_RIGHTS`), and waiting for
//! readiness. The same calls the start methods use, so there is one copy of
//! this code in the workspace.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::sys;

/// A connected pair of close-on-exec Unix stream sockets.
///
/// # Errors
///
/// The system's error.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::socketpair()
}

/// A connected pair of close-on-exec Unix sequenced-packet sockets: each
/// send is one message, received whole, so several processes holding the
/// same end can send on it at once without interleaving. `send_with_fds` and
/// `recv_with_fds` work on them, one message per call.
///
/// # Errors
///
/// The system's error.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::seqpacket_pair()
}

/// Puts `fd` in non-blocking mode.
///
/// # Errors
///
/// The system's error.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::set_nonblocking(fd)
}

/// Sends all of `bytes` on a stream socket with `fds` attached to the first
/// byte, waiting for room if the socket is non-blocking; never raises
/// `SIGPIPE`.
///
/// # Errors
///
/// The system's error (`BrokenPipe` when the peer is gone).
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    sys::send_with_fds(sock, bytes, &borrowed)
}

/// Receives up to `buf.len()` bytes, appending the descriptors that came
/// with them to `fds`. Returns the number of bytes, 0 at end of file.
///
/// # Errors
///
/// The system's error (`WouldBlock` on a non-blocking socket with nothing
/// to read).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    sys::recv_with_fds(sock, buf, fds)
}

/// Waits until one of `fds` is readable or hung up, or `timeout` passes
/// (`None`: forever). Returns which are ready.
///
/// # Errors
///
/// The system's error.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    sys::poll_readable(fds, timeout)
}

/// Whether the other end of socket `sock` is closed (`POLLHUP`), without
/// reading anything from it.
pub fn hung_up(sock: BorrowedFd<'_>) -> bool {
    sys::hung_up(sock)
}

/// Sends `bytes` without waiting (`MSG_DONTWAIT | MSG_NOSIGNAL`).
///
/// # Errors
///
/// The system's error (`WouldBlock` when the socket is full).
pub fn send_nowait(sock: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    use rustix::net::SendFlags;
    Ok(rustix::net::send(
        sock,
        bytes,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )?)
}

/// A non-blocking, close-on-exec eventfd with a count of zero: a bell any
/// process holding it can ring.
///
/// # Errors
///
/// The error of `eventfd`.
pub fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?)
}

/// Adds one to an eventfd's count (nothing if it is full).
pub fn eventfd_ring(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Takes an eventfd's count to zero (nothing if it is zero).
pub fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}
