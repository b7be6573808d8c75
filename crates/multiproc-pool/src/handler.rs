//! The handler threads, one per worker, in the caller's process.
//!
//! A handler takes a job from the pool's queue, sends it to its worker over
//! a `Pipe`, and waits for the reply. If the worker dies instead, the handler
//! learns it from the pipe (its other end closed with the worker), fails that
//! job with [`Error::WorkerDied`] naming the signal, and starts a new worker
//! for the next job. So a killed worker costs one task, never a hang.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use multiproc_channel::{Connection, Pipe};
use multiproc_process::{Error, Process, Result, StartMethod, TaskFn};
use parking_lot::Mutex;

use crate::group::{Failure, Piece};
use crate::job::{Input, Job};
use crate::message::{
    Message, REPLY_DONE, REPLY_PANICKED, REPLY_RAISED, REPLY_UNDECODABLE, REPLY_UNENCODABLE,
};
use crate::worker::{WorkerStart, recycle, worker_main};

/// How long a dying worker is given to be reaped.
const REAP: Duration = Duration::from_secs(5);

/// Checks a pool's or an executor's sizes (`what`: "a pool needs at least
/// one process") and takes its initializer's encoded arguments.
pub(crate) fn checked_setup(
    n: usize,
    max_tasks: Option<u64>,
    initializer: Option<(TaskFn, Result<Vec<u8>>)>,
    what: &str,
) -> Result<Option<(TaskFn, Vec<u8>)>> {
    if n == 0 {
        return Err(Error::InvalidArgument(what.into()));
    }
    if max_tasks == Some(0) {
        return Err(Error::InvalidArgument(
            "max_tasks_per_child must be at least 1".into(),
        ));
    }
    match initializer {
        Some((f, args)) => Ok(Some((f, args?))),
        None => Ok(None),
    }
}

/// What the pool's threads share.
pub(crate) struct Shared {
    method: Option<StartMethod>,
    initializer: Option<(TaskFn, Vec<u8>)>,
    max_tasks: Option<u64>,
    terminated: AtomicBool,
    /// The running workers, by slot, so `terminate` can kill them.
    workers: Mutex<Vec<Option<Arc<Process<()>>>>>,
    started: AtomicU64,
}

pub(crate) struct Worker {
    process: Arc<Process<()>>,
    conn: Connection,
    tasks: u64,
}

/// What may cut a task short while its worker runs it: a time limit, and
/// a descriptor that becomes readable when a task is to be cancelled.
/// `cancelled` is called when it does: it empties the descriptor and says
/// whether the task is this one.
pub(crate) struct Watch<'a> {
    /// The time limit, counted from the send.
    pub(crate) limit: Option<Duration>,
    pub(crate) wake: Option<BorrowedFd<'a>>,
    pub(crate) cancelled: &'a dyn Fn() -> bool,
}

/// Why a watched wait for a reply ended without one.
enum Cut {
    TimedOut(Duration),
    Cancelled,
}

impl Shared {
    pub(crate) fn new(
        method: Option<StartMethod>,
        initializer: Option<(TaskFn, Vec<u8>)>,
        max_tasks: Option<u64>,
        processes: usize,
    ) -> Shared {
        Shared {
            method,
            initializer,
            max_tasks,
            terminated: AtomicBool::new(false),
            workers: Mutex::new(vec![None; processes]),
            started: AtomicU64::new(0),
        }
    }

    /// The workers running now.
    pub(crate) fn running(&self) -> Vec<Arc<Process<()>>> {
        self.workers.lock().iter().flatten().cloned().collect()
    }

    /// From now on a worker's death is the pool's end, not a failure.
    pub(crate) fn terminate(&self) {
        self.terminated.store(true, Ordering::SeqCst);
    }

    pub(crate) fn start_worker(&self, slot: usize) -> Result<Worker> {
        let (mine, theirs) = Pipe::new()?;
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let start = WorkerStart {
            conn: theirs,
            initializer: self
                .initializer
                .as_ref()
                .map(|(f, args)| (*f, serde_bytes::ByteBuf::from(args.clone()))),
        };
        let mut builder = Process::builder(worker_main, (start,))
            .name(format!("PoolWorker-{n}"))
            .daemon(true);
        if let Some(m) = self.method {
            builder = builder.start_method(m);
        }
        let mut process = builder.build();
        process.start()?;
        let process = Arc::new(process);
        self.workers.lock()[slot] = Some(process.clone());
        Ok(Worker {
            process,
            conn: mine,
            tasks: 0,
        })
    }

