//! The resource tracker: named shared memory whose creator dies by a signal
//! is unlinked all the same, as CPython's `resource_tracker` does.
//!
//! The program's fork server is the tracker: it outlives every process of
//! the program by a moment, and it learns the program's end from its
//! control socket. It listens on a `SOCK_SEQPACKET` socket in the abstract
//! namespace named after its pid; a process that creates a segment (or
//! takes on an existing one, `SharedMemory::track`) connects once and sends
//! `+name`; unlinking or keeping it sends `-name`. The kernel closes the
//! connection when the process ends, however it ends, after the messages it
//! sent, so the server reads them in order and then unlinks what is left
//! of that process's names: within moments of a SIGKILL. When the program
//! itself ends (the control socket closes), every name still registered by
//! any process is unlinked before the server exits.
//!
//! A name is unlinked only if it still names the segment that was
//! registered (the same inode): a name unlinked and made again since by
//! another process is left alone. The server accepts connections only from
//! its own user, and a client talks only to a socket held by the pid it
//! expects.
//!
//! Every process knows its program's tracker through its identity (a child
//! inherits its parent's). A process with none starts a fork server of its
//! own when it first creates a segment; if that cannot be done (a setuid
//! program with threads), its segments are unlinked at its normal exit
//! only, as before.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

use crate::fds::{PrivateFd, lock};
use crate::state::GLOBAL;
use crate::sys;

const PREFIX: &str = "multiproc-tracker-";

/// How long a client waits for a server just started to listen.
const BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest message: an op byte and a name (at most 255 bytes).
const MESSAGE_MAX: usize = 512;

fn address(server_pid: u32) -> io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new_abstract_name(
        format!("{PREFIX}{server_pid}").as_bytes(),
    )?)
}

// -- The side of every process ------------------------------------------

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

/// Makes `pid`'s fork server the tracker of this process (and of its
/// children to come), unless it has one.
pub(crate) fn adopt(pid: u32) {
    lock(&GLOBAL).identity.tracker.get_or_insert(pid);
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

// -- The server's side --------------------------------------------------

/// A segment's identity: the device and inode behind its name.
type FileId = (u64, u64);

fn file_id(name: &str) -> Option<FileId> {
    let fd = rustix::shm::open(
        format!("/{name}").as_str(),
        rustix::shm::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// A name the shm crate accepts: no slash, no NUL, 1 to 255 bytes.
fn valid(name: &str) -> bool {
    (1..=255).contains(&name.len()) && !name.contains(['/', '\0'])
}

/// One process's connection and the names it registered.
struct Client {
    sock: PrivateFd,
    names: Vec<(String, FileId)>,
}

impl Client {
    /// Unlinks what is left of its names, each only if it is the same file.
    fn unlink_left(&mut self) {
        for (name, id) in self.names.drain(..) {
            if file_id(&name) == Some(id) {
                let _ = rustix::shm::unlink(format!("/{name}").as_str());
            }
        }
    }

    /// Reads what the client sent; false once it is gone.
    fn read(&mut self) -> bool {
        let mut buf = [0u8; MESSAGE_MAX];
        loop {
            match rustix::net::recv(&self.sock, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) => return false,
                Ok((got, _)) => self.handle(&buf[..got]),
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }

    fn handle(&mut self, message: &[u8]) {
        let Some((&op, rest)) = message.split_first() else {
            return;
        };
        let Some((id, name)) = rest.split_at_checked(16) else {
            return;
        };
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let id = (word(&id[..8]), word(&id[8..]));
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        if !valid(name) {
            return;
        }
        match op {
            // The creator's own word for which file it is: the name may
            // have changed hands before this message is read.
            b'+' => self.names.push((name.to_owned(), id)),
            b'-' => {
                if let Some(i) = self.names.iter().position(|(n, _)| n == name) {
                    self.names.swap_remove(i);
                }
            }
            _ => {}
        }
    }
}

/// The tracker inside a fork server.
pub(crate) struct Tracker {
    listener: PrivateFd,
    clients: Vec<Client>,
}

impl Tracker {
    /// Listens under this process's pid; `None` if the name is taken.
    pub(crate) fn bind() -> Option<Tracker> {
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .ok()?;
        rustix::net::bind(&sock, &address(sys::getpid()).ok()?).ok()?;
        rustix::net::listen(&sock, 64).ok()?;
        Some(Tracker {
            listener: PrivateFd::new(sock),
            clients: Vec::new(),
        })
    }

    /// What to poll: the listener, then each client.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd())
            .chain(self.clients.iter().map(|c| c.sock.as_fd()))
            .collect()
    }

    /// Serves what polled ready (`ready` in the order of [`fds`](Self::fds)).
    pub(crate) fn serve(&mut self, ready: &[bool]) {
        let mut i = 0;
        self.clients.retain_mut(|c| {
            i += 1;
            if !ready.get(i).copied().unwrap_or(false) || c.read() {
                return true;
            }
            c.unlink_left();
            false
        });
        if ready.first().copied().unwrap_or(false) {
            self.accept();
        }
    }

    fn accept(&mut self) {
        let me = rustix::process::getuid();
        while let Ok(sock) =
            rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
        {
            let same_user =
                rustix::net::sockopt::socket_peercred(&sock).is_ok_and(|cred| cred.uid == me);
            if same_user {
                self.clients.push(Client {
                    sock: PrivateFd::new(sock),
                    names: Vec::new(),
                });
            }
        }
    }

    /// The program ended: reads what every client sent, then unlinks every
    /// name still registered.
    pub(crate) fn unlink_all(&mut self) {
        for c in &mut self.clients {
            c.read();
            c.unlink_left();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid("psm_1234"));
        assert!(!valid(""));
        assert!(!valid("a/b"));
        assert!(!valid("a\0b"));
        assert!(!valid(&"x".repeat(256)));
    }
}
