//! A pool whose workers are not this program's children: the seam through
//! which `multiproc-mpi` runs a [`Pool`](crate::Pool) on MPI ranks.
//!
//! The pool's calls (`map`, `imap`, `apply_async`, ...) make the same jobs
//! as for local workers; a dispatcher thread takes them from
//! [`RemoteJobs`], sends each [`RemoteJob`]'s bytes to a worker however it
//! likes, and gives the worker's reply back with
//! [`RemoteJob::finish`]. A worker makes that reply with [`run_task`].
//! Descriptors cannot travel this way: a task or a result that holds one
//! (a `RawArray`, a `Segment`, a proxy) fails with [`Error::Encode`].

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use multiproc_process::{Error, Result};

use crate::group::{Failure, Group};
use crate::handler::classify;
use crate::job::{Input, Job};
use crate::message::{Message, REPLY_DONE, REPLY_UNENCODABLE, reply_text};
use crate::worker::{recycle, run};

/// Why a task or a result cannot go to a remote worker.
const NO_DESCRIPTORS: &str = "holds a descriptor (a RawArray, Segment or proxy), which cannot reach a process of another machine";

/// The jobs of a remote pool, as its dispatcher thread receives them.
#[derive(Debug)]
pub struct RemoteJobs(Receiver<Job>);

/// What [`RemoteJobs::next_timeout`] found.
#[derive(Debug)]
pub enum Next {
    /// A job to run.
    Job(RemoteJob),
    /// None came in time.
    Empty,
    /// The pool is closed and every job was taken: the dispatcher may end
    /// once the jobs it holds are finished.
    Closed,
}

impl RemoteJobs {
    pub(crate) fn new(jobs: Receiver<Job>) -> RemoteJobs {
        RemoteJobs(jobs)
    }

    /// The next job, waiting at most `timeout` (zero: only one already
    /// queued).
    pub fn next_timeout(&self, timeout: Duration) -> Next {
        let got = if timeout.is_zero() {
            self.0.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else {
            self.0.recv_timeout(timeout)
        };
        match got {
            Ok(job) => Next::Job(RemoteJob(Some(job))),
            Err(RecvTimeoutError::Timeout) => Next::Empty,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// The next job, waiting for one as long as the pool is open.
    pub fn next(&self) -> Option<RemoteJob> {
        self.0.recv().ok().map(|job| RemoteJob(Some(job)))
    }
}

impl Drop for RemoteJobs {
    /// Fails the jobs still queued: a dispatcher that ends leaves no call
    /// waiting.
    fn drop(&mut self) {
        while let Ok(job) = self.0.try_recv() {
            // Here, callbacks and all: the queue is going away.
            drop(RemoteJob(Some(job)).fail(Error::Closed));
        }
    }
}

/// One job of a remote pool: a task message to send to a worker, and the
/// slot of the call that waits for its reply. It is `Send`: a reply may be
/// finished on another thread than the dispatcher's. One dropped without
/// [`finish`](Self::finish) or [`fail`](Self::fail) fails with
/// [`Error::BrokenPool`], so no call waits for it forever.
pub struct RemoteJob(Option<Job>);

impl RemoteJob {
    /// The task's message, encoded into `buf` (emptied first) when the
    /// job's chunk is still to be encoded.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the arguments do not encode, or hold a
    /// descriptor. The job is then to be [`fail`](Self::fail)ed.
    pub fn encode(&mut self, buf: Vec<u8>) -> Result<Vec<u8>> {
        let Some(job) = self.0.as_mut() else {
            return Err(Error::Closed);
        };
        let input = std::mem::replace(&mut job.input, Input::Bytes(Message::default()));
        let message = match input {
            Input::Bytes(message) => message,
            Input::Lazy(encode) => encode(buf)?,
        };
        if !message.fds.is_empty() {
            return Err(Error::Encode(format!("the task {NO_DESCRIPTORS}")));
        }
        Ok(message.bytes)
    }

    /// Gives the worker's reply (made by [`run_task`]) to the call that
    /// waits for it, decoding a chunk's results on this thread. A call
    /// this completes whose callback waits is returned as a
    /// [`Completion`], to run on a thread that may block: a dispatcher
    /// never runs user callbacks.
    #[must_use = "a Completion left unrun leaves its call waiting"]
    pub fn finish(mut self, reply: Vec<u8>) -> Option<Completion> {
        let job = self.0.take()?;
        let piece = classify(Message {
            bytes: reply,
            fds: Vec::new(),
        });
        let decoded = match (&piece, job.decode) {
            (Ok(reply), Some(decode)) => decode(reply),
            _ => None,
        };
        job.group
            .deliver_deferred(job.index, piece, decoded)
            .map(Completion)
    }

    /// Fails the job with `error`: [`Error::Closed`] for work the pool
    /// ended, [`Error::BrokenPool`] for a worker lost, or the error of
    /// [`encode`](Self::encode). As for [`finish`](Self::finish), a call
    /// with a callback to run is returned.
    #[must_use = "a Completion left unrun leaves its call waiting"]
    pub fn fail(mut self, error: Error) -> Option<Completion> {
        let job = self.0.take()?;
        let failure = match error {
            Error::Closed => Failure::Closed,
            Error::BrokenPool { why } => Failure::Broken(why),
            Error::TaskPanicked { message } => Failure::Panicked(message),
            Error::TaskFailed { message } => Failure::Raised(message),
            Error::WorkerDied {
                pid,
                signal,
                exitcode,
            } => Failure::WorkerDied {
                pid,
                signal,
                exitcode,
            },
            Error::TaskTimedOut { after } => Failure::TimedOut(after),
            Error::Cancelled => Failure::Cancelled,
            other => Failure::of(&other),
        };
        job.group
            .deliver_deferred(job.index, Err(failure), None)
            .map(Completion)
    }
}

/// A call whose last piece is in and whose callback is still to run:
/// [`run`](Self::run) it on a thread that may block (the callback may wait
/// for another call of the same pool). Dropped unrun, it runs where it is
/// dropped.
pub struct Completion(Arc<Group>);

impl Completion {
    /// Runs the call's callback, then makes its result ready.
    pub fn run(self) {
        // The work is in `Drop`, so that no completion is ever lost.
        drop(self);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.0.finish_deferred();
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl Drop for RemoteJob {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            job.group.deliver(
                job.index,
                Err(Failure::Broken(
                    "the pool's dispatcher dropped a task unfinished".into(),
                )),
                None,
            );
        }
    }
}

impl std::fmt::Debug for RemoteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJob")
            .field("index", &self.0.as_ref().map(|j| j.index))
            .finish_non_exhaustive()
    }
}

/// Runs a task message on a remote worker and gives its reply (into
/// `out`'s allocation), for [`RemoteJob::finish`]: the result, or why
/// there is none (a panic, an `Err`, an input that did not decode).
pub fn run_task(task: &[u8], out: Vec<u8>) -> Vec<u8> {
    let mut out = recycle(out);
    out.push(REPLY_DONE);
    let reply = run(task, Vec::new(), out);
    if reply.fds.is_empty() {
        reply.bytes
    } else {
        reply_text(REPLY_UNENCODABLE, &format!("the result {NO_DESCRIPTORS}")).bytes
    }
}
