//! [`JoinableQueue`]: a queue that counts unfinished messages.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_process::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{PutError, Queue, QueueIter};

/// A [`Queue`] that counts unfinished messages: consumers call
/// [`task_done`](JoinableQueue::task_done) per message, and
/// [`join`](JoinableQueue::join) waits until every message put is done.
///
/// Python: `multiprocessing.JoinableQueue`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T> {
    pub(super) queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field(
                "unfinished",
                &self.queue.inner.ring.unfinished().load(Ordering::SeqCst),
            )
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::new()?,
        })
    }

    /// A joinable queue of at most `maxsize` messages.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::with_maxsize(maxsize)?,
        })
    }

    /// Puts `v`, counting it unfinished. Python: `JoinableQueue.put(v)`.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, v: T) -> std::result::Result<(), PutError<T>> {
        let unfinished = self.queue.ring().unfinished();
        unfinished.fetch_add(1, Ordering::SeqCst);
        self.queue.put(v).inspect_err(|_| {
            self.queue.ring().task_done();
        })
    }

    /// Puts `v` if there is room now, counting it unfinished.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    pub fn try_put(&self, v: T) -> std::result::Result<(), PutError<T>> {
        self.queue
            .ring()
            .unfinished()
            .fetch_add(1, Ordering::SeqCst);
        self.queue.try_put(v).inspect_err(|_| {
            self.queue.ring().task_done();
        })
    }

    /// Puts `v`, waiting at most `timeout` for room, counting it
    /// unfinished. Python: `JoinableQueue.put(v, timeout=t)`.
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    pub fn put_timeout(&self, v: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.queue
            .ring()
            .unfinished()
            .fetch_add(1, Ordering::SeqCst);
        self.queue.put_timeout(v, timeout).inspect_err(|_| {
            self.queue.ring().task_done();
        })
    }

    /// Takes the oldest message, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Takes the oldest message if there is one now.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T> {
        self.queue.try_get()
    }

    /// The messages as they come, until this handle is closed, as
    /// [`Queue::iter`]; each still wants its [`task_done`](Self::task_done).
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.queue.iter()
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// Marks one message taken with `get` as done.
    /// Python: `JoinableQueue.task_done()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if called more times than messages were put
    /// (Python's `ValueError: task_done() called too many times`).
    pub fn task_done(&self) -> Result<()> {
        if self.queue.ring().task_done() {
            Ok(())
        } else {
            Err(Error::NotHeld("task_done() called too many times"))
        }
    }

    /// Waits until every message put is done. Python: `JoinableQueue.join()`.
    pub fn join(&self) {
        self.queue.ring().join(None);
    }

    /// Waits at most `timeout` until every message put is done.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if some are still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if self.queue.ring().join(multiproc_process::deadline(timeout)) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// The number of messages in the queue (approximate).
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// Whether the queue holds no message.
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Whether the queue holds `maxsize` messages. Python: `full()`.
    pub fn full(&self) -> bool {
        self.queue.full()
    }

    /// The bound given at creation (`usize::MAX` for none).
    pub fn maxsize(&self) -> usize {
        self.queue.maxsize()
    }

    /// Closes this process's handles, as [`Queue::close`]. Python:
    /// `JoinableQueue.close()`.
    pub fn close(&self) {
        self.queue.close();
    }

    /// Whether this handle was closed.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

impl<'q, T: Serialize + DeserializeOwned> IntoIterator for &'q JoinableQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'q, T>;

    fn into_iter(self) -> QueueIter<'q, T> {
        self.iter()
    }
}
