//! A submitted task and the caller's handle to it, [`TaskFuture`]:
//! Python's `concurrent.futures.Future`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use multiproc_process::{Error, Result};
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::de::DeserializeOwned;

use super::Core;
use super::callbacks::{Callback, Callbacks, call};
use crate::group::{Failure, Piece};
use crate::message::Message;

/// Where a task is.
pub(crate) enum TaskState {
    Queued,
    /// On the worker of this slot.
    Running(usize),
    /// Its worker's reply, or why there is none (`Failure::Cancelled` for
    /// a cancelled task); shared, so that a result is decoded outside the
    /// lock.
    Done(Arc<Piece>),
}

/// A submitted task, shared by its futures and the executor.
pub(crate) struct Task {
    pub(crate) state: Mutex<TaskState>,
    done: Condvar,
    /// The task message, taken by the runner that sends it.
    pub(crate) input: Mutex<Option<Message>>,
    /// Its own time limit, if it has one.
    pub(crate) limit: Option<Duration>,
    /// Set by `cancel` on a running task; its runner then kills the worker.
    pub(crate) cancel_requested: AtomicBool,
    /// Called once, when it is done (callbacks, `as_completed`).
    on_done: Mutex<Callbacks>,
    /// Its futures being awaited now: `cancel_on_drop` cancels when the
    /// last of them is dropped early, not the first.
    awaited: std::sync::atomic::AtomicUsize,
    core: Weak<Core>,
}

impl Task {
    pub(crate) fn new(input: Message, limit: Option<Duration>, core: Weak<Core>) -> Task {
        Task {
            state: Mutex::new(TaskState::Queued),
            done: Condvar::new(),
            input: Mutex::new(Some(input)),
            limit,
            cancel_requested: AtomicBool::new(false),
            on_done: Mutex::new(Callbacks::default()),
            awaited: std::sync::atomic::AtomicUsize::new(0),
            core,
        }
    }

    /// Records the end of the task (the first end wins), wakes whoever
    /// waits, and runs what waits for it.
    pub(crate) fn finish(&self, piece: Piece) {
        self.finish_locked(self.state.lock(), piece);
    }

    /// As [`finish`](Self::finish), the state already locked (so that
    /// nothing can change it between a look and the end).
    fn finish_locked(&self, mut state: MutexGuard<'_, TaskState>, piece: Piece) {
        if matches!(*state, TaskState::Done(_)) {
            return;
        }
        *state = TaskState::Done(Arc::new(piece));
        self.done.notify_all();
        drop(state);
        self.input.lock().take();
        let callbacks = self.on_done.lock().take();
        for f in callbacks {
            call(f);
        }
    }

    /// Calls `f` when the task is done (at once if it is); the number to
    /// take it back with, if it waits.
    pub(crate) fn when_done(&self, f: Callback) -> Option<u64> {
        {
            let state = self.state.lock();
            if !matches!(*state, TaskState::Done(_)) {
                return Some(self.on_done.lock().add(f));
            }
        }
        call(f);
        None
    }

    /// Takes back a callback that has not run.
    pub(crate) fn forget(&self, id: u64) {
        self.on_done.lock().remove(id);
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.state.lock(), TaskState::Done(_))
    }

    /// Waits until the task is done, at most `timeout` (`None`: as long as
    /// it takes); whether it is.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(multiproc_process::deadline);
        let mut state = self.state.lock();
        while !matches!(*state, TaskState::Done(_)) {
            match deadline {
                Some(d) => {
                    if self.done.wait_until(&mut state, d).timed_out() {
                        return matches!(*state, TaskState::Done(_));
                    }
                }
                None => self.done.wait(&mut state),
            }
        }
        true
    }

    /// Why it did not succeed, once done (cancelled, or failed).
    pub(crate) fn failure(&self) -> Option<Failure> {
        match &*self.state.lock() {
            TaskState::Done(p) => p.as_ref().as_ref().err().cloned(),
            _ => None,
        }
    }
}

/// The result of a task submitted to an [`Executor`](super::Executor),
/// when it comes. Python: `concurrent.futures.Future`.
///
/// Named so as not to clash with [`std::future::Future`]. Clones share the
/// task: any of them can wait for it, read it or cancel it.
pub struct TaskFuture<R> {
    pub(crate) task: Arc<Task>,
    /// When polled as a future: the done-callback that wakes it, and the
    /// waker it wakes.
    waiting: Option<(u64, std::task::Waker)>,
    /// Whether it is counted in the task's `awaited` (from its first
    /// pending poll).
    awaiting: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> Clone for TaskFuture<R> {
    fn clone(&self) -> TaskFuture<R> {
        TaskFuture::of(self.task.clone())
    }
}

impl<R> fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.task.state.lock() {
            TaskState::Queued => "queued",
            TaskState::Running(_) => "running",
            TaskState::Done(p) => match p.as_ref() {
                Ok(_) => "finished",
                Err(Failure::Cancelled) => "cancelled",
                Err(_) => "failed",
            },
        };
        write!(f, "TaskFuture({state})")
    }
}

impl<R> TaskFuture<R> {
    pub(crate) fn of(task: Arc<Task>) -> TaskFuture<R> {
        TaskFuture {
            task,
            waiting: None,
            awaiting: false,
            _result: PhantomData,
        }
    }

    /// Whether it finished, failed or was cancelled. Python: `done()`.
    pub fn done(&self) -> bool {
        self.task.is_done()
    }

    /// Whether a worker runs it now. Python: `running()`.
    pub fn running(&self) -> bool {
        matches!(*self.task.state.lock(), TaskState::Running(_))
    }

