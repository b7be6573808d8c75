//! Who holds a lock: a process token, and whether its process still lives.
//!
//! A token packs the pid (22 bits, Linux's `PID_MAX_LIMIT`) with a 9-bit tag
//! of the process's start time, never 0:
//!
//! | bits  | meaning                          |
//! |-------|----------------------------------|
//! | 0-21  | pid                              |
//! | 22-30 | start time mod 511, plus 1       |
//!
//! The tag tells a recycled pid from the process that died: a new process
//! with the same pid would also need the same tag (one chance in 511) to be
//! taken for the old owner. The token is computed once per process and
//! reset in a forked child by a `pthread_atfork` handler, so the fast path
//! costs one relaxed load.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::sys;

const PID_BITS: u32 = 22;
const PID_MASK: u32 = (1 << PID_BITS) - 1;

static TOKEN: AtomicU32 = AtomicU32::new(0);

/// This process's token.
pub(crate) fn token() -> u32 {
    match TOKEN.load(Ordering::Relaxed) {
        0 => compute(),
        t => t,
    }
}

#[cold]
fn compute() -> u32 {
    static ATFORK: Once = Once::new();
    ATFORK.call_once(|| sys::at_fork_child(reset_token));
    let (pid, start) = sys::process_token_parts();
    let t = make(pid, start);
    TOKEN.store(t, Ordering::Relaxed);
    t
}

extern "C" fn reset_token() {
    TOKEN.store(0, Ordering::Relaxed);
}

fn make(pid: u32, start: u64) -> u32 {
    // `start % 511` is below 511, so the tag fits in 9 bits.
    let tag = (start % 511) as u32 + 1;
    (tag << PID_BITS) | (pid & PID_MASK)
}

/// Whether the process behind `token` has ended (or is a zombie, or its
/// pid now names another process).
pub(crate) fn owner_dead(token: u32) -> bool {
    let pid = token & PID_MASK;
    match sys::proc_stat(pid) {
        None => true,
        Some(('Z' | 'X', _)) => true,
        Some((_, start)) => make(pid, start) != token,
    }
}

/// As [`owner_dead`], but a token found alive in the last few milliseconds
/// is taken to be alive still: for non-blocking acquires, which may be
/// called in a loop and must not read `/proc` each time. A death is noticed
/// at most that much later.
pub(crate) fn owner_dead_recently_checked(token: u32) -> bool {
    /// How long an "alive" answer is reused.
    const FRESH_MS: u64 = 5;
    static LAST_ALIVE: AtomicU64 = AtomicU64::new(0);
    let now = sys::monotonic_ms();
    let last = LAST_ALIVE.load(Ordering::Relaxed);
    if last >> 32 == u64::from(token)
        && now.wrapping_sub(last & 0xffff_ffff) & 0xffff_ffff < FRESH_MS
    {
        return false;
    }
    let dead = owner_dead(token);
    if !dead {
        LAST_ALIVE.store(
            u64::from(token) << 32 | (now & 0xffff_ffff),
            Ordering::Relaxed,
        );
    }
    dead
}

/// A number for the calling thread, unique within its process (and, with
/// the process token, across processes).
pub(crate) fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_live_processes_only() {
        let me = token();
        assert_ne!(me, 0);
        assert_eq!(me & PID_MASK, std::process::id());
        assert!(!owner_dead(me));
        // Same pid, another start time: a recycled pid, so the owner is gone.
        let other_tag = make(std::process::id(), 7);
        assert_eq!(owner_dead(other_tag), other_tag != me);
        assert!(owner_dead(make(PID_MASK, 0)));
        assert_ne!(thread_id(), std::thread::spawn(thread_id).join().unwrap());
    }
}
