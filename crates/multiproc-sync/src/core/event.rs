//! The event flag: `flag` (0 or 1, the futex word) and `waiters` (processes
//! that may sleep on it, so `set` wakes only when someone may sleep). The
//! announce-then-check order is the semaphore's.

use std::time::Duration;

use crate::shim::{AtomicU32, Deadline, Ordering, SpinBudget, futex_wait, futex_wake, remaining};

/// An event in shared memory; all-zero is a clear event.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct EventWord {
    flag: AtomicU32,
    waiters: AtomicU32,
}

impl EventWord {
    /// A clear event (for tests; shared ones start as zeroed memory).
    #[cfg(test)]
    pub(crate) fn new() -> EventWord {
        EventWord {
            flag: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        if self.flag.swap(1, Ordering::SeqCst) == 0 && self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.flag, i32::MAX as u32);
        }
    }

    /// Clears the flag.
    pub(crate) fn clear(&self) {
        self.flag.store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst) == 1
    }

    /// Waits until the flag is set or `deadline` passes; returns the flag.
    pub(crate) fn wait(&self, deadline: Deadline, spin: &SpinBudget) -> bool {
        if spin.spin(|| self.is_set()) {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let set = loop {
            if self.is_set() {
                break true;
            }
            match remaining(deadline, Duration::from_secs(3600)) {
                Some(t) => {
                    futex_wait(&self.flag, 0, Some(t));
                }
                None => break false,
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        set
    }
}
