//! The child's side of a start: receive the launch (spawn and fork server),
//! run the target, report its outcome on the channel, join the child's own
//! children, and exit with Python's codes (0 when the target returned, 1
//! when it panicked).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use serde::{Deserialize, Serialize};

use crate::address::{EntryAddress, EntryFn};
use crate::fds::lock;
use crate::identity::Identity;
use crate::method::StartMethod;
use crate::outcome::{Frame, Outcome};
use crate::state::GLOBAL;
use crate::sys;

/// The exit code of a child process that could not receive its launch:
/// its parent died before sending it, or the process was started with a
/// launch variable but no usable channel. Such a process runs nothing of
/// the program.
pub const LAUNCH_FAILED: i32 = 125;

/// Our end of the channel while this process runs a target, -1 otherwise.
/// Read by the panic hook.
static OUTCOME_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by the panic hook once it has reported a panic on the outcome pipe.
static PANIC_REPORTED: AtomicBool = AtomicBool::new(false);

/// Everything a child needs to run its target.
pub(crate) struct ChildStart {
    pub(crate) entry: EntryFn,
    pub(crate) args: Vec<u8>,
    /// Descriptors the arguments' handles claim (see `handoff`).
    pub(crate) fds: Vec<OwnedFd>,
    /// The child's end of its channel to the parent.
    pub(crate) outcome: OwnedFd,
    /// Set for a daemon: the pid of the parent it must not outlive, and
    /// whether it was started from that parent's main thread.
    pub(crate) daemon_of: Option<(u32, bool)>,
}

/// What a spawned or fork-server child receives on its channel.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LaunchMsg {
    /// Where the entry is in the binary (see `address::EntryAddress`).
    pub(crate) entry: EntryAddress,
    pub(crate) identity: Identity,
    /// The method that started the child: its own default from now on.
    pub(crate) method: StartMethod,
    /// Whether the starting thread was the parent's main thread.
    pub(crate) from_main_thread: bool,
    pub(crate) args: Vec<u8>,
}

/// Receives the launch on `chan` and runs it; for a spawned child (its
/// parent is the starter) and a fork-server child (its parent is the
/// server, `real_parent`).
pub(crate) fn run_from_channel(chan: OwnedFd, real_parent: Option<u32>) -> ! {
    // As the Rust runtime does before `main`, which a child never reaches:
    // a write to a closed pipe is an error, not a signal that kills.
    sys::ignore_sigpipe();
    let what = match real_parent {
        None => "spawned child",
        Some(_) => "fork-server child",
    };
    let msg = match crate::wire::recv::<LaunchMsg>(chan.as_fd(), usize::MAX) {
        Ok(Some(m)) => m,
        // The parent gave up on this start (its process died, or the
        // launch could not be sent); there is nothing to run.
        Ok(None) => launch_failed(what, "its parent is gone"),
        Err(e) => launch_failed(what, &format!("its launch could not be read ({e})")),
    };
    let (msg, fds) = msg;
    let Some(entry) = msg.entry.resolve() else {
        let _ = write_frame(
            chan.as_fd(),
            Outcome::Failed("the child runs a different binary than its parent".into()),
        );
        sys::exit_now(1)
    };
    crate::method::set_start_method_force(msg.method);
    let daemon = msg.identity.daemon;
    let starter = msg.identity.parent.as_ref().map_or(0, |p| p.0);
    lock(&GLOBAL).identity = msg.identity;
    let daemon_of = match real_parent {
        // The server is single-threaded: its death signal is the one.
        Some(server) => daemon.then_some((server, true)),
        None => daemon.then_some((starter, msg.from_main_thread)),
    };
    run_child(ChildStart {
        entry,
        args: msg.args,
        fds,
        outcome: chan,
        daemon_of,
    })
}

/// Says in one line why a child process cannot run, and exits with
/// [`LAUNCH_FAILED`] without running anything of the program.
pub(crate) fn launch_failed(what: &str, why: &str) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "multiproc: this {what} (pid {}) cannot run: {why}; exiting with code {LAUNCH_FAILED}",
        sys::getpid()
    );
    sys::exit_now(LAUNCH_FAILED)
}

fn write_frame(chan: std::os::fd::BorrowedFd<'_>, outcome: Outcome) -> std::io::Result<()> {
    sys::send_with_fds(chan, &Frame::from(outcome).to_bytes(), &[])
}

