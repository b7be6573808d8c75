//! An executor of tasks on worker processes, with futures, cancellation
//! and time limits that kill: Python's
//! `concurrent.futures.ProcessPoolExecutor`, plus what Pebble adds.
//!
//! The executor shares the pool's workers and their exchange (the
//! `handler` module): one runner thread per worker takes tasks off one
//! queue, in order. What the executor adds is the watch on a running task:
//! its time limit, and, with `cancel_running(true)`, a socket per worker
//! that `cancel` writes to. Either one cut short kills the worker
//! (SIGKILL), ends the task's future, and the next task starts a new
//! worker; nothing else in flight is touched.

mod callbacks;
mod future;
mod gather;
mod runner;
mod thread;

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use multiproc_process::{Error, Result, StartMethod, Target, TaskFn, codec};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use future::TaskFuture;
pub use gather::{AsCompleted, Completes, ReturnWhen, Waited, as_completed, wait};
pub use thread::{ThreadExecutor, ThreadFuture};

use crate::group::Failure;
use crate::handler::{Shared, checked_setup};
use crate::message::task_message;
use future::Task;

/// What the executor, its runners and its futures share.
pub(crate) struct Core {
    shared: Shared,
    /// Where tasks are submitted; `None` once shut down (the runners end
    /// when the queue is empty).
    jobs: Mutex<Option<Sender<Arc<Task>>>>,
    /// The queue's far end, to empty it when the tasks are cancelled.
    queued: Receiver<Arc<Task>>,
    /// Strict mode lost a worker: why.
    broken: Mutex<Option<String>>,
    /// Runners waiting for a task now.
    idle: AtomicUsize,
    /// Per worker slot: the writing end of its runner's cancel socket.
    wakes: Vec<UnixStream>,
    default_limit: Option<Duration>,
    pub(crate) cancel_running: bool,
    /// Whether dropping a task's async wait cancels the task.
    pub(crate) cancel_on_drop: bool,
    broken_on_death: bool,
}

impl Core {
    /// Whether it takes no more tasks.
    fn is_shut(&self) -> bool {
        self.jobs.lock().is_none()
    }

    /// Why strict mode broke the executor, if it did.
    fn broken(&self) -> Option<String> {
        self.broken.lock().clone()
    }

    /// Stops taking tasks, and takes those still queued out of the queue.
    fn shut(&self) -> Vec<Arc<Task>> {
        self.jobs.lock().take();
        self.queued.try_iter().collect()
    }

    /// Tells slot `slot`'s runner that a task is to be cancelled.
    pub(crate) fn wake(&self, slot: usize) {
        if let Some(w) = self.wakes.get(slot) {
            // Full means a wake-up is already waiting.
            let _ = (&*w).write(&[1]);
        }
    }

    /// Strict mode: every pending task fails, and no more are taken.
    fn break_down(&self, why: &str) {
        self.broken.lock().get_or_insert_with(|| why.to_string());
        for t in self.shut() {
            t.finish(Err(Failure::Broken(why.to_string())));
        }
        // Running ones end too: their workers are killed.
        self.shared.terminate();
        for p in self.shared.running() {
            let _ = p.kill();
        }
    }
}

/// Options for [`Executor::builder`]. Python: the arguments of
/// `ProcessPoolExecutor(max_workers, mp_context, initializer, initargs,
/// max_tasks_per_child)`.
#[derive(Default)]
pub struct ExecutorBuilder {
    workers: Option<usize>,
    method: Option<StartMethod>,
    initializer: Option<(TaskFn, Result<Vec<u8>>)>,
    max_tasks: Option<u64>,
    limit: Option<Duration>,
    cancel_running: bool,
    cancel_on_drop: bool,
    broken_on_death: bool,
}

impl ExecutorBuilder {
    /// The number of worker processes (default: the CPU count). Python:
    /// `max_workers`.
    pub fn workers(mut self, n: usize) -> ExecutorBuilder {
        self.workers = Some(n);
        self
    }

