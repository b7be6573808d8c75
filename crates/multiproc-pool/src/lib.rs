//! Process pools for multiproc: Python's `multiprocessing.Pool` and
//! `multiprocessing.pool.ThreadPool`.
//!
//! A [`Pool`] keeps worker processes and runs `fn` items of serde values on
//! them: `map`, `imap`, `imap_unordered`, `starmap`, `apply`, `apply_async`,
//! `map_async`. Work travels through shared-memory pipes in chunks, so a
//! map of tiny items runs at memory speed. A task that panics fails alone;
//! a worker killed mid-task fails that task with the signal named and is
//! replaced: nothing hangs.
//!
//! ```
//! use multiproc as mp;
//!
//! fn square(n: u64) -> (u64, u32) {
//!     (n * n, std::process::id())
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let pool = mp::Pool::builder().processes(2).build()?;
//! let squares: Vec<u64> = pool.map(square, 1..=5)?.into_iter().map(|(s, _)| s).collect();
//! assert_eq!(squares, vec![1, 4, 9, 16, 25]);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod executor;
mod group;
mod handler;
mod imap;
mod job;
mod message;
mod pool;
pub mod remote;
mod result;
mod thread;
mod worker;

pub use executor::{
    Executor, ExecutorBuilder, ExecutorMap, TaskFuture, ThreadExecutor, ThreadFuture,
};
/// Waiting for many [`TaskFuture`]s at once. Python: the functions of
/// `concurrent.futures`.
pub mod futures {
    pub use crate::executor::{AsCompleted, Completes, ReturnWhen, Waited, as_completed, wait};
}
pub use imap::{IMap, IMapUnordered};
pub use pool::{Pool, PoolBuilder};
pub use result::AsyncResult;
pub use thread::{ThreadIMap, ThreadPool, ThreadResult};
