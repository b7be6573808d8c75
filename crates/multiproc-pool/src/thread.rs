//! `ThreadPool`: the pool's API over threads, on rayon. Python:
//! `multiprocessing.pool.ThreadPool`. It takes closures (they need not be
//! `fn` items, nor their values serde), for work that shares memory and does
//! not need a process's isolation.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc_process::{Error, Result};
use parking_lot::{Condvar, Mutex};
use rayon::prelude::*;

use crate::group::Failure;

/// Runs `f`, its panic caught as a [`Failure`]: a reason that can be made
/// into an error twice (for the caller, and for an error callback).
fn guarded<R>(f: impl FnOnce() -> R) -> std::result::Result<R, Failure> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| Failure::Panicked(multiproc_process::panic_message(&*p)))
}

/// What a finished call hands its callbacks: a clone of the result, or
/// the error.
fn with_callbacks<R: Clone>(
    callback: impl FnOnce(R) + Send + 'static,
    error_callback: impl FnOnce(Error) + Send + 'static,
) -> impl FnOnce(&std::result::Result<R, Failure>) + Send + 'static {
    move |result| match result {
        Ok(r) => callback(r.clone()),
        Err(failure) => error_callback(failure.to_error()),
    }
}

/// Whether the pool takes work, and the work not finished yet.
#[derive(Debug, Default)]
struct Life {
    closed: AtomicBool,
    terminated: AtomicBool,
    busy: Mutex<usize>,
    idle: Condvar,
}

/// One call's hold on the pool: `join` waits until none is left.
struct Busy(Arc<Life>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock();
        *busy -= 1;
        if *busy == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl Life {
    /// A hold for one call; `None` after `close`/`terminate`.
    fn begin(self: &Arc<Life>) -> Option<Busy> {
        let mut busy = self.busy.lock();
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        *busy += 1;
        Some(Busy(self.clone()))
    }

    /// Runs `f` unless the pool was terminated before it started.
    fn run<R>(&self, f: impl FnOnce() -> R) -> std::result::Result<R, Failure> {
        if self.terminated.load(Ordering::SeqCst) {
            return Err(Failure::Closed);
        }
        guarded(f)
    }
}

/// A pool of threads with [`Pool`](crate::Pool)'s methods. Python:
/// `multiprocessing.pool.ThreadPool`.
///
/// Threads cannot be killed: [`terminate`](Self::terminate) lets running
/// calls finish and fails the queued ones with [`Error::Closed`], as
/// Python's does. Dropping the pool terminates it without waiting.
///
/// ```
/// use multiproc as mp;
///
/// # fn main() -> mp::Result<()> {
/// let pool = mp::ThreadPool::new(2)?;
/// let offset = 10;
/// assert_eq!(pool.map(|x: u32| x + offset, 0..4)?, vec![10, 11, 12, 13]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ThreadPool {
    pool: Arc<rayon::ThreadPool>,
    life: Arc<Life>,
}

