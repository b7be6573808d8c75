//! Descriptors private to this process, and the one way the crate locks
//! its process-wide mutexes.
//!
//! A private descriptor (a child's pidfd or channel, the fork server's
//! control socket) is listed by number in [`PRIVATE_FDS`] for as long as it
//! is open, so that a forked child can close all of them: a child never
//! holds its siblings' descriptors.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a std mutex, ignoring poisoning: the data here stays consistent
/// across a panic because every update is a single push, remove or store.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Raw numbers of the descriptors that are private to this process (pidfds
/// of its children, our ends of their channels). A forked child closes
/// them all, so it never holds its siblings' descriptors.
pub(crate) static PRIVATE_FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// A descriptor that a forked child must not inherit. Its number is listed
/// in [`PRIVATE_FDS`] for as long as it is open.
#[derive(Debug)]
pub(crate) struct PrivateFd(Option<OwnedFd>);

impl PrivateFd {
    /// Registers `fd`, with the list already locked by the caller.
    pub(crate) fn register(list: &mut Vec<RawFd>, fd: OwnedFd) -> PrivateFd {
        list.push(fd.as_raw_fd());
        PrivateFd(Some(fd))
    }

    /// Registers `fd`.
    pub(crate) fn new(fd: OwnedFd) -> PrivateFd {
        PrivateFd::register(&mut lock(&PRIVATE_FDS), fd)
    }
}

impl AsFd for PrivateFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            Some(fd) => fd.as_fd(),
            // The option is only emptied by `drop`.
            None => unreachable!("PrivateFd used after drop"),
        }
    }
}

impl Drop for PrivateFd {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let mut list = lock(&PRIVATE_FDS);
            let raw = fd.as_raw_fd();
            list.retain(|&r| r != raw);
            // Closed while the list is locked: a concurrent fork either
            // sees the number listed and the fd open, or neither.
            drop(fd);
        }
    }
}
