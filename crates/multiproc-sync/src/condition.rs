//! [`Condition`]: wait for a notification while holding a lock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use multiproc_process::Result;
use multiproc_process::bell::{ASYNC_SLICE, Bell, next_slice};
use multiproc_process::reactor::readable;
use serde::{Deserialize, Serialize};

use crate::layout::CondState;
use crate::lock::{
    AcquireResult, Counted, acquire_result, lock_word, lock_word_async, try_lock_word, try_result,
    unlock_word,
};
use crate::shared::Shared;
use crate::shim::{Deadline, SpinBudget, expired};

/// A condition variable shared between processes, with its own lock.
///
/// Python: `multiprocessing.Condition`. Acquire it, then `wait` on the
/// guard (which releases the lock while waiting and takes it back) or
/// `notify` through it. A wait may end without a notify meant for it (a
/// spurious wake-up), so wait for a predicate with
/// [`wait_for`](ConditionGuard::wait_for). `notify(n)` wakes exactly `n` of
/// the processes waiting when it is called (never one that starts waiting
/// after it), as CPython's does.
///
/// # When a process dies
///
/// A process killed holding the condition's lock is taken over by the next
/// acquirer, as for a [`Lock`](crate::Lock). A process killed inside `wait`
/// still counts as waiting: a `notify` may choose it, and the notification
/// then goes to the next process that waits (so one `notify` may wake a
/// later waiter instead of none).
///
/// # In async code
///
/// [`acquire_async`](Condition::acquire_async) and
/// [`ConditionGuard::wait_async`] wait without a thread, woken by the
/// condition's bell (an eventfd that goes with it to every process), which
/// an unlock and a `notify` ring while an async waiter waits.
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    shared: Shared<CondState>,
    /// Rung by an unlock and a notify while an async waiter waits.
    bell: Bell,
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
            bell: Bell::new()?,
            spin: Arc::default(),
        })
    }

    fn state(&self) -> &CondState {
        self.shared.state()
    }

    fn unlock(&self) {
        let st = self.state();
        unlock_word(&st.word, Some(&self.bell), &st.async_waiters);
    }

    /// Acquires the condition's lock without blocking a thread, under any
    /// async runtime, as [`Lock::acquire_async`](crate::Lock::acquire_async).
    /// Dropping the future stops waiting and holds nothing.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Condition::acquire).
    pub async fn acquire_async(&self) -> AcquireResult<ConditionGuard<'_>> {
        let st = self.state();
        let got = lock_word_async(&st.word, Some(&self.bell), &st.async_waiters, &self.spin).await;
        acquire_result(got, || ConditionGuard { cond: self })
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
    /// [`AcquireError::OwnerDied`](crate::AcquireError::OwnerDied) (with the guard) if its holder died.
    pub fn acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_until(None)
    }

    /// How many processes wait on the condition now and are not yet
    /// notified. (CPython's tests read its `_sleeping_count` for this.)
    pub fn waiting(&self) -> u32 {
        self.state().notify.waiting()
    }

    /// Acquires the condition's lock if it is free.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`](crate::AcquireError::WouldBlock) if it is held.
    pub fn try_acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        try_result(try_lock_word(&self.state().word), || ConditionGuard {
            cond: self,
        })
    }

    /// Acquires the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`](crate::AcquireError::Timeout), or
    /// [`AcquireError::OwnerDied`](crate::AcquireError::OwnerDied).
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_until(multiproc_process::deadline(timeout))
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("waiting", &self.waiting())
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
        let ticket = st.notify.register();
        self.cond.unlock();
        let notified = st.notify.wait(ticket, deadline);
        // Taken back whatever happened to its last holder: we hold it again.
        lock_word(&st.word, None, &self.cond.spin);
        notified || st.notify.leave(ticket)
    }

    /// Releases the lock, waits for a notification, and takes the lock back.
    /// Python: `Condition.wait()`.
    pub fn wait(&mut self) {
        self.wait_until(None);
    }

    /// As [`wait`](ConditionGuard::wait), for at most `timeout`; returns
    /// whether a notification came. Python: `Condition.wait(timeout)`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.wait_until(multiproc_process::deadline(timeout))
    }

    /// As [`wait`](ConditionGuard::wait), without blocking a thread, under
    /// any async runtime: releases the lock, waits for a notification on
    /// the condition's bell, and takes the lock back (awaiting it, as
    /// [`Condition::acquire_async`]). Python (asyncio):
    /// `await loop.run_in_executor(None, cond.wait)`.
    ///
    /// Dropping the future while it waits takes the lock back before the
    /// drop returns (as Python's `Condition.wait` does when it is
    /// interrupted), blocking the thread while another holder keeps it:
    /// the guard holds the lock again either way.
    pub async fn wait_async(&mut self) {
        let cond = self.cond;
        let st = cond.state();
        let ticket = st.notify.register();
        // Dropped before its end, the wait still leaves the lock held.
        let relock = Relock {
            cond,
            ticket: Some(ticket),
        };
        {
            st.async_waiters.fetch_add(1, Ordering::SeqCst);
            // The count before the looks below, as `notify`'s fence
            // orders its permit before its read of the count.
            fence(Ordering::SeqCst);
            let _counted = Counted(&st.async_waiters);
            cond.unlock();
            let mut slice = ASYNC_SLICE;
            loop {
                cond.bell.drain();
                if st.notify.take(ticket) {
                    break;
                }
                readable(cond.bell.fd(), Some(slice)).await;
                slice = next_slice(slice);
            }
        }
        // Notified: take the lock back without blocking; a dropped future
        // from here on takes it back in `Relock`.
        let mut relock = relock;
        relock.ticket = None;
        lock_word_async(&st.word, Some(&cond.bell), &st.async_waiters, &cond.spin).await;
        std::mem::forget(relock);
    }

    /// Waits until `predicate` holds (checked with the lock held, first
    /// before any wait), for at most `timeout` if given; returns the
    /// predicate's last value. Python: `Condition.wait_for(predicate, timeout)`.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> bool {
        let deadline = timeout.and_then(multiproc_process::deadline);
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

    /// Wakes `n` of the processes waiting now (all of them, if fewer
    /// wait); one that starts waiting after this call is not among them.
    /// Returns how many it woke. Python: `Condition.notify(n)`.
    pub fn notify(&self, n: u32) -> u32 {
        let st = self.cond.state();
        let given = st.notify.notify(n);
        if given > 0 {
            self.cond.bell.ring_if_awaited(&st.async_waiters);
        }
        given
    }

    /// Wakes every process waiting now. Python: `Condition.notify_all()`.
    pub fn notify_all(&self) -> u32 {
        self.notify(u32::MAX)
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.unlock();
    }
}

/// Takes a condition's lock back, blocking, when an async wait is dropped
/// before its end; and, if it was not notified yet, counts it out.
struct Relock<'a> {
    cond: &'a Condition,
    /// Still counted as waiting.
    ticket: Option<crate::core::condvar::Ticket>,
}

impl Drop for Relock<'_> {
    fn drop(&mut self) {
        let st = self.cond.state();
        // Whatever happened to its last holder: we hold it again.
        lock_word(&st.word, None, &self.cond.spin);
        if let Some(ticket) = self.ticket {
            st.notify.leave(ticket);
        }
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}
