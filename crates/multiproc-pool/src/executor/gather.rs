//! Waiting for many futures at once: Python's
//! `concurrent.futures.as_completed` and `concurrent.futures.wait`.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use multiproc_process::{Error, Result};

use super::future::TaskFuture;

mod sealed {
    pub trait Sealed {}
}

/// A future [`as_completed`] and [`wait`] can wait for: a
/// [`TaskFuture`] of the process executor, or a
/// [`ThreadFuture`](super::ThreadFuture) of the thread one.
pub trait Completes: sealed::Sealed {
    /// Calls `f` once it is done (at once if it is); a number to take it
    /// back with, if it waits.
    #[doc(hidden)]
    fn when_done(&self, f: Box<dyn FnOnce() + Send>) -> Option<u64>;
    /// Takes back a callback that has not run.
    #[doc(hidden)]
    fn forget(&self, id: u64);
    /// Whether it is done.
    #[doc(hidden)]
    fn is_done(&self) -> bool;
    /// Whether it is done and did not succeed.
    #[doc(hidden)]
    fn failed(&self) -> bool;
}

impl<R> sealed::Sealed for TaskFuture<R> {}
impl<R> sealed::Sealed for super::ThreadFuture<R> {}

impl<R> Completes for TaskFuture<R> {
    fn when_done(&self, f: Box<dyn FnOnce() + Send>) -> Option<u64> {
        self.task.when_done(f)
    }

    fn forget(&self, id: u64) {
        self.task.forget(id);
    }

    fn is_done(&self) -> bool {
        self.done()
    }

    fn failed(&self) -> bool {
        self.task_failed()
    }
}

/// Watchers on some futures: the index of each, sent as it is done.
/// Dropping it takes back the watchers that have not run, so that waiting
/// again and again on a long task does not pile them up on it.
struct Watch<'a, F: Completes> {
    futures: &'a [F],
    ids: Vec<Option<u64>>,
    done: Receiver<usize>,
    /// The task that polls it as a stream, woken with each end.
    waker: std::sync::Arc<parking_lot::Mutex<Option<std::task::Waker>>>,
}

impl<'a, F: Completes> Watch<'a, F> {
    fn new(futures: &'a [F]) -> Watch<'a, F> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let waker: std::sync::Arc<parking_lot::Mutex<Option<std::task::Waker>>> =
            std::sync::Arc::default();
        let ids = futures
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let tx = tx.clone();
                let waker = waker.clone();
                f.when_done(Box::new(move || {
                    // The receiver may be gone: nobody waits any more.
                    let _ = tx.send(i);
                    if let Some(w) = waker.lock().take() {
                        w.wake();
                    }
                }))
            })
            .collect();
        Watch {
            futures,
            ids,
            done: rx,
            waker,
        }
    }
}

impl<F: Completes> Drop for Watch<'_, F> {
    fn drop(&mut self) {
        for (f, id) in self.futures.iter().zip(&self.ids) {
            if let Some(id) = id {
                f.forget(*id);
            }
        }
    }
}

impl<F: Completes> std::fmt::Debug for Watch<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watch({} futures)", self.futures.len())
    }
}

/// The futures in the order they are done, waiting at most `timeout` in
/// all (`None`: as long as it takes). Python:
/// `concurrent.futures.as_completed(fs, timeout)`.
///
/// Each item is a future that is done; past the timeout, one
/// `Err(Error::Timeout)` and then the end, as Python raises `TimeoutError`.
///
/// ```
/// use multiproc as mp;
///
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # fn main() -> mp::Result<()> {
/// let ex = mp::Executor::builder().workers(2).build()?;
/// let futures = (1..=4u64)
///     .map(|n| ex.submit(square, (n,)))
///     .collect::<mp::Result<Vec<_>>>()?;
/// let mut total = 0;
/// for f in mp::futures::as_completed(&futures, None) {
///     total += f?.result()?;
/// }
/// assert_eq!(total, 1 + 4 + 9 + 16);
/// # Ok(())
/// # }
/// ```
pub fn as_completed<F: Completes>(futures: &[F], timeout: Option<Duration>) -> AsCompleted<'_, F> {
    AsCompleted {
        futures,
        watch: Watch::new(futures),
        deadline: timeout.and_then(multiproc_process::deadline),
        left: futures.len(),
    }
}

