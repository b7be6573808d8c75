//! Operating-system code of the process crate.
//!
//! Every backend provides the same small set of functions, used by the rest
//! of the crate and nowhere else:
//!
//! - `fork`, `exit_now`, `kill_self`, `kill_and_reap`, `kill_and_reap_pidfd`
//!   (the raw `fork(2)`, `_exit(2)` and `kill(2)`),
//! - `socketpair`, `send_with_fds`, `recv_with_fds` (`SCM_RIGHTS`),
//!   `dup_cloexec`, `set_nonblocking`, `read_nonblocking`, `write_raw`,
//! - `pidfd_open`, `signal_pidfd`, `try_reap` (a `waitid(P_PIDFD)` that
//!   returns the [`ExitStatus`] of an exited child), `pid_alive`,
//! - `poll_readable` over a few fds with a timeout, `hung_up`,
//! - `set_parent_death_signal`, `ignore_sigint`, `ignore_sigpipe`,
//!   `is_secure`, `ids_differ`, `getpid`, `getppid`,
//!   `is_main_thread`, `thread_count`, `single_threaded`,
//! - `close_raw`, `own_raw`, `is_open_raw`, `is_socket`, `peer_pid` for
//!   descriptors known by number (a forked child's inherited ones, spawn's
//!   descriptor 3); `cloexec_above`, `highest_open_fd` for what an executed
//!   child must not inherit,
//! - `register_at_exit` for the hook that joins children at exit.
//!
//! Only Linux is supported today: process handles are pidfds (Linux 5.4+).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only (it is built on pidfd, memfd and futex)");

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Python's `Process.exitcode`: the code, or minus the signal number.
    pub(crate) fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }
}
