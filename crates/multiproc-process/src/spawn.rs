//! The spawn start method: execute the program's binary again and hand the
//! new process its launch over a socket.
//!
//! The parent runs `/proc/self/exe` (the very file it runs, even if the path
//! was replaced since) with its own arguments, the child's end of the
//! channel at descriptor 3, and `MULTIPROC_SPAWN=3:<parent pid>` in the
//! environment. In the child, [`init`](crate::init) sees the variable, checks
//! that it is meant for this process (its parent is that pid and descriptor
//! 3 is a socket), and runs the launch it receives. A grandchild started
//! with `std::process::Command` inherits the variable but not the parent
//! pid, and ignores it. The same mechanism starts a fork server from a
//! program that already has threads (`MULTIPROC_FORKSERVER`).
//!
//! # Safety
//!
//! `Command::pre_exec` runs between fork and exec, where only
//! async-signal-safe calls are allowed; ours makes one `dup2` or `fcntl`.
//! Taking ownership of descriptor 3 in the child is argued at its block.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;

use crate::bootstrap::{self, LaunchMsg};
use crate::child::{ChildShared, Reaper};
use crate::error::Result;
use crate::start_method::{Launch, channel};
use crate::state::{GLOBAL, PRIVATE_FDS, PrivateFd, lock};
use crate::sys;
use crate::target::EntryAddress;

/// The descriptor number of the channel in an executed child.
const CHILD_FD: RawFd = 3;
/// Marks a spawned child.
pub(crate) const SPAWN_ENV: &str = "MULTIPROC_SPAWN";

/// Runs `/proc/self/exe` with our arguments, `fd` at [`CHILD_FD`] and
/// `var=3:<our pid>`. Returns the child's pid.
pub(crate) fn exec_self(var: &str, fd: OwnedFd) -> Result<u32> {
    let mut argv = std::env::args_os();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = argv.next() {
        cmd.arg0(arg0);
    }
    cmd.args(argv)
        .env(var, format!("{CHILD_FD}:{}", sys::getpid()))
        .env_remove(if var == SPAWN_ENV {
            crate::forkserver::SERVER_ENV
        } else {
            SPAWN_ENV
        });
    let raw = fd.as_raw_fd();
    // SAFETY: the closure calls only `dup2` or `fcntl`, both
    // async-signal-safe, on a descriptor that stays open in the parent until
    // `spawn` returns.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if raw == CHILD_FD {
                libc::fcntl(raw, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, CHILD_FD)
            };
            if rc == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Dropping a `std::process::Child` neither waits for nor kills it; the
    // caller tracks the process by pidfd.
    Ok(child.id())
}

/// Starts a child with the spawn method.
pub(crate) fn start(launch: Launch) -> Result<Arc<ChildShared>> {
    let (ours, theirs) = channel(&mut lock(&PRIVATE_FDS))?;
    let pid = exec_self(SPAWN_ENV, theirs)?;
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => PrivateFd::new(fd),
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(e.into());
        }
    };
    let identity = launch.identity.clone();
    send_launch(&ours, launch)?;
    Ok(ChildShared::register(
        &mut lock(&GLOBAL).children,
        pid,
        &identity,
        pidfd,
        ours,
        Reaper::Parent,
    ))
}

/// Sends a child its launch. A child that died before reading it is not an
/// error here: its exit code tells.
pub(crate) fn send_launch(chan: &PrivateFd, launch: Launch) -> Result<()> {
    let msg = LaunchMsg {
        entry: EntryAddress::of(launch.entry),
        identity: launch.identity,
        from_main_thread: sys::is_main_thread(),
        args: launch.args,
    };
    match crate::wire::send(chan.as_fd(), &msg, &launch.fds) {
        Err(crate::Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
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
        crate::context::mark_initialized();
        bootstrap::run_from_channel(chan, None);
    }
}
