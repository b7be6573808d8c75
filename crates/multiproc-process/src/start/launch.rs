//! What every start method is given, and what the methods that hand a child
//! its launch over a socket (spawn, fork server) share: the channel and the
//! launch message.

use std::os::fd::{AsFd, OwnedFd, RawFd};

use crate::bootstrap::LaunchMsg;
use crate::error::Result;
use crate::fds::PrivateFd;
use crate::identity::Identity;
use crate::sys;
use crate::target::{EntryAddress, EntryFn};

/// What a start method needs to start one child.
pub(crate) struct Launch {
    pub(crate) entry: EntryFn,
    pub(crate) args: Vec<u8>,
    /// Descriptors the arguments' handles carry.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) identity: Identity,
}

/// A channel for a new child: our end (non-blocking, private) and its end
/// (blocking).
pub(crate) fn channel(fds: &mut Vec<RawFd>) -> Result<(PrivateFd, OwnedFd)> {
    let (ours, theirs) = sys::socketpair()?;
    sys::set_nonblocking(ours.as_fd())?;
    Ok((PrivateFd::register(fds, ours), theirs))
}

/// Sends a child its launch. A child that died before reading it is not an
/// error here: its exit code tells.
pub(crate) fn send_launch(chan: &PrivateFd, launch: Launch) -> Result<()> {
    let msg = LaunchMsg {
        entry: EntryAddress::of(launch.entry),
        identity: launch.identity,
        from_main_thread: sys::is_main_thread(),
        args: launch.args,
    };
    match crate::wire::send(chan.as_fd(), &msg, &launch.fds) {
        Err(crate::Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
