//! Managed locks, semaphores, conditions, events and barriers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_process::Result;

use super::unexpected;
use crate::client::ProxyRef;
use crate::wire::{Holder, Kind, Op, Reply};

/// This thread's number, naming it as a lock's holder.
fn holder() -> Holder {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static THREAD: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    (0, THREAD.with(|t| *t))
}

/// Takes the lock for this thread; the guard releases it as the same
/// holder, from whichever thread drops it.
fn acquire(r: &ProxyRef, wait: Option<Duration>) -> Result<ManagedGuard<'_>> {
    let who = holder();
    r.unit(Op::Acquire(who, wait))?;
    Ok(ManagedGuard::new(r, who))
}

/// As [`acquire`], awaiting the grant: the holder is the thread that
/// first polls the future.
async fn acquire_async(r: &ProxyRef) -> Result<ManagedGuard<'_>> {
    let who = holder();
    r.unit_async(Op::Acquire(who, None)).await?;
    Ok(ManagedGuard::new(r, who))
}

fn release(r: &ProxyRef, who: Holder) -> Result<()> {
    r.unit(Op::Release(who))
}

/// A held managed lock (or semaphore); released on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ManagedGuard<'a> {
    r: &'a ProxyRef,
    /// Who took it: who gives it back.
    who: Holder,
    held: bool,
}

impl<'a> ManagedGuard<'a> {
    fn new(r: &'a ProxyRef, who: Holder) -> ManagedGuard<'a> {
        ManagedGuard { r, who, held: true }
    }
}

impl ManagedGuard<'_> {
    /// Releases now, reporting a failure (the manager gone) that drop would
    /// ignore.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        release(self.r, self.who)
    }
}

impl Drop for ManagedGuard<'_> {
    fn drop(&mut self) {
        if self.held {
            // The manager gone: the lock went with it.
            let _ = release(self.r, self.who);
        }
    }
}

impl fmt::Debug for ManagedGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManagedGuard({:?})", self.r)
    }
}

macro_rules! lock_methods {
    () => {
        /// Waits for the lock. Python: `acquire()`.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
        pub fn acquire(&self) -> Result<ManagedGuard<'_>> {
            acquire(&self.r, None)
        }

        /// As [`acquire`](Self::acquire), without blocking a thread, under
        /// any async runtime. Dropping the future before the lock is
        /// granted holds nothing: the manager lets go of a grant it could
        /// not deliver. The holder is the thread that polled the future
        /// first. Python (asyncio):
        /// `await loop.run_in_executor(None, lock.acquire)`.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn acquire_async(&self) -> Result<ManagedGuard<'_>> {
            acquire_async(&self.r).await
        }

        /// Takes the lock if it is free now. Python: `acquire(False)`.
        ///
        /// # Errors
        ///
        /// [`Error::WouldBlock`](multiproc_process::Error::WouldBlock) when it is not.
        pub fn try_acquire(&self) -> Result<ManagedGuard<'_>> {
            acquire(&self.r, Some(Duration::ZERO))
        }

        /// Waits at most `timeout` for the lock. Python:
        /// `acquire(timeout=t)`.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`](multiproc_process::Error::Timeout).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<ManagedGuard<'_>> {
            acquire(&self.r, Some(timeout))
        }

        /// Releases a hold taken without a guard (after
        /// [`std::mem::forget`] of one, or from another process, as
        /// Python's code sometimes does). Python: `release()`.
        ///
        /// # Errors
        ///
        /// [`Error::NotHeld`](multiproc_process::Error::NotHeld) when nobody (for an `RLock`: not this
        /// thread) holds it.
        pub fn release(&self) -> Result<()> {
            release(&self.r, holder())
        }
    };
}

/// A managed lock. Python: `manager.Lock()`. If a process holding it dies,
/// or drops its connection, the manager releases it.
pub struct LockProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(LockProxy[], Kind::Lock, ());

impl LockProxy {
    lock_methods!();
}

/// A managed re-entrant lock, held by one thread of one process. Python:
/// `manager.RLock()`.
pub struct RLockProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(RLockProxy[], Kind::RLock, ());

impl RLockProxy {
    lock_methods!();
}

/// A managed semaphore. Python: `manager.Semaphore(n)`.
pub struct SemaphoreProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(SemaphoreProxy[], Kind::Semaphore, ());

impl SemaphoreProxy {
    lock_methods!();

