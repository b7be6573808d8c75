//! A loom model of the ring's protocol on its side words (`ring/state.rs`,
//! compiled here against loom's atomics): a producer writes a record, then
//! publishes it and counts it with one release store of its side; a
//! consumer acquires that side, reads the record, then frees it and counts
//! it with one store of its own. The model checks that a record is read
//! only after it was written (loom reports a race on the data otherwise),
//! that a bounded producer never has more than `maxsize` messages in the
//! ring, and that the counts end equal.
//!
//! A second model checks the async waiters' handshake, used by a queue's
//! bell (`Bell::wait` / `ring_if_awaited`) and by a connection's async
//! sender waiting for room (`Ring::want_room` / `room_awaited`): the
//! waiter counts itself, fences and looks; the other side changes the
//! state, fences and reads the count. The waiter then sees the change, or
//! is rung. Run with `cargo xtask loom`.

#![cfg(multiproc_loom)]
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

mod shim {
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
}

#[path = "../src/ring/state.rs"]
mod state;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::Ordering;
use loom::thread;

use state::{SideWord, bytes_between, messages_between};

/// Two one-byte "records" of ring, and the two side words.
struct Ring {
    put: SideWord,
    get: SideWord,
    slots: [UnsafeCell<u64>; 2],
}

const MAXSIZE: u64 = 1;

impl Ring {
    fn put(&self, value: u64) {
        // Wait for admission (maxsize) and room, as `Ring::wait_room`.
        loop {
            let p = self.put.load(Ordering::Relaxed);
            let g = self.get.load(Ordering::Acquire);
            if messages_between(g, p) < MAXSIZE && bytes_between(g.pos, p.pos) < 2 {
                break;
            }
            thread::yield_now();
        }
        let p = self.put.load(Ordering::Relaxed);
        let slot = &self.slots[(p.pos & 1) as usize];
        // SAFETY: the slot is free (checked above) and only this producer
        // writes.
        slot.with_mut(|s| unsafe { *s = value });
        self.put.store(p.advanced(1, 1), Ordering::Release);
        let g = self.get.load(Ordering::Acquire);
        assert!(messages_between(g, p.advanced(1, 1)) <= MAXSIZE);
    }

    fn get(&self) -> u64 {
        loop {
            let g = self.get.load(Ordering::Relaxed);
            let p = self.put.load(Ordering::Acquire);
            if p.pos != g.pos {
                let slot = &self.slots[(g.pos & 1) as usize];
                // SAFETY: the slot is published (the acquire above saw it).
                let v = slot.with(|s| unsafe { *s });
                self.get.store(g.advanced(1, 1), Ordering::Release);
                return v;
            }
            thread::yield_now();
        }
    }
}

#[test]
fn records_are_read_after_they_are_written_and_counted_once() {
    loom::model(|| {
        let ring = Arc::new(Ring {
            put: SideWord::new(),
            get: SideWord::new(),
            slots: [UnsafeCell::new(0), UnsafeCell::new(0)],
        });
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.put(10);
                ring.put(20);
            })
        };
        assert_eq!(ring.get(), 10);
        assert_eq!(ring.get(), 20);
        producer.join().unwrap();
        let (p, g) = (
            ring.put.load(Ordering::SeqCst),
            ring.get.load(Ordering::SeqCst),
        );
        assert_eq!(messages_between(g, p), 0);
        assert_eq!(p, g);
    });
}

/// One change (room freed, a message published) against one waiter that
/// found nothing and counts itself before it looks again.
#[test]
fn a_counted_waiter_sees_the_change_or_is_rung() {
    use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, fence};
    loom::model(|| {
        let state = Arc::new(AtomicU64::new(0));
        let waiters = Arc::new(AtomicU32::new(0));
        let rung = Arc::new(AtomicBool::new(false));
        let changer = {
            let (state, waiters, rung) = (state.clone(), waiters.clone(), rung.clone());
            thread::spawn(move || {
                state.store(1, Ordering::Release);
                fence(Ordering::SeqCst);
                if waiters.load(Ordering::Relaxed) != 0 {
                    rung.store(true, Ordering::Release);
                }
            })
        };
        let saw = state.load(Ordering::Acquire) == 1 || {
            waiters.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            state.load(Ordering::Acquire) == 1
        };
        changer.join().unwrap();
        assert!(saw || rung.load(Ordering::Acquire), "a lost wake-up");
    });
}
