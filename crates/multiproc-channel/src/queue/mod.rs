//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]: typed queues between
//! processes over the shared-memory ring, and their iterators.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ring::{GetFail, PutFail, Ring};

mod iter;
mod joinable;
mod simple;
mod wait_async;

pub use iter::{CLOSE_SEEN, QueueIter, QueueTryIter};
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

/// The ring's size unless chosen: room for many small messages, and
/// memory is only committed as it is used.
pub const DEFAULT_RING_BYTES: usize = 1 << 20;

/// Why a put did not deliver its value, which it hands back.
///
/// `?` turns it into the matching [`Error`] (dropping the value).
pub enum PutError<T> {
    /// The queue is full (`try_put`). Python: `queue.Full`.
    Full(T),
    /// The timeout passed first (`put_timeout`).
    Timeout(T),
    /// This handle was closed.
    Closed(T),
    /// The value could not be encoded.
    Encode(T, Error),
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v)
            | PutError::Timeout(v)
            | PutError::Closed(v)
            | PutError::Encode(v, _) => v,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => fmt::Display::fmt(&Error::Full, f),
            PutError::Timeout(_) => fmt::Display::fmt(&Error::Timeout, f),
            PutError::Closed(_) => fmt::Display::fmt(&Error::Closed, f),
            PutError::Encode(_, e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Error {
        match e {
            PutError::Full(_) => Error::Full,
            PutError::Timeout(_) => Error::Timeout,
            PutError::Closed(_) => Error::Closed,
            PutError::Encode(_, e) => e,
        }
    }
}

/// What the handles of one queue in one process share.
struct Inner {
    ring: Ring,
    closed: AtomicBool,
}

/// A first-in first-out queue between processes.
///
/// Python: `multiprocessing.Queue(maxsize)`. Any number of processes put and
/// get; each message is delivered once, whole. Values are serde values; the
/// queue is a ring in shared memory, so there is no feeder thread: when `put`
/// returns, the message is in the queue, and a producer that exits at once
/// loses nothing. A message larger than the ring goes through in pieces
/// while a consumer reads it.
///
/// # When a process dies, or stops
///
/// - A producer killed in a `put`: its message is not in the queue at all
///   (no consumer sees a part of it), and the counts stay exact. The next
///   producer takes the put lock over, within about 20 ms.
/// - A consumer killed in a `get`: a message no larger than the ring (1 MiB
///   unless chosen) stays in the queue, whole, for the next consumer, unless
///   the consumer had taken it. A message larger than the ring is taken in
///   pieces, and is lost with a consumer killed while it takes them (the
///   next consumer skips the rest).
/// - `qsize`, `empty` and `full` count the messages a `get` would find:
///   exactly, once the puts and gets under way are done (while they run,
///   as Python's, the count is a moment's). A death never leaves a message
///   uncounted or counted twice, so a bounded queue never stays full.
/// - The non-blocking calls take over a dead holder's lock as the blocking
///   ones do (`try_get` after a consumer died inside `get` finds the
///   message); `try_put` never waits behind a producer that waits for room.
/// - A producer stopped (`SIGSTOP`, a debugger) in the middle of a message
///   larger than the ring does not hold a `get_timeout` past its timeout:
///   the consumer keeps what it took for its process's next `get`, and the
///   message comes whole once the producer goes on. Until then, the queue's
///   other consumers wait behind it.
///
/// # Examples
///
/// ```
/// use multiproc as mp;
///
/// fn squares(nums: Vec<u64>, q: mp::Queue<u64>) -> mp::Result<()> {
///     for n in nums {
///         q.put(n * n)?;
///     }
///     Ok(())
/// }
///
/// fn squares_ok(nums: Vec<u64>, q: mp::Queue<u64>) -> bool {
///     squares(nums, q).is_ok()
/// }
///
/// # fn main() -> mp::Result<()> {
/// let q = mp::Queue::new()?;
/// let mut p = mp::Process::new(squares_ok, (vec![1, 2, 3, 4], q.clone()));
/// p.start()?;
/// p.join()?;
/// assert!(p.take_result()?);
/// let got: Vec<u64> = (0..4).map(|_| q.get()).collect::<mp::Result<_>>()?;
/// assert_eq!(got, [1, 4, 9, 16]);
/// # Ok(())
/// # }
/// ```
pub struct Queue<T> {
    inner: Arc<Inner>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the shared memory.
    pub fn new() -> Result<Queue<T>> {
        Queue::with_capacity(0, DEFAULT_RING_BYTES)
    }