impl ThreadPool {
    /// A pool of `threads` threads. Python: `ThreadPool(n)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero threads, [`Error::Io`] if the
    /// threads cannot be started.
    pub fn new(threads: usize) -> Result<ThreadPool> {
        if threads == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one thread".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ThreadPool-{i}"))
            .build()
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        Ok(ThreadPool {
            pool: Arc::new(pool),
            life: Arc::new(Life::default()),
        })
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Calls `f` on each item in parallel; results in order. Python:
    /// `pool.map(f, items)`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`] with the first panic's message;
    /// [`Error::Closed`] after `close`/`terminate`.
    pub fn map<T, R, F>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync + Send,
    {
        self.map_chunked(f, items, 1)
    }

    /// As [`map`](Self::map), at least `chunksize` items to a thread at a
    /// time. Python: `pool.map(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_chunked<T, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync + Send,
    {
        let _busy = self.life.begin().ok_or(Error::Closed)?;
        let items: Vec<T> = items.into_iter().collect();
        // One guard for the whole call: rayon hands a task's panic to the
        // caller of `install`, and results need no `Result` each.
        let life = &self.life;
        self.pool
            .install(|| {
                life.run(|| {
                    items
                        .into_par_iter()
                        .with_min_len(chunksize.max(1))
                        .map(f)
                        .collect()
                })
            })
            .map_err(|failure| failure.to_error())
    }

    /// Calls `f` with each tuple. Python: `pool.starmap(f, items)`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<A, R, F>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Send,
        R: Send,
        F: Fn(A) -> R + Sync + Send,
    {
        self.map(f, items)
    }

    /// Calls `f` on each item lazily, yielding results in order as they
    /// come; at most a few items per thread are in flight, so an endless
    /// input works. A panicking call yields an `Err` in its place. Python:
    /// `pool.imap(f, items)`.
    pub fn imap<I, R, F>(&self, f: F, items: I) -> ThreadIMap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Sync + Send + 'static,
    {
        self.imap_chunked(f, items, 1)
    }

    /// As [`imap`](Self::imap), `chunksize` items to a thread at a time.
    /// Python: `pool.imap(f, items, chunksize)`.
    pub fn imap_chunked<I, R, F>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> ThreadIMap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Sync + Send + 'static,
    {
        ThreadIMap::new(self, Arc::new(f), items.into_iter(), chunksize, true)
    }

    /// As [`imap`](Self::imap), yielding results in the order they finish.
    /// Python: `pool.imap_unordered(f, items)`.
    pub fn imap_unordered<I, R, F>(&self, f: F, items: I) -> ThreadIMap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Sync + Send + 'static,
    {
        ThreadIMap::new(self, Arc::new(f), items.into_iter(), 1, false)
    }

    /// Calls `f` on a thread of the pool and waits. Python: `apply`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`]; [`Error::Closed`] after `close`/`terminate`.
    pub fn apply<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let _busy = self.life.begin().ok_or(Error::Closed)?;
        let life = &self.life;
        self.pool
            .install(|| life.run(f))
            .map_err(|failure| failure.to_error())
    }

    /// Starts `f` on a thread of the pool. Python: `apply_async`. After
    /// `close`/`terminate` the result is [`Error::Closed`].
    pub fn apply_async<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> ThreadResult<R> {
        self.start(f, |_| {})
    }

    /// As [`apply_async`](Self::apply_async), calling `callback` with (a
    /// clone of) the result, or `error_callback` with the error, on the
    /// pool's thread when it is ready. Python: `apply_async(f, args,
    /// callback=..., error_callback=...)`.
    pub fn apply_async_with<R: Clone + Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(Error) + Send + 'static,
    ) -> ThreadResult<R> {
        self.start(f, with_callbacks(callback, error_callback))
    }

    /// Starts a [`map`](Self::map). Python: `map_async`. After
    /// `close`/`terminate` the result is [`Error::Closed`].
    pub fn map_async<T, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> ThreadResult<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Sync + Send + 'static,
    {
        self.map_async_with_done(f, items, |_| {})
    }

    /// As [`map_async`](Self::map_async), with callbacks as
    /// [`apply_async_with`](Self::apply_async_with).
    pub fn map_async_with<T, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(Error) + Send + 'static,
    ) -> ThreadResult<Vec<R>>
    where
        T: Send + 'static,
        R: Clone + Send + 'static,
        F: Fn(T) -> R + Sync + Send + 'static,
    {
        self.map_async_with_done(f, items, with_callbacks(callback, error_callback))
    }

    fn map_async_with_done<T, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        done: impl FnOnce(&std::result::Result<Vec<R>, Failure>) + Send + 'static,
    ) -> ThreadResult<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Sync + Send + 'static,
    {
        let items: Vec<T> = items.into_iter().collect();
        let pool = self.pool.clone();
        // A task's panic reaches `start`'s guard through `install`.
        self.start(
            move || pool.install(|| items.into_par_iter().map(f).collect()),
            done,
        )
    }

    /// Runs `f` on the pool, then `done` with its result, which the
    /// returned handle gives.
    fn start<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
        done: impl FnOnce(&std::result::Result<R, Failure>) + Send + 'static,
    ) -> ThreadResult<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let finish = move |result: std::result::Result<R, Failure>| {
            // A panicking callback must not take the pool's thread (rayon
            // would abort the process).
            if let Err(Failure::Panicked(message)) = guarded(|| done(&result)) {
                eprintln!("a thread pool callback panicked: {message}");
            }
            // The handle gone: nobody wants the result.
            let _ = tx.send(result.map_err(|failure| failure.to_error()));
        };
        match self.life.begin() {
            Some(busy) => {
                let life = self.life.clone();
                self.pool.spawn(move || {
                    finish(life.run(f));
                    drop(busy);
                });
            }
            None => finish(Err(Failure::Closed)),
        }
        ThreadResult {
            rx,
            value: Mutex::new(None),
        }
    }

    /// Accepts no more work; work already given goes on. Python:
    /// `pool.close()`.
    pub fn close(&self) {
        let _busy = self.life.busy.lock();
        self.life.closed.store(true, Ordering::SeqCst);
    }

    /// Accepts no more work, and work not started yet fails with
    /// [`Error::Closed`]; calls already running finish (a thread cannot
    /// be killed). Python: `pool.terminate()`.
    pub fn terminate(&self) {
        self.life.terminated.store(true, Ordering::SeqCst);
        self.close();
    }

    /// Waits until every call given to the pool has finished, after
    /// [`close`](Self::close) or [`terminate`](Self::terminate). Python:
    /// `pool.join()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the pool is still open.
    pub fn join(&self) -> Result<()> {
        if !self.life.closed.load(Ordering::SeqCst) {
            return Err(Error::InvalidArgument(
                "join a pool after close or terminate".into(),
            ));
        }
        let mut busy = self.life.busy.lock();
        while *busy > 0 {
            self.life.idle.wait(&mut busy);
        }
        Ok(())
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Chunks in flight per thread in the lazy maps.
const AHEAD_PER_THREAD: usize = 4;

type Task<T, R> = Arc<dyn Fn(T) -> R + Send + Sync>;

/// The iterator of [`ThreadPool::imap`] and [`ThreadPool::imap_unordered`].
/// After `close`/`terminate`, an item not started yields [`Error::Closed`].
pub struct ThreadIMap<I: Iterator, R> {
    pool: Arc<rayon::ThreadPool>,
    life: Arc<Life>,
    f: Task<I::Item, R>,
    input: I,
    chunksize: usize,
    window: usize,
    ordered: bool,
    tx: crossbeam_channel::Sender<(usize, Vec<Result<R>>)>,
    rx: crossbeam_channel::Receiver<(usize, Vec<Result<R>>)>,
    /// Chunks started, and taken back.
    sent: usize,
    taken: usize,
    /// Items started and not yielded.
    pending: usize,
    /// Chunks that finished before those due first (in order only).
    early: BTreeMap<usize, Vec<Result<R>>>,
    ready: VecDeque<Result<R>>,
    /// The pool refused more work: the next item is that error, the last.
    refused: bool,
    /// No more input is read.
    stopped: bool,
}

impl<I, R> ThreadIMap<I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    fn new(
        pool: &ThreadPool,
        f: Task<I::Item, R>,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        ThreadIMap {
            pool: pool.pool.clone(),
            life: pool.life.clone(),
            f,
            input,
            chunksize: chunksize.max(1),
            window: AHEAD_PER_THREAD * pool.threads(),
            ordered,
            tx,
            rx,
            sent: 0,
            taken: 0,
            pending: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
            refused: false,
            stopped: false,
        }
    }

    /// Starts chunks until the window is full or the input ends.
    fn fill(&mut self) {
        while !self.stopped && self.sent - self.taken < self.window {
            let chunk: Vec<I::Item> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                return;
            }
            let Some(busy) = self.life.begin() else {
                (self.refused, self.stopped) = (true, true);
                return;
            };
            self.pending += chunk.len();
            let (f, life, tx, index) = (
                self.f.clone(),
                self.life.clone(),
                self.tx.clone(),
                self.sent,
            );
            self.pool.spawn(move || {
                let results: Vec<Result<R>> = chunk
                    .into_iter()
                    .map(|x| life.run(|| f(x)).map_err(|failure| failure.to_error()))
                    .collect();
                // The iterator gone: nobody wants the results.
                let _ = tx.send((index, results));
                drop(busy);
            });
            self.sent += 1;
        }
    }
}

