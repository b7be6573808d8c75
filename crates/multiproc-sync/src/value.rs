//! [`Value`] and [`Array`]: plain data in shared memory with a lock.
//!
//! # Safety
//!
//! The guards hand out `&T` / `&mut [T]` into shared memory while they hold
//! the object's lock, which every access to the data takes; the data is
//! aligned (64 bytes into a page-aligned segment) and zero-initialized,
//! valid for any `T: Pod`. The data lives after its lock's state, or, for a
//! value made with a lock shared with others (`with_lock`), after a state
//! of its own in its own segment; either state holds the flag that keeps a
//! holder from lending the same data twice.
#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use multiproc_process::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::DataState;
use crate::lock::{AcquireResult, Lock, LockGuard};
use crate::shared::Shared;

/// Takes the lock even from a dead owner: for the calls that do not report
/// it (`get`, `set`, `lock`).
fn take(lock: &Lock) -> LockGuard<'_> {
    match lock.acquire() {
        Ok(g) => g,
        Err(e) => match e.into_guard() {
            Some(g) => g,
            // `acquire` without a deadline ends only with the lock held.
            None => unreachable!("an acquire without a timeout returned without the lock"),
        },
    }
}

/// The lock for a guard of the data whose flag is `lent`: acquired, or, if
/// this thread already holds it (through `get_lock()`, or a guard of other
/// data under the same lock), none: the outer hold releases it. Refuses a
/// second guard of the same data while one lives: two would alias.
fn lend<'a>(lock: &'a Lock, lent: &AtomicU64, what: &str) -> Option<LockGuard<'a>> {
    let guard = if lock.held_by_this_thread() {
        // Only the holder writes the flag, during its hold: a flag set in
        // an older hold (by a holder that died) names another number.
        if lent.load(Ordering::Relaxed) == lock.hold() {
            panic!(
                "{what}: this thread already holds a guard of this {what}'s data; read and \
                 write through that guard"
            );
        }
        None
    } else {
        Some(take(lock))
    };
    lent.store(lock.hold(), Ordering::Relaxed);
    guard
}

/// Gives back what [`lend`] lent.
fn give_back(lent: &AtomicU64) {
    lent.store(0, Ordering::Relaxed);
}

/// Where a value's data is: after its lock's state (`None`), or in a
/// segment of its own, for a value whose lock others share.
type OwnData = Option<Shared<DataState>>;

/// The data's flag and first byte.
fn data_of<'a>(lock: &'a Lock, own: &'a OwnData) -> (&'a AtomicU64, *mut u8) {
    match own {
        Some(d) => (&d.state().lent, d.data()),
        None => (lock.lent(), lock.shared().data()),
    }
}

/// A segment of its own for `bytes` of data, under a lock given.
fn own_data(bytes: usize) -> Result<OwnData> {
    Ok(Some(Shared::new(bytes)?))
}

/// How many bytes of data there are.
fn data_len(lock: &Lock, own: &OwnData) -> usize {
    match own {
        Some(d) => d.data_len(),
        None => lock.shared().data_len(),
    }
}

/// One value of plain data in shared memory, with a lock.
///
/// Python: `multiprocessing.Value('i', 10)` is `Value::new(10i32)`.
/// [`get`](Value::get) and [`set`](Value::set) each hold the lock for one
/// step; [`lock`](Value::lock) holds it for as long as its guard lives, so
/// `*v.lock() += 1` is the Rust for `with v.get_lock(): v.value += 1`.
pub struct Value<T> {
    lock: Lock,
    own: OwnData,
    _t: PhantomData<T>,
}

impl<T: Pod> Value<T> {
    /// A value in new shared memory, set to `v`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the shared memory.
    pub fn new(v: T) -> Result<Value<T>> {
        const { assert!(align_of::<T>() <= 64, "Value supports alignments up to 64") };
        let value = Value {
            lock: Lock::from_shared(Shared::new(size_of::<T>())?),
            own: None,
            _t: PhantomData,
        };
        *value.lock() = v;
        Ok(value)
    }