    /// A queue of at most `maxsize` messages (0: unbounded).
    /// Python: `Queue(maxsize)`.
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new).
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Queue::with_capacity(maxsize, DEFAULT_RING_BYTES)
    }

    /// A queue of at most `maxsize` messages (0: unbounded) over a ring of
    /// `ring_bytes` bytes (at least 128).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a ring too small, [`Error::Io`] if the
    /// system refuses the shared memory.
    pub fn with_capacity(maxsize: usize, ring_bytes: usize) -> Result<Queue<T>> {
        Ok(Queue {
            inner: Arc::new(Inner {
                ring: Ring::new(ring_bytes, maxsize)?.with_bell()?,
                closed: AtomicBool::new(false),
            }),
            _t: PhantomData,
        })
    }

    fn ring(&self) -> &Ring {
        &self.inner.ring
    }

    fn put_with(
        &self,
        v: T,
        wait: bool,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(v));
        }
        let bytes = match codec::encode(&v) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Encode(v, e)),
        };
        match self.ring().put(&bytes, wait, deadline) {
            Ok(()) => Ok(()),
            Err(PutFail::Full) => Err(PutError::Full(v)),
            Err(PutFail::Timeout) => Err(PutError::Timeout(v)),
            // A queue has no `gone` and no `before` step.
            Err(PutFail::Gone) => Err(PutError::Closed(v)),
            Err(PutFail::Io(e)) => Err(PutError::Encode(v, Error::Io(e))),
        }
    }

    /// Puts `v`, waiting while the queue is full. Python: `Queue.put(v)`.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] on a closed handle, [`PutError::Encode`].
    pub fn put(&self, v: T) -> std::result::Result<(), PutError<T>> {
        self.put_with(v, true, None)
    }

    /// Puts `v` if there is room now. Python: `Queue.put_nowait(v)`.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] with the value if the queue is full.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, v: T) -> std::result::Result<(), PutError<T>> {
        self.put_with(v, false, None)
    }

    /// Puts `v`, waiting at most `timeout` for room.
    /// Python: `Queue.put(v, timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`PutError::Timeout`] with the value.
    pub fn put_timeout(&self, v: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.put_with(v, true, multiproc_process::deadline(timeout))
    }

    /// Puts `v`, waiting until `deadline` at most for room.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Queue::put_timeout).
    pub fn put_deadline(&self, v: T, deadline: Instant) -> std::result::Result<(), PutError<T>> {
        self.put_with(v, true, Some(deadline))
    }

    pub(crate) fn get_with(&self, wait: bool, deadline: Option<Instant>) -> Result<T> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match self.ring().get(wait, deadline) {
            Ok(bytes) => codec::decode(&bytes),
            Err(GetFail::Empty) if wait && deadline.is_some() => Err(Error::Timeout),
            // Another consumer is taking a message: none for us now.
            Err(GetFail::Empty | GetFail::Busy) => Err(Error::Empty),
            Err(GetFail::Corrupt(why)) => Err(Error::Decode(why)),
            Err(GetFail::TooLarge(size)) => Err(Error::MessageTooLarge {
                size,
                max: u64::MAX,
            }),
        }
    }

    /// Takes the oldest message, waiting for one. Python: `Queue.get()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed handle, [`Error::Decode`] if the
    /// message is not a `T`.
    pub fn get(&self) -> Result<T> {
        self.get_with(true, None)
    }

    /// Takes the oldest message if there is one now.
    /// Python: `Queue.get_nowait()`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if there is none.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.get_with(false, None)
    }

    /// Takes the oldest message, waiting at most `timeout`.
    /// Python: `Queue.get(timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(true, multiproc_process::deadline(timeout))
    }

    /// Takes the oldest message, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if none came.
    pub fn get_deadline(&self, deadline: Instant) -> Result<T> {
        self.get_with(true, Some(deadline))
    }

    /// The number of messages in the queue (approximate while others put
    /// and get). Python: `Queue.qsize()`.
    pub fn qsize(&self) -> usize {
        usize::try_from(self.ring().len()).unwrap_or(usize::MAX)
    }

    /// Whether the queue holds no message. Python: `Queue.empty()`.
    pub fn empty(&self) -> bool {
        self.ring().len() == 0
    }

    /// Whether a bounded queue is at its `maxsize`. Python: `Queue.full()`.
    pub fn full(&self) -> bool {
        let max = self.ring().maxsize();
        max > 0 && self.ring().len() >= max
    }

    /// The bound given at creation (0: unbounded).
    pub fn maxsize(&self) -> usize {
        usize::try_from(self.ring().maxsize()).unwrap_or(usize::MAX)
    }

    /// Closes this process's handles on the queue: later puts and gets
    /// through them fail with [`Error::Closed`]; other processes go on.
    /// Python: `Queue.close()`.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Queue::close) was called on this handle (or a clone).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The messages as they come, waiting for each, until this handle is
    /// closed (by [`close`](Queue::close) on any clone in this process,
    /// seen within [`CLOSE_SEEN`]). A message that does not decode is an
    /// `Err` in its place. Python: `iter(q.get, sentinel)`.
    ///
    /// To end the iteration of a consumer in another process, put a
    /// sentinel (a `Queue<Option<T>>` and `None`, say): a handle's close is
    /// its own process's, as in Python.
    pub fn iter(&self) -> QueueIter<'_, T> {
        QueueIter { queue: self }
    }

    /// The messages in the queue now, without waiting: ends when it is
    /// empty (or this handle closed).
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        QueueTryIter { queue: self }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.inner.ring.len())
            .field("maxsize", &self.inner.ring.maxsize())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.ring.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let ring = Ring::deserialize(d)?;
        Ok(Queue {
            inner: Arc::new(Inner {
                ring,
                closed: AtomicBool::new(false),
            }),
            _t: PhantomData,
        })
    }
}
