//! The process pool: worker processes, one handler thread per worker in
//! the caller's process, and the calls that feed them.
//!
//! A handler takes a job from the pool's queue, sends it to its worker over
//! a `Pipe`, and waits for the reply. If the worker dies instead, the handler
//! learns it from the pipe (its other end closed with the worker), fails that
//! job with [`Error::WorkerDied`] naming the signal, and starts a new worker
//! for the next job. So a killed worker costs one task, never a hang.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use multiproc_channel::{Connection, Pipe};
use multiproc_process::{Error, Process, Result, StartMethod, Target, TaskFn, codec};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::group::{Decoded, Failure, Group, Piece, payload};
use crate::imap::{IMap, IMapUnordered};
use crate::result::AsyncResult;

/// How long a dying worker is given to be reaped.
const REAP: Duration = Duration::from_secs(5);

/// The largest buffer kept from one task to the next; a larger one is
/// freed after its task, so one huge chunk does not hold memory for good.
const KEEP_MAX: usize = 16 << 20;

/// `buf` emptied for the next task, or a new one if `buf` is too large to
/// keep.
fn recycle(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > KEEP_MAX {
        return Vec::new();
    }
    buf.clear();
    buf
}

/// A task travels as one message: the encoded `TaskFn`, then its input,
/// encoded after it in the same buffer (no envelope to copy it into). A
/// reply is a tag byte, then the result's bytes or the failure's text.
const REPLY_DONE: u8 = 0;
const REPLY_FAILED: u8 = 1;
const REPLY_PANICKED: u8 = 2;
const REPLY_RAISED: u8 = 3;

/// What a worker starts with.
#[derive(Serialize, Deserialize)]
struct WorkerStart {
    conn: Connection,
    initializer: Option<(TaskFn, serde_bytes::ByteBuf)>,
}

/// A task message: `func`'s header, then `input` encoded after it (in the
/// fixed-width encoding: a chunk of numbers costs a copy, not a varint
/// loop).
pub(crate) fn task_message<T: Serialize + ?Sized>(func: TaskFn, input: &T) -> Result<Vec<u8>> {
    task_message_into(func, input, Vec::new())
}

/// As [`task_message`], in `buf` (emptied first), reusing its allocation.
pub(crate) fn task_message_into<T: Serialize + ?Sized>(
    func: TaskFn,
    input: &T,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    buf.clear();
    codec::bulk::encode_into(input, codec::encode_into(&func, buf)?)
}

fn reply_text(tag: u8, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(tag);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A worker process's target: runs tasks until its pipe closes.
fn worker_main(start: WorkerStart) {
    if let Some((init, args)) = start.initializer
        && let Err(why) = init.call(args.as_ref())
    {
        eprintln!("pool worker initializer failed: {why}");
        return;
    }
    // Both buffers are kept from task to task: a chunk after the first
    // touches no fresh memory.
    let mut msg = Vec::new();
    let mut done = Vec::new();
    while start.conn.recv_bytes_into_vec(&mut msg).is_ok() {
        if msg.is_empty() {
            // Asked to stop. The end of the pipe alone is not enough: under
            // fork, this process (and any sibling forked after it) holds a
            // copy of the pool's end.
            return;
        }
        done = recycle(done);
        done.push(REPLY_DONE);
        let reply = match codec::decode_prefix::<TaskFn>(&msg) {
            Ok((func, input)) => {
                let out = std::mem::take(&mut done);
                match std::panic::catch_unwind(AssertUnwindSafe(|| func.call_into(input, out))) {
                    Ok(Ok(bytes)) => {
                        done = bytes;
                        start.conn.send_bytes(&done)
                    }
                    Ok(Err(Error::TaskFailed { message })) => {
                        start.conn.send_bytes(&reply_text(REPLY_RAISED, &message))
                    }
                    // The reason alone: the handler makes it an error again.
                    Ok(Err(Error::Decode(why) | Error::Encode(why))) => {
                        start.conn.send_bytes(&reply_text(REPLY_FAILED, &why))
                    }
                    Ok(Err(why)) => start
                        .conn
                        .send_bytes(&reply_text(REPLY_FAILED, &why.to_string())),
                    Err(panic) => start.conn.send_bytes(&reply_text(
                        REPLY_PANICKED,
                        &multiproc_process::panic_message(&*panic),
                    )),
                }
            }
            Err(e) => start.conn.send_bytes(&reply_text(
                REPLY_FAILED,
                &format!("a task that does not decode: {e}"),
            )),
        };
        if reply.is_err() {
            return;
        }
        msg = recycle(msg);
    }
}

/// A job's input: encoded already, or encoded by the handler thread that
/// runs it, so that the chunks of a map are encoded in parallel.
pub(crate) enum Input {
    Bytes(Vec<u8>),
    /// Encodes the message into the (empty) buffer it is given.
    Lazy(Box<dyn FnOnce(Vec<u8>) -> Result<Vec<u8>> + Send>),
}

/// Decodes a reply on the handler thread (a chunk's `Vec<R>`).
pub(crate) type Decoder = fn(&[u8]) -> Option<Decoded>;

/// A job on the pool's queue: one piece of one call.
pub(crate) struct Job {
    /// The task message (see [`task_message`]).
    pub(crate) input: Input,
    pub(crate) decode: Option<Decoder>,
    pub(crate) group: Arc<Group>,
    pub(crate) index: usize,
}

/// Decodes a chunk's results into a boxed `Vec<R>`.
pub(crate) fn decode_chunk<R: DeserializeOwned + Send + 'static>(bytes: &[u8]) -> Option<Decoded> {
    codec::bulk::decode::<Vec<R>>(bytes)
        .ok()
        .map(|v| Box::new(v) as Decoded)
}

