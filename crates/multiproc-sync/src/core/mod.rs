//! The state machines of the primitives, over atomics in shared memory.
//!
//! These files use nothing but `crate::shim`, so the loom tests can compile
//! them against loom's atomics and a modelled futex.

pub(crate) mod condvar;
pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod semaphore;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use super::event::EventWord;
    use super::lock::{Acquired, LockWord, WAITERS};
    use super::semaphore::{OverRelease, SemWord};
    use crate::shim::SpinBudget;

    #[test]
    fn the_lock_word_excludes_and_records_waiters() {
        let word = Arc::new(LockWord::new());
        let inside = Arc::new(AtomicU32::new(0));
        let spin = Arc::new(SpinBudget::new());
        let threads: Vec<_> = (1..=4u32)
            .map(|me| {
                let (word, inside, spin) = (word.clone(), inside.clone(), spin.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        assert_eq!(word.lock(me, None, &spin, |_| false), Acquired::Yes);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        assert_eq!(word.owner(), me);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        assert!(word.unlock());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(word.owner(), 0);
        assert!(!word.unlock(), "unlocking a free word reports it");
        assert_eq!(WAITERS, 1 << 31);
    }

    #[test]
    fn a_dead_owner_is_taken_over_and_a_live_one_times_out() {
        let word = LockWord::new();
        let spin = SpinBudget::new();
        assert!(word.try_lock(7));
        let t = Instant::now();
        let soon = Some(Instant::now() + Duration::from_millis(60));
        assert_eq!(word.lock(9, soon, &spin, |_| false), Acquired::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(60));
        assert_eq!(
            word.lock(9, None, &spin, |owner| owner == 7),
            Acquired::OwnerDied
        );
        assert_eq!(word.owner(), 9);
    }

    #[test]
    fn the_semaphore_counts_and_refuses_over_release() {
        let sem = Arc::new(SemWord::new(0, 2));
        let spin = Arc::new(SpinBudget::new());
        assert!(!sem.try_acquire());
        let waiter = {
            let (sem, spin) = (sem.clone(), spin.clone());
            std::thread::spawn(move || sem.acquire(None, &spin))
        };
        std::thread::sleep(Duration::from_millis(20));
        sem.release().unwrap();
        assert!(waiter.join().unwrap());
        sem.release().unwrap();
        sem.release().unwrap();
        assert_eq!(sem.release(), Err(OverRelease));
        assert_eq!(sem.value(), 2);
        let none = SemWord::new(0, 0);
        assert!(!none.acquire(Some(Instant::now() + Duration::from_millis(30)), &spin));
    }

    #[test]
    fn the_event_wakes_every_waiter() {
        let ev = Arc::new(EventWord::new());
        let spin = Arc::new(SpinBudget::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (ev, spin) = (ev.clone(), spin.clone());
                std::thread::spawn(move || {
                    ev.wait(Some(Instant::now() + Duration::from_secs(10)), &spin)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        ev.set();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        ev.clear();
        assert!(!ev.wait(Some(Instant::now() + Duration::from_millis(20)), &spin));
    }
}