    /// The start method of the workers. Python: `mp_context`.
    pub fn start_method(mut self, method: StartMethod) -> ExecutorBuilder {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in each worker as it starts. Python: `initializer`,
    /// `initargs`.
    pub fn initializer<F, A, K>(mut self, f: F, args: A) -> ExecutorBuilder
    where
        F: Target<A, K, Output = ()>,
        A: Serialize + DeserializeOwned,
    {
        self.initializer = Some((TaskFn::new(f), codec::bulk::encode(&args)));
        self
    }

    /// A worker is replaced after this many tasks. Python:
    /// `max_tasks_per_child`.
    pub fn max_tasks_per_child(mut self, n: u64) -> ExecutorBuilder {
        self.max_tasks = Some(n);
        self
    }

    /// The time limit of every task that has none of its own (see
    /// [`Executor::submit_with_limit`]): past it, the worker is killed and
    /// the future ends with [`Error::TaskTimedOut`].
    pub fn task_time_limit(mut self, limit: Duration) -> ExecutorBuilder {
        self.limit = Some(limit);
        self
    }

    /// Dropping a [`TaskFuture`] that was awaited (polled as a future)
    /// before the task is done cancels the task, as
    /// [`TaskFuture::cancel`] does (default: off; the task runs on, as a
    /// Python future's does when nothing awaits it). Python (asyncio):
    /// cancelling the task that awaits `asyncio.wrap_future(f)`.
    pub fn cancel_on_drop(mut self, on: bool) -> ExecutorBuilder {
        self.cancel_on_drop = on;
        self
    }

    /// Lets [`TaskFuture::cancel`] stop a running task by killing its
    /// worker (default: off, as in Python, where a running task cannot be
    /// cancelled).
    pub fn cancel_running(mut self, on: bool) -> ExecutorBuilder {
        self.cancel_running = on;
        self
    }

    /// Python's strict behaviour: a worker that dies by itself breaks the
    /// executor; every pending task fails with [`Error::BrokenPool`] and
    /// later submits are refused. By default a death fails only its task
    /// ([`Error::WorkerDied`]) and the worker is replaced.
    pub fn broken_on_death(mut self, on: bool) -> ExecutorBuilder {
        self.broken_on_death = on;
        self
    }

    /// Starts the workers and their runner threads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero workers or zero tasks per
    /// child, the errors of starting a process.
    pub fn build(self) -> Result<Executor> {
        let n = self.workers.unwrap_or_else(multiproc_process::cpu_count);
        let initializer = checked_setup(
            n,
            self.max_tasks,
            self.initializer,
            "an executor needs at least one worker",
        )?;
        let mut wakes = Vec::with_capacity(n);
        let mut listens = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = UnixStream::pair()?;
            tx.set_nonblocking(true)?;
            rx.set_nonblocking(true)?;
            wakes.push(tx);
            listens.push(rx);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let core = Arc::new(Core {
            shared: Shared::new(self.method, initializer, self.max_tasks, n),
            jobs: Mutex::new(Some(tx)),
            queued: rx.clone(),
            broken: Mutex::new(None),
            idle: AtomicUsize::new(0),
            wakes,
            default_limit: self.limit,
            cancel_running: self.cancel_running,
            cancel_on_drop: self.cancel_on_drop,
            broken_on_death: self.broken_on_death,
        });
        let executor = Executor {
            core: core.clone(),
            runners: Mutex::new(Vec::with_capacity(n)),
            workers: n,
        };
        for (slot, wake) in listens.into_iter().enumerate() {
            // On an error, dropping `executor` ends what was started.
            let worker = core.shared.start_worker(slot)?;
            let (core2, rx) = (core.clone(), rx.clone());
            let runner = std::thread::Builder::new()
                .name(format!("executor-{slot}"))
                .spawn(move || runner::runner(core2, slot, rx, wake, Some(worker)))?;
            executor.runners.lock().push(runner);
        }
        Ok(executor)
    }
}

/// Worker processes that run submitted calls, each giving a
/// [`TaskFuture`]. Python: `concurrent.futures.ProcessPoolExecutor`.
///
/// A task is a `fn` item (or a closure that captures nothing) and its
/// serde arguments, as for a [`Pool`](crate::Pool). What a Python executor
/// cannot do: a task past its time limit
/// ([`ExecutorBuilder::task_time_limit`], [`submit_with_limit`](Self::submit_with_limit))
/// is stopped by killing its worker, which is replaced, and so is a running
/// task that is cancelled (with [`ExecutorBuilder::cancel_running`]); a
/// worker that dies fails only its task, unless
/// [`ExecutorBuilder::broken_on_death`] asks for Python's strictness.
///
/// Dropping the executor cancels the queued tasks and kills the running
/// ones (their futures end with [`Error::Closed`]): no worker outlives it.
/// [`shutdown`](Self::shutdown) lets work finish first.
///
/// ```
/// use std::time::Duration;
/// use multiproc as mp;
///
/// fn spin(forever: bool) -> u32 {
///     while forever {}
///     7
/// }
///
/// # fn main() -> mp::Result<()> {
/// let ex = mp::Executor::builder()
///     .workers(2)
///     .task_time_limit(Duration::from_millis(200))
///     .build()?;
/// let hung = ex.submit(spin, (true,))?;
/// let fine = ex.submit(spin, (false,))?;
/// assert!(matches!(hung.result(), Err(mp::Error::TaskTimedOut { .. })));
/// assert_eq!(fine.result()?, 7);
/// # Ok(())
/// # }
/// ```
pub struct Executor {
    core: Arc<Core>,
    runners: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

impl Executor {
    /// An executor of [`cpu_count`](multiproc_process::cpu_count) workers.
    /// Python: `ProcessPoolExecutor()`.
    ///
    /// # Errors
    ///
    /// The errors of starting a process.
    pub fn new() -> Result<Executor> {
        ExecutorBuilder::default().build()
    }

