//! The process pool: its builder, and the calls (`map`, `starmap`,
//! `apply`, waiting or not, with or without callbacks) that submit jobs to
//! its handler threads. The lazy maps are in `imap`.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use multiproc_process::{Error, Result, StartMethod, Target, TaskFn, codec};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::group::Group;
use crate::handler::{Shared, checked_setup, start_handler};
use crate::job::{Input, Job, decode_chunk};
use crate::message::{task_message, task_message_into};
use crate::result::AsyncResult;

/// Options for [`Pool::builder`].
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<(TaskFn, Result<Vec<u8>>)>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](multiproc_process::cpu_count)).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once when it starts. Python:
    /// `Pool(initializer=f, initargs=args)`.
    pub fn initializer<F, A, K>(mut self, f: F, args: A) -> PoolBuilder
    where
        F: Target<A, K>,
        F::Output: Serialize,
        A: Serialize + DeserializeOwned,
    {
        self.initializer = Some((TaskFn::new(f), codec::bulk::encode(&args)));
        self
    }

    /// Replaces a worker after it ran `n` tasks (each chunk of a map is one
    /// task). Python: `Pool(maxtasksperchild=n)`.
    pub fn max_tasks_per_child(mut self, n: u64) -> PoolBuilder {
        self.max_tasks = Some(n);
        self
    }

    /// The workers' start method (default: the program's).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = Some(method);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes or a `max_tasks_per_child`
    /// of zero; the errors of starting a process.
    pub fn build(self) -> Result<Pool> {
        let n = self.processes.unwrap_or_else(multiproc_process::cpu_count);
        let initializer = checked_setup(
            n,
            self.max_tasks,
            self.initializer,
            "a pool needs at least one process",
        )?;
        let shared = Arc::new(Shared::new(self.method, initializer, self.max_tasks, n));
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut handlers = Vec::with_capacity(n);
        for slot in 0..n {
            handlers.push(start_handler(&shared, slot, rx.clone())?);
        }
        Ok(Pool {
            workers: Workers::Local(shared),
            jobs: Mutex::new(Some(tx)),
            handlers: Mutex::new(handlers),
            processes: n,
        })
    }
}

/// Where a pool's jobs run.
enum Workers {
    /// Worker processes this program started, one handler thread each.
    Local(Arc<Shared>),
    /// Workers elsewhere, served by one dispatcher thread (see
    /// [`remote`](crate::remote)); the function ends its work at once.
    Remote(Box<dyn Fn() + Send + Sync>),
}

/// A pool of worker processes. Python: `multiprocessing.Pool`.
///
/// Functions given to a pool are `fn` items (or closures that capture
/// nothing) of serde arguments, as for [`Process`](multiproc_process::Process). Results equal those of
/// calling the function serially. A task that panics fails with
/// [`Error::TaskPanicked`] (one that returns `Err`, [`Error::TaskFailed`])
/// and its worker goes on; a worker killed while it
/// runs a task fails that task with [`Error::WorkerDied`] and is replaced:
/// the call returns, where CPython's `Pool` hangs.
///
/// Dropping the pool terminates it, as leaving Python's `with Pool() as p:`
/// does; [`close`](Self::close) then [`join`](Self::join) let queued work
/// finish first.
///
/// ```
/// use multiproc as mp;
///
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # fn main() -> mp::Result<()> {
/// let pool = mp::Pool::builder().processes(2).build()?;
/// assert_eq!(pool.map(square, 1..=5)?, vec![1, 4, 9, 16, 25]);
/// # Ok(())
/// # }
/// ```
pub struct Pool {
    workers: Workers,
    jobs: Mutex<Option<Sender<Job>>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
    processes: usize,
}

/// Python's default chunk size for `map`: ceil(len / (4 * workers)).
pub(crate) fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}

impl Pool {
    /// A pool of [`cpu_count`](multiproc_process::cpu_count) workers. Python:
    /// `Pool()`.
    ///
    /// # Errors
    ///
    /// The errors of starting a process.
    pub fn new() -> Result<Pool> {
        PoolBuilder::default().build()
    }

