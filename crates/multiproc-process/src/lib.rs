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
//! Linux 5.4 or later: children are tracked through pidfds, so a signal or
//! a wait never reaches a recycled pid.

#![deny(unsafe_code)]

mod bootstrap;
mod child;
pub mod codec;
mod error;
mod outcome;
mod process;
mod start_method;
mod state;
mod sys;
mod target;

pub use error::{Error, Result, SignalName};
pub use process::{
    ParentProcess, Process, ProcessBuilder, ProcessInfo, active_children, cpu_count,
    current_process, parent_process,
};
pub use start_method::StartMethod;
pub use target::Target;
