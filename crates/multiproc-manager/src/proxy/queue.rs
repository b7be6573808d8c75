//! [`QueueProxy`] and [`JoinableQueueProxy`]: managed queues.

use std::time::Duration;

use multiproc_channel::PutError;
use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::ProxyRef;
use crate::wire::{Kind, Op};

fn put_error<T>(e: Error, item: T) -> PutError<T> {
    match e {
        Error::Full | Error::WouldBlock => PutError::Full(item),
        Error::Timeout => PutError::Timeout(item),
        Error::Closed => PutError::Closed(item),
        e => PutError::Encode(item, e),
    }
}

/// The operations queues share.
fn queue_put<T: Serialize>(
    r: &ProxyRef,
    item: T,
    wait: Option<Duration>,
) -> Result<(), PutError<T>> {
    let stored = match r.put(&item) {
        Ok(s) => s,
        Err(e) => return Err(PutError::Encode(item, e)),
    };
    r.unit(Op::Put(stored, wait))
        .map_err(|e| put_error(e, item))
}

/// As [`queue_put`], awaiting the reply.
async fn queue_put_async<T: Serialize>(r: &ProxyRef, item: T) -> Result<(), PutError<T>> {
    let stored = match r.put(&item) {
        Ok(s) => s,
        Err(e) => return Err(PutError::Encode(item, e)),
    };
    r.unit_async(Op::Put(stored, None))
        .await
        .map_err(|e| put_error(e, item))
}

macro_rules! queue_methods {
    () => {
        /// As [`put`](Self::put), awaiting room without blocking a thread,
        /// under any async runtime. A future dropped after the request went
        /// out may have put the item (the manager puts it unless it was
        /// still waiting for room). Python (asyncio):
        /// `await loop.run_in_executor(None, q.put, x)`.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
            queue_put_async(&self.r, item).await
        }

        /// As [`get`](Self::get), awaiting an item without blocking a
        /// thread, under any async runtime. Dropping the future loses
        /// nothing: an item the manager took for it goes back to the
        /// front of the queue. Python (asyncio):
        /// `await loop.run_in_executor(None, q.get)`.
        ///
        /// # Errors
        ///
        /// As [`get`](Self::get).
        pub async fn get_async(&self) -> Result<T> {
            self.r.value_async(Op::Take(None)).await
        }

        /// Puts an item, waiting for room in a bounded queue. Python:
        /// `put(x)`.
        ///
        /// # Errors
        ///
        /// The item comes back in the [`PutError`]: `Closed` when the
        /// manager is gone, `Encode`.
        pub fn put(&self, item: T) -> Result<(), PutError<T>> {
            queue_put(&self.r, item, None)
        }

        /// Puts an item if there is room now. Python: `put_nowait(x)`.
        ///
        /// # Errors
        ///
        /// `PutError::Full`, with the item.
        pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
            queue_put(&self.r, item, Some(Duration::ZERO))
        }

        /// Puts an item, waiting at most `timeout` for room. Python:
        /// `put(x, timeout=t)`.
        ///
        /// # Errors
        ///
        /// `PutError::Timeout`, with the item.
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
            queue_put(&self.r, item, Some(timeout))
        }

        /// Takes the oldest item, waiting for one. Python: `get()`.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`] when the manager is gone, [`Error::Decode`].
        pub fn get(&self) -> Result<T> {
            self.r.value(Op::Take(None))
        }

        /// Takes the oldest item if there is one now. Python:
        /// `get_nowait()`.
        ///
        /// # Errors
        ///
        /// [`Error::Empty`] (Python's `queue.Empty`).
        pub fn try_get(&self) -> Result<T> {
            self.r.value(Op::Take(Some(Duration::ZERO)))
        }

        /// Takes the oldest item, waiting at most `timeout`. Python:
        /// `get(timeout=t)`.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`].
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            self.r.value(Op::Take(Some(timeout)))
        }

        /// The number of items. Python: `qsize()`.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`] when the manager is gone.
        pub fn qsize(&self) -> Result<usize> {
            self.r.len(Op::QSize)
        }

        /// Whether the queue is empty. Python: `empty()`.
        ///
        /// # Errors
        ///
        /// As [`qsize`](Self::qsize).
        pub fn empty(&self) -> Result<bool> {
            Ok(self.qsize()? == 0)
        }

        /// Whether a bounded queue is full. Python: `full()`.
        ///
        /// # Errors
        ///
        /// As [`qsize`](Self::qsize).
        pub fn full(&self) -> Result<bool> {
            let max = self.r.len(Op::MaxSize)?;
            Ok(max > 0 && self.qsize()? >= max)
        }
    };
}

/// A managed queue. Python: `manager.Queue(maxsize)`.
///
/// Unlike [`Queue`](multiproc_channel::Queue) (shared memory, this machine
/// only), a manager's queue is reachable over the network, which is how
/// Python's distributed work queues are built.
pub struct QueueProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(QueueProxy[T], Kind::Queue, T);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    queue_methods!();
}

/// A managed queue that counts unfinished tasks. Python:
/// `manager.JoinableQueue()`.
pub struct JoinableQueueProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(JoinableQueueProxy[T], Kind::JoinableQueue, T);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    queue_methods!();

    /// Marks one item taken as done. Python: `task_done()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] when called more often than items were put
    /// (Python's `ValueError`), as for [`JoinableQueue`](multiproc_channel::JoinableQueue).
    pub fn task_done(&self) -> Result<()> {
        self.r.unit(Op::TaskDone)
    }

    /// Waits until every item put was marked done. Python: `join()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn join(&self) -> Result<()> {
        self.r.unit(Op::Join(None))
    }

    /// As [`join`](Self::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.r.unit(Op::Join(Some(timeout)))
    }
}
