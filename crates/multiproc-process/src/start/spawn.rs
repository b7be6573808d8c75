//! The spawn start method: execute the program's binary again and hand the
//! new process its launch over its channel.
//!
//! The child is started by `exec`; `boot`, in the new program, sees that it
//! is a spawned child, and `bootstrap` receives and runs the launch.

use std::sync::Arc;

use crate::boot::SPAWN_ENV;
use crate::child::{ChildShared, Reaper};
use crate::error::{Error, Result};
use crate::fds::{PRIVATE_FDS, PrivateFd, lock};
use crate::sys;

use super::exec::exec_self;
use super::launch::{Launch, channel, hand_over};

/// Starts a child with the spawn method.
pub(super) fn start(launch: Launch) -> Result<Arc<ChildShared>> {
    if crate::boot::cannot_exec_self() {
        // The new process would be secure, and ignore its launch.
        return Err(Error::Unsupported(
            "the spawn start method is not available in a setuid, setgid or setcap program, \
             or one whose real and effective ids differ (use forkserver or fork)",
        ));
    }
    let (ours, theirs) = channel(&mut lock(&PRIVATE_FDS))?;
    let pid = exec_self(SPAWN_ENV, theirs)?;
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => PrivateFd::new(fd),
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(e.into());
        }
    };
    hand_over(pid, pidfd, ours, launch, Reaper::Parent)
}
