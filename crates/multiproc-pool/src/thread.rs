//! `ThreadPool`: the pool's API over threads, on rayon. Python:
//! `multiprocessing.pool.ThreadPool`. It takes closures (they need not be
//! `fn` items, nor their values serde), for work that shares memory and does
//! not need a process's isolation.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use multiproc_process::{Error, Result};
use parking_lot::Mutex;
use rayon::prelude::*;

fn guarded<R>(f: impl FnOnce() -> R) -> Result<R> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| Error::TaskPanicked {
        message: multiproc_process::panic_message(&*p),
    })
}

/// A pool of threads with [`Pool`](crate::Pool)'s methods. Python:
/// `multiprocessing.pool.ThreadPool`.
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
    /// [`Error::TaskPanicked`] with the first panic's message.
    pub fn map<T, R, F>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync + Send,
    {
        let items: Vec<T> = items.into_iter().collect();
        // One guard for the whole call: rayon hands a task's panic to the
        // caller of `install`, and results need no `Result` each.
        guarded(|| self.pool.install(|| items.into_par_iter().map(f).collect()))
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
        ThreadIMap::new(self, Arc::new(f), items.into_iter(), true)
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
        ThreadIMap::new(self, Arc::new(f), items.into_iter(), false)
    }

    /// Calls `f` on a thread of the pool and waits. Python: `apply`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`].
    pub fn apply<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        self.pool.install(|| guarded(f))
    }

    /// Starts `f` on a thread of the pool. Python: `apply_async`.
    pub fn apply_async<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> ThreadResult<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.pool.spawn(move || {
            let _ = tx.send(guarded(f));
        });
        ThreadResult {
            rx,
            value: Mutex::new(None),
        }
    }

    /// Starts a [`map`](Self::map). Python: `map_async`.
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
        let items: Vec<T> = items.into_iter().collect();
        let pool = self.pool.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.pool.spawn(move || {
            let results = guarded(|| pool.install(|| items.into_par_iter().map(f).collect()));
            let _ = tx.send(results);
        });
        ThreadResult {
            rx,
            value: Mutex::new(None),
        }
    }
}

/// Items in flight per thread in the lazy maps.
const AHEAD_PER_THREAD: usize = 4;

type Task<T, R> = Arc<dyn Fn(T) -> R + Send + Sync>;

/// The iterator of [`ThreadPool::imap`] and [`ThreadPool::imap_unordered`].
pub struct ThreadIMap<I: Iterator, R> {
    pool: Arc<rayon::ThreadPool>,
    f: Task<I::Item, R>,
    input: I,
    window: usize,
    ordered: bool,
    tx: crossbeam_channel::Sender<(usize, Result<R>)>,
    rx: crossbeam_channel::Receiver<(usize, Result<R>)>,
    sent: usize,
    yielded: usize,
    /// Results that finished before those due first (in order only).
    early: BTreeMap<usize, Result<R>>,
}

impl<I, R> ThreadIMap<I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    fn new(pool: &ThreadPool, f: Task<I::Item, R>, input: I, ordered: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        ThreadIMap {
            pool: pool.pool.clone(),
            f,
            input,
            window: AHEAD_PER_THREAD * pool.threads(),
            ordered,
            tx,
            rx,
            sent: 0,
            yielded: 0,
            early: BTreeMap::new(),
        }
    }

    /// Starts items until the window is full or the input ends.
    fn fill(&mut self) {
        while self.sent - self.yielded < self.window {
            let Some(item) = self.input.next() else {
                return;
            };
            let (f, tx, index) = (self.f.clone(), self.tx.clone(), self.sent);
            self.pool.spawn(move || {
                // The iterator gone: nobody wants the result.
                let _ = tx.send((index, guarded(|| f(item))));
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
        self.fill();
        loop {
            if let Some(r) = self.early.remove(&self.yielded) {
                self.yielded += 1;
                return Some(r);
            }
            if self.yielded == self.sent {
                return None;
            }
            // Every started item sends once (a panic is caught), and we
            // hold a sender: this returns.
            let (index, r) = self.rx.recv().ok()?;
            if !self.ordered {
                self.yielded += 1;
                return Some(r);
            }
            self.early.insert(index, r);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.input.size_hint();
        let in_flight = self.sent - self.yielded;
        (
            lo.saturating_add(in_flight),
            hi.and_then(|h| h.checked_add(in_flight)),
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
            .field("yielded", &self.yielded)
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
