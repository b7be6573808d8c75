//! [`RLock`]: a lock its owner may acquire again.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_process::bell::Bell;
use multiproc_process::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::core::lock::Acquired;
use crate::layout::RLockState;
use crate::lock::{
    AcquireError, AcquireResult, lock_word, lock_word_async, try_lock_word, unlock_word,
};
use crate::owner;
use crate::shared::Shared;
use crate::shim::{Deadline, SpinBudget};

/// A reentrant lock shared between processes: the thread that holds it may
/// acquire it again, and must release it as many times.
///
/// Python: `multiprocessing.RLock`. Only the owning thread of the owning
/// process may release it. A dead owner is handled as for
/// [`Lock`](crate::Lock), and so is an async acquire
/// ([`acquire_async`](RLock::acquire_async)).
///
/// The owner is a thread: a guard stays on the thread that acquired it
/// (it is not `Send`, as std's lock guards are not), so in async code an
/// `RLock` is held across an `.await` only on a current-thread runtime or
/// in a task that does not move (`spawn_local`).
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    shared: Shared<RLockState>,
    /// Rung by an unlock while an async acquirer waits.
    bell: Bell,
    #[serde(skip)]
    spin: Arc<SpinBudget>,
}

impl RLock {
    /// A new, unlocked reentrant lock.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the shared memory.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            shared: Shared::new(0)?,
            bell: Bell::new()?,
            spin: Arc::default(),
        })
    }

    fn state(&self) -> &RLockState {
        self.shared.state()
    }

    fn mine(&self) -> bool {
        let st = self.state();
        st.word.owner() == owner::token() && st.thread.load(Ordering::Relaxed) == owner::thread_id()
    }

    fn take(&self) -> RLockGuard<'_> {
        let st = self.state();
        st.thread.store(owner::thread_id(), Ordering::Relaxed);
        st.count.store(1, Ordering::Relaxed);
        RLockGuard::new(self)
    }

    fn acquire_until(&self, deadline: Deadline) -> AcquireResult<RLockGuard<'_>> {
        if self.mine() {
            self.state().count.fetch_add(1, Ordering::Relaxed);
            return Ok(RLockGuard::new(self));
        }
        match lock_word(&self.state().word, deadline, &self.spin) {
            Acquired::Yes => Ok(self.take()),
            Acquired::OwnerDied => Err(AcquireError::OwnerDied(self.take())),
            Acquired::TimedOut => Err(AcquireError::Timeout),
        }
    }

    /// Acquires the lock (again, if this thread holds it).
    /// Python: `RLock.acquire()`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (with the guard) if the previous owner
    /// died holding it.
    pub fn acquire(&self) -> AcquireResult<RLockGuard<'_>> {
        self.acquire_until(None)
    }

    /// Acquires the lock (again, if this thread holds it) without blocking
    /// a thread, under any async runtime, as
    /// [`Lock::acquire_async`](crate::Lock::acquire_async). Dropping the
    /// future stops waiting and holds nothing.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub async fn acquire_async(&self) -> AcquireResult<RLockGuard<'_>> {
        if self.mine() {
            self.state().count.fetch_add(1, Ordering::Relaxed);
            return Ok(RLockGuard::new(self));
        }
        let st = self.state();
        match lock_word_async(&st.word, Some(&self.bell), &st.async_waiters, &self.spin).await {
            Acquired::Yes => Ok(self.take()),
            Acquired::OwnerDied => Err(AcquireError::OwnerDied(self.take())),
            Acquired::TimedOut => Err(AcquireError::Timeout),
        }
    }

    /// Acquires the lock if it is free or this thread holds it.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if another holds it.
    #[doc(alias = "acquire_nowait")]
    pub fn try_acquire(&self) -> AcquireResult<RLockGuard<'_>> {
        if self.mine() {
            self.state().count.fetch_add(1, Ordering::Relaxed);
            return Ok(RLockGuard::new(self));
        }
        match try_lock_word(&self.state().word) {
            Some(Acquired::Yes) => Ok(self.take()),
            Some(_) => Err(AcquireError::OwnerDied(self.take())),
            None => Err(AcquireError::WouldBlock),
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], or [`AcquireError::OwnerDied`].
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<RLockGuard<'_>> {
        self.acquire_until(multiproc_process::deadline(timeout))
    }

    /// Releases one level of the lock, for a guard that was forgotten.
    /// Python: `RLock.release()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] unless this thread of this process holds it.
    pub fn release(&self) -> Result<()> {
        if !self.mine() {
            return Err(Error::NotHeld("cannot release un-acquired lock"));
        }
        let st = self.state();
        match st.count.load(Ordering::Relaxed) {
            0 | 1 => {
                st.count.store(0, Ordering::Relaxed);
                st.thread.store(0, Ordering::Relaxed);
                unlock_word(&st.word, Some(&self.bell), &st.async_waiters);
            }
            n => st.count.store(n - 1, Ordering::Relaxed),
        }
        Ok(())
    }

    /// How many times the owner holds the lock (0 when free).
    pub fn count(&self) -> u32 {
        if self.state().word.owner() == 0 {
            0
        } else {
            self.state().count.load(Ordering::Relaxed)
        }
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("count", &self.count())
            .finish()
    }
}

/// Holds one level of an [`RLock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// Released by the thread that acquired it: not `Send`.
    _thread: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    fn new(lock: &'a RLock) -> RLockGuard<'a> {
        RLockGuard {
            lock,
            _thread: PhantomData,
        }
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}
