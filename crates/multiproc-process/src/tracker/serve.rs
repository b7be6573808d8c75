//! The server's side, run by the fork server: it unlinks what a client
//! left when its connection closes.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};

use super::wire::{FileId, MESSAGE_MAX, address};
use crate::fds::PrivateFd;
use crate::sys;

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