    /// Ends a worker that is done (or gone): ask it to stop, close its
    /// pipe, reap it.
    pub(crate) fn retire(&self, slot: usize, worker: Worker) {
        // An empty message: a task is never empty (it starts with its
        // function). A dead worker's pipe refuses it, which is fine.
        let _ = worker.conn.send_bytes(&[]);
        worker.conn.close();
        if worker.process.join_timeout(REAP).is_err() {
            // It ignores the end of its pipe: no more patience.
            let _ = worker.process.kill();
            let _ = worker.process.join_timeout(REAP);
        }
        let mut workers = self.workers.lock();
        if workers[slot]
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &worker.process))
        {
            workers[slot] = None;
        }
    }

    /// Runs one job on the slot's worker, starting one if needed.
    /// `scratch` is the handler's buffer for encoding tasks, kept from one
    /// task to the next.
    fn run(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        input: Input,
        scratch: &mut Vec<u8>,
    ) -> Piece {
        if self.terminated.load(Ordering::SeqCst) {
            return Err(Failure::Closed);
        }
        let (message, reusable) = match input {
            Input::Bytes(message) => (message, false),
            Input::Lazy(encode) => (
                encode(std::mem::take(scratch)).map_err(|e| Failure::of(&e))?,
                true,
            ),
        };
        let piece = self.exchange(slot, worker, &message);
        if reusable {
            *scratch = recycle(message.bytes);
        }
        piece
    }

    /// Sends `message` to the slot's worker (starting one if needed) and
    /// waits for its reply. A worker that died before it took the message
    /// (between the check that it lives and the send) cost no task: the
    /// message goes, once, to the worker that replaces it.
    pub(crate) fn exchange(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        message: &Message,
    ) -> Piece {
        self.exchange_watched(slot, worker, message, None)
    }

    /// As [`exchange`](Self::exchange), ending the task early, by killing
    /// its worker, when `watch` says so.
    pub(crate) fn exchange_watched(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        message: &Message,
        watch: Option<&Watch<'_>>,
    ) -> Piece {
        match self.exchange_once(slot, worker, message, watch) {
            Err(Failure::NeverTaken { .. }) => {
                match self.exchange_once(slot, worker, message, watch) {
                    // Two in a row: report the second.
                    Err(Failure::NeverTaken {
                        pid,
                        signal,
                        exitcode,
                    }) => Err(Failure::WorkerDied {
                        pid,
                        signal,
                        exitcode,
                    }),
                    other => other,
                }
            }
            other => other,
        }
    }

    fn exchange_once(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        message: &Message,
        watch: Option<&Watch<'_>>,
    ) -> Piece {
        self.ensure_worker(slot, worker)?;
        let Some(w) = worker.as_mut() else {
            return Err(Failure::Closed);
        };
        let sent = send(w, message)?;
        let deadline = watch
            .and_then(|w| w.limit)
            .and_then(|l| multiproc_process::deadline(l).map(|at| (at, l)));
        if sent
            && let Some(watch) = watch
            && let Err(cut) = wait_reply(&w.conn, watch, deadline)
        {
            // Cut short: the worker is killed and reaped (at once, after
            // SIGKILL), and replaced for the next task.
            let _ = w.process.kill();
            if let Some(w) = worker.take() {
                self.retire(slot, w);
            }
            return Err(match cut {
                Cut::TimedOut(after) => Failure::TimedOut(after),
                Cut::Cancelled => Failure::Cancelled,
            });
        }
        let mut bytes = Vec::new();
        let reply = if sent {
            w.conn
                .recv_bytes_into_vec_with_fds(&mut bytes)
                .map(|fds| Message { bytes, fds })
        } else {
            Err(Error::Closed)
        };
        match reply {
            Ok(reply) => {
                self.count_task(slot, worker);
                classify(reply)
            }
            Err(_) => {
                // Refused (the worker's end was gone), or sent and still
                // there: the worker never took it.
                let untaken = worker.as_ref().map_or(0, |w| w.conn.pending_sent());
                let (head, _) = self.bury(slot, worker, if sent { untaken } else { 1 }, 1);
                head
            }
        }
    }

    /// Starts the slot's worker if it has none (or a dead one, whose
    /// death cost no task).
    pub(crate) fn ensure_worker(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
    ) -> std::result::Result<(), Failure> {
        if self.terminated.load(Ordering::SeqCst) {
            // Ended: no new worker, and nothing more runs.
            return Err(Failure::Closed);
        }
        if worker.as_ref().is_some_and(|w| !w.process.is_alive())
            && let Some(w) = worker.take()
        {
            self.retire(slot, w);
        }
        if worker.is_none() {
            *worker = Some(
                self.start_worker(slot)
                    .map_err(|e| Failure::Failed(format!("cannot start a worker: {e}")))?,
            );
        }
        Ok(())
    }

    /// One more task done by the slot's worker; it retires at
    /// `max_tasks_per_child`.
    fn count_task(&self, slot: usize, worker: &mut Option<Worker>) {
        if let Some(w) = worker.as_mut() {
            w.tasks += 1;
            if self.max_tasks.is_some_and(|m| w.tasks >= m)
                && let Some(w) = worker.take()
            {
                self.retire(slot, w);
            }
        }
    }

    /// Whether tasks may be sent ahead of their replies: not when a
    /// worker retires after a number of them.
    pub(crate) fn pipelines(&self) -> bool {
        self.max_tasks.is_none()
    }

    /// Sends a task to the slot's worker without waiting for its reply;
    /// the worker is started if needed, but only when no task is in
    /// flight (a new worker would take the place of the one the replies
    /// are due from). False: not sent, to be sent again later.
    pub(crate) fn send_ahead(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        message: &Message,
        in_flight: usize,
    ) -> std::result::Result<bool, Failure> {
        if self.terminated.load(Ordering::SeqCst) {
            return Err(Failure::Closed);
        }
        if in_flight == 0 {
            self.ensure_worker(slot, worker)?;
        }
        match worker.as_ref() {
            Some(w) => send(w, message),
            None => Ok(false),
        }
    }

    /// Receives the reply of the oldest of the `in_flight` tasks sent
    /// ahead to the slot's worker. If the worker is gone instead: the
    /// oldest task's failure, and how many of the others it never took
    /// (they can go to the next worker).
    pub(crate) fn receive_ahead(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        in_flight: usize,
    ) -> std::result::Result<Message, (Failure, usize)> {
        let Some(w) = worker.as_ref() else {
            return Err((Failure::Closed, in_flight.saturating_sub(1)));
        };
        let mut bytes = Vec::new();
        match w.conn.recv_bytes_into_vec_with_fds(&mut bytes) {
            Ok(fds) => Ok(Message { bytes, fds }),
            Err(_) => {
                let untaken = w.conn.pending_sent().min(in_flight);
                let (head, rest) = self.bury(slot, worker, untaken, in_flight);
                Err((head.err().unwrap_or(Failure::Closed), rest))
            }
        }
    }

    /// Reaps the slot's dead worker, which had `in_flight` tasks of which
    /// it never took `untaken` (the last ones). Gives the oldest task's
    /// failure and how many of the others can go to another worker.
    fn bury(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        untaken: usize,
        in_flight: usize,
    ) -> (Piece, usize) {
        let Some(w) = worker.take() else {
            return (Err(Failure::Closed), in_flight.saturating_sub(1));
        };
        let pid = w.process.pid().unwrap_or(0);
        let _ = w.process.join_timeout(REAP);
        let code = w.process.exitcode();
        let signal = code.filter(|c| *c < 0).map(|c| -c);
        let exitcode = code.filter(|c| *c >= 0);
        self.retire(slot, w);
        let rest = in_flight.saturating_sub(1).min(untaken);
        let head = if self.terminated.load(Ordering::SeqCst) {
            Err(Failure::Closed)
        } else if untaken >= in_flight {
            Err(Failure::NeverTaken {
                pid,
                signal,
                exitcode,
            })
        } else {
            Err(Failure::WorkerDied {
                pid,
                signal,
                exitcode,
            })
        };
        (head, rest)
    }

    /// Counts a reply received ahead, and classifies it.
    pub(crate) fn reply_ahead(
        &self,
        slot: usize,
        worker: &mut Option<Worker>,
        reply: Message,
    ) -> Piece {
        self.count_task(slot, worker);
        classify(reply)
    }
}

