//! Connections over stream sockets (TCP or Unix) that speak CPython's
//! wire: Python's `multiprocessing.connection.Listener` and `Client`.
//!
//! A message is a frame, as CPython writes it: its length as 4 big-endian
//! bytes (signed), then its bytes; from 2 GiB up, the length -1 and then
//! the real length as 8 big-endian bytes. A frame longer than the
//! receiver's limit is refused before any allocation, and the connection
//! is closed: after a bad length nothing that follows can be trusted.
//!
//! The handshake is CPython's (see `handshake.rs`), in both directions,
//! under one deadline. `send`/`recv` carry postcard by default (Rust to
//! Rust); [`SocketConnection::with_pickle`] makes them carry pickles, for a
//! Python peer.

mod handshake;
mod listener;
mod options;
mod stream;

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result, codec, fdio};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::pickle;

pub use listener::Listener;
pub(crate) use listener::ListenerFd;
pub use options::{ClientOptions, DEFAULT_MAX_SOCKET_MESSAGE, ListenerOptions};
pub(crate) use stream::Pace;
use stream::Stream;

/// Frames up to this size go out in one write with their header.
const ONE_WRITE: usize = 64 << 10;

/// The largest length a 4-byte header carries; longer frames use 8 bytes.
const SHORT_MAX: u64 = 0x7fff_ffff;

/// A peer that has started a frame sends the rest within this long of each
/// piece, when the caller gave a deadline.
const FRAME_IDLE: Duration = Duration::from_secs(1);

