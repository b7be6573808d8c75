//! The lock word shared by `Lock`, `RLock`, `Condition`, `Barrier`, `Value`
//! and `Array`.
//!
//! | bits  | meaning                                                    |
//! |-------|------------------------------------------------------------|
//! | 0-30  | the owner's token (0: unlocked); see `owner.rs`            |
//! | 31    | `WAITERS`: a process may sleep on the word; wake on unlock |
//!
//! Acquire is one compare-and-swap from 0 when uncontended; release is one
//! swap, plus a futex wake when `WAITERS` was set. A waiter sleeps in slices;
//! when a slice ends with the same owner, it asks whether that owner still
//! lives and, if not, takes the word over (`OwnerDied`).

use std::time::Duration;

use crate::shim::{
    AtomicU32, Deadline, Ordering, SpinBudget, Wake, expired, futex_wait, futex_wake, remaining,
};

/// Set while some process may sleep on the word.
pub(crate) const WAITERS: u32 = 1 << 31;

/// How long a waiter sleeps before it checks the owner is alive.
const SLICE: Duration = Duration::from_millis(20);

/// A lock word in shared memory; all-zero is unlocked.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct LockWord {
    word: AtomicU32,
}

/// How an acquire ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock is ours.
    Yes,
    /// The lock is ours, taken over from an owner that died holding it.
    OwnerDied,
    /// The deadline passed.
    TimedOut,
}

impl LockWord {
    /// An unlocked word (for tests; shared words start as zeroed memory).
    #[cfg(test)]
    pub(crate) fn new() -> LockWord {
        LockWord {
            word: AtomicU32::new(0),
        }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self, me: u32) -> bool {
        self.word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock if it is free, or if its owner has died (the only
    /// way a non-blocking acquire notices a dead owner). `None` if a live
    /// process holds it.
    pub(crate) fn try_lock_or_take_over(
        &self,
        me: u32,
        owner_dead: impl Fn(u32) -> bool,
    ) -> Option<Acquired> {
        if self.try_lock(me) {
            return Some(Acquired::Yes);
        }
        let w = self.word.load(Ordering::Relaxed);
        let owner = w & !WAITERS;
        // Sleepers keep their flag, so that our unlock wakes one.
        (owner != 0
            && owner_dead(owner)
            && self
                .word
                .compare_exchange(w, me | (w & WAITERS), Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        .then_some(Acquired::OwnerDied)
    }

    /// Takes the lock, waiting until `deadline`. `owner_dead(token)` tells
    /// whether the process behind a token has ended. A deadline that has
    /// passed (a zero timeout) makes it a non-blocking acquire that still
    /// takes over from a dead owner.
    pub(crate) fn lock(
        &self,
        me: u32,
        deadline: Deadline,
        spin: &SpinBudget,
        owner_dead: impl Fn(u32) -> bool,
    ) -> Acquired {
        if self.try_lock(me) {
            return Acquired::Yes;
        }
        if expired(deadline) {
            return self
                .try_lock_or_take_over(me, &owner_dead)
                .unwrap_or(Acquired::TimedOut);
        }
        if spin.spin(|| self.word.load(Ordering::Relaxed) == 0 && self.try_lock(me)) {
            return Acquired::Yes;
        }
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Others may be asleep: keep the flag, so our unlock wakes one.
                if self
                    .word
                    .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Acquired::Yes;
                }
                continue;
            }
            if w & WAITERS == 0
                && self
                    .word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let w = w | WAITERS;
            let Some(slice) = remaining(deadline, SLICE) else {
                // A last look: an owner that died in the meantime.
                return self
                    .try_lock_or_take_over(me, &owner_dead)
                    .unwrap_or(Acquired::TimedOut);
            };
            if futex_wait(&self.word, w, Some(slice)) == Wake::TimedOut
                && owner_dead(w & !WAITERS)
                && self
                    .word
                    .compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Acquired::OwnerDied;
            }
        }
    }

    /// Releases the lock. Returns whether it was held.
    pub(crate) fn unlock(&self) -> bool {
        let old = self.word.swap(0, Ordering::Release);
        if old & WAITERS != 0 {
            futex_wake(&self.word, 1);
        }
        old != 0
    }

    /// The owner's token, 0 when unlocked.
    pub(crate) fn owner(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & !WAITERS
    }
}
