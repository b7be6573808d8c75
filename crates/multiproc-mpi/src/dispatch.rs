//! Rank 0's dispatcher thread: the pool's jobs out to idle worker ranks,
//! their replies back to the calls that wait for them.
//!
//! It is the only thread of rank 0 that calls MPI after the start, so MPI
//! needs `MPI_THREAD_SERIALIZED`, not `MULTIPLE`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, Rank};
use multiproc_pool::remote::{Next, RemoteJob, RemoteJobs};
use multiproc_process::Error;

use crate::wire::{MAX_MESSAGE, Patience, REPLY, STOP, TASK, TOO_LARGE};

/// How long an idle dispatcher waits for a job before it looks at the
/// end flag again (a closed pool wakes it at once).
const IDLE: Duration = Duration::from_millis(100);

/// Serves the pool until it is closed and its work done, or ended; then
/// stops the workers and finalizes MPI (which waits for every rank, so
/// for the tasks they still run).
pub(crate) fn dispatch(universe: Universe, jobs: RemoteJobs, ended: Arc<AtomicBool>) {
    let world = universe.world();
    let workers = (world.size() - 1).max(0) as usize;
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
            let Some(w) = worker_of(status.source_rank(), workers) else {
                continue;
            };
            if let Some(job) = running[w].take() {
                match status.tag() {
                    _ if end => job.fail(Error::Closed),
                    REPLY => job.finish(bytes),
                    TOO_LARGE => job.fail(Error::Encode(String::from_utf8_lossy(&bytes).into())),
                    tag => job.fail(Error::Decode(format!(
                        "a message of tag {tag} from rank {}",
                        w + 1
                    ))),
                }
            }
            idle.push_back(w);
            progress = true;
        }
        if end {
            while let Next::Job(job) = jobs.next_timeout(Duration::ZERO) {
                job.fail(Error::Closed);
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
            match jobs.next_timeout(wait) {
                Next::Job(mut job) => {
                    match job.encode(std::mem::take(&mut scratch)) {
                        Ok(bytes) if bytes.len() > MAX_MESSAGE => job.fail(Error::Encode(format!(
                            "a task of {} bytes: an MPI message carries at most {MAX_MESSAGE}",
                            bytes.len()
                        ))),
                        Ok(bytes) => {
                            world
                                .process_at_rank(w as Rank + 1)
                                .send_with_tag(&bytes[..], TASK);
                            scratch = bytes;
                            idle.pop_front();
                            running[w] = Some(job);
                        }
                        Err(e) => job.fail(e),
                    }
                    progress = true;
                }
                Next::Empty => break,
                Next::Closed => closed = true,
            }
            if ended.load(Ordering::Acquire) {
                break;
            }
        }
        if closed && idle.len() == workers {
            break;
        }
        if progress {
            patience.reset();
        } else {
            patience.pause();
        }
    }
    for rank in 1..world.size() {
        world
            .process_at_rank(rank)
            .send_with_tag(&[0u8; 0][..], STOP);
    }
    drop(world);
    drop(universe);
}

/// The worker index of a rank, if it is one of the workers.
fn worker_of(rank: Rank, workers: usize) -> Option<usize> {
    let w = usize::try_from(rank).ok()?.checked_sub(1)?;
    (w < workers).then_some(w)
}
