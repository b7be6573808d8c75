//! The forkserver start method.
//!
//! A fork server is a single-threaded copy of the program, made at
//! [`init`](crate::init) while the program has one thread (or, when started
//! later from a program with threads, by executing the binary again, as
//! spawn does). The program talks to it over a socket pair, one request at a
//! time:
//!
//! 1. The parent sends `Fork` with the child's end of a new channel.
//! 2. The server forks. The child closes the server's descriptors, receives
//!    its launch on the channel, and runs it like a spawned child.
//! 3. The server replies `Forked { pid }` with a pidfd of the child, keeps a
//!    duplicate of the channel, and when the child ends, reaps it and writes
//!    its exit status on the channel as the last frame.
//!
//! The server exits when the program's end of the socket closes, which the
//! kernel does when the program exits or dies. Its daemon children die with
//! it, so with the program. The server ignores `SIGINT`, so a Ctrl-C reaches
//! the program and the children, not the server in between.
//!

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child::{ChildShared, Reaper};
use crate::error::{Error, Result};
use crate::outcome::Frame;
use crate::start_method::{Launch, channel};
use crate::state::{ForkGuard, GLOBAL, Identity, PRIVATE_FDS, PrivateFd, SERVER, lock};
use crate::sys;

/// Marks a fork server started by executing the binary.
pub(crate) const SERVER_ENV: &str = "MULTIPROC_FORKSERVER";

/// The program's handle on its fork server.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    ctl: PrivateFd,
    pidfd: PrivateFd,
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Fork a child and hand it the attached channel.
    Fork,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The child's pid; its pidfd is attached.
    Forked { pid: u32 },
    /// The server could not fork.
    Failed { error: String },
}

/// Starts the fork server now, unless it runs already.
pub(crate) fn ensure_started() -> Result<()> {
    let mut server = lock(&SERVER);
    if server.is_none() {
        server = start_server(server)?;
    }
    drop(server);
    Ok(())
}

/// Starts a child through the fork server.
pub(crate) fn start(launch: Launch) -> Result<Arc<ChildShared>> {
    let (ours, theirs) = channel(&mut lock(&PRIVATE_FDS))?;
    let (pid, pidfd) = request_fork(theirs)?;
    let identity = launch.identity.clone();
    crate::spawn::send_launch(&ours, launch)?;
    Ok(ChildShared::register(
        &mut lock(&GLOBAL).children,
        pid,
        &identity,
        pidfd,
        ours,
        Reaper::Server,
    ))
}

/// Asks the server for a child; starts (or restarts) the server as needed.
fn request_fork(theirs: OwnedFd) -> Result<(u32, PrivateFd)> {
    let mut server = lock(&SERVER);
    let mut attempts = 0;
    loop {
        if server.is_none() {
            server = start_server(server)?;
        }
        let Some(handle) = server.as_ref() else {
            return Err(Error::Unsupported("the fork server could not be started"));
        };
        match exchange(handle, &theirs) {
            Ok(reply) => return reply,
            // The server is gone (killed, say): reap it and start another.
            Err(_) if attempts == 0 => {
                attempts += 1;
                if let Some(dead) = server.take() {
                    let _ = sys::try_reap(dead.pidfd.as_fd());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// One request and its reply. The outer error means the server is gone.
fn exchange(handle: &ServerHandle, theirs: &OwnedFd) -> Result<Result<(u32, PrivateFd)>> {
    let dup = sys::dup_cloexec(theirs.as_fd())?;
    crate::wire::send(handle.ctl.as_fd(), &Request::Fork, &[dup])?;
    match crate::wire::recv::<Reply>(handle.ctl.as_fd(), 64 * 1024)? {
        None => Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the fork server closed its socket",
        ))),
        Some((Reply::Forked { pid }, mut fds)) => match fds.pop() {
            Some(pidfd) => Ok(Ok((pid, PrivateFd::new(pidfd)))),
            None => Ok(Err(Error::Decode("the fork server sent no pidfd".into()))),
        },
        Some((Reply::Failed { error }, _)) => Ok(Err(Error::Io(std::io::Error::other(error)))),
    }
}

/// Starts a fork server: by forking while the program has one thread, by
/// executing the binary otherwise.
fn start_server(
    mut server: MutexGuard<'static, Option<ServerHandle>>,
) -> Result<MutexGuard<'static, Option<ServerHandle>>> {
    let (ours, theirs) = sys::socketpair()?;
    if sys::thread_count() > 1 {
        let ctl = PrivateFd::new(ours);
        let pid = crate::spawn::exec_self(SERVER_ENV, theirs)?;
        let pidfd = PrivateFd::new(sys::pidfd_open(pid)?);
        *server = Some(ServerHandle { ctl, pidfd });
        return Ok(server);
    }
    let mut guard = ForkGuard::with_server(server);
    let ctl = PrivateFd::register(&mut guard.fds, ours);
    let Some((pid, mut guard)) = guard.fork(Identity::clone)? else {
        // Its descriptor was closed when the child's state was reset.
        std::mem::forget(ctl);
        serve(theirs)
    };
    drop(theirs);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => PrivateFd::register(&mut guard.fds, fd),
        Err(e) => {
            drop(guard);
            sys::kill_and_reap(pid);
            return Err(e.into());
        }
    };
    *guard.server = Some(ServerHandle { ctl, pidfd });
    let ForkGuard {
        server,
        global,
        fds,
    } = guard;
    drop((global, fds));
    Ok(server)
}

