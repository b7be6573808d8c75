//! The state machines of the primitives, over atomics in shared memory.
//!
//! These files use nothing but `crate::shim`, so the loom tests can compile
//! them against loom's atomics and a modelled futex.

pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod semaphore;
