//! A side of the ring in one word: a position and a count of messages,
//! stored together, so that publishing a message and counting it (or
//! freeing it and counting it taken) is one store a process cannot be
//! killed in the middle of.
//!
//! | bits  | meaning                                             |
//! |-------|-----------------------------------------------------|
//! | 0-39  | the position, in bytes, modulo 2^40                 |
//! | 40-63 | messages published (or taken) so far, modulo 2^24   |
//!
//! Positions and counts only grow, and wrap; what matters is the distance
//! between the two sides, which is below the ring's capacity (at most
//! [`MAX_CAPACITY`], far below 2^40) in bytes and below 2^24 in messages
//! (a record is at least 32 bytes, so `MAX_CAPACITY / 32 < 2^24` messages
//! fit). The byte of a position is at `pos & (capacity - 1)`: capacities
//! are powers of two, so the offset stays right across the wrap.

use crate::shim::{AtomicU64, Ordering};

const POS_BITS: u32 = 40;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;

/// The largest ring: 256 MiB, so that the messages it can hold (32 bytes
/// each at least) are fewer than the count field can tell apart.
pub(crate) const MAX_CAPACITY: u64 = 1 << 28;

const _: () = assert!(MAX_CAPACITY / 32 < COUNT_MASK && MAX_CAPACITY < POS_MASK / 2);

/// One side's position and message count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Side {
    /// Position in bytes, modulo 2^40.
    pub(crate) pos: u64,
    /// Messages so far, modulo 2^24.
    pub(crate) count: u64,
}

impl Side {
    /// This side moved on by `bytes`, and by `messages` whole messages.
    pub(crate) fn advanced(self, bytes: u64, messages: u64) -> Side {
        Side {
            pos: self.pos.wrapping_add(bytes) & POS_MASK,
            count: self.count.wrapping_add(messages) & COUNT_MASK,
        }
    }

    fn pack(self) -> u64 {
        (self.count & COUNT_MASK) << POS_BITS | (self.pos & POS_MASK)
    }

    fn unpack(word: u64) -> Side {
        Side {
            pos: word & POS_MASK,
            count: word >> POS_BITS,
        }
    }
}

/// Bytes from `from` to `to`, positions taken modulo 2^40.
pub(crate) fn bytes_between(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from) & POS_MASK
}

/// Messages published and not yet taken.
pub(crate) fn messages_between(taken: Side, published: Side) -> u64 {
    published.count.wrapping_sub(taken.count) & COUNT_MASK
}

/// A side's word in shared memory; all-zero is the start.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SideWord(AtomicU64);

impl SideWord {
    pub(crate) fn load(&self, order: Ordering) -> Side {
        Side::unpack(self.0.load(order))
    }

    pub(crate) fn store(&self, side: Side, order: Ordering) {
        self.0.store(side.pack(), order);
    }

    /// A word at the start (for tests; shared words start as zero memory).
    #[cfg(any(test, multiproc_loom))]
    pub(crate) fn new() -> SideWord {
        SideWord(AtomicU64::new(0))
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn positions_and_counts_wrap_together() {
        let w = SideWord::new();
        let near_end = Side {
            pos: POS_MASK - 3,
            count: COUNT_MASK,
        };
        w.store(near_end, Ordering::SeqCst);
        assert_eq!(w.load(Ordering::SeqCst), near_end);
        let next = near_end.advanced(10, 1);
        assert_eq!(next, Side { pos: 6, count: 0 });
        assert_eq!(bytes_between(near_end.pos, next.pos), 10);
        assert_eq!(messages_between(near_end, next), 1);
        // The offset of a position in a ring of 2^k bytes survives the wrap.
        let cap = 1u64 << 12;
        assert_eq!((near_end.pos + 10) % cap, next.pos & (cap - 1));
    }
}
