//! Start methods: how a child process comes to exist and reaches its target.
//!
//! Each method turns a [`Launch`] (the target's entry and its encoded
//! arguments) into a running child and a [`ChildShared`] record the parent
//! uses to wait for it, signal it and read its outcome.
//!
//! - **fork**: `fork(2)`, then the child calls the entry straight from its
//!   copy of the parent's memory.
//!
//! # Safety
//!
//! The one unsafe call is `fork` itself: the state locks are held across it
//! and the child only resets them and runs its target.
#![allow(unsafe_code)]

use std::fmt;
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::Arc;

use crate::bootstrap::{self, ChildStart};
use crate::child::ChildShared;
use crate::error::{Error, Result};
use crate::state::{ForkGuard, Identity, PrivateFd};
use crate::sys::{self, Forked};
use crate::target::EntryFn;

/// How a child process is started.
///
/// Python: the names given to `multiprocessing.set_start_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// `fork(2)`: the child runs straight from a copy of the parent's
    /// memory. The fastest start, but unsafe in a program that has other
    /// threads (they do not exist in the child, and any lock they held stays
    /// held there).
    #[default]
    Fork,
}

impl StartMethod {
    /// Python's name of the method (`"fork"`).
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
        }
    }

    /// All methods available on this platform, the default first.
    ///
    /// Python: `multiprocessing.get_all_start_methods()`.
    pub fn all() -> &'static [StartMethod] {
        &[StartMethod::Fork]
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<StartMethod> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            other => Err(Error::InvalidArgument(format!(
                "unknown start method {other:?}"
            ))),
        }
    }
}

/// What a start method needs to start one child.
pub(crate) struct Launch {
    pub(crate) entry: EntryFn,
    pub(crate) args: Vec<u8>,
    pub(crate) identity: Identity,
}

/// Starts a child with `method`.
pub(crate) fn start(method: StartMethod, launch: Launch) -> Result<Arc<ChildShared>> {
    match method {
        StartMethod::Fork => start_fork(launch),
    }
}

fn start_fork(launch: Launch) -> Result<Arc<ChildShared>> {
    bootstrap::install_hooks();
    let from_main_thread = sys::is_main_thread();
    let parent_pid = sys::getpid();
    let mut guard = ForkGuard::acquire();
    // Created under the guard so that no concurrent start forks a sibling
    // that inherits them.
    let (read_end, write_end) = sys::pipe()?;
    sys::set_nonblocking(read_end.as_fd())?;
    let read_end = PrivateFd::register(&mut guard.fds, read_end);
    let daemon = launch.identity.daemon;
    let name = launch.identity.name().to_owned();

    // SAFETY: both state locks are held across the fork by this thread, so
    // the child finds them in a consistent state and releases them in
    // `reset_in_child`; the child then runs only the target, as the fork
    // start method promises (and as Python's does).
    let forked = match unsafe { sys::fork() } {
        Ok(f) => f,
        Err(e) => {
            // Released before `read_end` unregisters itself.
            drop(guard);
            return Err(e.into());
        }
    };
    match forked {
        Forked::Child => {
            guard.reset_in_child(launch.identity);
            // Its descriptor was closed by `reset_in_child`.
            std::mem::forget(read_end);
            bootstrap::run_child(ChildStart {
                entry: launch.entry,
                args: launch.args,
                outcome: write_end,
                daemon_of: daemon.then_some((parent_pid, from_main_thread)),
            })
        }
        Forked::Parent(pid) => {
            drop(write_end);
            let pidfd = match sys::pidfd_open(pid) {
                Ok(fd) => PrivateFd::register(&mut guard.fds, fd),
                Err(e) => {
                    drop(guard);
                    sys::kill_and_reap(pid);
                    return Err(e.into());
                }
            };
            let shared = Arc::new(ChildShared::new(pid, name, daemon, pidfd, read_end));
            guard.global.children.push(Arc::clone(&shared));
            Ok(shared)
        }
    }
}
