//! Shared memory for multiproc: memory that several processes map at once.
//!
//! - [`Segment`]: anonymous shared memory (a memfd), freed by the kernel
//!   when the last process lets go; nothing appears in `/dev/shm`.
//! - [`RawValue`] and [`RawArray`]: plain data (`bytemuck::Pod`) in a
//!   segment, with no lock; access is atomic or `unsafe`.
//! - [`SharedMemory`]: named shared memory, as Python's
//!   `multiprocessing.shared_memory`.
//!
//! Every type here is a cheap `Clone` handle that can be passed to a child
//! process as an argument under any start method. This crate knows nothing
//! of locks; `Value` and `Array` (memory plus a lock) are in the sync crate.
//!
//! # Examples
//!
//! ```
//! use multiproc as mp;
//!
//! fn fill(a: mp::RawArray<u32>) {
//!     for i in 0..a.len() {
//!         a.set(i, (i * i) as u32);
//!     }
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let a = mp::RawArray::<u32>::new(4)?;
//! let mut p = mp::Process::new(fill, (a.clone(),));
//! p.start()?;
//! p.join()?;
//! assert_eq!(a.to_vec(), [0, 1, 4, 9]);
//! # Ok(())
//! # }
//! ```
//!
//! # Platform support
//!
//! Linux (memfd, POSIX shared memory).

#![deny(unsafe_code)]

mod manager;
mod named;
mod raw;
mod segment;
mod shareable;
mod sys;

pub use manager::SharedMemoryManager;
pub use named::SharedMemory;
pub use raw::{RawArray, RawValue};
pub use segment::Segment;
pub use shareable::{ShareableItem, ShareableList};
