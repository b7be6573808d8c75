//! The atomics the ring's state words stand on; the loom models give
//! `ring/state.rs` another shim with the same names.

pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