/// The work of [`init`](crate::init) in a fork server started by executing
/// the binary. Returns only if this process is not one.
pub(crate) fn serve_if_server() {
    if let Some(ctl) = crate::spawn::inherited_channel(SERVER_ENV) {
        crate::context::mark_initialized();
        serve(ctl);
    }
}

/// A child of the server: its pidfd and the server's end of its channel.
struct Served {
    pidfd: PrivateFd,
    chan: PrivateFd,
}

/// The server loop. Never returns.
fn serve(ctl: OwnedFd) -> ! {
    sys::ignore_sigint(true);
    let ctl = PrivateFd::new(ctl);
    let server_pid = sys::getpid();
    let mut children: Vec<Served> = Vec::new();
    loop {
        let ready = {
            let mut fds = vec![ctl.as_fd()];
            fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
            match sys::poll_readable(&fds, Some(Duration::from_secs(60))) {
                Ok(r) => r,
                Err(_) => sys::exit_now(1),
            }
        };
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
                            Ok(fd) => reply_or_exit(&ctl, &reply, &[fd]),
                            Err(e) => reply_or_exit(
                                &ctl,
                                &Reply::Failed {
                                    error: e.to_string(),
                                },
                                &[],
                            ),
                        }
                    }
                    Err(e) => reply_or_exit(
                        &ctl,
                        &Reply::Failed {
                            error: e.to_string(),
                        },
                        &[],
                    ),
                }
            }
            Ok(Some(_)) => reply_or_exit(
                &ctl,
                &Reply::Failed {
                    error: "malformed request".into(),
                },
                &[],
            ),
            // The program is gone: so are we.
            Ok(None) | Err(_) => sys::exit_now(0),
        }
    }
}

fn reply_or_exit(ctl: &PrivateFd, reply: &Reply, fds: &[OwnedFd]) {
    if crate::wire::send(ctl.as_fd(), reply, fds).is_err() {
        sys::exit_now(0);
    }
}

/// Forks one child that will receive its launch on `chan`.
fn fork_one(chan: OwnedFd, server_pid: u32) -> Result<(u32, Served)> {
    let Some((pid, guard)) = ForkGuard::acquire().fork(Identity::clone)? else {
        sys::ignore_sigint(false);
        crate::bootstrap::run_from_channel(chan, Some(server_pid))
    };
    drop(guard);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => PrivateFd::new(fd),
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(e.into());
        }
    };
    let chan = PrivateFd::new(chan);
    Ok((pid, Served { pidfd, chan }))
}
