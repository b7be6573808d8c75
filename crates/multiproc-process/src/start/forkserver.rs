//! The program's side of the forkserver start method: start the server,
//! ask it for a child, hand the child its launch.
//!
//! The server is started by executing the binary (by forking, in a setuid
//! program, which cannot execute itself as a child, while it has one
//! thread; never by forking a threaded process). A server that died, or
//! does not answer, is killed, reaped and replaced at the next start. Its
//! own loop is in `server`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::boot::SERVER_ENV;
use crate::child::{ChildShared, Reaper};
use crate::error::{Error, Result};
use crate::fds::{PRIVATE_FDS, PrivateFd, lock};
use crate::identity::Identity;
use crate::server::{Reply, Request};
use crate::state::{ForkGuard, SERVER, ServerHandle};
use crate::sys;

use super::exec::exec_self;
use super::launch::{Launch, channel, hand_over};

/// Starts the fork server now, unless it runs already.
pub(crate) fn ensure_started() -> Result<()> {
    let mut server = lock(&SERVER);
    if server.is_none() {
        server = start_server(server)?;
    }
    drop(server);
    Ok(())
}

/// Makes the fork server `pid` the resource tracker of this process (and
/// of its children to come), unless it has one.
fn adopt_tracker(pid: u32) {
    lock(&crate::state::GLOBAL)
        .identity
        .tracker
        .get_or_insert(pid);
}

/// Reaps the fork server if it has died (killed, say), so that it is not
/// left a zombie until the next start; the next start makes another.
pub(crate) fn reap_if_dead() {
    let Ok(mut server) = SERVER.try_lock() else {
        return;
    };
    let dead = server.as_ref().is_some_and(|h| {
        sys::poll_readable(&[h.pidfd.as_fd()], Some(Duration::ZERO)).is_ok_and(|r| r[0])
    });
    if dead && let Some(h) = server.take() {
        let _ = sys::try_reap(h.pidfd.as_fd());
    }
}

/// Starts a child through the fork server.
pub(super) fn start(launch: Launch) -> Result<Arc<ChildShared>> {
    let (pid, pidfd, ours) = request_fork()?;
    hand_over(pid, pidfd, ours, launch, Reaper::Server)
}

/// How long a live server takes at most to answer a request (it forks
/// once); past it, the server is taken for broken.
const REPLY_LIMIT: Duration = Duration::from_secs(30);

/// Asks the server for a child, with a new channel; starts (or restarts)
/// the server as needed. Returns the child's pid, its pidfd and our end of
/// its channel.
fn request_fork() -> Result<(u32, PrivateFd, PrivateFd)> {
    let mut server = lock(&SERVER);
    let mut attempts = 0;
    loop {
        if server.is_none() {
            server = start_server(server)?;
        }
        let Some(handle) = server.as_ref() else {
            return Err(Error::Unsupported("the fork server could not be started"));
        };
        // A channel per attempt: a server that forked before it died has
        // handed its child the channel of that attempt.
        let (ours, theirs) = channel(&mut lock(&PRIVATE_FDS))?;
        match exchange(handle, theirs) {
            Ok(reply) => return reply.map(|(pid, pidfd)| (pid, pidfd, ours)),
            // The server is gone (killed, say) or broken: end it, reap it,
            // and start another once.
            Err(e) => {
                if let Some(dead) = server.take() {
                    sys::kill_and_reap_pidfd(dead.pidfd.as_fd());
                }
                if attempts > 0 {
                    return Err(e);
                }
                attempts += 1;
            }
        }
    }
}

/// One request and its reply. The outer error means the server is gone or
/// does not answer.
fn exchange(handle: &ServerHandle, theirs: OwnedFd) -> Result<Result<(u32, PrivateFd)>> {
    crate::wire::send(handle.ctl.as_fd(), &Request::Fork, &[theirs])?;
    if !sys::poll_readable(&[handle.ctl.as_fd()], Some(REPLY_LIMIT))?[0] {
        return Err(Error::Timeout);
    }
    match crate::wire::recv::<Reply>(handle.ctl.as_fd(), 64 * 1024)? {
        None => Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the fork server closed its socket",
        ))),
        Some((Reply::Forked { pid }, mut fds)) => match fds.pop() {
            Some(pidfd) => Ok(Ok((pid, PrivateFd::new(pidfd)))),
            None => Ok(Err(Error::Decode("the fork server sent no pidfd".into()))),
        },
        Some((Reply::Failed { error, errno }, _)) => Ok(Err(Error::Io(match errno {
            // The system's error as it was, kind and number.
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::other(error),
        }))),
    }
}

/// Starts a fork server: by executing the binary, so that the server is a
/// fresh single-threaded copy of the program in which nothing of `main` ran
/// and which holds none of the program's descriptors. A program that cannot
/// execute itself as a child (a setuid one, see `boot::cannot_exec_self`)
/// forks the server instead, while it has one thread.
fn start_server(
    mut server: MutexGuard<'static, Option<ServerHandle>>,
) -> Result<MutexGuard<'static, Option<ServerHandle>>> {
    let fork = crate::boot::cannot_exec_self();
    if fork && !sys::single_threaded() {
        return Err(Error::Unsupported(
            "a setuid or setcap program cannot start its fork server once it has threads \
             (call multiproc::init() before starting any)",
        ));
    }
    let (ours, theirs) = sys::socketpair()?;
    if !fork {
        let ctl = PrivateFd::new(ours);
        let pid = exec_self(SERVER_ENV, theirs)?;
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => PrivateFd::new(fd),
            Err(e) => {
                sys::kill_and_reap(pid);
                return Err(e.into());
            }
        };
        *server = Some(ServerHandle { ctl, pidfd });
        adopt_tracker(pid);
        return Ok(server);
    }
    let mut guard = ForkGuard::with_server(server);
    let ctl = PrivateFd::register(&mut guard.fds, ours);
    let Some((pid, guard)) = guard.fork(Identity::clone)? else {
        // Its descriptor was closed when the child's state was reset.
        std::mem::forget(ctl);
        crate::server::serve(theirs)
    };
    drop(theirs);
    let (pidfd, mut guard) = guard.child_pidfd(pid)?;
    *guard.server = Some(ServerHandle { ctl, pidfd });
    let ForkGuard {
        server,
        global,
        fds,
    } = guard;
    drop((global, fds));
    adopt_tracker(pid);
    Ok(server)
}
