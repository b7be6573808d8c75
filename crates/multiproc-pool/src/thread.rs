//! `ThreadPool`: the pool's API over threads, on rayon. Python:
//! `multiprocessing.pool.ThreadPool`. It takes closures (they need not be
//! `fn` items, nor their values serde), for work that shares memory and does
//! not need a process's isolation.

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
        let results: Vec<Result<R>> = self
            .pool
            .install(|| items.into_par_iter().map(|x| guarded(|| f(x))).collect());
        results.into_iter().collect()
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

    /// Results in order, as an iterator (computed in parallel first).
    /// Python: `pool.imap(f, items)`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn imap<T, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<std::vec::IntoIter<R>>
    where
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync + Send,
    {
        Ok(self.map(f, items)?.into_iter())
    }

    /// Results in the order they finish, each as it comes. Python:
    /// `pool.imap_unordered(f, items)`.
    pub fn imap_unordered<T, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> crossbeam_channel::IntoIter<Result<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Sync + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::unbounded();
        let f = Arc::new(f);
        for item in items {
            let (tx, f) = (tx.clone(), f.clone());
            self.pool.spawn(move || {
                // The receiver gone: nobody wants the result.
                let _ = tx.send(guarded(|| f(item)));
            });
        }
        rx.into_iter()
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
            let results: Vec<Result<R>> =
                pool.install(|| items.into_par_iter().map(|x| guarded(|| f(x))).collect());
            let _ = tx.send(results.into_iter().collect());
        });
        ThreadResult {
            rx,
            value: Mutex::new(None),
        }
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
