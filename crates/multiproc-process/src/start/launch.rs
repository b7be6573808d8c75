//! What every start method is given, and what the methods that hand a child
//! its launch over a socket (spawn, fork server) share: the channel and the
//! launch message.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Arc;

use serde::Serialize;

use crate::address::{EntryAddress, EntryFn};
use crate::bootstrap::LaunchMsg;
use crate::child::{ChildShared, Reaper};
use crate::error::Result;
use crate::fds::{PrivateFd, lock};
use crate::identity::Identity;
use crate::method::StartMethod;
use crate::state::GLOBAL;
use crate::sys;
use crate::target::{Args, Target};

/// What a start method needs to start one child.
pub(crate) struct Launch {
    pub(crate) entry: EntryFn,
    pub(crate) args: Vec<u8>,
    /// Descriptors the arguments' handles carry.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) identity: Identity,
    /// The method starting the child, its default from then on.
    pub(crate) method: StartMethod,
}

/// A channel for a new child: our end (non-blocking, private) and its end
/// (blocking).
pub(crate) fn channel(fds: &mut Vec<RawFd>) -> Result<(PrivateFd, OwnedFd)> {
    let (ours, theirs) = sys::socketpair()?;
    sys::set_nonblocking(ours.as_fd())?;
    Ok((PrivateFd::register(fds, ours), theirs))
}

/// Sends child `pid` its launch on our end of its channel, `chan`, and
/// registers it as a child of this process.
pub(crate) fn hand_over(
    pid: u32,
    pidfd: PrivateFd,
    chan: PrivateFd,
    launch: Launch,
    reaper: Reaper,
) -> Result<Arc<ChildShared>> {
    let identity = launch.identity.clone();
    if let Err(e) = send_launch(&chan, launch) {
        // The child waits for a launch that will not come: end it (a child
        // of ours is reaped here, one of the fork server's by the server).
        sys::kill_and_reap_pidfd(pidfd.as_fd());
        return Err(e);
    }
    Ok(ChildShared::register(
        &mut lock(&GLOBAL).children,
        pid,
        &identity,
        pidfd,
        chan,
        reaper,
    ))
}

/// Sends a child its launch. A child that died before reading it is not an
/// error here: its exit code tells.
fn send_launch(chan: &PrivateFd, launch: Launch) -> Result<()> {
    let msg = LaunchMsg {
        entry: EntryAddress::of(launch.entry),
        identity: launch.identity,
        method: launch.method,
        from_main_thread: sys::is_main_thread(),
        args: launch.args,
    };
    match crate::wire::send(chan.as_fd(), &msg, &launch.fds) {
        Err(crate::Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The bytes a parent writes on a spawned child's channel to run
/// `target(args)` as `Process-1` (its launch message, with no descriptors),
/// for tests of what a process accepts from whoever started it. Not part of
/// the API.
///
/// # Errors
///
/// [`Error::Encode`](crate::Error::Encode) if the arguments do not encode.
#[doc(hidden)]
pub fn launch_message<F, A, K>(target: F, args: A) -> Result<Vec<u8>>
where
    F: Target<A, K>,
    F::Output: Serialize,
    A: Args,
{
    let _ = target;
    let (args, _fds) = crate::handoff::encode_with_fds(&args)?;
    crate::wire::frame(&LaunchMsg {
        entry: EntryAddress::of(crate::target::entry::<F, A, K>),
        identity: Identity {
            name: Some("Process-1".into()),
            ident: vec![1],
            daemon: false,
            parent: Some((sys::getpid(), "MainProcess".into())),
            counter: 0,
            tracker: None,
        },
        method: StartMethod::Spawn,
        from_main_thread: true,
        args,
    })
}
