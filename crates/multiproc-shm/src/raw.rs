//! [`RawValue`] and [`RawArray`]: plain data in shared memory, with no lock.
//!
//! Access is either atomic (element by element, for types of 1, 2, 4 or 8
//! bytes) or `unsafe`, so safe code never races. For a lock around the data,
//! use `Value` and `Array` of the sync crate.
//!
//! # Safety
//!
//! The atomic accessors view an element as the atomic integer of its size:
//! elements sit at multiples of their size from a page-aligned start, so
//! they are aligned for it, and `T: Pod` makes every bit pattern a valid
//! `T`. The slice accessors are `unsafe fn`s whose callers promise no
//! concurrent writer.
#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use bytemuck::Pod;
use multiproc_process::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::segment::Segment;

/// Whether values of `T` can be read and written as one atomic integer.
const fn atomic_size<T>() -> bool {
    matches!(size_of::<T>(), 1 | 2 | 4 | 8)
}

/// Loads the `T` at `p` atomically.
///
/// # Safety
///
/// `p` must point into live shared memory, aligned to `size_of::<T>()`.
unsafe fn atomic_load<T: Pod>(p: *mut T) -> T {
    const {
        assert!(
            atomic_size::<T>(),
            "atomic access needs a type of 1, 2, 4 or 8 bytes"
        )
    };
    let mut out = T::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut out);
    // SAFETY: `p` is valid and aligned for the atomic of `T`'s size (the
    // caller's promise); other processes access it only atomically or under
    // their own `unsafe` promise.
    unsafe {
        match size_of::<T>() {
            1 => bytes.copy_from_slice(
                &AtomicU8::from_ptr(p.cast())
                    .load(Ordering::Relaxed)
                    .to_ne_bytes(),
            ),
            2 => bytes.copy_from_slice(
                &AtomicU16::from_ptr(p.cast())
                    .load(Ordering::Relaxed)
                    .to_ne_bytes(),
            ),
            4 => bytes.copy_from_slice(
                &AtomicU32::from_ptr(p.cast())
                    .load(Ordering::Relaxed)
                    .to_ne_bytes(),
            ),
            _ => bytes.copy_from_slice(
                &AtomicU64::from_ptr(p.cast())
                    .load(Ordering::Relaxed)
                    .to_ne_bytes(),
            ),
        }
    }
    out
}

/// Stores `v` at `p` atomically.
///
/// # Safety
///
/// As for [`atomic_load`].
unsafe fn atomic_store<T: Pod>(p: *mut T, v: T) {
    const {
        assert!(
            atomic_size::<T>(),
            "atomic access needs a type of 1, 2, 4 or 8 bytes"
        )
    };
    let b = bytemuck::bytes_of(&v);
    // SAFETY: as in `atomic_load`.
    unsafe {
        match size_of::<T>() {
            1 => AtomicU8::from_ptr(p.cast()).store(b[0], Ordering::Relaxed),
            2 => AtomicU16::from_ptr(p.cast())
                .store(u16::from_ne_bytes([b[0], b[1]]), Ordering::Relaxed),
            4 => AtomicU32::from_ptr(p.cast()).store(
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                Ordering::Relaxed,
            ),
            _ => AtomicU64::from_ptr(p.cast()).store(
                u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                Ordering::Relaxed,
            ),
        }
    }
}

/// One value of plain data in shared memory, with no lock.
///
/// Python: `multiprocessing.RawValue('i', 10)` is
/// `RawValue::new(10i32)`. [`load`](RawValue::load) and
/// [`store`](RawValue::store) are atomic (for types of 1, 2, 4 or 8 bytes);
/// [`read`](RawValue::read) and [`write`](RawValue::write) serve any size
/// and are `unsafe`, as Python's unsynchronized access would race.
pub struct RawValue<T> {
    seg: Segment,
    _t: PhantomData<T>,
}

impl<T: Pod> RawValue<T> {
    /// A value in new shared memory, set to `v`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the memory.
    pub fn new(v: T) -> Result<RawValue<T>> {
        let seg = Segment::new(size_of::<T>())?;
        // SAFETY: fresh memory no other process knows yet, aligned (page).
        unsafe { seg.as_ptr().cast::<T>().write(v) };
        Ok(RawValue {
            seg,
            _t: PhantomData,
        })
    }

    /// The value, read atomically.
    pub fn load(&self) -> T {
        // SAFETY: the value sits at the page-aligned start of its segment.
        unsafe { atomic_load(self.as_ptr()) }
    }

    /// Sets the value atomically.
    pub fn store(&self, v: T) {
        // SAFETY: as in `load`.
        unsafe { atomic_store(self.as_ptr(), v) }
    }

    /// Reads the value, of any size.
    ///
    /// # Safety
    ///
    /// No process may write the value meanwhile.
    pub unsafe fn read(&self) -> T {
        // SAFETY: the caller excludes concurrent writers.
        unsafe { self.as_ptr().read_volatile() }
    }