    /// Whether it was cancelled. Python: `cancelled()`.
    pub fn cancelled(&self) -> bool {
        matches!(&*self.task.state.lock(), TaskState::Done(p) if matches!(**p, Err(Failure::Cancelled)))
    }

    /// Cancels it. A queued task is taken off the queue and never runs. A
    /// running one is stopped by killing its worker (which is replaced) if
    /// the executor was built with `cancel_running(true)`; otherwise it
    /// runs on. Returns whether it is (or will be) cancelled. Python:
    /// `cancel()`, which cannot stop a running task.
    pub fn cancel(&self) -> bool {
        let state = self.task.state.lock();
        match &*state {
            TaskState::Queued => {
                self.task.finish_locked(state, Err(Failure::Cancelled));
                true
            }
            TaskState::Running(slot) => {
                let slot = *slot;
                let Some(core) = self.task.core.upgrade() else {
                    return false;
                };
                if !core.cancel_running {
                    return false;
                }
                self.task.cancel_requested.store(true, Ordering::SeqCst);
                drop(state);
                core.wake(slot);
                true
            }
            TaskState::Done(p) => matches!(**p, Err(Failure::Cancelled)),
        }
    }

    /// Whether it is done and did not succeed (failed or cancelled).
    pub(crate) fn task_failed(&self) -> bool {
        matches!(&*self.task.state.lock(), TaskState::Done(p) if p.is_err())
    }

    /// Waits at most `timeout` for it to be done; whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.task.wait(Some(timeout))
    }

    /// The error it ended with, waiting for its end: `None` if it
    /// succeeded. Python: `exception()`.
    pub fn exception(&self) -> Option<Error> {
        self.task.wait(None);
        self.task.failure().map(|f| f.to_error())
    }

    /// Calls `f` with this future once it is done, at once if it is (on
    /// the executor's thread that finished it, otherwise; keep it short: a
    /// panic in it is reported on stderr and harms nothing else). Python:
    /// `add_done_callback(fn)`.
    pub fn add_done_callback(&self, f: impl FnOnce(&TaskFuture<R>) + Send + 'static)
    where
        R: 'static,
    {
        let me = TaskFuture::<R>::of(self.task.clone());
        self.task.when_done(Box::new(move || f(&me)));
    }
}

impl<R: DeserializeOwned> TaskFuture<R> {
    /// Waits for the task and gives its result (each call decodes it
    /// again, so it may be read more than once). Python: `result()`.
    ///
    /// # Errors
    ///
    /// What the task ended with: [`Error::TaskPanicked`],
    /// [`Error::TaskFailed`], [`Error::WorkerDied`],
    /// [`Error::TaskTimedOut`], [`Error::Cancelled`],
    /// [`Error::BrokenPool`], [`Error::Closed`] (the executor was dropped).
    pub fn result(&self) -> Result<R> {
        self.task.wait(None);
        self.read()
    }

    /// As [`result`](Self::result), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if it is not done by then, and as
    /// [`result`](Self::result).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R> {
        if !self.task.wait(Some(timeout)) {
            return Err(Error::Timeout);
        }
        self.read()
    }

    fn read(&self) -> Result<R> {
        let piece = match &*self.task.state.lock() {
            TaskState::Done(p) => p.clone(),
            _ => return Err(Error::Timeout),
        };
        match piece.as_ref() {
            Ok(reply) => reply.decode(),
            Err(f) => Err(f.to_error()),
        }
    }
}

/// A `TaskFuture` is a future of async code too: `future.await` (or
/// `future.clone().await`, to keep it) gives what
/// [`result`](TaskFuture::result) would, without blocking a thread, under
/// any runtime. Dropping it while it waits stops waiting; the task still
/// runs (cancel it with [`cancel`](TaskFuture::cancel)), unless the
/// executor was built with
/// [`cancel_on_drop`](super::ExecutorBuilder::cancel_on_drop). Python
/// (asyncio): `await asyncio.wrap_future(f)`.
impl<R: DeserializeOwned> std::future::Future for TaskFuture<R> {
    type Output = Result<R>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<R>> {
        let this = &mut *self;
        if let Some((id, waker)) = &this.waiting
            && !waker.will_wake(cx.waker())
        {
            this.task.forget(*id);
            this.waiting = None;
        }
        if this.waiting.is_none() {
            let waker = cx.waker().clone();
            let wake = waker.clone();
            match this.task.when_done(Box::new(move || wake.wake())) {
                Some(id) => {
                    if !this.awaiting {
                        this.task.awaited.fetch_add(1, Ordering::SeqCst);
                        this.awaiting = true;
                    }
                    this.waiting = Some((id, waker));
                }
                // Done already (its callback ran at once).
                None => return std::task::Poll::Ready(this.read()),
            }
        }
        if this.task.is_done() {
            if let Some((id, _)) = this.waiting.take() {
                this.task.forget(id);
            }
            return std::task::Poll::Ready(this.read());
        }
        std::task::Poll::Pending
    }
}

impl<R> Drop for TaskFuture<R> {
    fn drop(&mut self) {
        if let Some((id, _)) = self.waiting.take() {
            self.task.forget(id);
        }
        if !std::mem::take(&mut self.awaiting) {
            return;
        }
        // It was awaited. The last awaited future dropped before the end
        // cancels the task, when the executor asks for that.
        let last = self.task.awaited.fetch_sub(1, Ordering::SeqCst) == 1;
        if last
            && !self.task.is_done()
            && self
                .task
                .core
                .upgrade()
                .is_some_and(|core| core.cancel_on_drop)
        {
            self.cancel();
        }
    }
}
