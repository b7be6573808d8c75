//! Linux backend: futex on shared words, /proc, pthread_atfork.
//!
//! # Safety
//!
//! `at_fork_child` registers a handler with `pthread_atfork`; the handler
//! it installs only stores to an atomic, which is async-signal-safe.
#![allow(unsafe_code)]

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

use crate::shim::Wake;

/// Sleeps while `word` holds `expected`, at most `timeout`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    // Not FUTEX_PRIVATE: the word is shared with other processes.
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Err(rustix::io::Errno::TIMEDOUT) => Wake::TimedOut,
        _ => Wake::Woken,
    }
}

/// Wakes up to `n` processes sleeping on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

/// This process's pid and start time (clock ticks since boot).
pub(crate) fn process_token_parts() -> (u32, u64) {
    let pid = std::process::id();
    let start = proc_stat(pid).map_or(0, |(_, start)| start);
    (pid, start)
}

/// The state letter and start time of process `pid`, from
/// `/proc/PID/stat`; `None` if there is no such process.
/// Milliseconds on a monotonic clock (from an arbitrary start).
pub(crate) fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall; the state is field 3.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Registers `handler` to run in the child after every `fork`.
pub(crate) fn at_fork_child(handler: unsafe extern "C" fn()) {
    // SAFETY: `handler` only stores to atomics (async-signal-safe), and is
    // a function valid for the whole program.
    unsafe {
        libc::pthread_atfork(None, None, Some(handler));
    }
}