/// Runs the target in a freshly started child and exits.
pub(crate) fn run_child(start: ChildStart) -> ! {
    crate::exit::install_hook();
    install_panic_hook();
    if let Some((parent, from_main_thread)) = start.daemon_of {
        die_with_parent(parent, from_main_thread);
    }
    OUTCOME_FD.store(start.outcome.as_raw_fd(), Ordering::SeqCst);
    let entry = start.entry;
    let (args, fds) = (start.args, start.fds);
    let result = panic::catch_unwind(AssertUnwindSafe(move || entry(&args, fds)));
    let (outcome, code) = match result {
        Ok(o @ Outcome::Returned(_)) => (Some(o), 0),
        Ok(o) => {
            // As Python prints the traceback of a child whose target raised,
            // or that cannot unpickle its arguments: the parent may never ask.
            let (said, message) = match &o {
                Outcome::Errored(m) => ("failed", m.as_str()),
                Outcome::Failed(m) | Outcome::Panicked(m) => ("could not run", m.as_str()),
                Outcome::Returned(_) => ("returned", ""),
            };
            eprintln!(
                "{} (pid {}) {said}: {message}",
                lock(&GLOBAL).identity.name(),
                std::process::id()
            );
            (Some(o), 1)
        }
        // The hook already reported it, with the location.
        Err(_) if PANIC_REPORTED.load(Ordering::SeqCst) => (None, 1),
        Err(payload) => (Some(Outcome::Panicked(panic_message(&*payload))), 1),
    };
    if let Some(o) = outcome {
        // A parent that is gone or dropped the process cannot read it;
        // there is nobody left to tell.
        let _ = write_frame(start.outcome.as_fd(), o);
    }
    OUTCOME_FD.store(-1, Ordering::SeqCst);
    drop(start.outcome);
    crate::exit::join_children_at_exit();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::exit_now(code)
}

/// Makes this daemon process die when `parent` does, even by `SIGKILL`.
fn die_with_parent(parent: u32, from_main_thread: bool) {
    if from_main_thread {
        // The kernel signals us when the thread that forked us exits; from
        // the main thread, that is when the parent process exits.
        if sys::set_parent_death_signal().is_err() || sys::getppid() != parent {
            sys::exit_now(1);
        }
        return;
    }
    // Started from another thread, whose end must not end us: watch the
    // parent process itself through a pidfd.
    let Ok(pidfd) = sys::pidfd_open(parent) else {
        sys::exit_now(1)
    };
    if sys::getppid() != parent {
        sys::exit_now(1);
    }
    let spawned = std::thread::Builder::new()
        .name("multiproc-parent-watch".into())
        .spawn(move || {
            loop {
                if let Ok(ready) = sys::poll_readable(&[pidfd.as_fd()], None)
                    && ready[0]
                {
                    break;
                }
            }
            sys::kill_self();
        });
    if spawned.is_err() {
        sys::exit_now(1);
    }
}

/// Installs, once per program, the panic hook that reports a child's panic
/// to its parent.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let fd = OUTCOME_FD.load(Ordering::SeqCst);
            if fd < 0 {
                return previous(info);
            }
            let message = panic_message(info.payload());
            let name = match GLOBAL.try_lock() {
                Ok(g) => g.identity.name().to_owned(),
                Err(_) => "child".to_owned(),
            };
            let location = info
                .location()
                .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr(),
                "{name} (pid {}) panicked{location}:\n{message}",
                sys::getpid()
            );
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                let bt = std::backtrace::Backtrace::force_capture();
                let _ = writeln!(std::io::stderr(), "stack backtrace:\n{bt}");
            }
            report_panic(fd, message);
        }));
    });
}

/// Writes a panic frame on the channel. Frames are kept small, so that each
/// is one write and panics of several threads never interleave.
fn report_panic(fd: RawFd, mut message: String) {
    const MAX: usize = 3 * 1024;
    if message.len() > MAX {
        let mut cut = MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    if sys::write_raw(fd, &Frame::from(Outcome::Panicked(message)).to_bytes()).is_ok() {
        PANIC_REPORTED.store(true, Ordering::SeqCst);
    }
}

/// The message of a caught panic (its `&str` or `String` payload), as
/// the crates above report a panic that happened on a caller's behalf.
///
/// Python: `str(exception)`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
