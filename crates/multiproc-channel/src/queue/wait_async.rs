//! The queues' async `get` and `put`: the non-waiting calls, and between
//! tries a wait for the ring's bell on the process's reactor.
//!
//! A future dropped while it waits has taken nothing (a message stays in
//! the queue) and put nothing (the value is dropped with the future, as
//! a value never sent). A message larger than the queue's ring is the
//! exception: once its first chunk is in, `try_put` (and so `put_async`)
//! waits for the consumer to take the rest, blocking the thread.

use std::sync::atomic::Ordering;

use std::time::Duration;

use multiproc_process::bell::{ASYNC_SLICE, next_slice};
use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{JoinableQueue, PutError, Queue, SimpleQueue};

/// How long an async get pauses while another consumer takes a message.
const BUSY: Duration = Duration::from_millis(1);

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the oldest message without blocking a thread, under any async
    /// runtime. Dropping the future loses nothing: a message not yet taken
    /// stays for the next `get`. Python (asyncio):
    /// `await loop.run_in_executor(None, q.get)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub async fn get_async(&self) -> Result<T> {
        let ring = self.ring();
        let mut slice = ASYNC_SLICE;
        loop {
            match self.try_get() {
                // Data there, but another consumer holds the get lock (or
                // keeps it for a partial message): a pause, not a spin.
                Err(Error::Empty) if ring.has_data() => {
                    ring.wait_async(|| false, BUSY, false).await;
                }
                Err(Error::Empty) => {
                    ring.wait_async(|| ring.has_data(), slice, true).await;
                    slice = next_slice(slice);
                }
                got => return got,
            }
        }
    }

    /// Puts `v` without blocking a thread, waiting for room as
    /// [`put`](Queue::put) does. Python (asyncio):
    /// `await loop.run_in_executor(None, q.put, v)`.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put), with the value back.
    pub async fn put_async(&self, mut v: T) -> std::result::Result<(), PutError<T>> {
        let mut slice = ASYNC_SLICE;
        loop {
            match self.try_put(v) {
                // No room (or `maxsize`): consumers ring the bell as they
                // take; a ring missed costs a slice.
                Err(PutError::Full(back)) => {
                    v = back;
                    self.ring().wait_async(|| false, slice, false).await;
                    slice = next_slice(slice);
                }
                done => return done,
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// As [`Queue::get_async`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }

    /// As [`Queue::put_async`], counting the message unfinished once it
    /// is in.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub async fn put_async(&self, v: T) -> std::result::Result<(), PutError<T>> {
        let unfinished = self.queue.ring().unfinished();
        unfinished.fetch_add(1, Ordering::SeqCst);
        // Counted first (as `put`), and uncounted if the future is dropped
        // or the put fails.
        struct Uncount<'a, T: Serialize + DeserializeOwned>(&'a JoinableQueue<T>, bool);
        impl<T: Serialize + DeserializeOwned> Drop for Uncount<'_, T> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.queue.ring().task_done();
                }
            }
        }
        let mut guard = Uncount(self, false);
        let put = self.queue.put_async(v).await;
        guard.1 = put.is_ok();
        put
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// As [`Queue::get_async`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }

    /// As [`Queue::put_async`] (a simple queue is unbounded: it waits only
    /// for room in the ring).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub async fn put_async(&self, v: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put_async(v).await
    }
}
