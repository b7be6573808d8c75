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
//!
//! An async waiter sets `WAITERS` too, with a release compare-and-swap made
//! after it counted itself in its object's async count; the unlock's swap
//! acquires, so an unlock that finds the flag also sees the count, and its
//! caller rings the object's bell. The flag is set by that compare-and-swap
//! every time (even when it is set already), so the unlock that frees the
//! word reads a value written at or after it: the wake-up cannot be lost.

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
        self.unlock_flagged().is_some()
    }

    /// Releases the lock: `None` if it was not held, else whether `WAITERS`
    /// was set (then an async waiter may wait: see the module's notes).
    pub(crate) fn unlock_flagged(&self) -> Option<bool> {
        let old = self.word.swap(0, Ordering::AcqRel);
        let flagged = old & WAITERS != 0;
        if flagged {
            futex_wake(&self.word, 1);
        }
        (old != 0).then_some(flagged)
    }

    /// One look of an async acquire, which counted itself first: takes
    /// the lock if it is free (keeping `WAITERS` set, for the waiters that
    /// may sleep still) or if its owner died; otherwise sets `WAITERS`,
    /// so that the unlock that frees it reports waiters (`None`).
    pub(crate) fn try_lock_or_flag(
        &self,
        me: u32,
        owner_dead: impl Fn(u32) -> bool,
    ) -> Option<Acquired> {
        loop {
            let w = self.word.load(Ordering::Relaxed);
            let owner = w & !WAITERS;
            if owner == 0 {
                if self
                    .word
                    .compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Acquired::Yes);
                }
                continue;
            }
            if owner_dead(owner)
                && self
                    .word
                    .compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(Acquired::OwnerDied);
            }
            // Written even when the flag is there already (see above).
            if self
                .word
                .compare_exchange(w, w | WAITERS, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return None;
            }
        }
    }

    /// The owner's token, 0 when unlocked.
    pub(crate) fn owner(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & !WAITERS
    }
}
