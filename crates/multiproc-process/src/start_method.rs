//! Start methods: how a child process comes to exist and reaches its target.
//!
//! Each method turns a [`Launch`] (the target's entry, its encoded arguments
//! and the descriptors they carry) into a running child and a
//! [`ChildShared`] record the parent uses to wait for it, signal it and read
//! its outcome. Every child gets one end of a socket pair, its channel: the
//! parent sends the launch on it (spawn, fork server) and the child reports
//! its outcome on it.
//!
//! - **fork**: `fork(2)`, then the child calls the entry straight from its
//!   copy of the parent's memory.
//! - **spawn**: the parent executes `/proc/self/exe` again with the channel
//!   at descriptor 3; [`init`](crate::init) in the new program receives the
//!   launch and runs it (module `spawn`).
//! - **forkserver**: a single-threaded server, forked at `init`, forks each
//!   child on request; the child receives its launch as a spawned one does
//!   (module `forkserver`).
//!

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::bootstrap::{self, ChildStart};
use crate::child::{ChildShared, Reaper};
use crate::error::{Error, Result};
use crate::state::{ForkGuard, Identity, PrivateFd};
use crate::sys;
use crate::target::EntryFn;

/// How a child process is started.
///
/// Python: the names given to `multiprocessing.set_start_method`. One
/// program runs unchanged under all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// A single-threaded server, forked at [`init`](crate::init) while the
    /// program is still single-threaded, forks each child on request. Fast,
    /// and safe in a program that has threads. The default, as in CPython
    /// 3.14.
    #[default]
    ForkServer,
    /// Executes the program's binary again; the new process's
    /// [`init`](crate::init) receives the target and its arguments. The
    /// slowest start and the cleanest child: nothing of the parent's memory.
    Spawn,
    /// `fork(2)`: the child runs straight from a copy of the parent's
    /// memory. The fastest start, but unsafe in a program that has other
    /// threads (they do not exist in the child, and a lock one of them held
    /// stays held there); see [`set_threaded_fork`].
    Fork,
}

impl StartMethod {
    /// Python's name of the method (`"forkserver"`, `"spawn"`, `"fork"`).
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::ForkServer => "forkserver",
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
        }
    }

    /// All methods available on this platform, the default first.
    ///
    /// Python: `multiprocessing.get_all_start_methods()`.
    pub fn all() -> &'static [StartMethod] {
        &[
            StartMethod::ForkServer,
            StartMethod::Spawn,
            StartMethod::Fork,
        ]
    }

    /// Whether the method needs [`init`](crate::init) to have run.
    pub(crate) fn needs_init(self) -> bool {
        !matches!(self, StartMethod::Fork)
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
        StartMethod::all()
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown start method {s:?}")))
    }
}

/// What `fork` does in a process that has more than one thread.
///
/// Python 3.12 warns (`DeprecationWarning`) in this case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ThreadedFork {
    /// Fork, and print a warning on stderr the first time. The default.
    #[default]
    Warn,
    /// Refuse, with [`Error::ThreadedFork`].
    Deny,
    /// Fork without a word.
    Allow,
}

static THREADED_FORK: AtomicU8 = AtomicU8::new(0);

/// Chooses what [`StartMethod::Fork`] does when the process has other
/// threads: warn (the default), refuse, or allow.
pub fn set_threaded_fork(policy: ThreadedFork) {
    let v = match policy {
        ThreadedFork::Warn => 0,
        ThreadedFork::Deny => 1,
        ThreadedFork::Allow => 2,
    };
    THREADED_FORK.store(v, Ordering::Relaxed);
}

fn check_threads() -> Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let policy = THREADED_FORK.load(Ordering::Relaxed);
    if policy == 2 {
        return Ok(());
    }
    let threads = sys::thread_count();
    if threads <= 1 {
        return Ok(());
    }
    if policy == 1 {
        return Err(Error::ThreadedFork { threads });
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "multiproc: this process (pid {}) has {threads} threads; the fork start method \
             may deadlock the child. Use the forkserver or spawn start method.",
            sys::getpid()
        );
    }
    Ok(())
}

/// What a start method needs to start one child.
pub(crate) struct Launch {
    pub(crate) entry: EntryFn,
    pub(crate) args: Vec<u8>,
    /// Descriptors the arguments' handles carry.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) identity: Identity,
}

/// Starts a child with `method`.
pub(crate) fn start(method: StartMethod, launch: Launch) -> Result<Arc<ChildShared>> {
    if method.needs_init() && !crate::context::initialized() {
        return Err(Error::NotInitialized);
    }
    bootstrap::install_hooks();
    match method {
        StartMethod::Fork => start_fork(launch),
        StartMethod::Spawn => crate::spawn::start(launch),
        StartMethod::ForkServer => crate::forkserver::start(launch),
    }
}

/// A channel for a new child: our end (non-blocking, private) and its end
/// (blocking).
pub(crate) fn channel(fds: &mut Vec<std::os::fd::RawFd>) -> Result<(PrivateFd, OwnedFd)> {
    let (ours, theirs) = sys::socketpair()?;
    sys::set_nonblocking(ours.as_fd())?;
    Ok((PrivateFd::register(fds, ours), theirs))
}

fn start_fork(launch: Launch) -> Result<Arc<ChildShared>> {
    check_threads()?;
    let from_main_thread = sys::is_main_thread();
    let parent_pid = sys::getpid();
    let mut guard = ForkGuard::acquire();
    // Created under the guard so that no concurrent start forks a sibling
    // that inherits our end.
    let (ours, theirs) = channel(&mut guard.fds)?;
    let Some((pid, mut guard)) = guard.fork(|_| launch.identity.clone())? else {
        // Its descriptor was closed when the child's state was reset.
        std::mem::forget(ours);
        let daemon = launch.identity.daemon;
        bootstrap::run_child(ChildStart {
            entry: launch.entry,
            args: launch.args,
            fds: launch.fds,
            outcome: theirs,
            daemon_of: daemon.then_some((parent_pid, from_main_thread)),
        })
    };
    drop(theirs);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => PrivateFd::register(&mut guard.fds, fd),
        Err(e) => {
            drop(guard);
            sys::kill_and_reap(pid);
            return Err(e.into());
        }
    };
    let ForkGuard { global, .. } = &mut guard;
    Ok(ChildShared::register(
        &mut global.children,
        pid,
        &launch.identity,
        pidfd,
        ours,
        Reaper::Parent,
    ))
}
