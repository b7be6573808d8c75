//! Linux backend: fork, pidfd, waitid, poll, pipes, prctl.
//!
//! # Safety
//!
//! The unsafe code here wraps `fork(2)`, `_exit(2)`, `close(2)` on raw
//! descriptors and `atexit(3)`. Each block states why its call is sound; the
//! callers' obligations are spelled out in the `# Safety` section of each
//! `unsafe fn`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::ExitStatus;

/// What `fork` returned in this process.
pub(crate) enum Forked {
    /// We are the parent; this is the child's pid.
    Parent(u32),
    /// We are the new child.
    Child,
}

/// `fork(2)`.
///
/// # Safety
///
/// In the child, only the forking thread exists. The caller must make sure
/// the child touches no lock that another thread of the parent may have held
/// at the moment of the fork, except those it held itself across the call.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the
    // caller upholds the post-fork restrictions stated above.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        // A positive pid_t always fits in u32.
        pid => Ok(Forked::Parent(pid.unsigned_abs())),
    }
}

/// `_exit(2)`: ends the process at once, without running `atexit` hooks or
/// destructors. Flush what must be flushed before calling it.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// `close(2)` on a raw descriptor that no `OwnedFd` of this process will
/// close again.
///
/// # Safety
///
/// `fd` must not be owned by any live `OwnedFd` (or other owner) that will
/// use or close it later. Used in a freshly forked child for descriptors
/// whose owners live only in the parent's copied memory and never run.
pub(crate) unsafe fn close_raw(fd: RawFd) {
    // SAFETY: the caller guarantees nobody else owns `fd` in this process.
    unsafe {
        libc::close(fd);
    }
}

/// A pipe whose two ends are close-on-exec.
#[cfg(test)]
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Puts `fd` in non-blocking mode (`ioctl(FIONBIO)`).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// Reads what is available from a non-blocking `fd` into `buf`.
/// Returns `true` at end of file. A socket whose peer died with data unread
/// (`ECONNRESET`) is at end of file too.
pub(crate) fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) | Err(rustix::io::Errno::CONNRESET) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::AGAIN) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `bytes` to `fd`, retrying on `EINTR`.
#[cfg(test)]
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn to_pid(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))
}

/// `pidfd_open(2)`: a close-on-exec descriptor that refers to process `pid`
/// for as long as it is open, immune to pid reuse.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(
        to_pid(pid)?,
        PidfdFlags::empty(),
    )?)
}