/// Sends a task message with duplicates of its descriptors; whether the
/// worker's end took it (false: the worker is gone). A message that cannot
/// be sent at all is the task's failure, not the worker's.
fn send(w: &Worker, message: &Message) -> std::result::Result<bool, Failure> {
    let fds = message
        .fds
        .iter()
        .map(|fd| fd.try_clone())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Failure::Encode(format!("cannot hand over a descriptor: {e}")))?;
    match w.conn.send_bytes_with_fds(&message.bytes, fds) {
        Ok(()) => Ok(true),
        Err(Error::Closed) => Ok(false),
        Err(Error::Encode(why)) => Err(Failure::Encode(why)),
        Err(e) => Err(Failure::Failed(format!("cannot send the task: {e}"))),
    }
}

/// A worker's reply as the piece it stands for.
pub(crate) fn classify(reply: Message) -> Piece {
    match reply.bytes.first() {
        Some(&REPLY_DONE) => Ok(reply),
        Some(&REPLY_PANICKED) => Err(Failure::Panicked(reply.text())),
        Some(&REPLY_RAISED) => Err(Failure::Raised(reply.text())),
        Some(&REPLY_UNDECODABLE) => Err(Failure::Failed(reply.text())),
        Some(&REPLY_UNENCODABLE) => Err(Failure::Encode(reply.text())),
        _ => Err(Failure::Failed("a malformed reply from a worker".into())),
    }
}

