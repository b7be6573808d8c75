//! The parent's side of a start: how a child process comes to exist and
//! reaches its target.
//!
//! Each method turns a [`Launch`] (the target's entry, its encoded arguments
//! and the descriptors they carry) into a running child and a
//! [`ChildShared`] record the parent uses to wait for it, signal it and read
//! its outcome. Every child gets one end of a socket pair, its channel: the
//! parent sends the launch on it (spawn, fork server) and the child reports
//! its outcome on it.
//!
//! - **fork** (`fork.rs`): `fork(2)`, then the child calls the entry
//!   straight from its copy of the parent's memory.
//! - **spawn** (`spawn.rs`): the parent executes `/proc/self/exe` again with
//!   the channel at descriptor 3 (`exec.rs`); the new program receives the
//!   launch and runs it.
//! - **forkserver** (`forkserver.rs`): a single-threaded server forks each
//!   child on request; the child receives its launch as a spawned one does.
//!
//! The child's side of all three is in `bootstrap`; the fork server's own
//! loop is in `server`.

mod exec;
mod fork;
pub(crate) mod forkserver;
mod launch;
mod spawn;

use std::sync::Arc;

pub use fork::{ThreadedFork, set_threaded_fork};
pub(crate) use launch::Launch;
pub use launch::launch_message;

use crate::child::ChildShared;
use crate::error::{Error, Result};
use crate::method::StartMethod;

/// Starts a child with `method`.
pub(crate) fn start(method: StartMethod, launch: Launch) -> Result<Arc<ChildShared>> {
    if method.needs_init() && !crate::boot::initialized() {
        return Err(Error::NotInitialized);
    }
    crate::exit::install_hook();
    match method {
        StartMethod::Fork => fork::start(launch),
        StartMethod::Spawn => spawn::start(launch),
        StartMethod::ForkServer => forkserver::start(launch),
    }
}
