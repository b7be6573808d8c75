//! Iterating over a queue: waiting for each message until the handle is
//! closed, or taking what is there now.

use std::fmt;
use std::time::Duration;

use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Queue;

/// How soon a blocked [`Queue::iter`] sees its handle closed.
pub const CLOSE_SEEN: Duration = Duration::from_millis(20);

/// The iterator of [`Queue::iter`] (and of the other queues' `iter`).
pub struct QueueIter<'q, T> {
    pub(super) queue: &'q Queue<T>,
}

impl<T: Serialize + DeserializeOwned> Iterator for QueueIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            // Waits in slices, so that a close by another thread ends it.
            match self
                .queue
                .get_with(true, multiproc_process::deadline(CLOSE_SEEN))
            {
                Ok(v) => return Some(Ok(v)),
                Err(Error::Closed) => return None,
                Err(Error::Timeout | Error::Empty) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<T> fmt::Debug for QueueIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueIter")
            .field("queue", self.queue)
            .finish()
    }
}

/// The iterator of [`Queue::try_iter`].
pub struct QueueTryIter<'q, T> {
    pub(super) queue: &'q Queue<T>,
}

impl<T: Serialize + DeserializeOwned> Iterator for QueueTryIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.queue.get_with(false, None) {
            Ok(v) => Some(Ok(v)),
            Err(Error::Closed | Error::Empty) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl<T> fmt::Debug for QueueTryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTryIter")
            .field("queue", self.queue)
            .finish()
    }
}

impl<'q, T: Serialize + DeserializeOwned> IntoIterator for &'q Queue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'q, T>;

    fn into_iter(self) -> QueueIter<'q, T> {
        self.iter()
    }
}
