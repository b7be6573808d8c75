//! [`Shared`]: a typed state in a shared-memory segment, followed by data.
//!
//! # Safety
//!
//! `Shared<S>` hands out `&S` into shared memory. That is sound because
//! `S: ShmState` promises that all-zero bytes are a valid `S` (the segment
//! starts zeroed) and that `S` holds only atomics and plain data, so every
//! access other processes make to it is atomic; the segment is page-aligned
//! and outlives the reference.
#![allow(unsafe_code)]

use std::marker::PhantomData;

use multiproc_process::{Error, Result};
use multiproc_shm::Segment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the data after a state begins: one cache line in, so the state
/// and the data do not share a line.
pub(crate) const DATA: usize = 64;

/// A state that may live in shared memory.
///
/// # Safety
///
/// All-zero bytes must be a valid value; the type must hold only atomics
/// and plain data (no pointer, no process-local handle), be `#[repr(C)]`,
/// at most [`DATA`] bytes, and aligned to at most 64.
pub(crate) unsafe trait ShmState: Sync + 'static {}

/// A state `S` at the start of a segment, and `extra` bytes from [`DATA`].
pub(crate) struct Shared<S> {
    seg: Segment,
    _s: PhantomData<S>,
}

impl<S: ShmState> Shared<S> {
    /// A zeroed state with room for `extra` bytes of data.
    pub(crate) fn new(extra: usize) -> Result<Shared<S>> {
        const { assert!(size_of::<S>() <= DATA && align_of::<S>() <= 64) };
        let len = DATA
            .checked_add(extra)
            .ok_or_else(|| Error::InvalidArgument("shared object too large".into()))?;
        Ok(Shared {
            seg: Segment::new(len)?,
            _s: PhantomData,
        })
    }

    /// The state.
    pub(crate) fn state(&self) -> &S {
        // SAFETY: see the module's Safety section: zeroed, atomics only,
        // aligned, alive as long as `self.seg`.
        unsafe { &*self.seg.as_ptr().cast::<S>() }
    }

    /// The first byte of the data.
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: the segment is at least `DATA` bytes long.
        unsafe { self.seg.as_ptr().add(DATA) }
    }

    /// How many bytes of data there are.
    pub(crate) fn data_len(&self) -> usize {
        self.seg.len() - DATA
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared {
            seg: self.seg.clone(),
            _s: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("seg", &self.seg).finish()
    }
}

impl<S> Serialize for Shared<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, S> Deserialize<'de> for Shared<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        if seg.len() < DATA {
            return Err(serde::de::Error::custom("shared object too small"));
        }
        Ok(Shared {
            seg,
            _s: PhantomData,
        })
    }
}