/// The iterator of [`as_completed`].
#[derive(Debug)]
pub struct AsCompleted<'a, F: Completes> {
    futures: &'a [F],
    watch: Watch<'a, F>,
    deadline: Option<Instant>,
    left: usize,
}

impl<'a, F: Completes> Iterator for AsCompleted<'a, F> {
    type Item = Result<&'a F>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let got = match self.deadline {
            Some(d) => self.watch.done.recv_deadline(d),
            None => self
                .watch
                .done
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(i) => {
                self.left -= 1;
                Some(Ok(&self.futures[i]))
            }
            Err(_) => {
                self.left = 0;
                Some(Err(Error::Timeout))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// `as_completed` in async code: a stream of the futures as they end.
/// It has no timer of its own: a timeout given to [`as_completed`] ends it
/// (with one `Err(Error::Timeout)`) when it is polled after the deadline,
/// so bound the wait with your runtime's timer (`tokio::time::timeout`).
/// Python (asyncio): `asyncio.as_completed`.
impl<'a, F: Completes> futures_core::Stream for AsCompleted<'a, F> {
    type Item = Result<&'a F>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<&'a F>>> {
        let this = &mut *self;
        if this.left == 0 {
            return std::task::Poll::Ready(None);
        }
        for attempt in 0..2 {
            if let Ok(i) = this.watch.done.try_recv() {
                this.left -= 1;
                return std::task::Poll::Ready(Some(Ok(&this.futures[i])));
            }
            if this.deadline.is_some_and(|d| Instant::now() >= d) {
                this.left = 0;
                return std::task::Poll::Ready(Some(Err(Error::Timeout)));
            }
            if attempt == 0 {
                // Kept before the second look: an end in between wakes it.
                *this.watch.waker.lock() = Some(cx.waker().clone());
            }
        }
        std::task::Poll::Pending
    }
}

/// When [`wait`] returns. Python: `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as one is done.
    FirstCompleted,
    /// As soon as one fails (or is cancelled), or when all are done.
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// What [`wait`] found: the indexes of the futures done, and of those not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Waited {
    /// Indexes of the futures done, in the order they were given.
    pub done: Vec<usize>,
    /// Indexes of the others.
    pub not_done: Vec<usize>,
}

/// Waits for the futures until `when` is met or `timeout` passes, and
/// tells which are done. Python: `concurrent.futures.wait(fs, timeout,
/// return_when)`, which gives two sets of futures; here, two lists of
/// indexes into `futures`. (`mp::wait` is `multiprocessing.connection.wait`.)
pub fn wait<F: Completes>(futures: &[F], timeout: Option<Duration>, when: ReturnWhen) -> Waited {
    let watch = Watch::new(futures);
    let deadline = timeout.and_then(multiproc_process::deadline);
    let mut seen = 0;
    let met = |i: usize, seen: usize| match when {
        ReturnWhen::FirstCompleted => true,
        ReturnWhen::FirstException => futures[i].failed() || seen == futures.len(),
        ReturnWhen::AllCompleted => seen == futures.len(),
    };
    if !futures.is_empty() {
        loop {
            let got = match deadline {
                Some(d) => watch.done.recv_deadline(d).ok(),
                None => watch.done.recv().ok(),
            };
            let Some(i) = got else { break };
            seen += 1;
            if met(i, seen) {
                break;
            }
        }
    }
    let mut out = Waited::default();
    for (i, f) in futures.iter().enumerate() {
        if f.is_done() {
            out.done.push(i);
        } else {
            out.not_done.push(i);
        }
    }
    out
}
