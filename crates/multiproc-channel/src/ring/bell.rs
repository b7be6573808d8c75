//! A queue ring's bell: an eventfd every process of the queue holds, rung
//! by producers and consumers only while an async waiter says it waits
//! (the header's `async_waiters`), and awaited by the reactor of each
//! process where one does.
//!
//! The count is drained by a waiter before it looks at the ring, so a bell
//! rung after the look stays for its wait. Another process's waiter may
//! drain a bell meant for this one between the two; waits are sliced
//! ([`ASYNC_SLICE`]) for that.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use multiproc_process::{Result, fdio};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest an async waiter sleeps before it looks at the ring again.
pub(crate) const ASYNC_SLICE: Duration = Duration::from_millis(10);

/// The eventfd, shared by the handles of one ring in a process.
#[derive(Clone, Debug)]
pub(crate) struct Bell(Arc<OwnedFd>);

impl Bell {
    pub(crate) fn new() -> Result<Bell> {
        Ok(Bell(Arc::new(fdio::eventfd()?)))
    }

    /// Rings it (a full count, after 2^64 - 2 rings nobody drained, is
    /// still rung: nothing is lost).
    pub(crate) fn ring(&self) {
        fdio::eventfd_ring(self.0.as_fd());
    }

    /// Takes the rings so far.
    pub(crate) fn drain(&self) {
        fdio::eventfd_drain(self.0.as_fd());
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Serialize for Bell {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        multiproc_process::handoff::fd::serialize(&*self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Bell, D::Error> {
        multiproc_process::handoff::fd::deserialize(d).map(|fd| Bell(Arc::new(fd)))
    }
}
