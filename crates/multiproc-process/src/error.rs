//! The one error type of the workspace.
//!
//! Every crate of multiproc returns [`Error`]; the facade re-exports it as
//! `mp::Error` and `mp::Result`. Variants are added as the upper crates need
//! them, which is why the enum is `#[non_exhaustive]`.

use std::fmt;
use std::io;

/// The result type of every fallible multiproc call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in multiproc.
///
/// Messages are lowercase without a trailing period, so they compose into
/// larger messages (`"starting worker: process already started"`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),

    /// A blocking call gave up after its timeout or deadline.
    #[error("timed out")]
    Timeout,

    /// `start` was called on a process that was already started.
    ///
    /// Python raises `AssertionError("cannot start a process twice")`.
    #[error("process already started")]
    AlreadyStarted,

    /// The call needs a started process (`join`, `terminate`, ...).
    #[error("process not started")]
    NotStarted,

    /// The call needs a finished process (`close`, `take_result`), but it
    /// still runs. Python raises `ValueError` for `close` here.
    #[error("process {name} is still running")]
    StillRunning {
        /// The process name.
        name: String,
    },

    /// The process was closed with `close`; its handle can no longer be used.
    #[error("process object is closed")]
    ProcessClosed,

    /// The result of a process was already taken with `take_result`.
    #[error("the result of process {name} was already taken")]
    ResultTaken {
        /// The process name.
        name: String,
    },

    /// The target of a child process panicked.
    #[error("process {name} panicked: {message}")]
    ChildPanicked {
        /// The process name.
        name: String,
        /// The panic message, as the child printed it.
        message: String,
    },

    /// The target of a child process returned an error (`Err`), which the
    /// child sent as its message: the error's own and its sources', as
    /// `top: cause`. Python: the exception that ended the child's `run`.
    #[error("process {name} failed: {message}")]
    ChildFailed {
        /// The process name.
        name: String,
        /// The error's message, with its chain of sources.
        message: String,
    },

    /// The child process exited with a non-zero code before its target
    /// returned, for example through `std::process::exit(n)`.
    #[error("process {name} exited with code {code}")]
    ChildExited {
        /// The process name.
        name: String,
        /// The exit code.
        code: i32,
    },

    /// The child process was killed by a signal.
    #[error("process {name} was killed by {}", SignalName(*signal))]
    ChildKilled {
        /// The process name.
        name: String,
        /// The signal number (9 for `SIGKILL`).
        signal: i32,
    },

    /// A daemon process tried to start a child. Python forbids this too
    /// ("daemonic processes are not allowed to have children").
    #[error("daemonic processes are not allowed to have children")]
    DaemonChildren,

    /// The fork server or spawn start method was used in a program whose
    /// start hook did not run before `main` (a link that dropped it), and
    /// [`init`](crate::init) was not called either.
    #[error(
        "multiproc's start hook did not run in this program and multiproc::init() was not \
         called: call it first in main, or use the fork start method"
    )]
    NotInitialized,

    /// [`set_start_method`](crate::set_start_method) was called after the
    /// default start method was set or used. Python raises
    /// `RuntimeError("context has already been set")`.
    #[error("the start method has already been set")]
    ContextAlreadySet,

    /// The fork start method was refused because the process has other
    /// threads (see [`set_threaded_fork`](crate::set_threaded_fork)).
    #[error("refusing to fork a process with {threads} threads")]
    ThreadedFork {
        /// How many threads the process had.
        threads: usize,
    },

    /// A lock's previous owner died while holding it; the lock was taken
    /// over. The lock's own `acquire` hands the guard over with this fact
    /// (`AcquireError::OwnerDied`); this variant is what `?` turns it into.
    #[error("the previous owner of the lock died while holding it")]
    OwnerDied,

    /// A non-blocking call could not proceed at once (`try_acquire` on a
    /// held lock).
    #[error("the operation would block")]
    WouldBlock,

    /// A lock or semaphore was released more times than acquired, or by a
    /// process or thread that does not hold it. Python raises `ValueError`
    /// or `RuntimeError` here.
    #[error("{0}")]
    NotHeld(&'static str),

    /// A barrier was broken (aborted, reset while waited on, or timed out)
    /// while this process waited on it. Python: `BrokenBarrierError`.
    #[error("the barrier is broken")]
    BrokenBarrier,

    /// The queue is full (a bounded queue at its `maxsize`, or no room for
    /// the message). Python: `queue.Full`.
    #[error("the queue is full")]
    Full,

    /// The queue is empty. Python: `queue.Empty`.
    #[error("the queue is empty")]
    Empty,

    /// The channel or queue is closed: this handle was closed, or the other
    /// end of a connection is gone. Python: `EOFError`, or `ValueError` on a
    /// closed queue.
    #[error("closed")]
    Closed,

    /// A message did not fit the buffer given to `recv_bytes_into`; here it
    /// is, whole, so nothing is lost. Python: `BufferTooShort`.
    #[error("buffer too short for a message of {} bytes", message.len())]
    BufferTooShort {
        /// The message.
        message: Vec<u8>,
    },

    /// A message was longer than the receiver's limit; it was skipped and
    /// the connection closed.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The message's length.
        size: u64,
        /// The receiver's limit.
        max: u64,
    },

    /// A named object already exists. Python: `FileExistsError`.
    #[error("{0:?} already exists")]
    AlreadyExists(String),

    /// A named object does not exist. Python: `FileNotFoundError`.
    #[error("{0:?} does not exist")]
    NotFound(String),

    /// A value could not be encoded for another process.
    #[error("cannot encode value: {0}")]
    Encode(String),

    /// Bytes from another process could not be decoded into the expected type.
    #[error("cannot decode value: {0}")]
    Decode(String),

    /// An argument was out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The operation is not available on this platform or in this
    /// configuration.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),

    /// The other side did not prove it knows the shared key, or refused
    /// ours. Python: `multiprocessing.AuthenticationError`.
    #[error("authentication failed: {0}")]
    Auth(String),

    /// A pool worker died (killed by a signal, or exited) while it ran the
    /// caller's task. The pool replaces it. Python's `Pool` hangs here.
    #[error("pool worker {pid} died while running a task{}", died_how(*signal, *exitcode))]
    WorkerDied {
        /// The worker's process id.
        pid: u32,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// The code it exited with, if it exited (`std::process::exit(3)`
        /// in a task, say).
        exitcode: Option<i32>,
    },

    /// Code run on the caller's behalf in another process (a managed
    /// object's method, a pool task) panicked there; that process goes on.
    /// Python: the exception re-raised by the proxy or `AsyncResult.get`.
    #[error("task panicked: {message}")]
    TaskPanicked {
        /// The panic's message.
        message: String,
    },

    /// A pool's task, run on the caller's behalf in a worker process,
    /// returned an error (`Err`); its message, with its chain of sources.
    /// Python: the exception re-raised by `AsyncResult.get`. (A manager's
    /// `Served` type chooses its own reply type, which may carry errors as
    /// data.)
    #[error("task failed: {message}")]
    TaskFailed {
        /// The error's message.
        message: String,
    },

    /// An executor's task ran past its time limit: its worker was killed
    /// (and replaced). Python has no twin; Pebble's `TimeoutError` is the
    /// nearest.
    #[error("task timed out after {after:?}; its worker was killed")]
    TaskTimedOut {
        /// The limit it ran past.
        after: std::time::Duration,
    },

    /// The task was cancelled before it finished (a running one by
    /// killing its worker). Python: `concurrent.futures.CancelledError`.
    #[error("the task was cancelled")]
    Cancelled,

    /// An executor in strict mode lost a worker: every pending task fails
    /// with this, and it takes no more. Python:
    /// `concurrent.futures.process.BrokenProcessPool`.
    #[error("the executor is broken: a worker died ({why})")]
    BrokenPool {
        /// How the worker died.
        why: String,
    },

    /// A Python peer sent an exception instead of a value (for example
    /// `queue.Empty` or `KeyError('x')`): its class, as `module.Name`
    /// (`_queue.Empty`, `builtins.KeyError`), and its arguments as text.
    #[error("Python raised {class}: {message}")]
    Python {
        /// The exception's class, as `module.Name`.
        class: String,
        /// The exception's arguments, as Python's `str(exc)` shows them.
        message: String,
    },

    /// An MPI pool cannot start or go on: not run by `mpirun`, an MPI
    /// without the threading it needs, ranks that run different builds of
    /// the program. Python (mpi4py): `MPI.Exception`.
    #[error("MPI: {0}")]
    Mpi(String),
}