    /// Options: number of processes, initializer, tasks per child, start
    /// method.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The pids of the worker processes running now (none for a pool whose
    /// workers are not this program's children, such as an MPI pool's).
    pub fn worker_pids(&self) -> Vec<u32> {
        match &self.workers {
            Workers::Local(shared) => shared.running().iter().filter_map(|p| p.pid()).collect(),
            Workers::Remote(_) => Vec::new(),
        }
    }

    /// A pool whose `processes` workers are served by the dispatcher thread
    /// `start` starts with the pool's jobs; `terminate` tells that thread
    /// to end at once (it then fails what it holds with
    /// [`Error::Closed`]). See [`remote`](crate::remote).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes; the errors of `start`.
    pub fn remote(
        processes: usize,
        start: impl FnOnce(crate::remote::RemoteJobs) -> Result<JoinHandle<()>>,
        terminate: impl Fn() + Send + Sync + 'static,
    ) -> Result<Pool> {
        if processes == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one worker".into(),
            ));
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let dispatcher = start(crate::remote::RemoteJobs::new(rx))?;
        Ok(Pool {
            workers: Workers::Remote(Box::new(terminate)),
            jobs: Mutex::new(Some(tx)),
            handlers: Mutex::new(vec![dispatcher]),
            processes,
        })
    }

    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock();
        let Some(tx) = jobs.as_ref() else {
            return Err(Error::Closed);
        };
        tx.send(job).map_err(|_| Error::Closed)
    }

    /// Submits `items` in chunks of `chunksize` (Python's default for
    /// `None`), each chunk encoded and its results decoded on the handler
    /// threads. An input that knows its exact length is chunked as it is
    /// read; another is collected first, to learn its length.
    fn submit_chunks<A, R>(
        &self,
        func: TaskFn,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let items = items.into_iter();
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => self.submit_chunks_of(func, items, lo, chunksize),
            _ => {
                let items: Vec<A> = items.collect();
                let len = items.len();
                self.submit_chunks_of(func, items.into_iter(), len, chunksize)
            }
        }
    }

    fn submit_chunks_of<A, R>(
        &self,
        func: TaskFn,
        mut items: impl Iterator<Item = A>,
        len: usize,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let chunksize = chunksize
            .unwrap_or_else(|| default_chunksize(len, self.processes()))
            .max(1);
        // Sealed with the number of chunks actually made: a length hint
        // that lied costs nothing but the chunk size.
        let group = Group::new(None);
        let mut index = 0;
        loop {
            let mut chunk: Vec<A> = Vec::with_capacity(chunksize.min(len.max(1)));
            chunk.extend(items.by_ref().take(chunksize));
            if chunk.is_empty() {
                break;
            }
            group.expect(index);
            self.submit(Job {
                input: Input::Lazy(Box::new(move |buf| task_message_into(func, &chunk, buf))),
                decode: Some(decode_chunk::<R>),
                group: group.clone(),
                index,
            })?;
            index += 1;
        }
        group.seal();
        Ok(AsyncResult::concat(group))
    }

    /// Calls `f` on each item, in parallel, and returns the results in
    /// order. Python: `pool.map(f, items)`; chunks as Python sizes them.
    ///
    /// # Errors
    ///
    /// The first failed chunk's error: [`Error::TaskPanicked`],
    /// [`Error::TaskFailed`] (the function returned `Err`),
    /// [`Error::WorkerDied`], [`Error::Closed`] after `close`/`terminate`.
    pub fn map<F, T, R, K>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: Target<(T,), K, Output = R>,
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async(f, items)?.get()
    }

    /// As [`map`](Self::map), `chunksize` items per task. Python:
    /// `pool.map(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_chunked<F, T, R, K>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        F: Target<(T,), K, Output = R>,
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_chunks(TaskFn::chunk(f), items, Some(chunksize))?
            .get()
    }

    /// Starts a [`map`](Self::map) and returns at once. Python:
    /// `pool.map_async(f, items)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close`/`terminate`, [`Error::Encode`].
    pub fn map_async<F, T, R, K>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<(T,), K, Output = R>,
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_chunks(TaskFn::chunk(f), items, None)
    }

    /// As [`map_async`](Self::map_async), `chunksize` items per task.
    /// Python: `pool.map_async(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn map_async_chunked<F, T, R, K>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<(T,), K, Output = R>,
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_chunks(TaskFn::chunk(f), items, Some(chunksize))
    }

    /// Calls `f` with each tuple's fields as arguments. Python:
    /// `pool.starmap(f, [(a, b), ...])`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<F, A, R, K>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_chunks(TaskFn::chunk(f), items, None)?.get()
    }

    /// As [`starmap`](Self::starmap), `chunksize` tuples per task. Python:
    /// `pool.starmap(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap_chunked<F, A, R, K>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_chunks(TaskFn::chunk(f), items, Some(chunksize))?
            .get()
    }

    /// Starts a [`starmap`](Self::starmap) and returns at once. Python:
    /// `pool.starmap_async(f, items)`.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn starmap_async<F, A, R, K>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_chunks(TaskFn::chunk(f), items, None)
    }

    /// Calls `f(args...)` in a worker and waits for its result. Python:
    /// `pool.apply(f, args)`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`], [`Error::TaskFailed`] (the function returned
    /// `Err`), [`Error::WorkerDied`], [`Error::Closed`].
    pub fn apply<F, A, R, K>(&self, f: F, args: A) -> Result<R>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args...)` in a worker and returns at once. Python:
    /// `pool.apply_async(f, args)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close`/`terminate`, [`Error::Encode`].
    pub fn apply_async<F, A, R, K>(&self, f: F, args: A) -> Result<AsyncResult<R>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let group = Group::new(Some(1));
        self.submit(Job {
            input: Input::Bytes(task_message(TaskFn::new(f), &args)?),
            decode: None,
            group: group.clone(),
            index: 0,
        })?;
        Ok(AsyncResult::single(group))
    }

    /// As [`apply_async`](Self::apply_async), calling `callback` with the
    /// result or `error_callback` with the error when it is ready, on a
    /// thread of the pool (keep them short; a panic in one is reported on
    /// stderr and harms nothing else). Python:
    /// `apply_async(f, args, callback=..., error_callback=...)`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_with<F, A, R, K>(
        &self,
        f: F,
        args: A,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(Error) + Send + 'static,
    ) -> Result<AsyncResult<R>>
    where
        F: Target<A, K, Output = R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let result = self.apply_async(f, args)?;
        result.on_done(callback, error_callback);
        Ok(result)
    }

    /// As [`map_async`](Self::map_async), with callbacks as
    /// [`apply_async_with`](Self::apply_async_with).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    pub fn map_async_with<F, T, R, K>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(Error) + Send + 'static,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Target<(T,), K, Output = R>,
        T: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let result = self.map_async(f, items)?;
        result.on_done(callback, error_callback);
        Ok(result)
    }

    /// Accepts no more work; queued work goes on. Python: `pool.close()`.
    pub fn close(&self) {
        self.jobs.lock().take();
    }

    /// Stops at once: workers are killed, queued and running work fails
    /// with [`Error::Closed`]. Python: `pool.terminate()`.
    pub fn terminate(&self) {
        match &self.workers {
            Workers::Local(shared) => {
                shared.terminate();
                self.close();
                for w in shared.running() {
                    let _ = w.kill();
                }
            }
            Workers::Remote(end) => {
                // Closed first: no job can come in after the dispatcher's
                // last look at the queue.
                self.close();
                end();
            }
        }
        self.join_handlers();
    }

    /// Waits for the workers to finish after [`close`](Self::close) or
    /// [`terminate`](Self::terminate). Python: `pool.join()`.
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`]-like misuse: the pool is still open.
    pub fn join(&self) -> Result<()> {
        if self.jobs.lock().is_some() {
            return Err(Error::InvalidArgument(
                "join a pool after close or terminate".into(),
            ));
        }
        self.join_handlers();
        Ok(())
    }

    fn join_handlers(&self) {
        let handlers: Vec<_> = self.handlers.lock().drain(..).collect();
        for h in handlers {
            // A handler that panicked has nothing more to give back.
            let _ = h.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("workers", &self.worker_pids())
            .finish()
    }
}
