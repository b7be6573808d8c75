//! Channels between processes for multiproc: [`Pipe`] and its
//! [`Connection`]s, [`Queue`], [`JoinableQueue`], [`SimpleQueue`], and
//! [`wait()`] over any of them and processes.
//!
//! A queue is a ring of bytes in shared memory with a put lock and a get
//! lock (robust locks of the sync crate), so there is no feeder thread and
//! no kernel call on the fast path: a message is delivered once `put`
//! returns, and waits spin briefly before they sleep on a futex. Every queue
//! is a cheap `Clone` handle that can be passed to a child process as an
//! argument under any start method.
//!
//! # Examples
//!
//! ```
//! use multiproc as mp;
//!
//! fn worker(jobs: mp::JoinableQueue<u32>, results: mp::Queue<u32>) {
//!     while let Ok(n) = jobs.get() {
//!         let _ = results.put(n * 10);
//!         let _ = jobs.task_done();
//!     }
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let (jobs, results) = (mp::JoinableQueue::new()?, mp::Queue::new()?);
//! let mut w = mp::Process::builder(worker, (jobs.clone(), results.clone())).daemon(true).build();
//! w.start()?;
//! for n in 1..=3 {
//!     jobs.put(n)?;
//! }
//! jobs.join_timeout(std::time::Duration::from_secs(30))?;
//! let mut got: Vec<u32> = (0..3).map(|_| results.get()).collect::<mp::Result<_>>()?;
//! got.sort();
//! assert_eq!(got, [10, 20, 30]);
//! # Ok(())
//! # }
//! ```
//!
//! # Platform support
//!
//! Linux (shared memory and futex through the sync crate).

#![deny(unsafe_code)]

mod connection;
mod queue;
mod ring;
mod shim;
mod wait;

pub use connection::{Connection, DEFAULT_MAX_MESSAGE, PIPE_RING_BYTES, Pipe};
pub use queue::{
    CLOSE_SEEN, DEFAULT_RING_BYTES, JoinableQueue, PutError, Queue, QueueIter, QueueTryIter,
    SimpleQueue,
};
pub use wait::{WaitFd, Waitable, wait};
