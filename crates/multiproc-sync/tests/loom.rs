//! Loom models of the lock word, the semaphore, the event and the
//! condition's notification word.
//!
//! The state machines of `src/core/` are compiled here against loom's
//! atomics through a shim of the same names as the crate's: a futex wait on
//! an unchanged word is a yield that ends as a sleep slice that ran out (so
//! the lock checks its owner), a wait on a changed word returns at once, a
//! wake does nothing (a waiter re-checks the word anyway), and no deadline
//! ever passes. Run with `cargo xtask loom` (`--cfg multiproc_loom`).

#![cfg(multiproc_loom)]
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

mod shim {
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    pub(crate) type Deadline = Option<Instant>;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Wake {
        Woken,
        TimedOut,
    }

    pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> Wake {
        if word.load(Ordering::SeqCst) == expected {
            loom::thread::yield_now();
            return Wake::TimedOut;
        }
        Wake::Woken
    }

    pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) {}

    pub(crate) fn remaining(_deadline: Deadline, slice: Duration) -> Option<Duration> {
        Some(slice)
    }

    pub(crate) fn expired(_deadline: Deadline) -> bool {
        false
    }

    #[derive(Debug, Default)]
    pub(crate) struct SpinBudget;

    impl SpinBudget {
        pub(crate) const fn new() -> SpinBudget {
            SpinBudget
        }

        pub(crate) fn spin(&self, mut ready: impl FnMut() -> bool) -> bool {
            ready()
        }
    }
}

#[path = "../src/core/condvar.rs"]
mod condvar;
#[path = "../src/core/event.rs"]
mod event;
#[path = "../src/core/lock.rs"]
mod lock;
#[path = "../src/core/semaphore.rs"]
mod semaphore;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn the_lock_word_excludes() {
    model(|| {
        let word = Arc::new(lock::LockWord::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let spin = shim::SpinBudget::new();
        let other = {
            let (word, data) = (word.clone(), data.clone());
            thread::spawn(move || {
                assert_eq!(
                    word.lock(2, None, &shim::SpinBudget::new(), |_| false),
                    lock::Acquired::Yes
                );
                // SAFETY: the lock word gives this thread exclusive access.
                data.with_mut(|d| unsafe { *d += 1 });
                assert!(word.unlock());
            })
        };
        assert_eq!(word.lock(1, None, &spin, |_| false), lock::Acquired::Yes);
        // SAFETY: as above.
        data.with_mut(|d| unsafe { *d += 1 });
        assert!(word.unlock());
        other.join().unwrap();
        // SAFETY: both threads are done.
        assert_eq!(data.with(|d| unsafe { *d }), 2);
        assert_eq!(word.owner(), 0);
    });
}

#[test]
fn a_dead_owner_is_taken_over_exactly_once() {
    model(|| {
        let word = Arc::new(lock::LockWord::new());
        assert!(word.try_lock(7));
        let other = {
            let word = word.clone();
            thread::spawn(move || {
                let got = word.lock(2, None, &shim::SpinBudget::new(), |o| o == 7);
                assert_eq!(word.owner(), 2);
                word.unlock();
                got
            })
        };
        let mine = word.lock(1, None, &shim::SpinBudget::new(), |o| o == 7);
        assert_eq!(word.owner(), 1);
        // One of us took it over from 7; the other waited for that one.
        word.unlock();
        let theirs = other.join().unwrap();
        assert!(
            (mine == lock::Acquired::OwnerDied) != (theirs == lock::Acquired::OwnerDied),
            "{mine:?} {theirs:?}"
        );
    });
}

#[test]
fn a_semaphore_release_is_never_lost() {
    model(|| {
        let sem = Arc::new(semaphore::SemWord::new(0, 1));
        let waiter = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire(None, &shim::SpinBudget::new()))
        };
        sem.release().unwrap();
        assert!(waiter.join().unwrap());
        assert_eq!(sem.value(), 0);
        assert!(sem.release().is_ok());
        assert!(
            sem.release().is_err(),
            "a bounded semaphore refuses a second unit"
        );
    });
}

#[test]
fn a_semaphore_of_one_excludes() {
    model(|| {
        let sem = Arc::new(semaphore::SemWord::new(1, 0));
        let data = Arc::new(UnsafeCell::new(0u32));
        let other = {
            let (sem, data) = (sem.clone(), data.clone());
            thread::spawn(move || {
                assert!(sem.acquire(None, &shim::SpinBudget::new()));
                // SAFETY: the semaphore of one gives exclusive access.
                data.with_mut(|d| unsafe { *d += 1 });
                sem.release().unwrap();
            })
        };
        assert!(sem.acquire(None, &shim::SpinBudget::new()));
        // SAFETY: as above.
        data.with_mut(|d| unsafe { *d += 1 });
        sem.release().unwrap();
        other.join().unwrap();
        assert_eq!(sem.value(), 1);
    });
}

