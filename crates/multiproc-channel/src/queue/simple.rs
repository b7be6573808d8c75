//! [`SimpleQueue`]: put, get, empty and close.

use std::fmt;
use std::time::Duration;

use multiproc_process::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{PutError, Queue, QueueIter};

/// A simpler queue: put, get, empty and close, unbounded.
///
/// Python: `multiprocessing.SimpleQueue`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T> {
    pub(super) queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("queue", &self.queue)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new simple queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Puts `v`. Python: `SimpleQueue.put(v)`.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, v: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(v)
    }

    /// Takes the oldest message, waiting for one. Python: `SimpleQueue.get()`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](multiproc_process::Error::Timeout) if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// Whether the queue holds no message. Python: `SimpleQueue.empty()`.
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes this process's handles: later puts and gets through them
    /// fail with [`Error::Closed`](multiproc_process::Error::Closed). Python: `SimpleQueue.close()`.
    pub fn close(&self) {
        self.queue.close();
    }

    /// Whether this handle was closed (Python 3.9's `SimpleQueue._closed`).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// The messages as they come, until this handle is closed, as
    /// [`Queue::iter`].
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.queue.iter()
    }
}

impl<'q, T: Serialize + DeserializeOwned> IntoIterator for &'q SimpleQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'q, T>;

    fn into_iter(self) -> QueueIter<'q, T> {
        self.iter()
    }
}