/// One end of a connection over a stream socket, made by
/// [`Listener::accept`] or [`SocketConnection::connect`] (also spelled
/// [`Client::connect`]).
///
/// Python: the `Connection` returned by `multiprocessing.connection.Client`
/// and `Listener.accept`, on the same wire, so either end may be a Python
/// program. `send_bytes`/`recv_bytes` move bytes; `send`/`recv` move serde
/// values (not handles: descriptors cannot cross a network), as postcard,
/// or as pickles after [`with_pickle`](Self::with_pickle). Messages are
/// never merged or split. `recv` after the other end closed is
/// [`Error::Closed`] (Python's `EOFError`).
///
/// Sending and receiving are each serialized by a lock, so the connection
/// can be shared between threads (`&self` methods).
#[derive(Debug)]
pub struct SocketConnection {
    stream: Stream,
    read: Mutex<()>,
    write: Mutex<()>,
    max_message: AtomicU64,
    /// `send`/`recv` carry pickles.
    pickle: bool,
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
        SocketConnection {
            stream,
            read: Mutex::new(()),
            write: Mutex::new(()),
            max_message: AtomicU64::new(DEFAULT_MAX_SOCKET_MESSAGE),
            pickle: false,
            broken: AtomicBool::new(false),
        }
    }

    /// Connects to a [`Listener`] (Rust's or Python's, or a manager served)
    /// at `address`, and runs the handshake with `authkey`, with the
    /// default [`ClientOptions`]. Python:
    /// `multiprocessing.connection.Client(address, authkey=authkey)`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if nothing listens there, [`Error::Auth`] if the two
    /// keys differ (neither side learns the other's key), [`Error::Timeout`]
    /// if the connection or the handshake takes over 10 seconds.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SocketConnection> {
        SocketConnection::connect_with(address, authkey, &ClientOptions::default())
    }

    /// As [`connect`](Self::connect), with these timeouts and limit.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        address: &Address,
        authkey: &[u8],
        options: &ClientOptions,
    ) -> Result<SocketConnection> {
        let stream = match address {
            Address::Tcp(a) => Stream::connect_tcp(a, options.connect_timeout),
            Address::Unix(p) => Stream::connect_unix(p, options.connect_timeout),
        }
        .map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout,
            _ => Error::Io(e),
        })?;
        let conn = SocketConnection::new(stream);
        conn.set_max_message_size(options.max_message);
        conn.handshake_as_client(authkey, options.handshake_timeout)?;
        Ok(conn)
    }

    /// Answers the other side's challenge, then challenges it, all within
    /// `timeout`.
    pub(crate) fn handshake_as_client(&self, authkey: &[u8], timeout: Duration) -> Result<()> {
        let pace = pace_within(timeout);
        handshake::answer(self, authkey, pace)?;
        handshake::deliver(self, authkey, pace)
    }

    /// Challenges the other side, then answers its challenge, all within
    /// `timeout`.
    pub(crate) fn handshake_as_server(&self, authkey: &[u8], timeout: Duration) -> Result<()> {
        let pace = pace_within(timeout);
        handshake::deliver(self, authkey, pace)?;
        handshake::answer(self, authkey, pace)
    }

    /// This connection, with `send`/`recv` carrying pickles: what a Python
    /// peer's `Connection.send`/`recv` use. Plain data maps both ways:
    /// None, bool, 64-bit ints, float, str, bytes (as
    /// `serde_bytes::ByteBuf`), lists, tuples, dicts (maps and structs);
    /// a Python set reads into any sequence. A Python exception received
    /// is [`Error::Python`] with its class; any other class instance is
    /// refused, never executed.
    #[must_use]
    pub fn with_pickle(mut self) -> SocketConnection {
        self.pickle = true;
        self
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
        let bytes = if self.pickle {
            pickle::dumps(value)?
        } else {
            codec::encode(value)?
        };
        self.send_bytes(&bytes)
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
        let mut frame = Vec::with_capacity(12 + bytes.len().min(ONE_WRITE));
        if len <= SHORT_MAX {
            // In range by the test above.
            frame.extend_from_slice(&(len as u32).to_be_bytes());
        } else {
            frame.extend_from_slice(&(-1i32).to_be_bytes());
            frame.extend_from_slice(&len.to_be_bytes());
        }
        let result = if bytes.len() <= ONE_WRITE {
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
    /// the message is not a `T`, [`Error::MessageTooLarge`];
    /// [`Error::Python`] when a pickling peer sent an exception.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode(&self.recv_bytes()?)
    }

    /// Receives a value, waiting at most `timeout` for it to start arriving.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.decode(&self.recv_frame(multiproc_process::deadline(timeout), None)?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        if self.pickle {
            pickle::loads(bytes)
        } else {
            codec::decode(bytes)
        }
    }

    /// Receives one message's bytes. Python: `Connection.recv_bytes()`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_frame(None, None)
    }

    /// Receives one message's bytes, waiting at most `timeout` for it to
    /// start arriving.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_frame(multiproc_process::deadline(timeout), None)
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

    /// Receives a value without blocking a thread while it waits for the
    /// message to begin, under any async runtime (woken through the
    /// process's reactor); the rest of the message is then read as
    /// [`recv`](SocketConnection::recv) reads it, each piece within a
    /// second. Dropping the future while it waits takes nothing. Python
    /// (asyncio): `await loop.run_in_executor(None, conn.recv)`.
    ///
    /// # Errors
    ///
    /// As [`recv`](SocketConnection::recv).
    pub async fn recv_async<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode(&self.recv_bytes_async().await?)
    }

    /// As [`recv_async`](SocketConnection::recv_async), one message as
    /// bytes.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](SocketConnection::recv_bytes).
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        self.recv_bytes_within_async(None).await
    }

    /// As [`recv_bytes_async`](SocketConnection::recv_bytes_async), with
    /// `Timeout` when no message begins within `silence` (`None`: as long
    /// as it takes).
    pub(crate) async fn recv_bytes_within_async(
        &self,
        silence: Option<Duration>,
    ) -> Result<Vec<u8>> {
        let deadline = silence.and_then(multiproc_process::deadline);
        loop {
            if self.poll(Some(Duration::ZERO))? {
                // Readable (or at its end): the message has begun, unless
                // another thread of this process took it first.
                let soon = Instant::now() + Duration::from_millis(1);
                match self.recv_frame(Some(soon), None) {
                    Err(Error::Timeout) => {}
                    done => return done,
                }
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(Error::Timeout),
                },
                None => None,
            };
            multiproc_process::reactor::readable(self.stream.as_fd(), left).await;
        }
    }

    /// Closes the connection: both directions, at once. Python:
    /// `Connection.close()`.
    pub fn close(&self) {
        self.broken.store(true, Ordering::Relaxed);
        self.stream.shutdown();
    }

    /// Bounds every send: a peer that stops reading fails a send after
    /// `timeout` (and the connection is closed) instead of holding it.
    pub(crate) fn set_send_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        Ok(self.stream.set_write_timeout(timeout)?)
    }

    /// Reads one frame. `deadline` bounds the wait for its first byte, and
    /// then each piece of the rest must follow within a second; `limit`
    /// overrides the size limit.
    pub(crate) fn recv_frame(
        &self,
        deadline: Option<Instant>,
        limit: Option<u64>,
    ) -> Result<Vec<u8>> {
        let (head, body) = match deadline {
            None => (Pace::Forever, Pace::Forever),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (Pace::Until(d), Pace::Idle(left.max(FRAME_IDLE)))
            }
        };
        self.read_frame(head, body, limit)
    }

    /// Reads one frame, the whole of it at `pace` (the handshake's).
    pub(crate) fn recv_frame_paced(&self, pace: Pace, limit: u64) -> Result<Vec<u8>> {
        self.read_frame(pace, pace, Some(limit))
    }

    fn read_frame(&self, head: Pace, body: Pace, limit: Option<u64>) -> Result<Vec<u8>> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let _r = match head {
            // Another thread may be receiving: wait for it no longer than
            // for the message.
            Pace::Until(d) => self.read.try_lock_until(d).ok_or(Error::Timeout)?,
            _ => self.read.lock(),
        };
        if let Pace::Until(d) = head {
            // Nothing consumed yet: a timeout here leaves the connection
            // as it was.
            if !self.stream.readable_by(d)? {
                return Err(Error::Timeout);
            }
        }
        let mut short = [0u8; 4];
        self.read_exact(&mut short, body)?;
        let len = match i32::from_be_bytes(short) {
            -1 => {
                let mut long = [0u8; 8];
                self.read_exact(&mut long, body)?;
                u64::from_be_bytes(long)
            }
            n => u64::try_from(n).map_err(|_| {
                self.close();
                Error::Decode(format!("a frame header gave the length {n}"))
            })?,
        };
        let max = limit.unwrap_or_else(|| self.max_message.load(Ordering::Relaxed));
        if len > max {
            self.close();
            return Err(Error::MessageTooLarge { size: len, max });
        }
        let len = usize::try_from(len).map_err(|_| Error::MessageTooLarge { size: len, max })?;
        let mut body_bytes = vec![0u8; len];
        self.read_exact(&mut body_bytes, body)?;
        Ok(body_bytes)
    }

    /// Reads `buf` full; a failure here cuts the stream mid-frame.
    fn read_exact(&self, buf: &mut [u8], pace: Pace) -> Result<()> {
        self.stream.read_exact(buf, pace).map_err(|e| self.fail(e))
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

/// The pace of a handshake: all of it within `timeout`.
fn pace_within(timeout: Duration) -> Pace {
    match multiproc_process::deadline(timeout) {
        Some(d) => Pace::Until(d),
        None => Pace::Forever,
    }
}
