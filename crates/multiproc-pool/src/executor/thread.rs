//! The executor on threads: Python's
//! `concurrent.futures.ThreadPoolExecutor`, with the process executor's
//! futures. A thread cannot be killed, so there are no time limits, and
//! `cancel` only keeps a queued task from running.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use multiproc_process::{Error, Result};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::callbacks::{Callback, Callbacks, call};
use super::gather::Completes;
use super::join_others;

/// Where a thread task is.
enum State<R> {
    Queued(Box<dyn FnOnce() -> R + Send>),
    Running,
    Done(std::result::Result<R, Ended>),
}

/// Why a thread task has no result.
#[derive(Debug, Clone)]
enum Ended {
    Panicked(String),
    Cancelled,
}

impl Ended {
    fn to_error(&self) -> Error {
        match self {
            Ended::Panicked(message) => Error::TaskPanicked {
                message: message.clone(),
            },
            Ended::Cancelled => Error::Cancelled,
        }
    }
}

struct Slot<R> {
    state: Mutex<State<R>>,
    done: Condvar,
    on_done: Mutex<Callbacks>,
}

impl<R> Slot<R> {
    fn finish(&self, mut state: MutexGuard<'_, State<R>>, result: std::result::Result<R, Ended>) {
        let old = std::mem::replace(&mut *state, State::Done(result));
        self.done.notify_all();
        drop(state);
        // A cancelled task's closure, and what it holds, is dropped
        // outside the lock.
        drop(old);
        let callbacks = self.on_done.lock().take();
        for f in callbacks {
            call(f);
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(multiproc_process::deadline);
        let mut state = self.state.lock();
        while !matches!(*state, State::Done(_)) {
            match deadline {
                Some(d) => {
                    if self.done.wait_until(&mut state, d).timed_out() {
                        return matches!(*state, State::Done(_));
                    }
                }
                None => self.done.wait(&mut state),
            }
        }
        true
    }
}

/// A queued task, whatever its result type.
trait Run: Send + Sync {
    /// Runs it on the calling thread, unless it was cancelled.
    fn run(&self);
    /// Cancels it if it is still queued.
    fn cancel_queued(&self);
}

impl<R: Send> Run for Slot<R> {
    fn run(&self) {
        let mut state = self.state.lock();
        if !matches!(*state, State::Queued(_)) {
            // Cancelled while queued.
            return;
        }
        let State::Queued(f) = std::mem::replace(&mut *state, State::Running) else {
            return;
        };
        drop(state);
        let result = std::panic::catch_unwind(AssertUnwindSafe(f))
            .map_err(|p| Ended::Panicked(multiproc_process::panic_message(&*p)));
        self.finish(self.state.lock(), result);
    }

    fn cancel_queued(&self) {
        let state = self.state.lock();
        if matches!(*state, State::Queued(_)) {
            self.finish(state, Err(Ended::Cancelled));
        }
    }
}

/// The result of a task submitted to a [`ThreadExecutor`], when it comes.
/// Python: `concurrent.futures.Future` of a `ThreadPoolExecutor`.
pub struct ThreadFuture<R> {
    slot: Arc<Slot<R>>,
}

impl<R> Clone for ThreadFuture<R> {
    fn clone(&self) -> ThreadFuture<R> {
        ThreadFuture {
            slot: self.slot.clone(),
        }
    }
}

impl<R> fmt::Debug for ThreadFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.slot.state.lock() {
            State::Queued(_) => "queued",
            State::Running => "running",
            State::Done(Ok(_)) => "finished",
            State::Done(Err(Ended::Cancelled)) => "cancelled",
            State::Done(Err(_)) => "failed",
        };
        write!(f, "ThreadFuture({state})")
    }
}

impl<R> ThreadFuture<R> {
    /// Whether it finished, failed or was cancelled. Python: `done()`.
    pub fn done(&self) -> bool {
        matches!(*self.slot.state.lock(), State::Done(_))
    }

    /// Whether a thread runs it now. Python: `running()`.
    pub fn running(&self) -> bool {
        matches!(*self.slot.state.lock(), State::Running)
    }

    /// Whether it was cancelled. Python: `cancelled()`.
    pub fn cancelled(&self) -> bool {
        matches!(*self.slot.state.lock(), State::Done(Err(Ended::Cancelled)))
    }

    /// Cancels it if it is still queued; a running thread task cannot be
    /// stopped (a thread cannot be killed), and then this returns false.
    /// Python: `cancel()`.
    pub fn cancel(&self) -> bool {
        let state = self.slot.state.lock();
        match &*state {
            State::Queued(_) => {
                self.slot.finish(state, Err(Ended::Cancelled));
                true
            }
            State::Done(Err(Ended::Cancelled)) => true,
            _ => false,
        }
    }