/// What the pool's threads share.
struct Shared {
    method: Option<StartMethod>,
    initializer: Option<(TaskFn, Vec<u8>)>,
    max_tasks: Option<u64>,
    terminated: AtomicBool,
    /// The running workers, by slot, so `terminate` can kill them.
    workers: Mutex<Vec<Option<Arc<Process<()>>>>>,
    started: AtomicU64,
}

struct Worker {
    process: Arc<Process<()>>,
    conn: Connection,
    tasks: u64,
}

impl Shared {
    fn start_worker(&self, slot: usize) -> Result<Worker> {
        let (mine, theirs) = Pipe::new()?;
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let start = WorkerStart {
            conn: theirs,
            initializer: self
                .initializer
                .as_ref()
                .map(|(f, args)| (*f, serde_bytes::ByteBuf::from(args.clone()))),
        };
        let mut builder = Process::builder(worker_main, (start,))
            .name(format!("PoolWorker-{n}"))
            .daemon(true);
        if let Some(m) = self.method {
            builder = builder.start_method(m);
        }
        let mut process = builder.build();
        process.start()?;
        let process = Arc::new(process);
        self.workers.lock()[slot] = Some(process.clone());
        Ok(Worker {
            process,
            conn: mine,
            tasks: 0,
        })
    }

    /// Ends a worker that is done (or gone): ask it to stop, close its
    /// pipe, reap it.
    fn retire(&self, slot: usize, worker: Worker) {
        // An empty message: a task is never empty (it starts with its
        // function). A dead worker's pipe refuses it, which is fine.
        let _ = worker.conn.send_bytes(&[]);
        worker.conn.close();
        if worker.process.join_timeout(REAP).is_err() {
            // It ignores the end of its pipe: no more patience.
            let _ = worker.process.kill();
            let _ = worker.process.join_timeout(REAP);
        }
        let mut workers = self.workers.lock();
        if workers[slot]
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &worker.process))
        {
            workers[slot] = None;
        }
    }

    /// Runs one job on the slot's worker, starting one if needed.
    /// `scratch` is the handler's buffer for encoding tasks, kept from one
    /// task to the next.
    fn run(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        input: Input,
        scratch: &mut Vec<u8>,
    ) -> Piece {
        if self.terminated.load(Ordering::SeqCst) {
            return Err(Failure::Closed);
        }
        let (message, reusable) = match input {
            Input::Bytes(bytes) => (bytes, false),
            Input::Lazy(encode) => (
                encode(std::mem::take(scratch)).map_err(|e| Failure::Failed(e.to_string()))?,
                true,
            ),
        };
        let piece = self.exchange(slot, worker, &message);
        if reusable {
            *scratch = recycle(message);
        }
        piece
    }

    /// Sends `message` to the slot's worker (starting one if needed) and
    /// waits for its reply. A worker that died before it took the message
    /// (between the check that it lives and the send) cost no task: the
    /// message goes, once, to the worker that replaces it.
    fn exchange(&self, slot: usize, worker: &mut Option<Worker>, message: &[u8]) -> Piece {
        match self.exchange_once(slot, worker, message) {
            Err(Failure::NeverTaken { .. }) => match self.exchange_once(slot, worker, message) {
                // Two in a row: report the second.
                Err(Failure::NeverTaken {
                    pid,
                    signal,
                    exitcode,
                }) => Err(Failure::WorkerDied {
                    pid,
                    signal,
                    exitcode,
                }),
                other => other,
            },
            other => other,
        }
    }

    fn exchange_once(&self, slot: usize, worker: &mut Option<Worker>, message: &[u8]) -> Piece {
        if worker.as_ref().is_some_and(|w| !w.process.is_alive()) {
            // Died while idle: its death cost no task.
            if let Some(w) = worker.take() {
                self.retire(slot, w);
            }
        }
        if worker.is_none() {
            *worker = Some(
                self.start_worker(slot)
                    .map_err(|e| Failure::Failed(format!("cannot start a worker: {e}")))?,
            );
        }
        let Some(w) = worker.as_mut() else {
            return Err(Failure::Closed);
        };
        let sent = w.conn.send_bytes(message).is_ok();
        let reply = if sent {
            w.conn.recv_bytes()
        } else {
            Err(Error::Closed)
        };
        match reply {
            Ok(reply) => {
                w.tasks += 1;
                if self.max_tasks.is_some_and(|m| w.tasks >= m)
                    && let Some(w) = worker.take()
                {
                    self.retire(slot, w);
                }
                let text = || String::from_utf8_lossy(payload(&reply)).into_owned();
                match reply.first() {
                    Some(&REPLY_DONE) => Ok(reply),
                    Some(&REPLY_PANICKED) => Err(Failure::Panicked(text())),
                    Some(&REPLY_RAISED) => Err(Failure::Raised(text())),
                    Some(&REPLY_FAILED) => Err(Failure::Failed(text())),
                    _ => Err(Failure::Failed("a malformed reply from a worker".into())),
                }
            }
            Err(_) => {
                let Some(w) = worker.take() else {
                    return Err(Failure::Closed);
                };
                // Refused (the worker's end was gone), or sent and still
                // there: the worker never took it.
                let never_taken = !sent || w.conn.pending_sent() > 0;
                let pid = w.process.pid().unwrap_or(0);
                let _ = w.process.join_timeout(REAP);
                let code = w.process.exitcode();
                let signal = code.filter(|c| *c < 0).map(|c| -c);
                let exitcode = code.filter(|c| *c >= 0);
                self.retire(slot, w);
                if self.terminated.load(Ordering::SeqCst) {
                    Err(Failure::Closed)
                } else if never_taken {
                    Err(Failure::NeverTaken {
                        pid,
                        signal,
                        exitcode,
                    })
                } else {
                    Err(Failure::WorkerDied {
                        pid,
                        signal,
                        exitcode,
                    })
                }
            }
        }
    }
}