    /// Options: workers, start method, initializer, tasks per child, time
    /// limit, cancelling running tasks, strict mode.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The number of worker processes.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The pids of the workers running now.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.core
            .shared
            .running()
            .iter()
            .filter_map(|p| p.pid())
            .collect()
    }

    /// Submits `f(args...)`. Python: `executor.submit(fn, *args)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`shutdown`](Self::shutdown),
    /// [`Error::BrokenPool`] once strict mode lost a worker,
    /// [`Error::Encode`] if the arguments do not encode.
    pub fn submit<F, A, R, K>(&self, f: F, args: A) -> Result<TaskFuture<R>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.enqueue(TaskFn::new(f), &args, None)
    }

    /// As [`submit`](Self::submit), with a time limit of its own: past
    /// `limit` its worker is killed and the future ends with
    /// [`Error::TaskTimedOut`].
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub fn submit_with_limit<F, A, R, K>(
        &self,
        f: F,
        args: A,
        limit: Duration,
    ) -> Result<TaskFuture<R>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.enqueue(TaskFn::new(f), &args, Some(limit))
    }

    fn enqueue<T: Serialize + ?Sized, R>(
        &self,
        func: TaskFn,
        input: &T,
        limit: Option<Duration>,
    ) -> Result<TaskFuture<R>> {
        let message = task_message(func, input)?;
        let task = Arc::new(Task::new(message, limit, Arc::downgrade(&self.core)));
        let jobs = self.core.jobs.lock();
        let Some(tx) = jobs.as_ref() else {
            return Err(match self.core.broken() {
                Some(why) => Error::BrokenPool { why },
                None => Error::Closed,
            });
        };
        tx.send(task.clone()).map_err(|_| Error::Closed)?;
        Ok(TaskFuture::of(task))
    }

    /// Maps `f` over `items`, `chunksize` items per task, at most
    /// `buffersize` tasks ahead of the results read (`None`: all of them at
    /// once, as Python's `Executor.map` before 3.14). The first chunks are
    /// submitted at once; the results come in the order of the items, and
    /// dropping the iterator cancels the chunks not read. Python:
    /// `executor.map(fn, items, chunksize=, buffersize=)`.
    ///
    /// # Errors
    ///
    /// Each item's result is its task's: the whole chunk fails together,
    /// as in Python.
    pub fn map<F, T, R, K, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        buffersize: Option<usize>,
    ) -> ExecutorMap<'_, R, I::IntoIter>
    where
        F: Target<(T,), K, Output = R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        let mut map = ExecutorMap {
            executor: self,
            func: TaskFn::chunk(f),
            items: items.into_iter(),
            chunksize: chunksize.max(1),
            ahead: buffersize.unwrap_or(usize::MAX).max(1),
            in_flight: VecDeque::new(),
            stopped: false,
            current: Vec::new().into_iter(),
            failed: None,
        };
        // Submitted now, as Python's `map` does, not at the first read.
        map.fill();
        map
    }

    /// Stops taking tasks. With `cancel_futures`, the queued ones are
    /// cancelled; with `wait`, it returns once every task left has ended
    /// and the workers are gone. Python: `shutdown(wait, cancel_futures)`.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        if cancel_futures {
            for t in self.core.shut() {
                t.finish(Err(Failure::Cancelled));
            }
        } else {
            self.core.jobs.lock().take();
        }
        if wait {
            join_others(std::mem::take(&mut *self.runners.lock()));
        }
    }
}