impl<I, R> Iterator for ThreadIMap<I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                self.pending -= 1;
                return Some(r);
            }
            self.fill();
            if let Some(chunk) = self.early.remove(&self.taken) {
                self.taken += 1;
                self.ready.extend(chunk);
                continue;
            }
            if self.taken == self.sent {
                // After a refusal, one error; the rest of the input is
                // not read.
                return std::mem::take(&mut self.refused).then_some(Err(Error::Closed));
            }
            // Every started chunk sends once (panics are caught), and we
            // hold a sender: this returns.
            let (index, chunk) = self.rx.recv().ok()?;
            if self.ordered {
                self.early.insert(index, chunk);
            } else {
                self.taken += 1;
                self.ready.extend(chunk);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.stopped {
            let n = self.pending + usize::from(self.refused);
            return (n, Some(n));
        }
        let (lo, hi) = self.input.size_hint();
        (
            lo.saturating_add(self.pending),
            hi.and_then(|h| h.checked_add(self.pending)),
        )
    }
}

impl<I, R> ExactSizeIterator for ThreadIMap<I, R>
where
    I: ExactSizeIterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
}

impl<I: Iterator, R> std::fmt::Debug for ThreadIMap<I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadIMap")
            .field("ordered", &self.ordered)
            .field("sent", &self.sent)
            .field("pending", &self.pending)
            .finish()
    }
}

/// The result of [`ThreadPool::apply_async`] or
/// [`ThreadPool::map_async`]. Python: `AsyncResult`.
#[derive(Debug)]
pub struct ThreadResult<R> {
    rx: crossbeam_channel::Receiver<Result<R>>,
    value: Mutex<Option<Result<R>>>,
}

impl<R> ThreadResult<R> {
    fn poll(&self, timeout: Option<Duration>) -> bool {
        let mut value = self.value.lock();
        if value.is_some() {
            return true;
        }
        let got = match timeout {
            Some(t) => self.rx.recv_timeout(t).ok(),
            None => self.rx.recv().ok(),
        };
        match got {
            Some(r) => {
                *value = Some(r);
                true
            }
            None => false,
        }
    }

    /// Waits for the result and takes it. Python: `get()`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`]; [`Error::Closed`] if it was taken already.
    pub fn get(self) -> Result<R> {
        self.poll(None);
        self.value.into_inner().unwrap_or(Err(Error::Closed))
    }

    /// Waits at most `timeout`, then takes the result. Python: `get(t)`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (the result stays), and as [`get`](Self::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R> {
        if !self.poll(Some(timeout)) {
            return Err(Error::Timeout);
        }
        self.value.lock().take().unwrap_or(Err(Error::Closed))
    }

    /// Waits until ready (`None`: as long as it takes); whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.poll(timeout)
    }

    /// Whether it has finished. Python: `ready()`.
    pub fn ready(&self) -> bool {
        self.poll(Some(Duration::ZERO))
    }
}
