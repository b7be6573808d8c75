//! The side of every process: registering the segments it creates.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};

use super::wire::{BIND_WAIT, FileId, address};
use crate::fds::{PrivateFd, lock};
use crate::state::GLOBAL;
use crate::sys;

/// This process's connection to its tracker, and the pid that made it (a
/// forked child finds its parent's here, already closed, and connects anew).
static CONN: std::sync::Mutex<Option<(u32, PrivateFd)>> = std::sync::Mutex::new(None);

/// The tracker of this process: its program's fork server, or this
/// process's own (started now if need be).
fn tracker_pid() -> Option<u32> {
    if let Some(pid) = lock(&GLOBAL).identity.tracker {
        return Some(pid);
    }
    // Starting the server makes it this process's tracker.
    crate::start::forkserver::ensure_started().ok()?;
    lock(&GLOBAL).identity.tracker
}

fn connect(tracker: u32) -> io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // A server just started may not listen yet: it binds as it begins
    // serving, a moment after it was executed.
    let address = address(tracker)?;
    let deadline = std::time::Instant::now() + BIND_WAIT;
    loop {
        match rustix::net::connect(&sock, &address) {
            Ok(()) => break,
            Err(rustix::io::Errno::CONNREFUSED | rustix::io::Errno::INTR)
                if std::time::Instant::now() < deadline && sys::pid_alive(tracker) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Only the server we expect: a name in the abstract namespace can be
    // taken by anyone.
    if sys::peer_pid(sock.as_fd()) != Some(tracker) {
        return Err(io::Error::other(
            "the tracker's name is held by another process",
        ));
    }
    Ok(sock)
}

fn tell(op: u8, id: FileId, name: &str) {
    let me = sys::getpid();
    if op == b'-' && lock(&CONN).as_ref().is_none_or(|(pid, _)| *pid != me) {
        // This process registered nothing: nothing to take back.
        return;
    }
    let Some(tracker) = tracker_pid() else {
        return;
    };
    let mut conn = lock(&CONN);
    if conn.as_ref().is_some_and(|(pid, _)| *pid != me) {
        // Inherited through fork: the descriptor was closed with the other
        // private ones; its number may be another file's by now.
        if let Some((_, stale)) = conn.take() {
            std::mem::forget(stale);
        }
    }
    if conn.is_none() {
        match connect(tracker) {
            Ok(fd) => *conn = Some((me, PrivateFd::new(fd))),
            Err(_) => return,
        }
    }
    let mut message = Vec::with_capacity(17 + name.len());
    message.push(op);
    message.extend_from_slice(&id.0.to_le_bytes());
    message.extend_from_slice(&id.1.to_le_bytes());
    message.extend_from_slice(name.as_bytes());
    if let Some((_, fd)) = conn.as_ref()
        && rustix::net::send(fd, &message, SendFlags::NOSIGNAL).is_err()
    {
        // The tracker is gone (the program is ending): nothing to tell.
        *conn = None;
    }
}

/// Registers named shared memory `name`, open as `fd`, which this process
/// created or took on: the tracker unlinks it if this process ends without
/// [`untrack`] (a normal exit unlinks it first), if the name still names
/// that file then. For the shm crate.
pub fn track(name: &str, fd: BorrowedFd<'_>) {
    if let Ok(st) = rustix::fs::fstat(fd) {
        tell(b'+', (st.st_dev, st.st_ino), name);
    }
}

/// Forgets `name` (unlinked, or to be kept).
pub fn untrack(name: &str) {
    tell(b'-', (0, 0), name);
}