    /// A value set to `v`, guarded by `lock`, which other values (and the
    /// caller) may share: holding it guards them all. Python:
    /// `Value('i', 10, lock=l)`.
    ///
    /// While this thread holds the lock, each value's [`get`](Value::get),
    /// [`set`](Value::set) and [`lock`](Value::lock) use that hold, so
    /// `let _g = l.acquire()?; a.set(a.get() - 1); b.set(b.get() + 1);`
    /// moves one unit atomically.
    ///
    /// # Errors
    ///
    /// As [`new`](Value::new).
    pub fn with_lock(v: T, lock: Lock) -> Result<Value<T>> {
        const { assert!(align_of::<T>() <= 64, "Value supports alignments up to 64") };
        let value = Value {
            lock,
            own: own_data(size_of::<T>())?,
            _t: PhantomData,
        };
        *value.lock() = v;
        Ok(value)
    }

    /// A copy of the value, read under the lock. Python: `v.value`.
    ///
    /// Works while this thread holds the lock through
    /// [`get_lock`](Value::get_lock) (Python's `with v.get_lock():`).
    ///
    /// # Panics
    ///
    /// While this thread holds a [`lock`](Value::lock) guard: read through
    /// the guard (two views of the value would alias).
    pub fn get(&self) -> T {
        *self.lock()
    }

    /// Sets the value under the lock. Python: `v.value = x`.
    ///
    /// # Panics
    ///
    /// As [`get`](Value::get).
    pub fn set(&self, v: T) {
        *self.lock() = v;
    }

    /// Holds the lock; the guard reads and writes the value. Takes the lock
    /// over from a dead owner without telling (see
    /// [`lock_checked`](Value::lock_checked)). If this thread holds the lock
    /// through [`get_lock`](Value::get_lock) already, the guard uses that
    /// hold.
    ///
    /// # Panics
    ///
    /// While this thread holds another guard of the value.
    pub fn lock(&self) -> ValueGuard<'_, T> {
        let (lent, ptr) = data_of(&self.lock, &self.own);
        ValueGuard {
            guard: lend(&self.lock, lent, "Value"),
            lent,
            ptr: ptr.cast(),
            _t: PhantomData,
        }
    }

    /// Holds the lock, reporting an owner that died holding it.
    ///
    /// # Errors
    ///
    /// [`crate::AcquireError::OwnerDied`] with the guard.
    pub fn lock_checked(&self) -> AcquireResult<ValueGuard<'_, T>> {
        if self.lock.held_by_this_thread() {
            // Held by this thread already: no death to report.
            return Ok(self.lock());
        }
        let (lent, ptr) = data_of(&self.lock, &self.own);
        let wrap = |g| {
            lent.store(self.lock.hold(), Ordering::Relaxed);
            ValueGuard {
                guard: Some(g),
                lent,
                ptr: ptr.cast(),
                _t: PhantomData,
            }
        };
        match self.lock.acquire() {
            Ok(g) => Ok(wrap(g)),
            Err(crate::AcquireError::OwnerDied(g)) => Err(crate::AcquireError::OwnerDied(wrap(g))),
            Err(crate::AcquireError::Timeout) => Err(crate::AcquireError::Timeout),
            Err(crate::AcquireError::WouldBlock) => Err(crate::AcquireError::WouldBlock),
        }
    }

    /// The lock that guards the value. Python: `Value.get_lock()`.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            lock: self.lock.clone(),
            own: self.own.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("value", &self.get()).finish()
    }
}

/// Holds a [`Value`]'s lock; derefs to the value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    /// `None` when the lock is held by an outer hold of this thread.
    guard: Option<LockGuard<'a>>,
    /// The data's lent flag.
    lent: &'a AtomicU64,
    ptr: *mut T,
    _t: PhantomData<&'a mut T>,
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        give_back(self.lent);
        self.guard.take();
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's life; see module docs.
        unsafe { &*self.ptr }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { &mut *self.ptr }
    }
}

