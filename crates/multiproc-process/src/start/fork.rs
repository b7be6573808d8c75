//! The fork start method: `fork(2)`, then the child calls the entry
//! straight from its copy of the parent's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::bootstrap::{self, ChildStart};
use crate::child::{ChildShared, Reaper};
use crate::error::{Error, Result};
use crate::state::ForkGuard;
use crate::sys;

use super::launch::{Launch, channel};

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

/// Chooses what [`StartMethod::Fork`](crate::StartMethod::Fork) does when the process has other
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

/// Starts a child with the fork method.
pub(super) fn start(launch: Launch) -> Result<Arc<ChildShared>> {
    check_threads()?;
    let from_main_thread = sys::is_main_thread();
    let parent_pid = sys::getpid();
    let mut guard = ForkGuard::acquire();
    // Created under the guard so that no concurrent start forks a sibling
    // that inherits our end.
    let (ours, theirs) = channel(&mut guard.fds)?;
    let Some((pid, guard)) = guard.fork(|_| launch.identity.clone())? else {
        // Its descriptor was closed when the child's state was reset.
        std::mem::forget(ours);
        crate::method::set_start_method_force(launch.method);
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
    let (pidfd, mut guard) = guard.child_pidfd(pid)?;
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
