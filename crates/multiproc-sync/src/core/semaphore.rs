//! The semaphore counter shared by `Semaphore` and `BoundedSemaphore`.
//!
//! `value` is the count (the futex word); `waiters` counts processes that
//! may sleep on it, so a release wakes only when someone may sleep; `max` is
//! the bound of a bounded semaphore (0: none). A waiter announces itself in
//! `waiters` before it checks `value` and sleeps; a releaser bumps `value`
//! before it reads `waiters`. Both sides use sequentially consistent
//! operations, so one of them always sees the other: no wake-up is lost.

use std::time::Duration;

use crate::shim::{
    AtomicU32, Deadline, Ordering, SpinBudget, expired, futex_wait, futex_wake, remaining,
};

/// A semaphore in shared memory; all-zero is a semaphore at 0, unbounded.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SemWord {
    value: AtomicU32,
    waiters: AtomicU32,
    max: AtomicU32,
}

/// A release beyond a bounded semaphore's initial value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverRelease;

impl SemWord {
    /// A semaphore at `value` (for tests; shared ones start as zeroed
    /// memory and are set with [`init`](SemWord::init)).
    #[cfg(test)]
    pub(crate) fn new(value: u32, max: u32) -> SemWord {
        let s = SemWord {
            value: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            max: AtomicU32::new(0),
        };
        s.init(value, max);
        s
    }

    /// Sets the initial value and bound, before any other process knows it.
    pub(crate) fn init(&self, value: u32, max: u32) {
        self.value.store(value, Ordering::SeqCst);
        self.max.store(max, Ordering::SeqCst);
    }

    /// Decrements the count if it is positive.
    pub(crate) fn try_acquire(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Decrements the count, waiting until it is positive or `deadline`
    /// passes. Returns whether it was decremented.
    pub(crate) fn acquire(&self, deadline: Deadline, spin: &SpinBudget) -> bool {
        if spin.spin(|| self.try_acquire()) {
            return true;
        }
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.value.load(Ordering::SeqCst) == 0 {
                match remaining(deadline, Duration::from_secs(3600)) {
                    Some(t) => {
                        futex_wait(&self.value, 0, Some(t));
                    }
                    None => {
                        self.waiters.fetch_sub(1, Ordering::SeqCst);
                        return false;
                    }
                }
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if self.try_acquire() {
                return true;
            }
            if expired(deadline) {
                return false;
            }
        }
    }

    /// Increments the count and wakes a waiter; refuses to go past the
    /// bound of a bounded semaphore.
    pub(crate) fn release(&self) -> Result<(), OverRelease> {
        let max = self.max.load(Ordering::Relaxed);
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            if (max != 0 && v >= max) || v == u32::MAX {
                return Err(OverRelease);
            }
            match self
                .value
                .compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.value, 1);
        }
        Ok(())
    }

    /// The count. Python: `Semaphore.get_value()`.
    pub(crate) fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }
}
