//! Connections over stream sockets (TCP or Unix), with the shared-key
//! handshake: Python's `multiprocessing.connection.Listener` and `Client`.
//!
//! A message is a frame: its length as 8 little-endian bytes, then its
//! bytes. A frame longer than the receiver's limit is refused before any
//! allocation, and the connection is closed: after a bad length nothing
//! that follows can be trusted.
//!
//! The handshake is CPython's, with HMAC-SHA256: the side that accepts sends
//! `#CHALLENGE#{sha256}` and 32 random bytes, the other side answers with
//! the HMAC of them under the shared key, and is told `#WELCOME#` or
//! `#FAILURE#`; then the roles swap, so each side proves it knows the key.
//! Digests are compared in constant time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use multiproc_process::{Error, Result, codec, fdio};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::address::{Address, abstract_name, unix_socket_addr};

/// The longest message a [`SocketConnection`] accepts unless told otherwise
/// ([`SocketConnection::set_max_message_size`]): 64 MiB.
pub const DEFAULT_MAX_SOCKET_MESSAGE: u64 = 64 << 20;

/// How long the handshake may take before the connection is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest handshake message: a challenge is 11 + 8 + 32 bytes.
const HANDSHAKE_MAX: u64 = 256;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST_NAME: &[u8] = b"{sha256}";
const NONCE_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// A connected stream socket.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).read_exact(buf),
            Stream::Unix(s) => (&*s).read_exact(buf),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).write_all(buf),
            Stream::Unix(s) => (&*s).write_all(buf),
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn shutdown(&self) {
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

/// One end of a connection over a stream socket, made by
/// [`Listener::accept`] or [`SocketConnection::connect`] (also spelled
/// [`Client::connect`]).
///
/// Python: the `Connection` returned by `multiprocessing.connection.Client`
/// and `Listener.accept`. `send`/`recv` move serde values (not handles:
/// descriptors cannot cross a network), `send_bytes`/`recv_bytes` move
/// bytes; messages are never merged or split. `recv` after the other end
/// closed is [`Error::Closed`] (Python's `EOFError`).
///
/// Sending and receiving are each serialized by a lock, so the connection
/// can be shared between threads (`&self` methods).
#[derive(Debug)]
pub struct SocketConnection {
    stream: Stream,
    read: Mutex<()>,
    write: Mutex<()>,
    max_message: AtomicU64,
    /// A frame was cut short or refused: the stream can no longer be
    /// trusted, and every call fails with `Closed`.
    broken: AtomicBool,
}

/// `mp::wait` over socket connections (and pipes, queues, processes):
/// ready when a message can be received, or the other end is gone.
impl multiproc_channel::Waitable for SocketConnection {
    fn is_ready(&self) -> bool {
        self.poll(Some(Duration::ZERO)).unwrap_or(true)
    }

    fn wait_fd(&self) -> Option<multiproc_channel::WaitFd<'_>> {
        Some(multiproc_channel::WaitFd::Borrowed(self.stream.as_fd()))
    }
}

/// Python's `multiprocessing.connection.Client`:
/// `Client::connect(address, authkey)` opens a [`SocketConnection`].
pub type Client = SocketConnection;

impl SocketConnection {
    fn new(stream: Stream) -> SocketConnection {
        if let Stream::Tcp(s) = &stream {
            // Request and reply are small: send each at once. A failure
            // only costs latency.
            let _ = s.set_nodelay(true);
        }
        SocketConnection {
            stream,
            read: Mutex::new(()),
            write: Mutex::new(()),
            max_message: AtomicU64::new(DEFAULT_MAX_SOCKET_MESSAGE),
            broken: AtomicBool::new(false),
        }
    }

