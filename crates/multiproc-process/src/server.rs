//! The fork server's side: its loop, and the children it forks.
//!
//! A fork server is a single-threaded process of the program that forks
//! each child on request. The program talks to it over a socket pair, one
//! request at a time:
//!
//! 1. The parent sends `Fork` with the child's end of a new channel.
//! 2. The server forks. The child closes the server's descriptors, receives
//!    its launch on the channel, and runs it like a spawned child
//!    (`bootstrap`).
//! 3. The server replies `Forked { pid }` with a pidfd of the child, keeps a
//!    duplicate of the channel, and when the child ends, reaps it and writes
//!    its exit status on the channel as the last frame.
//!
//! The server exits when the program's end of the socket closes, which the
//! kernel does when the program exits or dies, after unlinking the named
//! shared memory it still tracks (`tracker`). Its daemon children die with
//! it, so with the program. The server ignores `SIGINT`, so a Ctrl-C reaches
//! the program and the children, not the server in between. The program's
//! side (starting the server, asking it for a child) is in
//! `start::forkserver`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fds::PrivateFd;
use crate::identity::Identity;
use crate::outcome::Frame;
use crate::state::ForkGuard;
use crate::sys;
use crate::tracker::Tracker;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Fork a child and hand it the attached channel.
    Fork,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The child's pid; its pidfd is attached.
    Forked {
        /// The child's pid.
        pid: u32,
    },
    /// The server could not fork.
    Failed {
        /// What went wrong (without the "i/o error" prefix of a relayed
        /// system error).
        error: String,
        /// The system's error number, when a system call failed.
        errno: Option<i32>,
    },
}

impl Reply {
    /// The reply for a failure of the server's.
    fn failed(e: &std::io::Error) -> Reply {
        Reply::Failed {
            error: e.to_string(),
            errno: e.raw_os_error(),
        }
    }
}

/// A child of the server: its pidfd and the server's end of its channel.
struct Served {
    pidfd: PrivateFd,
    chan: PrivateFd,
}

/// The server loop. Never returns.
pub(crate) fn serve(ctl: OwnedFd) -> ! {
    sys::ignore_sigint(true);
    let ctl = PrivateFd::new(ctl);
    let server_pid = sys::getpid();
    let mut children: Vec<Served> = Vec::new();
    let mut tracker = Tracker::bind();
    loop {
        let ready = {
            let mut fds = vec![ctl.as_fd()];
            fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
            if let Some(t) = &tracker {
                fds.extend(t.fds());
            }
            match sys::poll_readable(&fds, Some(Duration::from_secs(60))) {
                Ok(r) => r,
                Err(_) => leave(&mut tracker, 1),
            }
        };
        if let Some(t) = &mut tracker {
            t.serve(&ready[1 + children.len()..]);
        }
        // Report and forget the children that ended.
        let mut i = 0;
        children.retain(|c| {
            i += 1;
            if !ready[i] {
                return true;
            }
            match sys::try_reap(c.pidfd.as_fd()) {
                Ok(Some(status)) => {
                    let _ =
                        sys::send_with_fds(c.chan.as_fd(), &Frame::Exit(status).to_bytes(), &[]);
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            }
        });
        if !ready[0] {
            continue;
        }
        match crate::wire::recv::<Request>(ctl.as_fd(), 64 * 1024) {
            Ok(Some((Request::Fork, mut fds))) if fds.len() == 1 => {
                let Some(chan) = fds.pop() else { continue };
                match fork_one(chan, server_pid) {
                    Ok((pid, served)) => {
                        let reply = Reply::Forked { pid };
                        let pidfd = sys::dup_cloexec(served.pidfd.as_fd());
                        children.push(served);
                        match pidfd {
                            Ok(fd) => reply_or_exit(&ctl, &reply, &[fd], &mut tracker),
                            Err(e) => reply_or_exit(&ctl, &Reply::failed(&e), &[], &mut tracker),
                        }
                    }
                    Err(e) => reply_or_exit(&ctl, &Reply::failed(&e), &[], &mut tracker),
                }
            }
            Ok(Some(_)) => reply_or_exit(
                &ctl,
                &Reply::Failed {
                    error: "malformed request".into(),
                    errno: None,
                },
                &[],
                &mut tracker,
            ),
            // The program is gone: so are we.
            Ok(None) | Err(_) => leave(&mut tracker, 0),
        }
    }
}

fn reply_or_exit(ctl: &PrivateFd, reply: &Reply, fds: &[OwnedFd], tracker: &mut Option<Tracker>) {
    if crate::wire::send(ctl.as_fd(), reply, fds).is_err() {
        leave(tracker, 0);
    }
}

/// Exits, after unlinking the shared memory still tracked: the program is
/// gone.
fn leave(tracker: &mut Option<Tracker>, code: i32) -> ! {
    if let Some(t) = tracker {
        t.unlink_all();
    }
    sys::exit_now(code)
}

/// Forks one child that will receive its launch on `chan`.
fn fork_one(chan: OwnedFd, server_pid: u32) -> std::io::Result<(u32, Served)> {
    let forked = ForkGuard::acquire()
        .fork(Identity::clone)
        .map_err(|e| match e {
            Error::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        })?;
    let Some((pid, guard)) = forked else {
        sys::ignore_sigint(false);
        crate::bootstrap::run_from_channel(chan, Some(server_pid))
    };
    drop(guard);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => PrivateFd::new(fd),
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(e);
        }
    };
    let chan = PrivateFd::new(chan);
    Ok((pid, Served { pidfd, chan }))
}
