//! [`Condition`]: wait for a notification while holding a lock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_process::Result;
use serde::{Deserialize, Serialize};

use crate::layout::CondState;
use crate::lock::{AcquireError, AcquireResult, acquire_result, lock_word};
use crate::owner;
use crate::shared::Shared;
use crate::shim::{Deadline, Ordering, SpinBudget, expired, futex_wait, futex_wake, remaining};

/// A condition variable shared between processes, with its own lock.
///
/// Python: `multiprocessing.Condition`. Acquire it, then `wait` on the
/// guard (which releases the lock while waiting and takes it back) or
/// `notify` through it. A wait may end without a notify meant for it (a
/// spurious wake-up), so wait for a predicate with
/// [`wait_for`](ConditionGuard::wait_for).
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    shared: Shared<CondState>,
    #[serde(skip)]
    spin: Arc<SpinBudget>,
}

impl Condition {
    /// A new condition with its lock free.
    ///
    /// # Errors
    ///
    /// [`multiproc_process::Error::Io`] if the system refuses the shared memory.
    pub fn new() -> Result<Condition> {
        Ok(Condition {
            shared: Shared::new(0)?,
            spin: Arc::default(),
        })
    }

    fn state(&self) -> &CondState {
        self.shared.state()
    }

    fn acquire_until(&self, deadline: Deadline) -> AcquireResult<ConditionGuard<'_>> {
        acquire_result(lock_word(&self.state().word, deadline, &self.spin), || {
            ConditionGuard { cond: self }
        })
    }

    /// Acquires the condition's lock.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (with the guard) if its holder died.
    pub fn acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_until(None)
    }

    /// Acquires the condition's lock if it is free.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if it is held.
    pub fn try_acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        if self.state().word.try_lock(owner::token()) {
            Ok(ConditionGuard { cond: self })
        } else {
            Err(AcquireError::WouldBlock)
        }
    }

    /// Acquires the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], or [`AcquireError::OwnerDied`].
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_until(Some(Instant::now() + timeout))
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("waiters", &self.state().waiters.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holds a [`Condition`]'s lock; waits and notifies through it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
}

impl ConditionGuard<'_> {
    fn wait_until(&mut self, deadline: Deadline) -> bool {
        let st = self.cond.state();
        let seq = st.seq.load(Ordering::SeqCst);
        st.waiters.fetch_add(1, Ordering::SeqCst);
        st.word.unlock();
        let notified = loop {
            if st.seq.load(Ordering::SeqCst) != seq {
                break true;
            }
            let Some(t) = remaining(deadline, Duration::from_secs(3600)) else {
                break false;
            };
            futex_wait(&st.seq, seq, Some(t));
        };
        st.waiters.fetch_sub(1, Ordering::SeqCst);
        // Taken back whatever happened to its last holder: we hold it again.
        lock_word(&st.word, None, &self.cond.spin);
        notified
    }

    /// Releases the lock, waits for a notification, and takes the lock back.
    /// Python: `Condition.wait()`.
    pub fn wait(&mut self) {
        self.wait_until(None);
    }

    /// As [`wait`](ConditionGuard::wait), for at most `timeout`; returns
    /// whether a notification came. Python: `Condition.wait(timeout)`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits until `predicate` holds (checked with the lock held, first
    /// before any wait), for at most `timeout` if given; returns the
    /// predicate's last value. Python: `Condition.wait_for(predicate, timeout)`.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if predicate() {
                return true;
            }
            if expired(deadline) {
                return false;
            }
            self.wait_until(deadline);
        }
    }

    /// Wakes up to `n` waiters. Python: `Condition.notify(n)`.
    pub fn notify(&self, n: u32) {
        let st = self.cond.state();
        if st.waiters.load(Ordering::SeqCst) > 0 {
            st.seq.fetch_add(1, Ordering::SeqCst);
            futex_wake(&st.seq, n);
        }
    }

    /// Wakes every waiter. Python: `Condition.notify_all()`.
    pub fn notify_all(&self) {
        self.notify(i32::MAX as u32);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.state().word.unlock();
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}
