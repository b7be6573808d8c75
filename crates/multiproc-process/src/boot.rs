//! How a process learns what it is: the program itself, a spawned child, or
//! a fork server started by executing the binary.
//!
//! A parent that executes the binary again (`start::exec`) puts the new
//! process's channel at descriptor [`CHILD_FD`] and says what the process is
//! in a variable: [`SPAWN_ENV`] for a spawned child, [`SERVER_ENV`] for a
//! fork server, each `3:<parent pid>`. [`init`](crate::init) checks that the
//! variable is meant for this process (its parent is that pid and descriptor
//! 3 is a socket) and then never returns into the program: a spawned child
//! runs its launch (`bootstrap`), a server serves (`server`). A grandchild
//! started with `std::process::Command` inherits the variable but not the
//! parent pid, and ignores it.
//!
//! # Safety
//!
//! Taking ownership of descriptor 3, and removing the variable from the
//! environment, are argued at their blocks.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bootstrap;
use crate::sys;

/// The descriptor number of the channel in an executed child.
pub(crate) const CHILD_FD: RawFd = 3;
/// Marks a spawned child.
pub(crate) const SPAWN_ENV: &str = "MULTIPROC_SPAWN";
/// Marks a fork server started by executing the binary.
pub(crate) const SERVER_ENV: &str = "MULTIPROC_FORKSERVER";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

/// Whether [`init`](crate::init) ran in this process.
pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

/// The channel this process was handed by a parent through `var`, if the
/// variable is meant for this process. Removes the variable.
pub(crate) fn inherited_channel(var: &str) -> Option<OwnedFd> {
    let value = std::env::var(var).ok()?;
    let (fd, parent) = value.split_once(':')?;
    let fd: RawFd = fd.parse().ok()?;
    let parent: u32 = parent.parse().ok()?;
    if parent != sys::getppid() || !sys::is_open_raw(fd) {
        return None;
    }
    if sys::thread_count() == 1 {
        // SAFETY: the process has a single thread, so nothing reads the
        // environment while it changes.
        unsafe { std::env::remove_var(var) };
    }
    // SAFETY: the parent put the channel at this number for us (its pid and
    // our parent's match), and nothing in this fresh program owns it yet:
    // `init` runs first in `main` and takes it once.
    let fd = unsafe { sys::own_raw(fd) };
    if !sys::is_socket(fd.as_fd()) {
        // Not ours after all; do not close what we do not own.
        std::mem::forget(fd);
        return None;
    }
    Some(fd)
}

/// The work of [`init`](crate::init) in a spawned child: run the launch and
/// exit. Returns only if this process is not a spawned child.
pub(crate) fn run_if_spawned() {
    if let Some(chan) = inherited_channel(SPAWN_ENV) {
        mark_initialized();
        bootstrap::run_from_channel(chan, None);
    }
}

/// The work of [`init`](crate::init) in a fork server started by executing
/// the binary. Returns only if this process is not one.
pub(crate) fn serve_if_server() {
    if let Some(ctl) = inherited_channel(SERVER_ENV) {
        mark_initialized();
        crate::server::serve(ctl);
    }
}
