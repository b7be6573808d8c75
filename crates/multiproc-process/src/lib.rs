//! Process control for multiproc: run a function in a child process, wait
//! for it, signal it, read its exit code and its return value.
//!
//! This is the bottom crate of the workspace. It holds [`Process`], the
//! start methods, the child bootstrap, and the one [`Error`] type every
//! crate above returns. Users reach it through the facade crate `multiproc`.
//!
//! # Examples
//!
//! ```
//! use multiproc as mp;
//! use std::time::{Duration, Instant};
//!
//! fn nap(ms: u64) {
//!     std::thread::sleep(Duration::from_millis(ms));
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let t = Instant::now();
//! let mut a = mp::Process::new(nap, (200,));
//! let mut b = mp::Process::new(nap, (200,));
//! a.start()?;
//! b.start()?;
//! a.join()?;
//! b.join()?;
//! assert!(t.elapsed() < Duration::from_millis(390)); // in parallel
//! assert_eq!((a.exitcode(), b.exitcode()), (Some(0), Some(0)));
//! # Ok(())
//! # }
//! ```
//!
//! # Platform support
//!
//! Linux 5.4 or later with glibc: children are tracked through pidfds, so a
//! signal or a wait never reaches a recycled pid. `/proc` must be mounted
//! (spawn and the fork server run `/proc/self/exe`).
//!
//! A spawned or fork-server child runs its target before the Rust runtime's
//! set-up for `main`, in a function of `.init_array`. It sees the program's
//! arguments (glibc hands them to such functions; musl does not, and there
//! `std::env::args()` would be empty in a child) and ignores `SIGPIPE`, as
//! `main` would; but a stack overflow in its target kills it with `SIGSEGV`
//! without Rust's "has overflowed its stack" message, and its thread has no
//! name. A program started through the dynamic loader (`ld.so program`)
//! cannot run itself again: use the fork start method there.

#![deny(unsafe_code)]

mod address;
pub mod bell;
mod boot;
mod bootstrap;
mod child;
pub mod codec;
mod context;
mod deadline;
mod error;
mod exit;
pub mod fdio;
mod fds;
pub mod handoff;
mod identity;
mod method;
mod outcome;
mod process;
pub mod reactor;
mod server;
mod start;
mod state;
mod sys;
mod target;
mod task;
mod tracker;
mod wire;

pub use bootstrap::{LAUNCH_FAILED, panic_message};
pub use context::{Context, get_context, init};
/// For the workspace's crates: a deadline from a timeout, `None` when huge.
#[doc(hidden)]
pub use deadline::deadline;
pub use error::{Error, Result, SignalName};
pub use exit::{at_exit, at_exit_with_priority};
pub use method::{StartMethod, get_start_method, set_start_method, set_start_method_force};
pub use process::{
    ParentProcess, Process, ProcessBuilder, ProcessInfo, active_children, cpu_count,
    current_process, parent_process,
};
#[doc(hidden)]
pub use start::launch_message;
pub use start::{ThreadedFork, set_threaded_fork};
pub use target::{Args, Target, kind};
pub use task::{RemoteFn, TaskFn};
/// For the shm crate: named shared memory for the resource tracker.
#[doc(hidden)]
pub use tracker::{track as track_shm, untrack as untrack_shm};

/// Starts the fork server before the test harness's `main`, for a test
/// file (an integration test crate) whose tests start processes. Write it
/// once, at the top level of the file:
///
/// ```ignore
/// multiproc::test_setup!();
/// ```
///
/// Tests need nothing to start processes: a spawned child of a test binary
/// runs its target, never the tests, with or without this line. What it
/// still does is start the server ahead of the tests (it calls
/// [`init`] from `.init_array`), so that the first test does not wait for
/// it and a test that counts its children does not count the server. It
/// registers a constructor, so a crate that forbids `unsafe_code` must allow
/// it for this line.
#[macro_export]
macro_rules! test_setup {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_TEST_SETUP: extern "C" fn() = {
            extern "C" fn __multiproc_test_setup() {
                // An unwinding panic must not cross the C runtime's frame.
                let _ = ::std::panic::catch_unwind($crate::init);
            }
            __multiproc_test_setup
        };
    };
}
