//! A listening socket whose handshakes run beside each other.
//!
//! The first [`Listener::accept`] starts an acceptor thread. It takes each
//! connection off the socket and gives it a thread of its own for the
//! handshake, bounded by one deadline for the whole exchange; connections
//! that pass are queued for `accept` in the order they passed. So a peer
//! that is slow, silent or wrong holds up nobody else, and at most
//! `max_pending_handshakes` connections (in the handshake or waiting in the
//! queue) exist at once: one beyond that is closed as soon as it arrives,
//! as OpenSSH's `MaxStartups` does.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result, fdio};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use super::SocketConnection;
use super::options::ListenerOptions;
use super::stream::Stream;
use crate::address::{Address, abstract_name};

/// The stack of a handshake thread: it only hashes a few hundred bytes.
const HANDSHAKE_STACK: usize = 128 << 10;

/// The most connections taken off the socket between two looks at the
/// stop signal.
const ACCEPT_BURST: usize = 64;

/// The kernel's queue of connections not yet taken (capped by the
/// system's `somaxconn`). A burst of connections beyond it loses SYNs,
/// which their clients send again only a second later.
const BACKLOG: i32 = 1024;

/// A bound listening socket, as a value a child can be handed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListenerFd {
    Tcp(#[serde(with = "multiproc_process::handoff::fd")] OwnedFd),
    Unix(#[serde(with = "multiproc_process::handoff::fd")] OwnedFd),
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Socket {
    fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            Socket::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                // A failure only costs latency.
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Socket::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Stream::Unix(s)
            }
        })
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }
}

/// What the acceptor, the handshakes and `accept` share.
#[derive(Debug, Default)]
struct Hub {
    state: Mutex<HubState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct HubState {
    /// Authenticated, waiting for `accept`.
    queue: VecDeque<SocketConnection>,
    /// In the handshake now, by number: the listener's drop closes them.
    pending: HashMap<u64, Arc<SocketConnection>>,
    next: u64,
    /// The listener is gone: handshakes still running drop what they get.
    stopped: bool,
    /// The socket failed for good.
    failure: Option<io::ErrorKind>,
    /// Peers dropped: failed or timed-out handshakes, and connections
    /// beyond the cap.
    refused: u64,
}

#[derive(Debug)]
struct Acceptor {
    thread: JoinHandle<()>,
    /// Closing it stops the acceptor.
    stop: UnixStream,
}

/// Waits for connections on an address and authenticates each.
///
/// Python: `multiprocessing.connection.Listener(address, authkey=...)`.
/// The key is required: a listener without one would serve anyone who can
/// reach the address.
///
/// ```
/// use multiproc as mp;
/// use mp::connection::{Address, Client, Listener};
///
/// # fn main() -> mp::Result<()> {
/// let listener = Listener::bind(&"127.0.0.1:0".parse()?, b"secret")?;
/// let address = listener.address().clone();
/// let t = std::thread::spawn(move || -> mp::Result<String> {
///     let conn = Client::connect(&address, b"secret")?;
///     conn.send(&"ping".to_string())?;
///     conn.recv::<String>()
/// });
/// let conn = listener.accept()?;
/// let msg: String = conn.recv()?;
/// conn.send(&format!("{msg} pong"))?;
/// assert_eq!(t.join().unwrap()?, "ping pong");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    socket: Arc<Socket>,
    address: Address,
    authkey: Arc<[u8]>,
    options: ListenerOptions,
    hub: Arc<Hub>,
    acceptor: Mutex<Option<Acceptor>>,
    /// The socket file this listener created, removed on drop.
    unlink: Option<PathBuf>,
    /// The process that made it: a child made by fork has a copy of the
    /// value, but neither its acceptor thread nor its socket file.
    pid: u32,
}

impl Listener {
    /// Binds `address` with the default [`ListenerOptions`]. For TCP port
    /// 0, [`address`](Self::address) gives the port the system chose.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address is in use or cannot be bound,
    /// [`Error::InvalidArgument`] for an empty key.
    pub fn bind(address: &Address, authkey: &[u8]) -> Result<Listener> {
        Listener::bind_with(address, authkey, ListenerOptions::default())
    }

