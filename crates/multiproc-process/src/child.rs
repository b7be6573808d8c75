//! The parent's record of one started child: its pidfd, its exit status once
//! known, and the channel on which it reports its outcome.
//!
//! The record is shared between the user's [`Process`](crate::Process) and
//! the registry of children, so a child is reaped exactly once, by whichever
//! of `join`, `is_alive`, `active_children` or the exit hook sees it end.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::fds::{PrivateFd, lock};
use crate::identity::Identity;
use crate::outcome::{Frame, FrameReader, Outcome};
use crate::sys::{self, ExitStatus, SignalKind};

/// Who learns a child's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaper {
    /// We are the child's parent and reap it with `waitid`.
    Parent,
    /// The fork server is its parent; it reaps it and sends the status as
    /// the last frame on the child's channel.
    Server,
}

/// How long `join` polls before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// The exit code CPython reports when the fork server vanished before it
/// could tell how a child ended.
const UNKNOWN_EXIT: i32 = 255;

/// Parent-side record of a child process.
#[derive(Debug)]
pub(crate) struct ChildShared {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Refers to the child for as long as this record lives; polls readable
    /// once the child has exited.
    pidfd: PrivateFd,
    reaper: Reaper,
    state: Mutex<ChildState>,
}

#[derive(Debug, Default)]
struct ChildState {
    status: Option<ExitStatus>,
    /// Our end of the child's channel, until it reached end of file.
    /// Shared so a poller can wait on it unlocked.
    chan: Option<Arc<PrivateFd>>,
    frames: FrameReader,
    /// The last outcome the child reported.
    outcome: Option<Outcome>,
    /// The status the fork server reported.
    server_status: Option<ExitStatus>,
    /// Set when nobody will read the outcome (the `Process` was dropped).
    discard: bool,
}

impl ChildShared {
    /// A record for child `pid`; `chan` must be non-blocking.
    pub(crate) fn new(
        pid: u32,
        name: String,
        daemon: bool,
        pidfd: PrivateFd,
        chan: PrivateFd,
        reaper: Reaper,
    ) -> ChildShared {
        ChildShared {
            pid,
            name,
            daemon,
            pidfd,
            reaper,
            state: Mutex::new(ChildState {
                chan: Some(Arc::new(chan)),
                ..ChildState::default()
            }),
        }
    }

    /// A record for a started child, added to `children` (the registry).
    pub(crate) fn register(
        children: &mut Vec<Arc<ChildShared>>,
        pid: u32,
        identity: &Identity,
        pidfd: PrivateFd,
        chan: PrivateFd,
        reaper: Reaper,
    ) -> Arc<ChildShared> {
        let name = identity.name().to_owned();
        let shared = Arc::new(ChildShared::new(
            pid,
            name,
            identity.daemon,
            pidfd,
            chan,
            reaper,
        ));
        children.push(Arc::clone(&shared));
        shared
    }

    /// The child's pidfd.
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit status, if the child has ended. Reaps it when it has.
    pub(crate) fn poll(&self) -> Result<Option<ExitStatus>> {
        self.wait_timeout(Some(Duration::ZERO))
    }

    /// Waits until the child ends or `timeout` passes (`None`: forever),
    /// draining its outcome pipe meanwhile so a large result never blocks
    /// the child's exit.
    pub(crate) fn wait_timeout(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let deadline = timeout.and_then(crate::deadline);
        let spin_until = Instant::now() + SPIN;
        loop {
            let chan = {
                let mut st = lock(&self.state);
                st.drain()?;
                if st.status.is_none() {
                    st.status = match self.reaper {
                        Reaper::Parent => sys::try_reap(self.pidfd.as_fd())?,
                        Reaper::Server => match (st.server_status, &st.chan) {
                            (Some(s), _) => Some(s),
                            // The server is gone without a word; once the
                            // child has ended too, nobody can say how.
                            (None, None)
                                if sys::poll_readable(
                                    &[self.pidfd.as_fd()],
                                    Some(Duration::ZERO),
                                )?[0] =>
                            {
                                Some(ExitStatus::Code(UNKNOWN_EXIT))
                            }
                            (None, _) => None,
                        },
                    };
                }
                if let Some(status) = st.status {
                    // The child wrote its outcome before exiting, so all of
                    // it has arrived; a grandchild holding the other end
                    // open must not make us wait for end of file.
                    st.drain()?;
                    st.chan = None;
                    return Ok(Some(status));
                }
                st.chan.clone()
            };
            // A child about to end is caught without sleeping: a sleep and
            // a wake-up cost more than a few polls on a core of its own.
            if Instant::now() < spin_until && deadline.is_none_or(|d| Instant::now() < d) {
                std::thread::yield_now();
                continue;
            }
            let remaining = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    Some(d - now)
                }
            };
            match (&chan, self.reaper) {
                (Some(c), Reaper::Parent) => {
                    sys::poll_readable(&[self.pidfd.as_fd(), c.as_fd()], remaining)?
                }
                (Some(c), Reaper::Server) => sys::poll_readable(&[c.as_fd()], remaining)?,
                (None, _) => sys::poll_readable(&[self.pidfd.as_fd()], remaining)?,
            };
        }
    }

    /// What a wait for the end watches, as `wait_timeout` polls it: the
    /// pidfd (unless the fork server reaps the child and its outcome
    /// channel is open), and that channel, so that a large outcome is
    /// read while the child writes it.
    pub(crate) fn wait_fds(&self) -> (bool, Option<Arc<PrivateFd>>) {
        let chan = lock(&self.state).chan.clone();
        let pidfd = !(chan.is_some() && matches!(self.reaper, Reaper::Server));
        (pidfd, chan)
    }

    /// Sends `SIGTERM` or `SIGKILL`, unless the child is already reaped.
    pub(crate) fn signal(&self, kind: SignalKind) -> Result<()> {
        let st = lock(&self.state);
        if st.status.is_none() {
            sys::signal_pidfd(self.pidfd.as_fd(), kind)?;
        }
        Ok(())
    }

    /// Stops keeping the outcome; the channel is still read, so the child
    /// never blocks on it, and so the fork server's status still arrives.
    pub(crate) fn discard_outcome(&self) {
        let mut st = lock(&self.state);
        st.discard = true;
        st.outcome = None;
    }

    /// The outcome the child reported, once it has ended.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        let st = lock(&self.state);
        st.status?;
        st.outcome.clone()
    }
}

impl ChildState {
    /// Reads what has arrived on the channel and takes in whole frames.
    fn drain(&mut self) -> Result<()> {
        let Some(chan) = &self.chan else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        let eof = sys::read_nonblocking(chan.as_fd(), &mut bytes)?;
        self.frames.extend(&bytes);
        while let Some(frame) = self.frames.next_frame() {
            match frame {
                Frame::Outcome(_) if self.discard => {}
                Frame::Outcome(o) => self.outcome = Some(o),
                Frame::Exit(s) => self.server_status = Some(s),
            }
        }
        if eof {
            self.chan = None;
        }
        Ok(())
    }
}
