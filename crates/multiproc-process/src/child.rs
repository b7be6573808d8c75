//! The parent's record of one started child: its pidfd, its exit status once
//! known, and the pipe on which it reports its outcome.
//!
//! The record is shared between the user's [`Process`](crate::Process) and
//! the registry of children, so a child is reaped exactly once, by whichever
//! of `join`, `is_alive`, `active_children` or the exit hook sees it end.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::outcome::Outcome;
use crate::state::{PrivateFd, lock};
use crate::sys::{self, ExitStatus, SignalKind};

/// Parent-side record of a child process.
#[derive(Debug)]
pub(crate) struct ChildShared {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Refers to the child for as long as this record lives; polls readable
    /// once the child has exited.
    pidfd: PrivateFd,
    state: Mutex<ChildState>,
}

#[derive(Debug, Default)]
struct ChildState {
    status: Option<ExitStatus>,
    /// Read end of the outcome pipe, until it reached end of file or the
    /// result was discarded. Shared so a poller can wait on it unlocked.
    results: Option<Arc<PrivateFd>>,
    /// Bytes read so far from the outcome pipe.
    buf: Vec<u8>,
    /// Set when nobody will read the outcome (the `Process` was dropped).
    discard: bool,
}

impl ChildShared {
    /// A record for child `pid`; `results` must be non-blocking.
    pub(crate) fn new(
        pid: u32,
        name: String,
        daemon: bool,
        pidfd: PrivateFd,
        results: PrivateFd,
    ) -> ChildShared {
        ChildShared {
            pid,
            name,
            daemon,
            pidfd,
            state: Mutex::new(ChildState {
                results: Some(Arc::new(results)),
                ..ChildState::default()
            }),
        }
    }

    /// The exit status, if the child has ended. Reaps it when it has.
    pub(crate) fn poll(&self) -> Result<Option<ExitStatus>> {
        self.wait_timeout(Some(Duration::ZERO))
    }

    /// Waits until the child ends or `timeout` passes (`None`: forever),
    /// draining its outcome pipe meanwhile so a large result never blocks
    /// the child's exit.
    pub(crate) fn wait_timeout(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let results = {
                let mut st = lock(&self.state);
                st.drain()?;
                if st.status.is_none() {
                    st.status = sys::try_reap(self.pidfd.as_fd())?;
                }
                if let Some(status) = st.status {
                    // The child wrote its outcome before exiting, so all of
                    // it is in the pipe now; a grandchild holding the write
                    // end open must not make us wait for end of file.
                    st.drain()?;
                    st.results = None;
                    return Ok(Some(status));
                }
                st.results.clone()
            };
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
            match &results {
                Some(r) => sys::poll_readable(&[self.pidfd.as_fd(), r.as_fd()], remaining)?,
                None => sys::poll_readable(&[self.pidfd.as_fd()], remaining)?,
            };
        }
    }

    /// Sends `SIGTERM` or `SIGKILL`, unless the child is already reaped.
    pub(crate) fn signal(&self, kind: SignalKind) -> Result<()> {
        let st = lock(&self.state);
        if st.status.is_none() {
            sys::signal_pidfd(self.pidfd.as_fd(), kind)?;
        }
        Ok(())
    }

    /// Stops keeping the outcome: closes the pipe so a child still writing
    /// to it gets `EPIPE` instead of blocking.
    pub(crate) fn discard_outcome(&self) {
        let mut st = lock(&self.state);
        st.discard = true;
        st.results = None;
        st.buf = Vec::new();
    }

    /// The outcome the child reported, once it has ended.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        let st = lock(&self.state);
        st.status?;
        Outcome::parse_last(&st.buf)
    }
}

impl ChildState {
    fn drain(&mut self) -> Result<()> {
        if let Some(r) = &self.results {
            let eof = sys::read_nonblocking(r.as_fd(), &mut self.buf)?;
            if self.discard {
                self.buf.clear();
            }
            if eof {
                self.results = None;
            }
        }
        Ok(())
    }
}