/// `pidfd_send_signal(2)`. Sending to a process that already exited but
/// was not reaped is not an error.
pub(crate) fn signal_pidfd(pidfd: BorrowedFd<'_>, signal: SignalKind) -> io::Result<()> {
    let sig = match signal {
        SignalKind::Term => Signal::TERM,
        SignalKind::Kill => Signal::KILL,
    };
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The signals multiproc sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignalKind {
    /// `SIGTERM`, Python's `Process.terminate`.
    Term,
    /// `SIGKILL`, Python's `Process.kill`.
    Kill,
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG)`: reaps the child if it has exited.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<ExitStatus>> {
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Ok(Some(ExitStatus::Code(code)));
                }
                if let Some(sig) = st.terminating_signal() {
                    return Ok(Some(ExitStatus::Signal(sig)));
                }
                // WNOHANG with nothing to report leaves si_pid at zero and
                // no status; treat it as still running.
                return Ok(None);
            }
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes.
/// Returns which ones are ready. `None` waits forever.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(|d| Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    match rustix::event::poll(&mut pfds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(pfds.iter().map(|p| !p.revents().is_empty()).collect())
}

/// Whether the peer of socket `sock` has closed (`POLLHUP` or `POLLERR`
/// now), reading nothing.
pub(crate) fn hung_up(sock: BorrowedFd<'_>) -> bool {
    let mut pfd = [PollFd::new(&sock, PollFlags::empty())];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut pfd, Some(&zero)), Ok(n) if n > 0)
        && pfd[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills this process when
/// the thread that created it exits.
pub(crate) fn set_parent_death_signal() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        Signal::KILL,
    ))?)
}

/// This process's id.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// The id of this process's parent (0 if it has none in our namespace).
pub(crate) fn getppid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get().unsigned_abs())
}

/// Whether the calling thread is the process's main thread.
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// Registers `hook` with `atexit(3)`, to run when the program exits normally.
pub(crate) fn register_at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `hook` is a plain function valid for the whole program.
    let rc = unsafe { libc::atexit(hook) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::other("atexit registration failed"))
    }
}

/// Writes `bytes` to the running target's channel `fd`, from the panic
/// hook, which only has its number.
pub(crate) fn write_raw(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: callers pass only the write end of the outcome pipe, which
    // `bootstrap::run_child` owns and keeps open for as long as it
    // publishes the number; the borrow ends with this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    send_with_fds(fd, bytes, &[])
}

/// Kills and reaps child `pid`, for a start that failed after the fork.
pub(crate) fn kill_and_reap(pid: u32) {
    if let Ok(p) = to_pid(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
}

/// Kills the process `pidfd` refers to and, if it is a child of this
/// process, reaps it (waiting up to 5 s for it to die).
pub(crate) fn kill_and_reap_pidfd(pidfd: BorrowedFd<'_>) {
    let _ = signal_pidfd(pidfd, SignalKind::Kill);
    if poll_readable(&[pidfd], Some(Duration::from_secs(5))).is_ok_and(|ready| ready[0]) {
        let _ = try_reap(pidfd);
    }
}

/// Sends `SIGKILL` to this process.
pub(crate) fn kill_self() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
    exit_now(137)
}

/// `fcntl(F_DUPFD_CLOEXEC)`: a close-on-exec duplicate of `fd`.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

/// A connected pair of close-on-exec Unix stream sockets.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Waits until `sock` can be written to.
fn wait_writable(sock: BorrowedFd<'_>) -> io::Result<()> {
    let mut pfd = [PollFd::new(&sock, PollFlags::OUT)];
    match rustix::event::poll(&mut pfd, None) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends all of `bytes` on a stream socket (blocking or not), with `fds`
/// attached to the first byte (`SCM_RIGHTS`). Never raises `SIGPIPE`.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    let mut sent = 0;
    if !fds.is_empty() {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many descriptors",
            ));
        }
        loop {
            let iov = [io::IoSlice::new(bytes)];
            match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
                Ok(n) => {
                    sent = n;
                    break;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => wait_writable(sock)?,
                Err(e) => return Err(e.into()),
            }
        }
    }
    while sent < bytes.len() {
        match rustix::net::send(sock, &bytes[sent..], rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => wait_writable(sock)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes from a stream socket, appending any
/// descriptors that came with them (close-on-exec) to `fds`. Returns the
/// number of bytes, 0 at end of file.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(crate::handoff::MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => break msg.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    Ok(n)
}

/// The number of threads of this process: procfs gives the directory
/// `/proc/self/task` one link per thread plus two, and one `stat` is far
/// cheaper than reading `/proc/self/stat`.
pub(crate) fn thread_count() -> usize {
    rustix::fs::stat("/proc/self/task")
        .ok()
        .and_then(|st| usize::try_from(st.st_nlink).ok())
        .map_or(1, |links| links.saturating_sub(2).max(1))
}

/// Whether this process has exactly one thread, as far as procfs can tell
/// (`false` when it cannot).
pub(crate) fn single_threaded() -> bool {
    rustix::fs::stat("/proc/self/task").is_ok_and(|st| st.st_nlink == 3)
}

/// The pid of the process that created the socket at the other end of
/// `fd` (`SO_PEERCRED`; for a socket pair, the process that made the pair).
pub(crate) fn peer_pid(fd: BorrowedFd<'_>) -> Option<u32> {
    let cred = rustix::net::sockopt::socket_peercred(fd).ok()?;
    u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
}

/// Whether a program this process executes would start in secure mode
/// because its real and effective ids differ (as after `seteuid`); a
/// setuid binary makes any run of it secure, which [`is_secure`] tells.
pub(crate) fn ids_differ() -> bool {
    use rustix::process::{getegid, geteuid, getgid, getuid};
    getuid() != geteuid() || getgid() != getegid()
}

/// Whether `fd` is an open socket.
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
    })
}

/// Takes ownership of descriptor `fd`, inherited across `exec` at a number
/// agreed with the parent.
///
/// # Safety
///
/// `fd` must be open and owned by nothing else in this process.
pub(crate) unsafe fn own_raw(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether `fd` is an open descriptor (without taking ownership).
pub(crate) fn is_open_raw(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; on a closed
    // number it fails with EBADF and touches nothing.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Ignores `SIGINT` (`true`) or restores its default action (`false`).
pub(crate) fn ignore_sigint(ignore: bool) {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code of ours in a
    // signal handler; `signal` has no other precondition.
    unsafe {
        libc::signal(libc::SIGINT, action);
    }
}

/// Ignores `SIGPIPE`, as the Rust runtime does before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN runs no code of ours in a signal handler;
    // `signal` has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Whether the kernel started this process in secure mode (`AT_SECURE`:
/// setuid, setgid, or file capabilities), as glibc's `__libc_enable_secure`.
pub(crate) fn is_secure() -> bool {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the
    // process; it has no precondition and returns 0 for an absent entry.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Marks every descriptor above `fd` close-on-exec, so that a program
/// about to be executed takes none of them along; `highest` bounds the
/// search where the kernel cannot do it in one call (before Linux 5.11).
/// Makes only system calls, so it may run between `fork` and `exec`.
pub(crate) fn cloexec_above(fd: RawFd, highest: RawFd) {
    let first = libc::c_uint::try_from(fd + 1).unwrap_or(libc::c_uint::MAX);
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors of the range; it touches no memory of this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    for n in fd + 1..=highest {
        // SAFETY: F_SETFD sets the descriptor's flags (close-on-exec is the
        // only one); on a closed number it fails with EBADF and does nothing.
        unsafe {
            libc::fcntl(n, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// The highest descriptor number open in this process (0 if it cannot be
/// told).
pub(crate) fn highest_open_fd() -> RawFd {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| {
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
            .max()
            .unwrap_or(0)
    })
}

/// Whether process `pid` exists and has not exited (a pidfd polls
/// readable once it has).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match pidfd_open(pid) {
        Ok(fd) => poll_readable(&[fd.as_fd()], Some(Duration::ZERO)).is_ok_and(|r| !r[0]),
        Err(_) => false,
    }
}
