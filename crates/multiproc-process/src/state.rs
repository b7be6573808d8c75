//! Per-process global state: who this process is, which children it
//! started, and which descriptors are private to it.
//!
//! Three locks guard it, always taken in this order: [`SERVER`] (this
//! process's fork server), [`GLOBAL`] (identity and children), then
//! [`PRIVATE_FDS`]. Every fork holds all three across `fork(2)`, so the child
//! sees a consistent copy, resets it, and releases them; no other thread can
//! have been half-way through changing them.
//!
//! # Safety
//!
//! The one `fork` of the crate is here, with the locks it must hold; and a
//! forked child closes the parent's private descriptors by number. Each is
//! argued at its block.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::child::ChildShared;
use crate::forkserver::ServerHandle;

/// Locks a std mutex, ignoring poisoning: the data here stays consistent
/// across a panic because every update is a single push, remove or store.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who this process is, in Python's terms.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Identity {
    /// `None` in the main process ("MainProcess").
    pub(crate) name: Option<String>,
    /// Python's `_identity`: the counter of each ancestor, `[]` in the main
    /// process, `[1]` for its first child, `[1, 2]` for that child's second.
    pub(crate) ident: Vec<u32>,
    /// Whether this process is a daemon.
    pub(crate) daemon: bool,
    /// The parent's pid and name, `None` in the main process.
    pub(crate) parent: Option<(u32, String)>,
    /// How many `Process` objects this process has created.
    pub(crate) counter: u32,
}

impl Identity {
    const MAIN: Identity = Identity {
        name: None,
        ident: Vec::new(),
        daemon: false,
        parent: None,
        counter: 0,
    };

    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("MainProcess")
    }
}

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

/// The fork server this process talks to, once started.
pub(crate) static SERVER: Mutex<Option<ServerHandle>> = Mutex::new(None);

/// Raw numbers of the descriptors that are private to this process (pidfds
/// of its children, read ends of their result pipes). A forked child closes
/// them all, so it never holds its siblings' descriptors.
pub(crate) static PRIVATE_FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// A descriptor that a forked child must not inherit. Its number is listed
/// in [`PRIVATE_FDS`] for as long as it is open.
#[derive(Debug)]
pub(crate) struct PrivateFd(Option<OwnedFd>);

impl PrivateFd {
    /// Registers `fd`, with the list already locked by the caller.
    pub(crate) fn register(list: &mut Vec<RawFd>, fd: OwnedFd) -> PrivateFd {
        list.push(fd.as_raw_fd());
        PrivateFd(Some(fd))
    }

    /// Registers `fd`.
    pub(crate) fn new(fd: OwnedFd) -> PrivateFd {
        PrivateFd::register(&mut lock(&PRIVATE_FDS), fd)
    }
}

impl AsFd for PrivateFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            Some(fd) => fd.as_fd(),
            // The option is only emptied by `drop`.
            None => unreachable!("PrivateFd used after drop"),
        }
    }
}

impl Drop for PrivateFd {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let mut list = lock(&PRIVATE_FDS);
            let raw = fd.as_raw_fd();
            list.retain(|&r| r != raw);
            // Closed while the list is locked: a concurrent fork either
            // sees the number listed and the fd open, or neither.
            drop(fd);
        }
    }
}

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