/// " (killed by SIGKILL)" or " (exited with code 3)", for `WorkerDied`.
fn died_how(signal: Option<i32>, exitcode: Option<i32>) -> String {
    match (signal, exitcode) {
        (Some(s), _) => format!(" (killed by {})", SignalName(s)),
        (None, Some(c)) => format!(" (exited with code {c})"),
        (None, None) => String::new(),
    }
}

impl Error {
    /// The signal that killed a child, for the variants that carry one.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Error::ChildKilled { signal, .. } => Some(*signal),
            Error::WorkerDied { signal, .. } => *signal,
            _ => None,
        }
    }
}

/// Formats a signal number as its conventional name (`SIGKILL`), or as
/// `signal N` for the ones without a well-known name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName(pub i32);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "SIGHUP",
            2 => "SIGINT",
            3 => "SIGQUIT",
            4 => "SIGILL",
            5 => "SIGTRAP",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            10 => "SIGUSR1",
            11 => "SIGSEGV",
            12 => "SIGUSR2",
            13 => "SIGPIPE",
            14 => "SIGALRM",
            15 => "SIGTERM",
            n => return write!(f, "signal {n}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_signal() {
        let e = Error::ChildKilled {
            name: "Process-1".into(),
            signal: 9,
        };
        assert_eq!(e.to_string(), "process Process-1 was killed by SIGKILL");
        assert_eq!(e.signal(), Some(9));
        assert_eq!(SignalName(64).to_string(), "signal 64");
        assert_eq!(Error::Timeout.to_string(), "timed out");
    }
}