    /// Waits at most `timeout` for it to be done; whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot.wait(Some(timeout))
    }

    /// The error it ended with, waiting for its end: `None` if it
    /// succeeded. Python: `exception()`.
    pub fn exception(&self) -> Option<Error> {
        self.slot.wait(None);
        match &*self.slot.state.lock() {
            State::Done(Err(e)) => Some(e.to_error()),
            _ => None,
        }
    }

    /// Calls `f` with this future once it is done, at once if it is.
    /// Python: `add_done_callback(fn)`.
    pub fn add_done_callback(&self, f: impl FnOnce(&ThreadFuture<R>) + Send + 'static)
    where
        R: Send + 'static,
    {
        let me = self.clone();
        self.when_done(Box::new(move || f(&me)));
    }
}

impl<R: Clone> ThreadFuture<R> {
    /// Waits for the task and gives a clone of its result. Python:
    /// `result()`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`], [`Error::Cancelled`].
    pub fn result(&self) -> Result<R> {
        self.slot.wait(None);
        self.read()
    }

    /// As [`result`](Self::result), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if it is not done by then, and as
    /// [`result`](Self::result).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R> {
        if !self.slot.wait(Some(timeout)) {
            return Err(Error::Timeout);
        }
        self.read()
    }

    fn read(&self) -> Result<R> {
        match &*self.slot.state.lock() {
            State::Done(Ok(r)) => Ok(r.clone()),
            State::Done(Err(e)) => Err(e.to_error()),
            _ => Err(Error::Timeout),
        }
    }
}

impl<R> Completes for ThreadFuture<R> {
    fn when_done(&self, f: Callback) -> Option<u64> {
        {
            let state = self.slot.state.lock();
            if !matches!(*state, State::Done(_)) {
                return Some(self.slot.on_done.lock().add(f));
            }
        }
        call(f);
        None
    }

    fn forget(&self, id: u64) {
        self.slot.on_done.lock().remove(id);
    }

    fn is_done(&self) -> bool {
        self.done()
    }

    fn failed(&self) -> bool {
        matches!(*self.slot.state.lock(), State::Done(Err(_)))
    }
}

/// Threads that run submitted closures, each giving a [`ThreadFuture`].
/// Python: `concurrent.futures.ThreadPoolExecutor`.
///
/// The process [`Executor`](super::Executor)'s API, where threads allow it:
/// a thread cannot be killed, so there are no time limits, and a running
/// task cannot be cancelled. A panic fails its task alone
/// ([`Error::TaskPanicked`]). Dropping it cancels the queued tasks and
/// waits for the running ones.
///
/// ```
/// use multiproc as mp;
///
/// # fn main() -> mp::Result<()> {
/// let ex = mp::ThreadExecutor::new(2)?;
/// let futures: Vec<_> = (1..=4u64).map(|n| ex.submit(move || n * n)).collect::<mp::Result<_>>()?;
/// let total: u64 = mp::futures::as_completed(&futures, None)
///     .map(|f| f.and_then(|f| f.result()))
///     .sum::<mp::Result<u64>>()?;
/// assert_eq!(total, 30);
/// # Ok(())
/// # }
/// ```
pub struct ThreadExecutor {
    jobs: Mutex<Option<Sender<Arc<dyn Run>>>>,
    queued: Receiver<Arc<dyn Run>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

impl ThreadExecutor {
    /// An executor of `workers` threads. Python:
    /// `ThreadPoolExecutor(max_workers)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero threads, [`Error::Io`] if a
    /// thread cannot be made.
    pub fn new(workers: usize) -> Result<ThreadExecutor> {
        if workers == 0 {
            return Err(Error::InvalidArgument(
                "an executor needs at least one thread".into(),
            ));
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<dyn Run>>();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("thread-executor-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job.run();
                        }
                    })?,
            );
        }
        Ok(ThreadExecutor {
            jobs: Mutex::new(Some(tx)),
            queued: rx,
            threads: Mutex::new(threads),
            workers,
        })
    }

    /// The number of threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Submits `f()`. Python: `executor.submit(fn, *args)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`shutdown`](Self::shutdown).
    pub fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<ThreadFuture<R>> {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Queued(Box::new(f))),
            done: Condvar::new(),
            on_done: Mutex::new(Callbacks::default()),
        });
        let jobs = self.jobs.lock();
        let tx = jobs.as_ref().ok_or(Error::Closed)?;
        tx.send(slot.clone() as Arc<dyn Run>)
            .map_err(|_| Error::Closed)?;
        Ok(ThreadFuture { slot })
    }

    /// Stops taking tasks. With `cancel_futures`, the queued ones are
    /// cancelled; with `wait`, it returns once the tasks left have ended.
    /// Python: `shutdown(wait, cancel_futures)`.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.jobs.lock().take();
        if cancel_futures {
            for job in self.queued.try_iter() {
                job.cancel_queued();
            }
        }
        if wait {
            join_others(std::mem::take(&mut *self.threads.lock()));
        }
    }
}

impl Drop for ThreadExecutor {
    fn drop(&mut self) {
        self.shutdown(true, true);
    }
}