    /// Writes the value, of any size.
    ///
    /// # Safety
    ///
    /// No process may read or write the value meanwhile.
    pub unsafe fn write(&self, v: T) {
        // SAFETY: the caller excludes concurrent access.
        unsafe { self.as_ptr().write_volatile(v) }
    }

    /// A pointer to the value in shared memory.
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().cast()
    }
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            seg: self.seg.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// A fixed-length array of plain data in shared memory, with no lock.
///
/// Python: `multiprocessing.RawArray('i', 4)` is `RawArray::<i32>::new(4)`.
/// Element access is atomic ([`get`](RawArray::get), [`set`](RawArray::set),
/// [`to_vec`](RawArray::to_vec), for element types of 1, 2, 4 or 8 bytes);
/// the slice views are `unsafe`.
pub struct RawArray<T> {
    seg: Segment,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> RawArray<T> {
    /// An array of `len` zeroes in new shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the size overflows, [`Error::Io`] if
    /// the system refuses the memory.
    pub fn new(len: usize) -> Result<RawArray<T>> {
        let bytes = len.checked_mul(size_of::<T>()).ok_or_else(|| {
            Error::InvalidArgument(format!("an array of {len} elements is too large"))
        })?;
        Ok(RawArray {
            seg: Segment::new(bytes)?,
            len,
            _t: PhantomData,
        })
    }

    /// An array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`new`](RawArray::new).
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>> {
        let a = RawArray::new(items.len())?;
        // SAFETY: fresh memory no other process knows yet.
        unsafe { a.as_mut_slice().copy_from_slice(items) };
        Ok(a)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, i: usize) {
        assert!(
            i < self.len,
            "index {i} out of range for an array of {}",
            self.len
        );
    }

    /// Element `i`, read atomically.
    ///
    /// # Panics
    ///
    /// If `i` is out of range, as slice indexing does (Python: `IndexError`).
    pub fn get(&self, i: usize) -> T {
        self.check(i);
        // SAFETY: in range; elements of an atomic size are aligned to it.
        unsafe { atomic_load(self.as_ptr().add(i)) }
    }

    /// Sets element `i` atomically.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn set(&self, i: usize, v: T) {
        self.check(i);
        // SAFETY: as in `get`.
        unsafe { atomic_store(self.as_ptr().add(i), v) }
    }

    /// A copy of the elements, each read atomically.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// The elements as a slice.
    ///
    /// # Safety
    ///
    /// No process may write the array while the slice is used.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `len` elements of `T` live in the segment, aligned; the
        // caller excludes concurrent writers.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    ///
    /// No process (nor another slice of this process) may read or write the
    /// array while the slice is used.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`, with every other access excluded.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    /// A pointer to the first element.
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().cast()
    }
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            seg: self.seg.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<T> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        if seg.len() != size_of::<T>() {
            return Err(serde::de::Error::custom("a RawValue of another type"));
        }
        Ok(RawValue {
            seg,
            _t: PhantomData,
        })
    }
}

impl<T> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.seg, self.len as u64).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seg, len) = <(Segment, u64)>::deserialize(d)?;
        let len = usize::try_from(len).map_err(serde::de::Error::custom)?;
        if len.checked_mul(size_of::<T>()) != Some(seg.len()) {
            return Err(serde::de::Error::custom(
                "a RawArray of another type or length",
            ));
        }
        Ok(RawArray {
            seg,
            len,
            _t: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_arrays_are_shared_between_handles() {
        let v = RawValue::new(10i32).unwrap();
        let w = v.clone();
        w.store(-3);
        assert_eq!(v.load(), -3);
        let big = RawValue::new([1u64; 5]).unwrap();
        // SAFETY: single-threaded test.
        unsafe {
            big.write([2; 5]);
            assert_eq!(big.read(), [2; 5]);
        }
        let a = RawArray::<f64>::from_slice(&[1.0, 2.0, 3.0]).unwrap();
        a.set(1, 9.5);
        assert_eq!(a.to_vec(), vec![1.0, 9.5, 3.0]);
        assert_eq!(RawArray::<u16>::new(4).unwrap().to_vec(), vec![0; 4]);
        let (bytes, fds) = multiproc_process::handoff::encode_with_fds(&a).unwrap();
        let b: RawArray<f64> = multiproc_process::handoff::decode_with_fds(&bytes, fds).unwrap();
        b.set(0, -1.0);
        assert_eq!(a.get(0), -1.0);
        let (bytes, fds) = multiproc_process::handoff::encode_with_fds(&a).unwrap();
        assert!(multiproc_process::handoff::decode_with_fds::<RawArray<u32>>(&bytes, fds).is_err());
    }

    #[test]
    fn an_index_out_of_range_panics_like_a_slice() {
        let a = RawArray::<u8>::new(2).unwrap();
        let r = std::panic::catch_unwind(|| a.get(2));
        assert!(r.is_err());
    }
}
