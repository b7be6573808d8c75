//! Per-process global state: who this process is, which children it
//! started, and its fork server; and the one `fork` of the crate, which
//! holds all of it.
//!
//! Three locks guard it, always taken in this order: [`SERVER`] (this
//! process's fork server), [`GLOBAL`] (identity and children), then
//! [`PRIVATE_FDS`] (in `fds`). Every fork holds all three across `fork(2)`, so the child
//! sees a consistent copy, resets it, and releases them; no other thread can
//! have been half-way through changing them.
//!
//! # Safety
//!
//! The one `fork` of the crate is here, with the locks it must hold; and a
//! forked child closes the parent's private descriptors by number. Each is
//! argued at its block.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::child::ChildShared;
use crate::fds::{PRIVATE_FDS, PrivateFd, lock};
use crate::identity::Identity;

/// Identity and children of this process.
pub(crate) struct Global {
    pub(crate) identity: Identity,
    /// Children started by this process and not yet known to have ended.
    pub(crate) children: Vec<Arc<ChildShared>>,
}

pub(crate) static GLOBAL: Mutex<Global> = Mutex::new(Global {
    identity: Identity::MAIN,
    children: Vec::new(),
});

/// The program's handle on its fork server.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    /// Our end of the control socket.
    pub(crate) ctl: PrivateFd,
    /// The server's pidfd.
    pub(crate) pidfd: PrivateFd,
}

/// The fork server this process talks to, once started.
pub(crate) static SERVER: Mutex<Option<ServerHandle>> = Mutex::new(None);

/// The global state, held across `fork`.
pub(crate) struct ForkGuard {
    pub(crate) server: MutexGuard<'static, Option<ServerHandle>>,
    pub(crate) global: MutexGuard<'static, Global>,
    pub(crate) fds: MutexGuard<'static, Vec<RawFd>>,
}

impl ForkGuard {
    pub(crate) fn acquire() -> ForkGuard {
        ForkGuard::with_server(lock(&SERVER))
    }

    /// Takes the rest of the locks for a caller already holding [`SERVER`].
    pub(crate) fn with_server(server: MutexGuard<'static, Option<ServerHandle>>) -> ForkGuard {
        let global = lock(&GLOBAL);
        let fds = lock(&PRIVATE_FDS);
        ForkGuard {
            server,
            global,
            fds,
        }
    }

    /// Forks, with every state lock held across the call. In the child,
    /// resets the copied state to the identity `child` makes from the
    /// parent's, releases the locks and returns `Ok(None)`; in the parent,
    /// returns the child's pid with the locks still held. On failure the
    /// locks are released before the error returns, so descriptors the
    /// caller registered may unregister themselves.
    ///
    /// The caller must `mem::forget`, in the child, every `PrivateFd` it
    /// holds: their descriptors were closed here.
    pub(crate) fn fork(
        self,
        child: impl FnOnce(&Identity) -> Identity,
    ) -> crate::Result<Option<(u32, ForkGuard)>> {
        // SAFETY: all state locks are held across the fork by this thread,
        // so the child finds them consistent and releases them in
        // `reset_in_child`; after that it runs only our bootstrap (a target,
        // or the fork server's loop), as the fork start method promises.
        match unsafe { crate::sys::fork() } {
            Err(e) => {
                drop(self);
                Err(e.into())
            }
            Ok(crate::sys::Forked::Child) => {
                let identity = child(&self.global.identity);
                self.reset_in_child(identity);
                Ok(None)
            }
            Ok(crate::sys::Forked::Parent(pid)) => Ok(Some((pid, self))),
        }
    }

    /// A pidfd of `pid`, the child just forked, registered under the held
    /// locks. If it cannot be opened, the locks are released and the child
    /// is killed and reaped.
    pub(crate) fn child_pidfd(mut self, pid: u32) -> crate::Result<(PrivateFd, ForkGuard)> {
        match crate::sys::pidfd_open(pid) {
            Ok(fd) => Ok((PrivateFd::register(&mut self.fds, fd), self)),
            Err(e) => {
                drop(self);
                crate::sys::kill_and_reap(pid);
                Err(e.into())
            }
        }
    }

    /// Resets the state in a freshly forked child: forgets the parent's
    /// children, closes the parent's private descriptors, and takes on
    /// `identity`. Releases the locks.
    fn reset_in_child(mut self, identity: Identity) {
        // The parent's `ChildShared` values stay alive in its copied memory;
        // running their destructors here would close descriptors a second
        // time, so they are forgotten, not dropped.
        std::mem::forget(std::mem::take(&mut self.global.children));
        // The parent's fork server is not ours; its socket is private and
        // closed below.
        std::mem::forget(self.server.take());
        for fd in self.fds.drain(..) {
            // SAFETY: these descriptors are owned by `PrivateFd` values that
            // live only in the parent's part of the copied memory (its
            // `Process` objects and children list), whose destructors never
            // run in this child: the forking thread never returns to the
            // parent's frames, and the list of children was forgotten above.
            unsafe { crate::sys::close_raw(fd) };
        }
        self.global.identity = identity;
    }
}
