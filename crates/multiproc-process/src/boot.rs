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
//! (its parent is gone, the descriptor is not a socket its parent made,
//! the variable is malformed) says so on stderr in one line and exits with
//! [`LAUNCH_FAILED`]. Code of `main` never runs in a child. A process that
//! merely inherited the variable (started by a child that could not remove
//! it) is told apart: neither is its parent the pid the variable names, nor
//! is its descriptor 3 a socket that pid made; it runs as the program.
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

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
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
// calls once at start, on the main thread, which is what this static is.
// What the function runs needs nothing that `main` sets up: in the program
// it only reads the environment; in a child it runs the child's whole life
// (its target, under `catch_unwind`) and exits without returning, as a
// spawned child of CPython runs in its interpreter's start-up.
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
fn secure() -> bool {
    sys::is_secure()
}

/// Whether a run of this program that it starts itself would be secure, and
/// so ignore its launch: this one is (a setuid binary), or its real and
/// effective ids differ (after `seteuid`, say), which makes the kernel
/// start any program secure. Spawn is refused then, and the fork server
/// forked.
pub(crate) fn cannot_exec_self() -> bool {
    sys::is_secure() || sys::ids_differ()
}

fn find_role() -> Role {
    let spawn = std::env::var_os(SPAWN_ENV);
    let server = std::env::var_os(SERVER_ENV);
    if spawn.is_none() && server.is_none() {
        return Role::Program;
    }
    if sys::single_threaded() {
        // SAFETY: the process has a single thread (procfs says so), so
        // nothing reads the environment while it changes.
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
    let Some((fd, parent)) = parse(&value) else {
        launch_failed(what, "its launch variable is malformed")
    };
    match claim(fd, parent) {
        Ok(chan) if what == "fork server" => Role::Server(chan),
        Ok(chan) => Role::Child(chan),
        // Started by the process the variable names: a child whose launch
        // cannot come.
        Err(why) if sys::getppid() == parent => launch_failed(what, why),
        // Neither started by it nor holding its channel: a process that a
        // child started inherited the variable (when the child could not
        // remove it). It is not meant for this one.
        Err(_) => Role::Program,
    }
}

/// The descriptor and the parent's pid of a launch variable, `3:<pid>`.
fn parse(value: &std::ffi::OsStr) -> Option<(RawFd, u32)> {
    let (fd, parent) = value.to_str()?.split_once(':')?;
    Some((fd.parse().ok()?, parent.parse().ok()?))
}

/// Takes descriptor `fd` as this process's channel, if it is one that
/// `parent` made for it: a socket whose other end `parent` created.
fn claim(fd: RawFd, parent: u32) -> Result<OwnedFd, &'static str> {
    if fd != CHILD_FD {
        return Err("its channel is not descriptor 3");
    }
    if !sys::is_open_raw(fd) {
        return Err("its channel (descriptor 3) is not open");
    }
    // SAFETY: descriptor 3 is open (checked above); it is only borrowed for
    // the two queries below, which neither close nor change it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if !sys::is_socket(borrowed) {
        return Err("its channel (descriptor 3) is not a socket");
    }
    if sys::peer_pid(borrowed) != Some(parent) {
        return Err("its channel (descriptor 3) was not made by its parent");
    }
    // SAFETY: descriptor 3 is a socket whose other end the parent named by
    // the variable created: the channel it put there for this process when
    // it executed it. Nothing else in this process owns it: the variable is
    // read once per process (`boot` runs once), before `main` (or, where
    // the hook did not run, by `init`, in a program that was handed the
    // descriptor at start and cannot know its number).
    Ok(unsafe { sys::own_raw(fd) })
}