#[test]
fn an_event_set_reaches_its_waiter() {
    model(|| {
        let ev = Arc::new(event::EventWord::new());
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait(None, &shim::SpinBudget::new()))
        };
        ev.set();
        assert!(waiter.join().unwrap());
        assert!(ev.is_set());
        ev.clear();
        assert!(!ev.is_set());
    });
}

#[test]
fn a_notify_reaches_the_waiter_and_not_a_latecomer() {
    model(|| {
        // The condition's lock, as a loom mutex: registering and notifying
        // happen under it, as in `Condition`.
        let lock = Arc::new(loom::sync::Mutex::new(()));
        let word = Arc::new(condvar::NotifyWord::new());
        let waiter = {
            let (lock, word) = (lock.clone(), word.clone());
            thread::spawn(move || {
                let ticket = {
                    let _g = lock.lock().unwrap();
                    word.register()
                };
                word.wait(ticket, None)
            })
        };
        let late = loop {
            let g = lock.lock().unwrap();
            if word.waiting() == 1 {
                assert_eq!(word.notify(1), 1);
                // Waits after the notify: not for it.
                let late = word.register();
                drop(g);
                break late;
            }
            drop(g);
            thread::yield_now();
        };
        assert!(waiter.join().unwrap());
        let _g = lock.lock().unwrap();
        assert!(!word.leave(late), "a latecomer took a permit");
        assert_eq!(word.waiting(), 0);
        assert_eq!(word.notify(1), 0);
    });
}

#[test]
fn a_wait_that_times_out_as_a_notify_comes_counts_once() {
    model(|| {
        let lock = Arc::new(loom::sync::Mutex::new(()));
        let word = Arc::new(condvar::NotifyWord::new());
        let ticket = {
            let _g = lock.lock().unwrap();
            word.register()
        };
        let notifier = {
            let (lock, word) = (lock.clone(), word.clone());
            thread::spawn(move || {
                let _g = lock.lock().unwrap();
                word.notify(1)
            })
        };
        // The wait "timed out": it leaves, with the lock held.
        let notified = {
            let _g = lock.lock().unwrap();
            word.leave(ticket)
        };
        let given = notifier.join().unwrap();
        // The notify found the waiter (and it was notified) or found none.
        assert_eq!(given == 1, notified, "given {given}, notified {notified}");
        assert_eq!(word.waiting(), 0);
    });
}

/// Two async acquirers and a holder. Each acquirer counts itself, notes
/// the bell (a count here) and looks once: it takes the lock, or flags the
/// word and would sleep until the bell moves. An unlock that finds the
/// flag and a counted waiter rings. Once the others are done, every
/// acquirer that would sleep was rung after it noted the bell (no lost
/// wake-up), and then takes the lock.
#[test]
fn an_async_acquirer_is_rung_by_the_unlock_that_frees_the_lock() {
    use loom::sync::atomic::{AtomicU32, Ordering};
    fn release(word: &lock::LockWord, count: &AtomicU32, rings: &AtomicU32) {
        if word.unlock_flagged() == Some(true) && count.load(Ordering::Relaxed) > 0 {
            rings.fetch_add(1, Ordering::Release);
        }
    }
    /// One look; `Err(seen)` when it would sleep.
    fn look(
        me: u32,
        word: &lock::LockWord,
        count: &AtomicU32,
        rings: &AtomicU32,
    ) -> Result<(), u32> {
        let seen = rings.load(Ordering::Acquire);
        match word.try_lock_or_flag(me, |_| false) {
            Some(_) => {
                count.fetch_sub(1, Ordering::Relaxed);
                release(word, count, rings);
                Ok(())
            }
            None => Err(seen),
        }
    }
    model(|| {
        let word = Arc::new(lock::LockWord::new());
        let count = Arc::new(AtomicU32::new(0));
        let rings = Arc::new(AtomicU32::new(0));
        assert!(word.try_lock(7));
        let holder = {
            let (word, count, rings) = (word.clone(), count.clone(), rings.clone());
            thread::spawn(move || release(&word, &count, &rings))
        };
        let other = {
            let (word, count, rings) = (word.clone(), count.clone(), rings.clone());
            thread::spawn(move || {
                count.fetch_add(1, Ordering::Relaxed);
                look(2, &word, &count, &rings)
            })
        };
        count.fetch_add(1, Ordering::Relaxed);
        let mine = look(1, &word, &count, &rings);
        holder.join().unwrap();
        let theirs = other.join().unwrap();
        let rung = rings.load(Ordering::Acquire);
        // A waiter still waiting is rung; the lock is then free for it.
        for (me, got) in [(1, mine), (2, theirs)] {
            if let Err(seen) = got {
                assert!(rung > seen, "a lost wake-up for {me}");
            }
        }
        for (me, got) in [(1, mine), (2, theirs)] {
            if got.is_err() {
                assert_eq!(
                    word.try_lock_or_flag(me, |_| false),
                    Some(lock::Acquired::Yes)
                );
                count.fetch_sub(1, Ordering::Relaxed);
                release(&word, &count, &rings);
            }
        }
        assert_eq!(word.owner(), 0);
    });
}
