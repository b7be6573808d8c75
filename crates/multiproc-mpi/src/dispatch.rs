//! Rank 0's dispatcher thread: the pool's jobs out to idle worker ranks,
//! their replies back to the calls that wait for them.
//!
//! It is the only thread of rank 0 that calls MPI while the pool lives
//! (rank 0's main thread initializes and finalizes MPI around it), so MPI
//! needs `MPI_THREAD_SERIALIZED`, not `MULTIPLE`. It decodes replies
//! itself (a hop to another thread per reply doubled a round trip), but
//! runs no callback: a call that completes with one goes to a delivery
//! thread, so a slow or blocking callback never stalls MPI.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, Rank, SimpleCommunicator};
use multiproc_pool::remote::{Completion, Next, RemoteJob, RemoteJobs};
use multiproc_process::Error;

use crate::wire::{MAX_MESSAGE, Patience, REPLY, TASK, TOO_LARGE, stop_workers};

/// How long an idle dispatcher waits for a job before it looks at the
/// end flag again (a closed pool wakes it at once).
const IDLE: Duration = Duration::from_millis(100);

/// The most delivery threads: as a local pool has a handler per worker, so
/// a callback that waits for another call of the pool finds another
/// thread to deliver it.
const DELIVERERS_MAX: usize = 16;

/// Serves the pool until it is closed and its work done, or ended; then
/// stops the workers. A worker that runs a task when the pool ends
/// finishes it first: its reply is read (and dropped) before `STOP`.
pub(crate) fn dispatch(jobs: RemoteJobs, ended: Arc<AtomicBool>) {
    let world = SimpleCommunicator::world();
    let workers = (world.size() - 1).max(0) as usize;
    let (deliver, deliveries) = crossbeam_channel::unbounded::<Completion>();
    let deliverers: Vec<JoinHandle<()>> = (0..workers.clamp(1, DELIVERERS_MAX))
        .filter_map(|k| {
            let deliveries = deliveries.clone();
            std::thread::Builder::new()
                .name(format!("mpi-deliver-{k}"))
                .spawn(move || deliver_loop(deliveries))
                .ok()
        })
        .collect();
    drop(deliveries);
    // The loop calls no user code and does not panic by design; if it
    // does all the same, the workers are still told to stop, so that the
    // job ends instead of waiting for them.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        serve(&world, workers, &jobs, &ended, &deliver);
    }));
    stop_workers(&world);
    // Jobs still queued fail as the queue goes; then the deliverers end.
    drop(jobs);
    drop(deliver);
    for d in deliverers {
        let _ = d.join();
    }
}

/// A delivery thread: runs the callbacks of calls as they complete.
fn deliver_loop(deliveries: Receiver<Completion>) {
    for completion in deliveries {
        completion.run();
    }
}

/// Gives a completed call's callback to a delivery thread (or runs it
/// here, if none could start).
fn hand_over(deliver: &Sender<Completion>, completion: Option<Completion>) {
    if let Some(completion) = completion
        && let Err(crossbeam_channel::SendError(completion)) = deliver.send(completion)
    {
        completion.run();
    }
}

/// The dispatcher's loop: replies in, jobs out, until the pool is closed
/// and every worker idle.
fn serve(
    world: &SimpleCommunicator,
    workers: usize,
    jobs: &RemoteJobs,
    ended: &AtomicBool,
    deliver: &Sender<Completion>,
) {
    // The job each worker runs (worker w is rank w + 1).
    let mut running: Vec<Option<RemoteJob>> = (0..workers).map(|_| None).collect();
    let mut idle: VecDeque<usize> = (0..workers).collect();
    let mut closed = false;
    let mut scratch = Vec::new();
    let mut patience = Patience::new();
    loop {
        let end = ended.load(Ordering::Acquire);
        let mut progress = false;
        while let Some(probed) = world.any_process().immediate_matched_probe() {
            let (bytes, status) = probed.matched_receive_vec::<u8>();
            progress = true;
            let Some(w) = worker_of(status.source_rank(), workers) else {
                continue;
            };
            // Only a worker with a task replies; anything else is not
            // ours to count.
            let Some(job) = running[w].take() else {
                continue;
            };
            let done = match status.tag() {
                _ if end => job.fail(Error::Closed),
                REPLY => job.finish(bytes),
                TOO_LARGE => job.fail(Error::Encode(String::from_utf8_lossy(&bytes).into())),
                tag => job.fail(Error::BrokenPool {
                    why: format!("rank {} sent a message of unknown tag {tag}", w + 1),
                }),
            };
            hand_over(deliver, done);
            idle.push_back(w);
        }
        if end {
            while let Next::Job(job) = jobs.next_timeout(Duration::ZERO) {
                hand_over(deliver, job.fail(Error::Closed));
            }
            closed = true;
        }
        while !closed && let Some(&w) = idle.front() {
            // With nothing out, nothing can come from MPI: wait for a job.
            let wait = if idle.len() == workers {
                IDLE
            } else {
                Duration::ZERO
            };
            let mut job = match jobs.next_timeout(wait) {
                Next::Job(job) => job,
                Next::Empty => break,
                Next::Closed => {
                    closed = true;
                    break;
                }
            };
            progress = true;
            if ended.load(Ordering::Acquire) {
                hand_over(deliver, job.fail(Error::Closed));
                break;
            }
            match job.encode(std::mem::take(&mut scratch)) {
                Ok(bytes) if bytes.len() > MAX_MESSAGE => {
                    let why = format!(
                        "a task of {} bytes: an MPI message carries at most {MAX_MESSAGE}",
                        bytes.len()
                    );
                    hand_over(deliver, job.fail(Error::Encode(why)));
                }
                Ok(bytes) => {
                    world
                        .process_at_rank(w as Rank + 1)
                        .send_with_tag(&bytes[..], TASK);
                    scratch = bytes;
                    idle.pop_front();
                    running[w] = Some(job);
                }
                Err(e) => hand_over(deliver, job.fail(e)),
            }
        }
        if closed && idle.len() == workers {
            return;
        }
        if progress {
            patience.reset();
        } else {
            patience.pause();
        }
    }
}

/// The worker index of a rank, if it is one of the workers.
fn worker_of(rank: Rank, workers: usize) -> Option<usize> {
    let w = usize::try_from(rank).ok()?.checked_sub(1)?;
    (w < workers).then_some(w)
}