    /// Connects to a [`Listener`] (or a manager served) at `address`, and
    /// runs the handshake with `authkey`. Python:
    /// `multiprocessing.connection.Client(address, authkey=authkey)`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if nothing listens there, [`Error::Auth`] if the two
    /// keys differ (neither side learns the other's key), [`Error::Timeout`]
    /// if the other side does not complete the handshake in 10 seconds.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SocketConnection> {
        let stream = match address {
            Address::Tcp(a) => Stream::Tcp(TcpStream::connect(a)?),
            Address::Unix(p) => Stream::Unix(UnixStream::connect_addr(&unix_socket_addr(p)?)?),
        };
        let conn = SocketConnection::new(stream);
        conn.handshake_as_client(authkey)?;
        Ok(conn)
    }

    /// Answers the other side's challenge, then challenges it.
    pub(crate) fn handshake_as_client(&self, authkey: &[u8]) -> Result<()> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        answer_challenge(self, authkey, deadline)?;
        deliver_challenge(self, authkey, deadline)
    }

    /// Challenges the other side, then answers its challenge.
    pub(crate) fn handshake_as_server(&self, authkey: &[u8]) -> Result<()> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        deliver_challenge(self, authkey, deadline)?;
        answer_challenge(self, authkey, deadline)
    }

    /// Sets the longest message this end accepts; a longer one closes the
    /// connection with [`Error::MessageTooLarge`], without allocating for it.
    pub fn set_max_message_size(&self, bytes: u64) {
        self.max_message.store(bytes, Ordering::Relaxed);
    }

    /// Sends a value. Python: `Connection.send(obj)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if it cannot be encoded (a handle holding a
    /// descriptor among them), [`Error::Closed`] if the connection is gone.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_bytes(&codec::encode(value)?)
    }

    /// Sends `bytes` as one message. Python: `Connection.send_bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is gone.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let _w = self.write.lock();
        let len = bytes.len() as u64;
        let mut frame = Vec::with_capacity(8 + bytes.len().min(1 << 16));
        frame.extend_from_slice(&len.to_le_bytes());
        let result = if bytes.len() <= 1 << 16 {
            frame.extend_from_slice(bytes);
            self.stream.write_all(&frame)
        } else {
            self.stream
                .write_all(&frame)
                .and_then(|()| self.stream.write_all(bytes))
        };
        result.map_err(|e| self.fail(e))
    }

    /// Receives a value. Python: `Connection.recv()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the other end is gone, [`Error::Decode`] if
    /// the message is not a `T`, [`Error::MessageTooLarge`].
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        codec::decode(&self.recv_bytes()?)
    }

    /// Receives a value, waiting at most `timeout` for it to start arriving.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        codec::decode(&self.recv_frame(multiproc_process::deadline(timeout), None)?)
    }

    /// Receives one message's bytes. Python: `Connection.recv_bytes()`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_frame(None, None)
    }

    /// Whether a message can be received now, waiting at most `timeout`
    /// (`None`: as long as it takes). True also when the other end is gone,
    /// so that `recv` does not block. Python: `Connection.poll()`.
    ///
    /// # Errors
    ///
    /// The system's error.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        if self.broken.load(Ordering::Relaxed) {
            return Ok(true);
        }
        Ok(fdio::poll_readable(&[self.stream.as_fd()], timeout)?[0])
    }

    /// Closes the connection: both directions, at once. Python:
    /// `Connection.close()`.
    pub fn close(&self) {
        self.broken.store(true, Ordering::Relaxed);
        self.stream.shutdown();
    }

    /// Reads one frame. `deadline` bounds the wait for its first byte;
    /// `limit` overrides the size limit (the handshake's is small).
    pub(crate) fn recv_frame(
        &self,
        deadline: Option<Instant>,
        limit: Option<u64>,
    ) -> Result<Vec<u8>> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let _r = self.read.lock();
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if !fdio::poll_readable(&[self.stream.as_fd()], Some(left))?[0] {
                return Err(Error::Timeout);
            }
            // A peer that starts a frame finishes it promptly, or is gone.
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_secs(1))))?;
        }
        let result = self.read_frame(limit);
        if deadline.is_some() {
            self.stream.set_read_timeout(None)?;
        }
        result
    }

    fn read_frame(&self, limit: Option<u64>) -> Result<Vec<u8>> {
        let mut header = [0u8; 8];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| self.fail(e))?;
        let len = u64::from_le_bytes(header);
        let max = limit.unwrap_or_else(|| self.max_message.load(Ordering::Relaxed));
        if len > max {
            self.close();
            return Err(Error::MessageTooLarge { size: len, max });
        }
        let len = usize::try_from(len).map_err(|_| Error::MessageTooLarge { size: len, max })?;
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| self.fail(e))?;
        Ok(body)
    }

    /// Maps an I/O failure; a stream cut mid-frame cannot be resumed.
    fn fail(&self, e: io::Error) -> Error {
        self.close();
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => Error::Closed,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Io(e),
        }
    }
}

fn hmac_of(authkey: &[u8], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(authkey)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(message);
    mac
}

/// Sends a challenge and checks the answer.
fn deliver_challenge(conn: &SocketConnection, authkey: &[u8], deadline: Instant) -> Result<()> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
    let mut message = Vec::with_capacity(CHALLENGE.len() + DIGEST_NAME.len() + NONCE_BYTES);
    message.extend_from_slice(CHALLENGE);
    message.extend_from_slice(DIGEST_NAME);
    message.extend_from_slice(&nonce);
    conn.send_bytes(&message)?;
    let answer = conn.recv_frame(Some(deadline), Some(HANDSHAKE_MAX))?;
    let signed = &message[CHALLENGE.len()..];
    if hmac_of(authkey, signed).verify_slice(&answer).is_ok() {
        conn.send_bytes(WELCOME)
    } else {
        // Best effort: the other side learns why before the connection goes.
        let _ = conn.send_bytes(FAILURE);
        conn.close();
        Err(Error::Auth("the other side does not know the key".into()))
    }
}

