//! Synchronization between processes for multiproc: locks, semaphores,
//! conditions, events and barriers in shared memory, and `Value`/`Array`,
//! shared data with a lock.
//!
//! Every primitive is a few atomic words in a shared-memory segment. Waits
//! spin briefly, adapting to what spinning achieves, then sleep on a futex,
//! so a hand-off between two running processes costs well under a
//! microsecond. A process that dies holding a [`Lock`] (or an [`RLock`], a
//! [`Condition`]'s lock, a [`Value`]'s) does not wedge the others: the next
//! acquirer takes it over within 100 ms and is told
//! ([`AcquireError::OwnerDied`]).
//!
//! Every type is a cheap `Clone` handle that can be passed to a child
//! process as an argument under any start method.
//!
//! # Examples
//!
//! ```
//! use multiproc as mp;
//!
//! fn deposit(balance: mp::Value<i32>) {
//!     for _ in 0..10_000 {
//!         *balance.lock() += 1;
//!     }
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let balance = mp::Value::new(100i32)?;
//! let mut p = mp::Process::new(deposit, (balance.clone(),));
//! p.start()?;
//! for _ in 0..10_000 {
//!     *balance.lock() -= 1;
//! }
//! p.join()?;
//! assert_eq!(balance.get(), 100);
//! # Ok(())
//! # }
//! ```
//!
//! # Platform support
//!
//! Linux (futex on shared memory, `/proc` to tell a dead lock owner).

#![deny(unsafe_code)]

mod barrier;
mod condition;
pub(crate) mod core;
mod event;
pub mod futex;
mod layout;
mod lock;
mod owner;
mod rlock;
mod semaphore;
mod shared;
mod shim;
mod sys;
mod value;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{AcquireError, AcquireResult, Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, BoundedSemaphoreGuard, Semaphore, SemaphoreGuard};
pub use value::{Array, ArrayGuard, Value, ValueGuard};
