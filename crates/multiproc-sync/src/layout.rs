//! The layouts of the primitives in shared memory, in one place.
//!
//! Each is `#[repr(C)]`, holds only atomics, and is valid as all-zero
//! bytes (how a new segment starts); that is what [`ShmState`] promises.
//!
//! # Safety
//!
//! The `unsafe impl`s below are the promise of [`ShmState`], checked by
//! reading each struct: atomics only, zero valid, small, aligned to at most
//! 8 bytes.
#![allow(unsafe_code)]

use std::sync::atomic::AtomicU64;

use crate::core::condvar::NotifyWord;
use crate::core::event::EventWord;
use crate::core::lock::LockWord;
use crate::core::semaphore::SemWord;
use crate::shared::ShmState;
use crate::shim::AtomicU32;

#[repr(C)]
#[derive(Debug)]
pub(crate) struct LockState {
    pub(crate) word: LockWord,
    /// The thread (see `owner::thread_id`) that acquired the lock, with the
    /// word's process; 0 when unlocked. Set after acquiring and cleared
    /// before releasing, by the holder only.
    pub(crate) thread: AtomicU64,
    /// Counts the acquisitions: which hold of the lock this is. Written by
    /// each new holder.
    pub(crate) hold: AtomicU64,
    /// The hold in which a `Value` or `Array` guard gives access to the
    /// data after this state (so that the holder's own `get` must not read
    /// it); another number (0 or an older hold's) when none does.
    pub(crate) lent: AtomicU64,
    /// Async acquirers (`acquire_async`): an unlock that finds `WAITERS`
    /// rings the lock's bell while there are some.
    pub(crate) async_waiters: std::sync::atomic::AtomicU32,
}

// SAFETY: atomics only; zero is unlocked, by no thread, not lent.
unsafe impl ShmState for LockState {}

/// The state before the data of a `Value` or `Array` made with a lock of
/// its own choosing (shared with other values): the flag of a lent guard,
/// as [`LockState::lent`], for the data of this segment.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct DataState {
    pub(crate) lent: AtomicU64,
}

// SAFETY: atomics only; zero is not lent.
unsafe impl ShmState for DataState {}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct RLockState {
    pub(crate) word: LockWord,
    /// How many times the owner holds it.
    pub(crate) count: AtomicU32,
    /// The owning thread (see `owner::thread_id`), with the word's process.
    pub(crate) thread: AtomicU64,
    /// Async acquirers, as [`LockState::async_waiters`].
    pub(crate) async_waiters: std::sync::atomic::AtomicU32,
}

// SAFETY: atomics only; zero is unlocked, count 0, no thread.
unsafe impl ShmState for RLockState {}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct SemState {
    pub(crate) sem: SemWord,
    /// Async waiters (`acquire_async`): while there are some, `release`
    /// rings the semaphore's bell.
    pub(crate) async_waiters: std::sync::atomic::AtomicU32,
}

// SAFETY: atomics only; zero is a semaphore at 0, unbounded.
unsafe impl ShmState for SemState {}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct CondState {
    pub(crate) word: LockWord,
    /// Waiters, permits and the epoch of the last notify.
    pub(crate) notify: NotifyWord,
    /// Async acquirers and async waiters for a notify: while there are
    /// some, an unlock that finds `WAITERS` and a notify that gives a
    /// permit ring the condition's bell.
    pub(crate) async_waiters: std::sync::atomic::AtomicU32,
}

// SAFETY: atomics only; zero is unlocked with nobody waiting.
unsafe impl ShmState for CondState {}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct EventState {
    pub(crate) event: EventWord,
    /// Async waiters (`Event::wait_async`): while there are some, `set`
    /// rings the event's bell.
    pub(crate) async_waiters: std::sync::atomic::AtomicU32,
}

// SAFETY: atomics only; zero is a clear event with nobody waiting.
unsafe impl ShmState for EventState {}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct BarrierState {
    /// Guards `count`, `phase` changes and `reset_from`.
    pub(crate) word: LockWord,
    /// Arrivals in the current round.
    pub(crate) count: AtomicU32,
    /// `generation << 1 | broken`: the futex word waiters sleep on.
    pub(crate) phase: AtomicU32,
    /// One more than the generation a `reset` ended (0: none), so that its
    /// waiters report a broken barrier, not a completed round.
    pub(crate) reset_from: AtomicU32,
    pub(crate) parties: AtomicU32,
    /// Async waiters (`Barrier::wait_async`): while there are some, every
    /// change of `phase` rings the barrier's bell.
    pub(crate) async_waiters: std::sync::atomic::AtomicU32,
}

// SAFETY: atomics only; zero is an empty, unbroken barrier (parties are set
// before the barrier is shared).
unsafe impl ShmState for BarrierState {}