/// A fixed-length array of plain data in shared memory, with a lock.
///
/// Python: `multiprocessing.Array('i', 4)` is `Array::<i32>::new(4)`.
/// Zero-filled when created. [`get`](Array::get), [`set`](Array::set) and
/// [`to_vec`](Array::to_vec) each hold the lock for one step;
/// [`lock`](Array::lock) gives the whole slice under it.
pub struct Array<T> {
    lock: Lock,
    own: OwnData,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Array<T> {
    /// An array of `len` zeroes in new shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the size overflows, [`Error::Io`] if
    /// the system refuses the shared memory.
    pub fn new(len: usize) -> Result<Array<T>> {
        Ok(Array {
            lock: Lock::from_shared(Shared::new(Self::bytes(len)?)?),
            own: None,
            len,
            _t: PhantomData,
        })
    }

    /// An array of `len` zeroes guarded by `lock`, which other values may
    /// share, as [`Value::with_lock`]. Python: `Array('i', 4, lock=l)`.
    ///
    /// # Errors
    ///
    /// As [`new`](Array::new).
    pub fn with_lock(len: usize, lock: Lock) -> Result<Array<T>> {
        Ok(Array {
            lock,
            own: own_data(Self::bytes(len)?)?,
            len,
            _t: PhantomData,
        })
    }

    fn bytes(len: usize) -> Result<usize> {
        const { assert!(align_of::<T>() <= 64, "Array supports alignments up to 64") };
        len.checked_mul(size_of::<T>()).ok_or_else(|| {
            Error::InvalidArgument(format!("an array of {len} elements is too large"))
        })
    }

    /// An array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`new`](Array::new).
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        let a = Array::new(items.len())?;
        a.lock().copy_from_slice(items);
        Ok(a)
    }

    /// The number of elements. Python: `len(a)`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, read under the lock. Python: `a[i]`. Works while this
    /// thread holds the lock through [`get_lock`](Array::get_lock).
    ///
    /// # Panics
    ///
    /// If `i` is out of range (Python: `IndexError`), or while this thread
    /// holds a [`lock`](Array::lock) guard (read through it).
    pub fn get(&self, i: usize) -> T {
        self.lock()[i]
    }

    /// Sets element `i` under the lock. Python: `a[i] = x`.
    ///
    /// # Panics
    ///
    /// As [`get`](Array::get).
    pub fn set(&self, i: usize, v: T) {
        self.lock()[i] = v;
    }

    /// A copy of the elements, under the lock. Python: `a[:]`.
    ///
    /// # Panics
    ///
    /// As [`get`](Array::get).
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().to_vec()
    }

    /// Holds the lock; the guard derefs to the elements. Takes the lock
    /// over from a dead owner without telling. If this thread holds the
    /// lock through [`get_lock`](Array::get_lock) already, the guard uses
    /// that hold.
    ///
    /// # Panics
    ///
    /// While this thread holds another guard of the array.
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        let (lent, ptr) = data_of(&self.lock, &self.own);
        ArrayGuard {
            guard: lend(&self.lock, lent, "Array"),
            lent,
            ptr: ptr.cast(),
            len: self.len,
            _t: PhantomData,
        }
    }

    /// The lock that guards the array. Python: `Array.get_lock()`.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            lock: self.lock.clone(),
            own: self.own.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_vec()).finish()
    }
}

/// Holds an [`Array`]'s lock; derefs to its elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    /// `None` when the lock is held by an outer hold of this thread.
    guard: Option<LockGuard<'a>>,
    /// The data's lent flag.
    lent: &'a AtomicU64,
    ptr: *mut T,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<T> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        give_back(self.lent);
        self.guard.take();
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lock is held for the guard's life; `len` elements
        // live at `ptr`; see module docs.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.lock, &self.own).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (lock, own) = <(Lock, OwnData)>::deserialize(d)?;
        if data_len(&lock, &own) != size_of::<T>() {
            return Err(serde::de::Error::custom("a Value of another type"));
        }
        Ok(Value {
            lock,
            own,
            _t: PhantomData,
        })
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.lock, &self.own, self.len as u64).serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (lock, own, len) = <(Lock, OwnData, u64)>::deserialize(d)?;
        let len = usize::try_from(len).map_err(serde::de::Error::custom)?;
        if len.checked_mul(size_of::<T>()) != Some(data_len(&lock, &own)) {
            return Err(serde::de::Error::custom(
                "an Array of another type or length",
            ));
        }
        Ok(Array {
            lock,
            own,
            len,
            _t: PhantomData,
        })
    }
}

// SAFETY: the raw pointers point into shared memory kept alive by the
// guard's lock handle; access is serialized by the lock, across threads as
// across processes. `T: Send` is needed to hand the data to another thread.
unsafe impl<T: Send> Send for ValueGuard<'_, T> {}
// SAFETY: `&ValueGuard` only gives `&T`.
unsafe impl<T: Sync> Sync for ValueGuard<'_, T> {}
// SAFETY: as for `ValueGuard`.
unsafe impl<T: Send> Send for ArrayGuard<'_, T> {}
// SAFETY: as for `ValueGuard`.
unsafe impl<T: Sync> Sync for ArrayGuard<'_, T> {}