/// Joins `threads`, except the calling one (a shutdown from a done
/// callback, or from a task of a thread executor, runs on one of them: it
/// cannot wait for itself, and ends once its queue is empty).
pub(crate) fn join_others(threads: Vec<JoinHandle<()>>) {
    let me = std::thread::current().id();
    for t in threads {
        if t.thread().id() != me {
            // A thread that panicked has nothing left to give back.
            let _ = t.join();
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown(false, true);
        // Running tasks end as the pool's do when it is terminated.
        self.core.shared.terminate();
        for p in self.core.shared.running() {
            let _ = p.kill();
        }
        self.shutdown(true, true);
    }
}

/// A chunk of a map: its future, or why it could not be submitted.
type Chunk<R> = std::result::Result<TaskFuture<Vec<R>>, Failure>;

/// The iterator of [`Executor::map`]: each item's result, in order.
pub struct ExecutorMap<'a, R, I> {
    executor: &'a Executor,
    func: TaskFn,
    items: I,
    chunksize: usize,
    ahead: usize,
    /// Chunks submitted (or why one could not be), in order, with their
    /// lengths.
    in_flight: VecDeque<(Chunk<R>, usize)>,
    /// A chunk could not be submitted: no more are taken from the items.
    stopped: bool,
    current: std::vec::IntoIter<R>,
    /// A chunk that failed, and how many of its items are still to be
    /// given its error.
    failed: Option<(Failure, usize)>,
}

impl<T, R, I> ExecutorMap<'_, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    /// Submits chunks until `ahead` are in flight or the items end. A
    /// chunk that cannot be submitted takes its place in the order as its
    /// error, and ends the submitting.
    fn fill(&mut self) {
        while !self.stopped && self.in_flight.len() < self.ahead {
            let chunk: Vec<(T,)> = self
                .items
                .by_ref()
                .take(self.chunksize)
                .map(|t| (t,))
                .collect();
            if chunk.is_empty() {
                break;
            }
            let f = self
                .executor
                .enqueue(self.func, &chunk, None)
                .map_err(|e| match e {
                    Error::Closed => Failure::Closed,
                    Error::BrokenPool { why } => Failure::Broken(why),
                    e => Failure::of(&e),
                });
            self.stopped = f.is_err();
            self.in_flight.push_back((f, chunk.len()));
        }
    }
}

impl<T, R, I> Iterator for ExecutorMap<'_, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some((f, n)) = &mut self.failed
                && *n > 0
            {
                *n -= 1;
                return Some(Err(f.to_error()));
            }
            if let Some(r) = self.current.next() {
                return Some(Ok(r));
            }
            self.fill();
            let (f, len) = self.in_flight.pop_front()?;
            let failure = match f {
                Ok(f) => match f.result() {
                    Ok(v) => {
                        self.current = v.into_iter();
                        continue;
                    }
                    // The task's own failure, or why its result does not
                    // decode.
                    Err(e) => f.task.failure().unwrap_or_else(|| Failure::of(&e)),
                },
                Err(failure) => failure,
            };
            // Every item of the chunk fails with its error.
            let first = failure.to_error();
            self.failed = Some((failure, len.saturating_sub(1)));
            return Some(Err(first));
        }
    }
}

/// Dropping the iterator cancels the chunks it submitted and did not
/// read, as Python's `map` iterator does.
impl<R, I> Drop for ExecutorMap<'_, R, I> {
    fn drop(&mut self) {
        for (f, _) in &self.in_flight {
            if let Ok(f) = f {
                f.cancel();
            }
        }
    }
}