fn handler(shared: Arc<Shared>, slot: usize, jobs: Receiver<Job>, mut worker: Option<Worker>) {
    let mut scratch = Vec::new();
    while let Ok(job) = jobs.recv() {
        let piece = shared.run(slot, &mut worker, job.input, &mut scratch);
        let decoded = match (&piece, job.decode) {
            (Ok(bytes), Some(decode)) => decode(payload(bytes)),
            _ => None,
        };
        job.group.deliver(job.index, piece, decoded);
    }
    if let Some(w) = worker.take() {
        shared.retire(slot, w);
    }
}

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
        if n == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        let initializer = match self.initializer {
            Some((f, args)) => Some((f, args?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            method: self.method,
            initializer,
            max_tasks: self.max_tasks,
            terminated: AtomicBool::new(false),
            workers: Mutex::new(vec![None; n]),
            started: AtomicU64::new(0),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut handlers = Vec::with_capacity(n);
        for slot in 0..n {
            let worker = shared.start_worker(slot)?;
            let (shared, rx) = (shared.clone(), rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("pool-handler-{slot}"))
                .spawn(move || handler(shared, slot, rx, Some(worker)))?;
            handlers.push(handle);
        }
        Ok(Pool {
            shared,
            jobs: Mutex::new(Some(tx)),
            handlers: Mutex::new(handlers),
            processes: n,
        })
    }
}

/// A pool of worker processes. Python: `multiprocessing.Pool`.
///
/// Functions given to a pool are `fn` items (or closures that capture
/// nothing) of serde arguments, as for [`Process`]. Results equal those of
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
    shared: Arc<Shared>,
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

    /// The pids of the workers running now.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared
            .workers
            .lock()
            .iter()
            .flatten()
            .filter_map(|p| p.pid())
            .collect()
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
            .unwrap_or_else(|| default_chunksize(len, self.processes))
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

    /// Calls `f` on each item lazily, yielding results in order as they
    /// come; at most a few chunks per worker are in flight, so an endless
    /// input works. Python: `pool.imap(f, items)` (chunk size 1).
    pub fn imap<F, I, R, K>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, items, 1)
    }

    /// As [`imap`](Self::imap), `chunksize` items per task.
    pub fn imap_chunked<F, I, R, K>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        IMap::new(self, TaskFn::chunk(f), items.into_iter(), chunksize.max(1))
    }

    /// As [`imap`](Self::imap), yielding results in the order they finish.
    /// Python: `pool.imap_unordered(f, items)`.
    pub fn imap_unordered<F, I, R, K>(&self, f: F, items: I) -> IMapUnordered<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        IMapUnordered::new(self, TaskFn::chunk(f), items.into_iter(), 1)
    }

    /// Accepts no more work; queued work goes on. Python: `pool.close()`.
    pub fn close(&self) {
        self.jobs.lock().take();
    }

    /// Stops at once: workers are killed, queued and running work fails
    /// with [`Error::Closed`]. Python: `pool.terminate()`.
    pub fn terminate(&self) {
        self.shared.terminated.store(true, Ordering::SeqCst);
        self.close();
        let workers: Vec<_> = self
            .shared
            .workers
            .lock()
            .iter()
            .flatten()
            .cloned()
            .collect();
        for w in workers {
            let _ = w.kill();
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
