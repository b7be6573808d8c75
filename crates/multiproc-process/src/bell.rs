//! A bell for the async waiters of an object in shared memory (a queue's
//! ring, an event): an eventfd every process of the object holds, rung by
//! the object's writers only while a counter in its shared state says an
//! async waiter waits, and awaited by the reactor of each process where
//! one does ([`Bell::wait`]).
//!
//! A waiter drains the count before it looks at the object, so a ring
//! after the look stays for its wait. Another process's waiter may drain a
//! ring meant for this one between the two; waits are sliced
//! ([`ASYNC_SLICE`]) for that.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::fdio;

/// How long an async waiter first sleeps before it looks at the object
/// again (a ring another process's waiter drained costs at most that).
pub const ASYNC_SLICE: Duration = Duration::from_millis(10);

/// The longest slice: a wait that lasts lengthens its slices up to this,
/// so that idle waiters cost next to nothing.
pub const ASYNC_SLICE_MAX: Duration = Duration::from_secs(1);

/// The slice after `slice`: twice as long, at most [`ASYNC_SLICE_MAX`].
pub fn next_slice(slice: Duration) -> Duration {
    (slice * 2).min(ASYNC_SLICE_MAX)
}

/// The eventfd, shared by the handles of one object in a process; it
/// crosses to other processes with the object, as a descriptor.
#[derive(Clone, Debug)]
pub struct Bell(Arc<OwnedFd>);

impl Bell {
    /// A new bell, not rung.
    ///
    /// # Errors
    ///
    /// The error of `eventfd`.
    pub fn new() -> Result<Bell> {
        Ok(Bell(Arc::new(fdio::eventfd()?)))
    }

    /// Rings it (a full count, after 2^64 - 2 rings nobody drained, is
    /// still rung: nothing is lost).
    pub fn ring(&self) {
        fdio::eventfd_ring(self.0.as_fd());
    }

    /// Rings it if `waiters` (the object's count of async waiters) says
    /// someone waits: the writers' side, one atomic load when no one does.
    pub fn ring_if_awaited(&self, waiters: &AtomicU32) {
        // The writer's store before, the count after: a waiter that counts
        // itself and then looks sees the store, or is seen here.
        std::sync::atomic::fence(Ordering::SeqCst);
        if waiters.load(Ordering::SeqCst) > 0 {
            self.ring();
        }
    }

    /// Takes the rings so far.
    pub fn drain(&self) {
        fdio::eventfd_drain(self.0.as_fd());
    }

    /// The descriptor, for a reactor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// The waiters' side: counted in `waiters` while it waits, drains the
    /// bell, and returns at once if `ready()`; otherwise waits until the
    /// bell rings or `slice` passes. The caller looks again either way
    /// (and, for a long wait, lengthens the slice: see [`next_slice`]).
    pub async fn wait(&self, waiters: &AtomicU32, ready: impl Fn() -> bool, slice: Duration) {
        waiters.fetch_add(1, Ordering::SeqCst);
        // The count before the look (as `ring_if_awaited`'s fence orders
        // the change before its read of the count).
        std::sync::atomic::fence(Ordering::SeqCst);
        let _counted = Counted(waiters);
        // Rings so far go first; one after this drain stays for the wait.
        self.drain();
        if ready() {
            return;
        }
        crate::reactor::readable(self.fd(), Some(slice)).await;
    }
}

/// Counts an async waiter while it waits (and not after, however its
/// future ends).
struct Counted<'a>(&'a AtomicU32);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Serialize for Bell {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        crate::handoff::fd::serialize(&*self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Bell, D::Error> {
        crate::handoff::fd::deserialize(d).map(|fd| Bell(Arc::new(fd)))
    }
}
