//! Operating-system code of the sync crate.
//!
//! A backend provides `futex_wait`/`futex_wake` on a 32-bit word that other
//! processes map (not process-private), `process_token_parts` (this
//! process's pid and start time), `proc_state` (whether a pid names a live
//! process with a given start time), and `at_fork_child` to reset cached
//! per-process state in a forked child.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
