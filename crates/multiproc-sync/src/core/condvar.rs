//! The notification word of `Condition`: how many processes wait, how many
//! of them are notified and not yet awake, and the epoch of the last
//! notify, in one word, so that `notify(n)` wakes exactly `n` of the
//! processes that were waiting when it was called.
//!
//! | bits  | meaning                                                     |
//! |-------|-------------------------------------------------------------|
//! | 0-19  | permits: notifications given and not yet taken              |
//! | 20-39 | waiters: processes in `wait`, permit holders included       |
//! | 40-63 | the epoch: bumped by each notify that gives a permit        |
//!
//! A waiter registers (with the condition's lock held) and remembers the
//! epoch; it may take a permit only once the epoch has moved past it, so a
//! process that starts waiting after a notify never takes the notification
//! meant for those that waited before. `notify(n)` (lock held) gives
//! `min(n, waiters - permits)` permits. Taking a permit is one
//! compare-and-swap that also counts the waiter out; a waiter whose wait
//! times out takes a permit if one is there for it, or counts itself out.
//! A waiter killed inside `wait` stays counted: a notify may then give it a
//! permit, which another waiter takes later.
//!
//! The futex word the waiters sleep on is the condition's `seq`, bumped by
//! each notify that gives a permit; a woken waiter that finds no permit for
//! it sleeps again.

use crate::shim::{AtomicU32, AtomicU64, Deadline, Ordering, futex_wait, futex_wake, remaining};

const FIELD: u32 = 20;
const FIELD_MASK: u64 = (1 << FIELD) - 1;
const EPOCH_SHIFT: u32 = 2 * FIELD;
const EPOCH_MASK: u64 = (1 << (64 - EPOCH_SHIFT)) - 1;

/// How long a waiter sleeps at most between looks at the word.
const SLICE: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    permits: u64,
    waiters: u64,
    epoch: u64,
}

impl Fields {
    fn unpack(w: u64) -> Fields {
        Fields {
            permits: w & FIELD_MASK,
            waiters: (w >> FIELD) & FIELD_MASK,
            epoch: w >> EPOCH_SHIFT,
        }
    }

    fn pack(self) -> u64 {
        (self.epoch & EPOCH_MASK) << EPOCH_SHIFT
            | (self.waiters & FIELD_MASK) << FIELD
            | (self.permits & FIELD_MASK)
    }

    /// Whether a waiter that registered at `epoch` may take a permit.
    fn for_waiter_of(self, epoch: u64) -> bool {
        let since = self.epoch.wrapping_sub(epoch) & EPOCH_MASK;
        self.permits > 0 && since != 0 && since < EPOCH_MASK / 2
    }
}

/// A waiter's registration: the epoch it began waiting in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

/// The notification word and the futex word waiters sleep on; all-zero is
/// nobody waiting.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct NotifyWord {
    word: AtomicU64,
    seq: AtomicU32,
}

impl NotifyWord {
    #[cfg(any(test, multiproc_loom))]
    pub(crate) fn new() -> NotifyWord {
        NotifyWord {
            word: AtomicU64::new(0),
            seq: AtomicU32::new(0),
        }
    }

    fn update(&self, mut f: impl FnMut(Fields) -> Option<Fields>) -> Option<Fields> {
        self.word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                f(Fields::unpack(w)).map(Fields::pack)
            })
            .ok()
            .map(Fields::unpack)
    }

    /// Counts a waiter in; call with the condition's lock held, before
    /// releasing it.
    pub(crate) fn register(&self) -> Ticket {
        let before = self.update(|f| {
            Some(Fields {
                waiters: f.waiters + 1,
                ..f
            })
        });
        Ticket(before.map_or(0, |f| f.epoch))
    }

    /// Takes a permit meant for `ticket`'s waiter, counting it out.
    pub(crate) fn take(&self, ticket: Ticket) -> bool {
        self.update(|f| {
            f.for_waiter_of(ticket.0).then(|| Fields {
                permits: f.permits - 1,
                waiters: f.waiters.saturating_sub(1),
                ..f
            })
        })
        .is_some()
    }

    /// Sleeps until a permit for `ticket` is taken (`true`) or `deadline`
    /// passes (`false`: the waiter is still counted; call
    /// [`leave`](Self::leave) with the lock held again).
    pub(crate) fn wait(&self, ticket: Ticket, deadline: Deadline) -> bool {
        loop {
            let seq = self.seq.load(Ordering::SeqCst);
            if self.take(ticket) {
                return true;
            }
            let Some(t) = remaining(deadline, SLICE) else {
                return false;
            };
            futex_wait(&self.seq, seq, Some(t));
        }
    }

    /// Ends a wait that timed out, with the lock held: takes a permit meant
    /// for it if one came meanwhile (then it was notified), or counts the
    /// waiter out.
    pub(crate) fn leave(&self, ticket: Ticket) -> bool {
        if self.take(ticket) {
            return true;
        }
        self.update(|f| {
            Some(Fields {
                waiters: f.waiters.saturating_sub(1),
                ..f
            })
        });
        false
    }

    /// Gives up to `n` permits, one to each waiter not yet notified; call
    /// with the condition's lock held. Returns how many it gave.
    pub(crate) fn notify(&self, n: u32) -> u32 {
        let mut given = 0;
        self.update(|f| {
            let k = u64::from(n).min(f.waiters.saturating_sub(f.permits));
            given = k;
            (k > 0).then(|| Fields {
                permits: f.permits + k,
                epoch: (f.epoch + 1) & EPOCH_MASK,
                ..f
            })
        });
        if given > 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            futex_wake(&self.seq, u32::try_from(given).unwrap_or(u32::MAX));
        }
        u32::try_from(given).unwrap_or(u32::MAX)
    }

    /// Processes waiting and not yet notified.
    pub(crate) fn waiting(&self) -> u32 {
        let f = Fields::unpack(self.word.load(Ordering::SeqCst));
        u32::try_from(f.waiters.saturating_sub(f.permits)).unwrap_or(u32::MAX)
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_notify_is_for_those_already_waiting() {
        let w = NotifyWord::new();
        let first = w.register();
        assert_eq!(w.waiting(), 1);
        assert_eq!(w.notify(5), 1, "one waiter, one permit");
        // A waiter that comes after the notify cannot take it.
        let late = w.register();
        assert!(!w.take(late));
        assert!(w.take(first));
        assert!(!w.take(first), "one permit, taken once");
        assert_eq!(w.waiting(), 1);
        assert!(!w.leave(late));
        assert_eq!(w.waiting(), 0);
        assert_eq!(w.notify(1), 0, "nobody waits");
    }

    #[test]
    fn a_timed_out_waiter_takes_a_late_permit() {
        let w = NotifyWord::new();
        let t = w.register();
        assert!(!w.wait(t, Some(std::time::Instant::now())));
        w.notify(1);
        assert!(w.leave(t), "notified before it counted itself out");
        assert_eq!(Fields::unpack(w.word.load(Ordering::SeqCst)).waiters, 0);
    }
}