/// Waits until a reply can be read (or the worker is gone, which the read
/// then tells), or until `watch` cuts the task short.
fn wait_reply(
    conn: &Connection,
    watch: &Watch<'_>,
    deadline: Option<(Instant, Duration)>,
) -> std::result::Result<(), Cut> {
    loop {
        let left = match deadline {
            Some((at, limit)) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return if conn.poll(Some(Duration::ZERO)).unwrap_or(true) {
                        Ok(())
                    } else {
                        Err(Cut::TimedOut(limit))
                    };
                }
                Some(left)
            }
            None => None,
        };
        let ready = match watch.wake {
            Some(fd) => multiproc_channel::wait(&[conn, &fd], left).unwrap_or_else(|_| vec![0]),
            None => {
                if conn.poll(left).unwrap_or(true) {
                    vec![0]
                } else {
                    Vec::new()
                }
            }
        };
        if ready.contains(&0) {
            return Ok(());
        }
        if (watch.cancelled)() {
            return Err(Cut::Cancelled);
        }
    }
}

fn handler(shared: Arc<Shared>, slot: usize, jobs: Receiver<Job>, mut worker: Option<Worker>) {
    let mut scratch = Vec::new();
    while let Ok(job) = jobs.recv() {
        let piece = shared.run(slot, &mut worker, job.input, &mut scratch);
        let decoded = match (&piece, job.decode) {
            (Ok(reply), Some(decode)) => decode(reply),
            _ => None,
        };
        job.group.deliver(job.index, piece, decoded);
    }
    if let Some(w) = worker.take() {
        shared.retire(slot, w);
    }
}

/// Starts slot `slot`'s worker, then its handler thread, which takes jobs
/// from `jobs` until the pool closes.
pub(crate) fn start_handler(
    shared: &Arc<Shared>,
    slot: usize,
    jobs: Receiver<Job>,
) -> Result<JoinHandle<()>> {
    let worker = shared.start_worker(slot)?;
    let shared = shared.clone();
    Ok(std::thread::Builder::new()
        .name(format!("pool-handler-{slot}"))
        .spawn(move || handler(shared, slot, jobs, Some(worker)))?)
}
