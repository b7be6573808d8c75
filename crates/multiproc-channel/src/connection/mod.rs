//! [`Pipe`] and [`Connection`]: two ends that send messages to each other.
//!
//! Each direction is a ring in shared memory (the queue's ring), so a
//! message costs no system call when both ends run: the reader spins briefly
//! on the ring before it sleeps. The two ends also share a Unix socket
//! pair, which carries what shared memory cannot:
//!
//! - descriptors: a message whose value holds handles (a `Lock`, a
//!   `Queue`, another `Connection`) sends their descriptors with
//!   `SCM_RIGHTS`, under the ring's put lock, before the message is
//!   published, so descriptors and messages keep one order;
//! - wake-ups: a reader with nothing to read sets its ring's doorbell flag
//!   and sleeps in `poll` on the socket; a writer that sees the flag sends
//!   one byte;
//! - the end: when the other end closes (or its process dies), the socket
//!   hangs up, and `recv` returns [`Error::Closed`] once the ring is empty.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use multiproc_process::handoff;
use multiproc_process::{Error, Result, fdio};
use multiproc_sync::futex::{self, Spin};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ring::{GetFail, PutFail, PutOpts, Ring};

mod wait_async;

/// The ring of each direction unless chosen.
pub const PIPE_RING_BYTES: usize = 4 << 20;

/// How often a sender asks whether the other end is gone: a send within
/// this long of the last check goes as the last one did.
const HANGUP_CHECK: Duration = Duration::from_micros(50);

/// The longest message a connection accepts unless told otherwise (2 GiB).
pub const DEFAULT_MAX_MESSAGE: u64 = 2 << 30;

/// A byte on the socket that only wakes the reader.
const DOORBELL: u8 = b'd';
/// A byte on the socket that carries descriptors.
const FDS: u8 = b'f';
/// The longest a reader sleeps before it looks at its ring again.
const SLICE: Duration = Duration::from_millis(50);

/// Makes connected pairs of [`Connection`]s.
///
/// Python: `multiprocessing.Pipe(duplex)`.
#[derive(Debug, Clone, Copy)]
pub struct Pipe;

impl Pipe {
    /// Two connected ends; each sends to and receives from the other.
    /// Python: `Pipe()`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the memory or the sockets.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection)> {
        Pipe::with_capacity(PIPE_RING_BYTES)
    }

    /// As [`new`](Pipe::new), with rings of `ring_bytes` each way.
    ///
    /// # Errors
    ///
    /// As [`new`](Pipe::new), or [`Error::InvalidArgument`] for a ring too
    /// small.
    pub fn with_capacity(ring_bytes: usize) -> Result<(Connection, Connection)> {
        let (s0, s1) = fdio::socketpair()?;
        let ab = Ring::new(ring_bytes, 0)?;
        let ba = Ring::new(ring_bytes, 0)?;
        Ok((
            Connection::from_parts(s0, Some(ba.clone()), Some(ab.clone()))?,
            Connection::from_parts(s1, Some(ab), Some(ba))?,
        ))
    }

    /// A one-way pair: `(reader, writer)`. Python: `Pipe(duplex=False)`.
    ///
    /// # Errors
    ///
    /// As [`new`](Pipe::new).
    pub fn one_way() -> Result<(Connection, Connection)> {
        let (s0, s1) = fdio::socketpair()?;
        let ring = Ring::new(PIPE_RING_BYTES, 0)?;
        Ok((
            Connection::from_parts(s0, Some(ring.clone()), None)?,
            Connection::from_parts(s1, None, Some(ring))?,
        ))
    }
}

struct Inner {
    /// `None` once this process closed its handles.
    sock: Mutex<Option<Arc<OwnedFd>>>,
    /// Messages for us.
    rx: Option<Ring>,
    /// Messages from us.
    tx: Option<Ring>,
    max_message: AtomicU64,
    closed: AtomicBool,
    /// The socket hung up: the other end is gone.
    hung_up: AtomicBool,
    /// When a send last polled the socket for a hang-up, in nanoseconds
    /// since `born` (0: never).
    checked_at: AtomicU64,
    born: Instant,
    /// Descriptors received on the socket and not yet claimed by a message.
    fds: Mutex<VecDeque<OwnedFd>>,
    spin: Spin,
}

