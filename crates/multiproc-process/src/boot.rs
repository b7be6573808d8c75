//! How a process learns what it is (the program itself, a spawned child, or
//! a fork server started by executing the binary), before `main` runs.
//!
//! A parent that executes the binary again (`start::exec`) puts the new
//! process's channel at descriptor [`CHILD_FD`] and says what the process is
//! in a variable: [`SPAWN_ENV`] for a spawned child, [`SERVER_ENV`] for a
//! fork server, each `3:<parent pid>`. A function in `.init_array` reads it
//! while the process is still single-threaded, before `main` and before any
//! other code of the program could start a thread, and removes it, so that
//! no process the child starts inherits it. From there a child process never
//! returns into the program: a spawned child runs its launch (`bootstrap`),
//! a server serves (`server`), and one whose launch cannot be received
//! (its parent is gone, the descriptor is not a socket, the variable is
//! malformed) says so on stderr in one line and exits with
//! [`LAUNCH_FAILED`]. Code of `main` never runs in a child.
//!
//! In a process the kernel marks as secure (setuid, setgid, or with file
//! capabilities: `AT_SECURE`), the variables are removed and ignored, as the
//! C library ignores `LD_PRELOAD` there: the caller of such a program
//! controls its environment and descriptors, and must not choose what it
//! runs. Such a program cannot execute itself as a child either, so there
//! spawn is refused and the fork server is forked.
//!
//! The hook runs among the program's other constructors, in link order; a
//! constructor that calls [`init`](crate::init) before it (`test_setup!`)
//! does the same work, and whichever comes first does it. If the hook did
//! not run at all (a link that dropped it), `init` first in `main` does it,
//! and starting a process without `init` says so
//! ([`Error::NotInitialized`](crate::Error::NotInitialized)).
//!
//! # Safety
//!
//! Registering the hook in `.init_array`, taking ownership of descriptor 3,
//! and removing the variables from the environment are argued at their
//! blocks.
#![allow(unsafe_code)]

use std::os::fd::{OwnedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bootstrap::{self, LAUNCH_FAILED, launch_failed};
use crate::server;
use crate::sys;

/// The descriptor number of the channel in an executed child.
pub(crate) const CHILD_FD: RawFd = 3;
/// Marks a spawned child.
pub(crate) const SPAWN_ENV: &str = "MULTIPROC_SPAWN";
/// Marks a fork server started by executing the binary.
pub(crate) const SERVER_ENV: &str = "MULTIPROC_FORKSERVER";

/// What this process is.
enum Role {
    /// The program itself.
    Program,
    /// A spawned child, with its channel.
    Child(OwnedFd),
    /// A fork server started by executing the binary, with its control
    /// socket.
    Server(OwnedFd),
}

/// Set once this process knows it is the program (the hook or
/// [`init`](crate::init) ran).
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Runs before `main` (the C runtime calls the functions of `.init_array`
/// in order, on the main thread, before any Rust code of the program).
#[used]
// SAFETY: the section holds pointers to `extern "C" fn()` that the C runtime
// calls once at start, which is what this static is; the function it names
// touches only this crate's statics, the environment (single-threaded, see
// `find_role`) and descriptor 3.
#[unsafe(link_section = ".init_array")]
static HOOK: extern "C" fn() = hook;

extern "C" fn hook() {
    // An unwinding panic must not cross the C runtime's frame.
    if std::panic::catch_unwind(boot).is_err() {
        sys::exit_now(LAUNCH_FAILED);
    }
}

/// Finds this process's role and acts on it, once: returns only in the
/// program itself. The role is found under a `Once` and acted on outside
/// it, so that a child's target may call [`init`](crate::init) again.
pub(crate) fn boot() {
    static ONCE: Once = Once::new();
    let mut role = None;
    ONCE.call_once(|| role = Some(find_role()));
    match role {
        None => {}
        Some(Role::Program) => mark_initialized(),
        Some(Role::Child(chan)) => {
            mark_initialized();
            bootstrap::run_from_channel(chan, None)
        }
        Some(Role::Server(ctl)) => {
            mark_initialized();
            server::serve(ctl)
        }
    }
}

pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

/// Whether this process found its role (the hook or [`init`](crate::init)
/// ran).
pub(crate) fn initialized() -> bool {
    // Naming the hook keeps its object, and so its `.init_array` entry, in
    // any link that uses the start path.
    std::hint::black_box(&HOOK);
    INITIALIZED.load(Ordering::SeqCst)
}

/// Whether this process runs with privileges its caller does not have
/// (setuid, setgid, file capabilities), where the launch variables are
/// ignored.
pub(crate) fn secure() -> bool {
    sys::is_secure()
}

fn find_role() -> Role {
    let spawn = std::env::var_os(SPAWN_ENV);
    let server = std::env::var_os(SERVER_ENV);
    if spawn.is_none() && server.is_none() {
        return Role::Program;
    }
    if sys::thread_count() == 1 {
        // SAFETY: the process has a single thread (the hook runs before
        // `main`; `init` checks), so nothing reads the environment while it
        // changes.
        unsafe {
            std::env::remove_var(SPAWN_ENV);
            std::env::remove_var(SERVER_ENV);
        }
    }
    if secure() {
        return Role::Program;
    }
    let (what, value) = match (spawn, server) {
        (Some(v), None) => ("spawned child", v),
        (None, Some(v)) => ("fork server", v),
        _ => launch_failed(
            "process",
            "both MULTIPROC_SPAWN and MULTIPROC_FORKSERVER are set",
        ),
    };
    let chan = match channel(&value) {
        Ok(fd) => fd,
        Err(why) => launch_failed(what, why),
    };
    if what == "fork server" {
        Role::Server(chan)
    } else {
        Role::Child(chan)
    }
}

/// The channel a launch variable names: its descriptor, if it is an open
/// socket.
fn channel(value: &std::ffi::OsStr) -> Result<OwnedFd, &'static str> {
    let parsed = value.to_str().and_then(|v| {
        let (fd, parent) = v.split_once(':')?;
        Some((fd.parse::<RawFd>().ok()?, parent.parse::<u32>().ok()?))
    });
    let Some((fd, _parent)) = parsed else {
        return Err("its launch variable is malformed");
    };
    if fd != CHILD_FD || !sys::is_open_raw(fd) {
        return Err("its channel (descriptor 3) is not open");
    }
    if !sys::is_socket_raw(fd) {
        return Err("its channel (descriptor 3) is not a socket");
    }
    // SAFETY: descriptor 3 is open and a socket, put there for this process
    // by its parent (the variable says so), and nothing in this fresh program
    // owns it: the variable is read once per process (`boot` runs once), and
    // the program's own code has not run.
    Ok(unsafe { sys::own_raw(fd) })
}