/// Answers a challenge and reads the verdict.
fn answer_challenge(conn: &SocketConnection, authkey: &[u8], deadline: Instant) -> Result<()> {
    let message = conn.recv_frame(Some(deadline), Some(HANDSHAKE_MAX))?;
    let Some(signed) = message.strip_prefix(CHALLENGE) else {
        conn.close();
        return Err(Error::Auth("the other side sent no challenge".into()));
    };
    if !signed.starts_with(DIGEST_NAME) {
        conn.close();
        return Err(Error::Auth(
            "the other side asks for a digest other than sha256".into(),
        ));
    }
    conn.send_bytes(&hmac_of(authkey, signed).finalize().into_bytes())?;
    let verdict = conn.recv_frame(Some(deadline), Some(HANDSHAKE_MAX))?;
    if verdict == WELCOME {
        Ok(())
    } else {
        conn.close();
        Err(Error::Auth("the other side refused our key".into()))
    }
}

/// A bound listening socket, as a value a child can be handed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListenerFd {
    Tcp(#[serde(with = "multiproc_process::handoff::fd")] OwnedFd),
    Unix(#[serde(with = "multiproc_process::handoff::fd")] OwnedFd),
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
    inner: ListenerKind,
    address: Address,
    authkey: Vec<u8>,
    /// The socket file this listener created, removed on drop.
    unlink: Option<PathBuf>,
}

#[derive(Debug)]
enum ListenerKind {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `address`. For TCP port 0, [`address`](Self::address) gives
    /// the port the system chose.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address is in use or cannot be bound,
    /// [`Error::InvalidArgument`] for an empty key.
    pub fn bind(address: &Address, authkey: &[u8]) -> Result<Listener> {
        if authkey.is_empty() {
            return Err(Error::InvalidArgument(
                "the authentication key is empty".into(),
            ));
        }
        let (inner, address, unlink) = match address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a)?;
                let bound = Address::Tcp(l.local_addr()?);
                (ListenerKind::Tcp(l), bound, None)
            }
            Address::Unix(p) => {
                let l = UnixListener::bind_addr(&unix_socket_addr(p)?)?;
                // An abstract name has no file to remove.
                let file = abstract_name(p).is_none().then(|| p.clone());
                (ListenerKind::Unix(l), address.clone(), file)
            }
        };
        Ok(Listener {
            inner,
            address,
            authkey: authkey.to_vec(),
            unlink,
        })
    }

    /// The address this listener is bound to. Python: `Listener.address`.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a connection and runs the handshake. Python:
    /// `Listener.accept()`.
    ///
    /// # Errors
    ///
    /// [`Error::Auth`] if the peer does not know the key (that connection
    /// is dropped; call `accept` again for the next), [`Error::Timeout`] if
    /// it stays silent for 10 seconds, [`Error::Io`].
    pub fn accept(&self) -> Result<SocketConnection> {
        let conn = self.accept_unauthenticated()?;
        conn.handshake_as_server(&self.authkey)?;
        Ok(conn)
    }

    /// Waits for a connection; the caller runs the handshake.
    pub(crate) fn accept_unauthenticated(&self) -> Result<SocketConnection> {
        let stream = match &self.inner {
            ListenerKind::Tcp(l) => Stream::Tcp(l.accept()?.0),
            ListenerKind::Unix(l) => Stream::Unix(l.accept()?.0),
        };
        Ok(SocketConnection::new(stream))
    }

    /// The socket, to hand to the server process.
    pub(crate) fn to_fd(&self) -> Result<ListenerFd> {
        Ok(match &self.inner {
            ListenerKind::Tcp(l) => ListenerFd::Tcp(l.as_fd().try_clone_to_owned()?),
            ListenerKind::Unix(l) => ListenerFd::Unix(l.as_fd().try_clone_to_owned()?),
        })
    }

    /// Rebuilds a listener from a socket handed over by [`to_fd`](Self::to_fd).
    /// The socket file stays the creator's to remove.
    pub(crate) fn from_fd(fd: ListenerFd, address: Address, authkey: Vec<u8>) -> Listener {
        let inner = match fd {
            ListenerFd::Tcp(fd) => ListenerKind::Tcp(TcpListener::from(fd)),
            ListenerFd::Unix(fd) => ListenerKind::Unix(UnixListener::from(fd)),
        };
        Listener {
            inner,
            address,
            authkey,
            unlink: None,
        }
    }

    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = self.unlink.take() {
            // Someone else may have removed it; either way it is gone.
            let _ = std::fs::remove_file(path);
        }
    }
}