/// One end of a [`Pipe`].
///
/// Python: `multiprocessing.connection.Connection`. `send` and `recv` move
/// serde values (handles included: a `Lock`, a `Queue`, another
/// `Connection` arrive working); `send_bytes` and `recv_bytes` move bytes.
/// Messages are never merged or split. `recv` after the other end closed,
/// and every message it sent was read, is [`Error::Closed`] (Python's
/// `EOFError`).
///
/// A connection is a handle: pass it to a child as an argument, or through
/// another connection. Clones share this process's view of it; two
/// processes reading (or writing) the same end take turns, whole messages
/// each.
///
/// The other end sees [`Error::Closed`] once every process holding this end
/// has closed or dropped it. Under the fork start method a child inherits
/// all of its parent's descriptors, the ends it was not given included (as
/// in Python): drop the ends a child does not use before starting it, or end
/// a conversation with a message of its own. A send to an end that nobody
/// holds any more is [`Error::Closed`] (Python's `BrokenPipeError`), not a
/// message lost. (The socket is asked at most every 50 µs: a send that
/// close after the last one goes as that one did, lost with the end if it
/// closed in between, as a message sent just before the close would be.)
///
/// # When a process dies
///
/// As for a [`Queue`](crate::Queue): a writer killed in a `send` delivers
/// nothing of its message; a reader killed in a `recv` leaves a message no
/// larger than the ring (4 MiB for `Pipe::new`) whole for the next reader
/// of its end, and loses one that is larger. Another process reading the
/// same end then goes on (its `recv_timeout` returns on time), and a reader
/// whose timeout passes in the middle of a large message keeps what it took
/// for its next `recv`.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl Connection {
    fn from_parts(sock: OwnedFd, rx: Option<Ring>, tx: Option<Ring>) -> Result<Connection> {
        fdio::set_nonblocking(sock.as_fd())?;
        Ok(Connection {
            inner: Arc::new(Inner {
                sock: Mutex::new(Some(Arc::new(sock))),
                rx,
                tx,
                max_message: AtomicU64::new(DEFAULT_MAX_MESSAGE),
                closed: AtomicBool::new(false),
                hung_up: AtomicBool::new(false),
                checked_at: AtomicU64::new(0),
                born: Instant::now(),
                fds: Mutex::new(VecDeque::new()),
                spin: Spin::new(),
            }),
        })
    }

    fn open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The socket, while this handle is open.
    fn sock(&self) -> Result<Arc<OwnedFd>> {
        self.inner
            .sock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(Error::Closed)
    }

    fn rx(&self) -> Result<&Ring> {
        self.open()?;
        self.inner
            .rx
            .as_ref()
            .ok_or(Error::Unsupported("this end of a one-way pipe only sends"))
    }

    fn tx(&self) -> Result<&Ring> {
        self.open()?;
        self.inner.tx.as_ref().ok_or(Error::Unsupported(
            "this end of a one-way pipe only receives",
        ))
    }

    /// Sets the longest message this end accepts; a longer one is skipped
    /// and the connection closed, without allocating for it.
    pub fn set_max_message_size(&self, bytes: u64) {
        self.inner.max_message.store(bytes, Ordering::SeqCst);
    }

    /// Sends a value. Python: `Connection.send(obj)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if it cannot be encoded, [`Error::Closed`] if
    /// either end is closed.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let tx = self.tx()?;
        let (bytes, fds) = handoff::encode_with_fds(value)?;
        self.send_frame(tx, &bytes, &fds, true).map(drop)
    }

    /// Sends bytes as one message. Python: `Connection.send_bytes(buf)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if either end is closed.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        let tx = self.tx()?;
        self.send_frame(tx, bytes, &[], true).map(drop)
    }

    /// Sends bytes as one message with descriptors, which arrive with it
    /// (duplicates in the receiving process, taken in order by
    /// [`recv_bytes_into_vec_with_fds`](Connection::recv_bytes_into_vec_with_fds)).
    /// Python: `send_bytes` after `multiprocessing.reduction.send_handle`.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes); [`Error::Encode`] for
    /// more than [`handoff::MAX_FDS`] descriptors.
    pub fn send_bytes_with_fds(&self, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<()> {
        let tx = self.tx()?;
        if fds.len() > handoff::MAX_FDS {
            return Err(Error::Encode(format!(
                "a message may carry at most {} descriptors",
                handoff::MAX_FDS
            )));
        }
        self.send_frame(tx, bytes, &fds, true).map(drop)
    }

    /// Sends one message; with `wait == false`, `Ok(false)` when the ring
    /// has no room for it now (its descriptors were not sent).
    fn send_frame(&self, tx: &Ring, bytes: &[u8], fds: &[OwnedFd], wait: bool) -> Result<bool> {
        let sock = self.sock()?;
        let sock = sock.as_fd();
        // A message to an end nobody holds any more would be lost: as
        // CPython's `BrokenPipeError`, say so. The socket is polled (not
        // read: a reader of this end in another thread keeps its
        // doorbells), at most once per `HANGUP_CHECK`: a send so soon after
        // the last one is as if it had gone with it.
        if self.inner.hung_up.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let now = self.inner.born.elapsed().as_nanos() as u64;
        let last = self.inner.checked_at.load(Ordering::Relaxed);
        if now.wrapping_sub(last) >= HANGUP_CHECK.as_nanos() as u64 || last == 0 {
            self.inner.checked_at.store(now.max(1), Ordering::Relaxed);
            if fdio::hung_up(sock) {
                self.inner.hung_up.store(true, Ordering::SeqCst);
                return Err(Error::Closed);
            }
        }
        let nfds =
            u8::try_from(fds.len()).map_err(|_| Error::Encode("too many descriptors".into()))?;
        let gone = || self.peer_gone();
        let mut before = || {
            if fds.is_empty() {
                return Ok(());
            }
            fdio::send_with_fds(sock, &[FDS], fds)
        };
        let ring = || {
            if tx.doorbell().load(Ordering::SeqCst) != 0 {
                // Best effort, as below: a full socket wakes the reader too.
                let _ = fdio::send_nowait(sock, &[DOORBELL]);
            }
        };
        let mut opts = PutOpts {
            meta: nfds,
            wait,
            deadline: None,
            gone: &gone,
            before: &mut before,
            chunk_published: &ring,
        };
        match tx.put_with(bytes, &mut opts) {
            Ok(()) => {}
            Err(PutFail::Gone) => return Err(Error::Closed),
            Err(PutFail::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Err(Error::Closed);
            }
            Err(PutFail::Io(e)) => return Err(Error::Io(e)),
            Err(PutFail::Full) => return Ok(false),
            Err(PutFail::Timeout) => return Err(Error::Timeout),
        }
        if tx.doorbell().load(Ordering::SeqCst) != 0 {
            // A full socket already wakes the reader; a gone one is noticed
            // by the next send.
            let _ = fdio::send_nowait(sock, &[DOORBELL]);
        }
        Ok(true)
    }

    /// After a receive freed room in `rx`: an async sender of the other
    /// end waiting for room is rung on the socket (it arrives at its end).
    fn room_freed(&self, rx: &Ring) {
        if rx.room_awaited()
            && let Ok(sock) = self.sock()
        {
            // Best effort: a full socket wakes the sender too, and a
            // missed ring costs it a slice.
            let _ = fdio::send_nowait(sock.as_fd(), &[DOORBELL]);
        }
    }

    /// Whether the other end is gone: its socket hung up.
    fn peer_gone(&self) -> bool {
        if self.inner.hung_up.load(Ordering::SeqCst) {
            return true;
        }
        self.drain_socket();
        self.inner.hung_up.load(Ordering::SeqCst)
    }

    /// Reads what the socket holds: doorbells are dropped, descriptors
    /// queued, end of file noted.
    fn drain_socket(&self) {
        let Ok(sock) = self.sock() else { return };
        let mut buf = [0u8; 256];
        let mut fds = Vec::new();
        loop {
            match fdio::recv_with_fds(sock.as_fd(), &mut buf, &mut fds) {
                Ok(0) => {
                    self.inner.hung_up.store(true, Ordering::SeqCst);
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.inner.hung_up.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        if !fds.is_empty() {
            self.inner
                .fds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(fds);
        }
    }

    /// Waits until a message is there (true) or `deadline` (false). `Closed`
    /// when nothing is there and the other end is gone.
    fn wait_readable(&self, rx: &Ring, deadline: Option<Instant>) -> Result<bool> {
        let start = Instant::now();
        // A poll that must not wait does not spin either (nor teach the
        // spin that waits are long).
        if deadline.is_none_or(|d| d > start) {
            if self.inner.spin.spin(|| rx.has_data()) {
                return Ok(true);
            }
        } else if rx.has_data() {
            return Ok(true);
        }
        loop {
            rx.doorbell().store(1, Ordering::SeqCst);
            // Stale doorbells go first: one rung after this drain stays in
            // the socket for the poll below, and data published before the
            // check that follows is seen by it. (Draining after the check
            // could swallow the doorbell of a message published in
            // between, and sleep a whole slice with a message waiting.)
            self.drain_socket();
            if rx.has_data() {
                rx.doorbell().store(0, Ordering::SeqCst);
                self.inner.spin.slept(start.elapsed());
                return Ok(true);
            }
            if self.inner.hung_up.load(Ordering::SeqCst) {
                rx.doorbell().store(0, Ordering::SeqCst);
                return if rx.has_data() {
                    Ok(true)
                } else {
                    Err(Error::Closed)
                };
            }
            // Sliced: another thread of this process may have read the
            // doorbell meant for us (while checking whether the peer is gone).
            let Some(timeout) = futex::remaining(deadline, SLICE) else {
                rx.doorbell().store(0, Ordering::SeqCst);
                return Ok(rx.has_data());
            };
            fdio::poll_readable(&[self.sock()?.as_fd()], Some(timeout))?;
            rx.doorbell().store(0, Ordering::SeqCst);
            if rx.has_data() {
                self.inner.spin.slept(start.elapsed());
                return Ok(true);
            }
        }
    }

    fn recv_frame(&self, deadline: Option<Instant>) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut bytes = Vec::new();
        let fds = self.recv_frame_into(deadline, &mut bytes)?;
        Ok((bytes, fds))
    }

    /// Receives a message into `out` (replacing what it held).
    fn recv_frame_into(
        &self,
        deadline: Option<Instant>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>> {
        let rx = self.rx()?;
        loop {
            let max = self.inner.max_message.load(Ordering::SeqCst);
            match rx.get_into(false, None, max, out) {
                Ok(nfds) => {
                    self.room_freed(rx);
                    return self.claim_fds(usize::from(nfds));
                }
                Err(GetFail::Empty) => {
                    if !self.wait_readable(rx, deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                // Another reader of this end is taking a message: wait for
                // it (in slices), not for data, which is there.
                Err(GetFail::Busy) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Error::Timeout);
                    }
                    rx.wait_get_lock(deadline);
                }
                Err(fail @ (GetFail::TooLarge(_) | GetFail::Corrupt(_))) => {
                    return Err(self.broken(fail, max));
                }
            }
        }
    }

    /// A receive that cannot go on (a message over `max`, a ring that
    /// makes no sense): the connection is closed, and this is the error.
    fn broken(&self, fail: GetFail, max: u64) -> Error {
        self.close();
        match fail {
            GetFail::TooLarge(size) => Error::MessageTooLarge { size, max },
            GetFail::Corrupt(why) => Error::Decode(why),
            GetFail::Empty | GetFail::Busy => Error::Closed,
        }
    }

    /// Takes the first `n` queued descriptors, reading the socket for them:
    /// they were sent before their message was published.
    fn claim_fds(&self, n: usize) -> Result<Vec<OwnedFd>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut q = self
                    .inner
                    .fds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if q.len() >= n {
                    return Ok(q.drain(..n).collect());
                }
            }
            if Instant::now() >= deadline || self.inner.hung_up.load(Ordering::SeqCst) {
                return Err(Error::Decode(
                    "the descriptors of a message did not arrive".into(),
                ));
            }
            fdio::poll_readable(&[self.sock()?.as_fd()], Some(Duration::from_millis(50)))?;
            self.drain_socket();
        }
    }

    /// Receives a value. Python: `Connection.recv()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the other end is gone and everything it sent
    /// was read (Python's `EOFError`); [`Error::Decode`] if the message is not
    /// a `T`; [`Error::MessageTooLarge`] (the connection is then closed).
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        let (bytes, fds) = self.recv_frame(None)?;
        handoff::decode_with_fds(&bytes, fds)
    }

    /// Receives a value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as [`recv`](Connection::recv).
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let (bytes, fds) = self.recv_frame(multiproc_process::deadline(timeout))?;
        handoff::decode_with_fds(&bytes, fds)
    }

    /// Receives one message as bytes. Python: `Connection.recv_bytes()`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        // Descriptors sent with a message read as bytes are closed here.
        self.recv_frame(None).map(|(bytes, _fds)| bytes)
    }

    /// Receives one message into `buf`, replacing its contents and reusing
    /// its allocation: a loop that receives large messages one after
    /// another touches no fresh memory. Returns the message's length.
    /// Python has no twin (its `recv_bytes_into` takes a fixed buffer).
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv); `buf` is then empty.
    pub fn recv_bytes_into_vec(&self, buf: &mut Vec<u8>) -> Result<usize> {
        // Descriptors sent with a message read as bytes are closed here.
        match self.recv_frame_into(None, buf) {
            Ok(_fds) => Ok(buf.len()),
            Err(e) => {
                buf.clear();
                Err(e)
            }
        }
    }

    /// As [`recv_bytes_into_vec`](Connection::recv_bytes_into_vec), giving
    /// the descriptors sent with the message too (see
    /// [`send_bytes_with_fds`](Connection::send_bytes_with_fds)).
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv); `buf` is then empty.
    pub fn recv_bytes_into_vec_with_fds(&self, buf: &mut Vec<u8>) -> Result<Vec<OwnedFd>> {
        self.recv_frame_into(None, buf).inspect_err(|_| buf.clear())
    }

    /// Receives one message into `buf`; returns its length.
    /// Python: `Connection.recv_bytes_into(buf)`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooShort`] with the whole message if it does not fit,
    /// so nothing is lost; otherwise as [`recv`](Connection::recv).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let (bytes, _fds) = self.recv_frame(None)?;
        match buf.get_mut(..bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            None => Err(Error::BufferTooShort { message: bytes }),
        }
    }

    /// Whether a message can be received now, waiting at most `timeout`
    /// for one (`None`: as long as it takes). Also true when the other end
    /// is gone, so that `recv` does not block. Python: `Connection.poll()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed handle.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let rx = self.rx()?;
        match self.wait_readable(rx, timeout.and_then(multiproc_process::deadline)) {
            Ok(ready) => Ok(ready),
            Err(Error::Closed) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Closes this process's handles on this end; the other end sees the
    /// end once every process holding this end has closed or dropped it.
    /// Python: `Connection.close()`.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        // The descriptor closes once no operation of this process uses it.
        self.inner
            .sock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// How many messages sent from this end the other end has not taken
    /// yet (a message being received counts as taken). Python has no twin;
    /// a pool uses it to tell a task its dead worker never read (and can
    /// be sent again) from one it died running.
    pub fn pending_sent(&self) -> usize {
        self.inner
            .tx
            .as_ref()
            .map_or(0, |tx| usize::try_from(tx.len()).unwrap_or(usize::MAX))
    }

    /// Whether this handle was closed.
    pub fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Whether this end can receive (false for the writer of a one-way pipe).
    pub fn readable(&self) -> bool {
        self.inner.rx.is_some()
    }

    /// Whether this end can send (false for the reader of a one-way pipe).
    pub fn writable(&self) -> bool {
        self.inner.tx.is_some()
    }

    /// The socket `wait` polls.
    pub(crate) fn wait_fd(&self) -> Option<Arc<OwnedFd>> {
        self.sock().ok()
    }

    /// Whether `recv` would return at once (a message, or the end).
    pub(crate) fn ready_now(&self) -> bool {
        match &self.inner.rx {
            Some(rx) => rx.has_data() || self.peer_gone(),
            None => false,
        }
    }

    /// Asks writers to ring the socket (`true`), or stops asking.
    pub(crate) fn arm(&self, on: bool) {
        if let Some(rx) = &self.inner.rx {
            rx.doorbell().store(u32::from(on), Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("closed", &self.closed())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(with = "multiproc_process::handoff::fd")]
    sock: OwnedFd,
    rx: Option<Ring>,
    tx: Option<Ring>,
    max_message: u64,
}

#[derive(Serialize)]
struct WireRef<'a> {
    #[serde(with = "multiproc_process::handoff::fd")]
    sock: std::os::fd::BorrowedFd<'a>,
    rx: &'a Option<Ring>,
    tx: &'a Option<Ring>,
    max_message: u64,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let sock = self.sock().map_err(serde::ser::Error::custom)?;
        WireRef {
            sock: sock.as_fd(),
            rx: &self.inner.rx,
            tx: &self.inner.tx,
            max_message: self.inner.max_message.load(Ordering::SeqCst),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Connection, D::Error> {
        let w = Wire::deserialize(d)?;
        let c = Connection::from_parts(w.sock, w.rx, w.tx).map_err(serde::de::Error::custom)?;
        c.set_max_message_size(w.max_message);
        Ok(c)
    }
}