    /// Binds `address` with these limits.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_with(
        address: &Address,
        authkey: &[u8],
        options: ListenerOptions,
    ) -> Result<Listener> {
        if authkey.is_empty() {
            return Err(Error::InvalidArgument(
                "the authentication key is empty".into(),
            ));
        }
        let (socket, address, unlink) = match address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a)?;
                // std listens with a backlog of 128; listening again
                // raises it.
                rustix::net::listen(&l, BACKLOG).map_err(io::Error::from)?;
                let bound = Address::Tcp(l.local_addr()?);
                (Socket::Tcp(l), bound, None)
            }
            Address::Unix(p) => {
                let l = bind_unix(p, options.unix_mode)?;
                // An abstract name has no file to remove.
                let file = abstract_name(p).is_none().then(|| p.clone());
                (Socket::Unix(l), address.clone(), file)
            }
        };
        Ok(Listener::new(
            socket,
            address,
            authkey.into(),
            options,
            unlink,
        ))
    }

    fn new(
        socket: Socket,
        address: Address,
        authkey: Arc<[u8]>,
        options: ListenerOptions,
        unlink: Option<PathBuf>,
    ) -> Listener {
        Listener {
            socket: Arc::new(socket),
            address,
            authkey,
            options,
            hub: Arc::default(),
            acceptor: Mutex::new(None),
            unlink,
            pid: std::process::id(),
        }
    }

    /// The address this listener is bound to. Python: `Listener.address`.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next connection that passes the handshake. Python:
    /// `Listener.accept()`.
    ///
    /// Unlike Python's, it never fails because of a peer: one that does
    /// not know the key, or does not finish the handshake in time, is
    /// dropped, and `accept` goes on waiting for the next.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the listening socket itself fails.
    pub fn accept(&self) -> Result<SocketConnection> {
        self.accept_until(None)
    }

    /// As [`accept`](Self::accept), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as [`accept`](Self::accept).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<SocketConnection> {
        self.accept_until(multiproc_process::deadline(timeout))
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<SocketConnection> {
        self.start_acceptor()?;
        let mut state = self.hub.state.lock();
        loop {
            if let Some(conn) = state.queue.pop_front() {
                return Ok(conn);
            }
            if let Some(kind) = state.failure {
                return Err(Error::Io(io::Error::new(
                    kind,
                    "the listening socket failed",
                )));
            }
            match deadline {
                Some(d) => {
                    if self.hub.ready.wait_until(&mut state, d).timed_out()
                        && state.queue.is_empty()
                    {
                        return Err(Error::Timeout);
                    }
                }
                None => self.hub.ready.wait(&mut state),
            }
        }
    }

    fn start_acceptor(&self) -> Result<()> {
        let mut acceptor = self.acceptor.lock();
        if acceptor.is_some() {
            return Ok(());
        }
        let (stop, stopped) = UnixStream::pair()?;
        let socket = self.socket.clone();
        let hub = self.hub.clone();
        let key = self.authkey.clone();
        let options = self.options.clone();
        let thread = std::thread::Builder::new()
            .name("listener-accept".into())
            .spawn(move || accept_loop(&socket, &hub, &key, &options, &stopped))?;
        *acceptor = Some(Acceptor { thread, stop });
        Ok(())
    }

    /// The socket, to hand to the server process.
    pub(crate) fn to_fd(&self) -> Result<ListenerFd> {
        Ok(match &*self.socket {
            Socket::Tcp(l) => ListenerFd::Tcp(l.as_fd().try_clone_to_owned()?),
            Socket::Unix(l) => ListenerFd::Unix(l.as_fd().try_clone_to_owned()?),
        })
    }

    /// Rebuilds a listener from a socket handed over by [`to_fd`](Self::to_fd).
    /// The socket file stays the creator's to remove.
    pub(crate) fn from_fd(
        fd: ListenerFd,
        address: Address,
        authkey: Vec<u8>,
        options: ListenerOptions,
    ) -> Listener {
        let socket = match fd {
            ListenerFd::Tcp(fd) => Socket::Tcp(TcpListener::from(fd)),
            ListenerFd::Unix(fd) => Socket::Unix(UnixListener::from(fd)),
        };
        Listener::new(socket, address, authkey.into(), options, None)
    }

    /// How many peers this listener has dropped so far: those that did
    /// not know the key, did not finish the handshake in time, sent
    /// something else, or came when `max_pending_handshakes` were pending.
    /// Python's `accept` raises `AuthenticationError` for the first kind
    /// instead; ours goes on, and counts.
    pub fn refused(&self) -> u64 {
        self.hub.state.lock().refused
    }

    /// How many connections are in the handshake now.
    #[doc(hidden)]
    pub fn pending_handshakes(&self) -> usize {
        self.hub.state.lock().pending.len()
    }
}

