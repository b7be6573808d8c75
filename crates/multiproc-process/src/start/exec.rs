//! Executing the program's binary again, with a channel at descriptor 3:
//! how a spawned child, and a fork server needed by a program that has
//! threads, come to exist.
//!
//! The parent runs `/proc/self/exe` (the very file it runs, even if the path
//! was replaced since) with its own arguments, the child's end of the
//! channel at descriptor 3, and a variable that says what the new process
//! is (`boot` reads it). The new process gets descriptors 0 to 3 and no
//! other.
//!
//! # Safety
//!
//! `Command::pre_exec` runs between fork and exec, where only
//! async-signal-safe calls are allowed; ours makes only system calls.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::boot::{CHILD_FD, SERVER_ENV, SPAWN_ENV};
use crate::error::Result;
use crate::sys;

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
            SERVER_ENV
        } else {
            SPAWN_ENV
        });
    let raw = fd.as_raw_fd();
    let highest = sys::highest_open_fd();
    // SAFETY: the closure makes only system calls (`dup2` or `fcntl`, and
    // `close_range` or `fcntl` in `cloexec_above`), all async-signal-safe,
    // on descriptors of this process; the channel stays open in the parent
    // until `spawn` returns.
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
            // Nothing else the program holds goes along (a pipe's write end
            // kept open by a child would hide the reader's end of file), as
            // CPython closes all but the passed descriptors.
            sys::cloexec_above(CHILD_FD, highest);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Dropping a `std::process::Child` neither waits for nor kills it; the
    // caller tracks the process by pidfd.
    Ok(child.id())
}
