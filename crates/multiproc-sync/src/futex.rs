//! Waiting on a word in shared memory, for the crates above this one (the
//! channel's ring, say): the same futex calls and adaptive spin the
//! primitives here use, so every wait that crosses processes goes through
//! this crate.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::shim::{SpinBudget, Wake};

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`:
/// until woken). The word must be in memory other processes map; the wait
/// is not process-private. Returns `false` if the timeout passed, `true`
/// otherwise (woken, the word changed, or a signal: re-check the word).
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    crate::sys::futex_wait(word, expected, timeout) != Wake::TimedOut
}

/// Wakes up to `n` processes sleeping in [`wait`] on `word`.
pub fn wake(word: &AtomicU32, n: u32) {
    crate::sys::futex_wake(word, n);
}

/// Wakes every process sleeping in [`wait`] on `word`.
pub fn wake_all(word: &AtomicU32) {
    crate::sys::futex_wake(word, i32::MAX as u32);
}

/// The time left until `deadline`, capped at `slice`, for one sleep of a
/// loop that re-checks its condition; `None` once the deadline has passed.
/// Without a deadline, the whole slice.
pub fn remaining(deadline: Option<std::time::Instant>, slice: Duration) -> Option<Duration> {
    crate::shim::remaining(deadline, slice)
}

/// A spin before sleeping whose length adapts to what spinning achieves
/// (0.5 to 50 us; none on a single CPU). Keep one per handle.
#[derive(Debug, Default)]
pub struct Spin(SpinBudget);

impl Spin {
    /// A spin with the starting budget.
    pub fn new() -> Spin {
        Spin(SpinBudget::new())
    }

    /// Spins until `ready` holds or the budget is spent; returns `ready`'s
    /// last answer.
    pub fn spin(&self, ready: impl FnMut() -> bool) -> bool {
        self.0.spin(ready)
    }

    /// Reports a wait that [`spin`](Self::spin) did not cover and that
    /// ended, spin and sleep together, after `waited`: a wait short enough
    /// to spin through raises the budget to twice it, so that a budget
    /// shrunk by a few long waits recovers once waits are short again.
    pub fn slept(&self, waited: std::time::Duration) {
        self.0.slept(waited);
    }
}