    /// The counter now.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn value(&self) -> Result<u32> {
        match self.r.call(Op::SemValue)? {
            Reply::U32(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// A managed semaphore that refuses to go above its start value. Python:
/// `manager.BoundedSemaphore(n)`.
pub struct BoundedSemaphoreProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(BoundedSemaphoreProxy[], Kind::BoundedSemaphore, ());

impl BoundedSemaphoreProxy {
    lock_methods!();

    /// The counter now.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn value(&self) -> Result<u32> {
        match self.r.call(Op::SemValue)? {
            Reply::U32(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// A managed condition variable with its own re-entrant lock. Python:
/// `manager.Condition()`.
pub struct ConditionProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(ConditionProxy[], Kind::Condition, ());

/// A held [`ConditionProxy`]: wait and notify through it.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ManagedConditionGuard<'a> {
    guard: ManagedGuard<'a>,
}

impl ConditionProxy {
    /// Takes the condition's lock. Python: `with cond:`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn acquire(&self) -> Result<ManagedConditionGuard<'_>> {
        Ok(ManagedConditionGuard {
            guard: acquire(&self.r, None)?,
        })
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](multiproc_process::Error::Timeout).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ManagedConditionGuard<'_>> {
        Ok(ManagedConditionGuard {
            guard: acquire(&self.r, Some(timeout))?,
        })
    }
}

impl ManagedConditionGuard<'_> {
    fn wait_op(&self, wait: Option<Duration>) -> Result<bool> {
        self.guard.r.boolean(Op::CondWait(self.guard.who, wait))
    }

    /// Releases the lock, waits for a notification, takes the lock back.
    /// Python: `cond.wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_op(None).map(drop)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; false if it passed.
    /// Python: `cond.wait(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_op(Some(timeout))
    }

    /// Waits until `predicate()` holds, or `timeout` passes (`None`: no
    /// limit); returns the predicate's last value. Python: `wait_for`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(multiproc_process::deadline);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    Some(left)
                }
                None => None,
            };
            self.wait_op(left)?;
        }
    }

    /// Wakes up to `n` waiters. Python: `cond.notify(n)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.guard.r.unit(Op::CondNotify(self.guard.who, n))
    }

    /// Wakes every waiter. Python: `cond.notify_all()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

/// A managed event. Python: `manager.Event()`.
pub struct EventProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(EventProxy[], Kind::Event, ());

impl EventProxy {
    /// Sets the flag, waking every waiter. Python: `set()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn set(&self) -> Result<()> {
        self.r.unit(Op::EventSet)
    }

    /// Clears the flag. Python: `clear()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn clear(&self) -> Result<()> {
        self.r.unit(Op::EventClear)
    }

    /// Whether the flag is set. Python: `is_set()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn is_set(&self) -> Result<bool> {
        self.r.boolean(Op::EventIsSet)
    }

    /// Waits until the flag is set. Python: `wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn wait(&self) -> Result<()> {
        self.r.boolean(Op::EventWait(None)).map(drop)
    }

    /// As [`wait`](Self::wait), without blocking a thread, under any async
    /// runtime. Python (asyncio):
    /// `await loop.run_in_executor(None, event.wait)`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_async(&self) -> Result<()> {
        self.r.boolean_async(Op::EventWait(None)).await.map(drop)
    }

    /// Waits at most `timeout`; whether the flag was set. Python:
    /// `wait(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.r.boolean(Op::EventWait(Some(timeout)))
    }
}

/// A managed barrier. Python: `manager.Barrier(parties, timeout=...)`.
pub struct BarrierProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(BarrierProxy[], Kind::Barrier, ());

impl BarrierProxy {
    fn wait_op(&self, wait: Option<Duration>) -> Result<u32> {
        match self.r.call(Op::BarrierWait(wait))? {
            Reply::U32(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for all parties; returns this party's arrival index (0 for the
    /// first). Python: `wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`](multiproc_process::Error::BrokenBarrier) if the barrier is or gets broken (aborted,
    /// reset while waiting, a wait timed out, a waiting party went away).
    pub fn wait(&self) -> Result<u32> {
        self.wait_op(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the
    /// barrier, as in Python.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`](multiproc_process::Error::BrokenBarrier).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_op(Some(timeout))
    }

    /// Breaks the barrier. Python: `abort()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn abort(&self) -> Result<()> {
        self.r.unit(Op::BarrierAbort)
    }

    /// Returns the barrier to empty and unbroken; current waiters get
    /// [`Error::BrokenBarrier`](multiproc_process::Error::BrokenBarrier). Python: `reset()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn reset(&self) -> Result<()> {
        self.r.unit(Op::BarrierReset)
    }

    fn state(&self) -> Result<(u32, u32, bool)> {
        match self.r.call(Op::BarrierState)? {
            Reply::Barrier {
                parties,
                waiting,
                broken,
            } => Ok((parties, waiting, broken)),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the barrier is broken. Python: `broken`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn is_broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }

    /// The number of parties. Python: `parties`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.state()?.0)
    }

    /// The number waiting now. Python: `n_waiting`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.state()?.1)
    }
}