/// Binds a Unix socket and sets its file's mode before it listens, so
/// nobody can connect while the mode is still the umask's.
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd: OwnedFd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    match abstract_name(path) {
        Some(name) => rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?,
        None => {
            rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
            let mode = rustix::fs::Mode::from_raw_mode(mode);
            if let Err(e) = rustix::fs::chmod(path, mode) {
                let _ = std::fs::remove_file(path);
                return Err(e.into());
            }
        }
    }
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(UnixListener::from(fd))
}

/// The acceptor thread: takes connections until `stopped` becomes
/// readable (its other end closed).
fn accept_loop(
    socket: &Socket,
    hub: &Arc<Hub>,
    key: &Arc<[u8]>,
    options: &ListenerOptions,
    stopped: &UnixStream,
) {
    if let Err(e) = fdio::set_nonblocking(socket.as_fd()) {
        fail(hub, e.kind());
        return;
    }
    loop {
        let ready = match fdio::poll_readable(&[socket.as_fd(), stopped.as_fd()], None) {
            Ok(ready) => ready,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                fail(hub, e.kind());
                return;
            }
        };
        if ready[1] {
            return;
        }
        // Take the connections waiting, so that a burst does not fill the
        // kernel's backlog while we poll again; a bounded number, so that
        // a flood cannot keep us from seeing the stop.
        for _ in 0..ACCEPT_BURST {
            match socket.accept() {
                Ok(stream) => admit(stream, hub, key, options),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => match e.raw_os_error() {
                    // The socket itself is unusable.
                    Some(errno::EBADF | errno::EINVAL | errno::ENOTSOCK) => {
                        fail(hub, e.kind());
                        return;
                    }
                    // Anything else is about one connection (reset, a
                    // network error, a signal) or passes (out of
                    // descriptors or memory): accept(2) says to go on.
                    // Wait a little, for descriptors to be given back.
                    _ => {
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                },
            }
        }
    }
}

/// The error numbers that end the acceptor.
mod errno {
    pub(super) const EBADF: i32 = rustix::io::Errno::BADF.raw_os_error();
    pub(super) const EINVAL: i32 = rustix::io::Errno::INVAL.raw_os_error();
    pub(super) const ENOTSOCK: i32 = rustix::io::Errno::NOTSOCK.raw_os_error();
}

fn fail(hub: &Hub, kind: io::ErrorKind) {
    hub.state.lock().failure = Some(kind);
    hub.ready.notify_all();
}

/// Starts the handshake of a new connection, or closes it at once when
/// too many are pending.
fn admit(stream: Stream, hub: &Arc<Hub>, key: &Arc<[u8]>, options: &ListenerOptions) {
    let conn = Arc::new(SocketConnection::new(stream));
    let number = {
        let mut state = hub.state.lock();
        if state.pending.len() + state.queue.len() >= options.max_pending {
            // Dropping it closes it.
            state.refused += 1;
            return;
        }
        state.next += 1;
        let number = state.next;
        state.pending.insert(number, conn.clone());
        number
    };
    let (hub2, key, timeout) = (hub.clone(), key.clone(), options.handshake_timeout);
    let spawned = std::thread::Builder::new()
        .name("listener-handshake".into())
        .stack_size(HANDSHAKE_STACK)
        .spawn(move || {
            let passed = conn.handshake_as_server(&key, timeout).is_ok();
            let mut state = hub2.state.lock();
            state.pending.remove(&number);
            // The only holder now that it left `pending`.
            match Arc::try_unwrap(conn) {
                Ok(conn) if passed && !state.stopped => {
                    state.queue.push_back(conn);
                    hub2.ready.notify_one();
                }
                _ => state.refused += 1,
            }
        });
    if spawned.is_err() {
        // Out of threads: this connection is dropped (closed).
        let mut state = hub.state.lock();
        state.pending.remove(&number);
        state.refused += 1;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A copy made by fork: the acceptor and the file are the
            // parent's. Its descriptors close with the value.
            if let Some(acceptor) = self.acceptor.get_mut().take() {
                std::mem::forget(acceptor.thread);
            }
            return;
        }
        {
            let mut state = self.hub.state.lock();
            state.stopped = true;
            state.queue.clear();
            // Handshakes in flight end now, not at their deadline.
            for conn in state.pending.values() {
                conn.close();
            }
        }
        if let Some(acceptor) = self.acceptor.get_mut().take() {
            // A shutdown, not only a close: a child made by fork may hold
            // a copy of this end, and would keep it from hanging up.
            let _ = acceptor.stop.shutdown(std::net::Shutdown::Both);
            // It returns as soon as it sees the stop.
            let _ = acceptor.thread.join();
        }
        if let Some(path) = self.unlink.take() {
            // Someone else may have removed it; either way it is gone.
            let _ = std::fs::remove_file(path);
        }
    }
}
