//! What rank 0 and the worker ranks say to each other, and how a rank
//! waits for it without spinning a core away.
//!
//! Rank 0 sends a worker a task (its bytes, as the pool makes them) only
//! when the worker has none: one task per worker at a time, so that every
//! send meets a worker that is probing for it and a large (rendezvous)
//! message can never leave both sides sending. The worker's reply is the
//! request for the next one.

use std::time::{Duration, Instant};

use mpi::Tag;
use mpi::point_to_point::Destination;
use mpi::topology::{Communicator, SimpleCommunicator};

/// Rank 0 to a worker: a task message.
pub(crate) const TASK: Tag = 1;
/// Rank 0 to a worker: no more tasks; finalize and exit.
pub(crate) const STOP: Tag = 2;
/// A worker to rank 0: a task's reply.
pub(crate) const REPLY: Tag = 3;
/// A worker to rank 0: the reply was too large for one MPI message; why.
pub(crate) const TOO_LARGE: Tag = 4;

/// Tells every worker rank to stop (an empty message: eager, so it
/// never waits for a worker that is busy).
pub(crate) fn stop_workers(world: &SimpleCommunicator) {
    for rank in 1..world.size() {
        world
            .process_at_rank(rank)
            .send_with_tag(&[0u8; 0][..], STOP);
    }
}

/// The largest message MPI's `int` count can carry.
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// How long a rank yields the core between polls after its last message:
/// a reply is often that close behind. It never spins without yielding:
/// on a node with as many ranks as cores, the thread it would starve is
/// the one about to send (a spin of 50 us made a round trip 66 us instead
/// of 16).
const YIELD: Duration = Duration::from_millis(1);
/// The longest sleep between polls after that (the latency of the first
/// task after a quiet spell).
const NAP_MAX: Duration = Duration::from_millis(1);

/// A poll loop's pacing: MPI's blocking receives spin on the core, which
/// a 2-core node cannot spare while its other ranks compute, so ranks poll
/// with `MPI_Iprobe` and back off as the quiet lasts.
pub(crate) struct Patience {
    since: Instant,
}

impl Patience {
    pub(crate) fn new() -> Patience {
        Patience {
            since: Instant::now(),
        }
    }

    /// Something arrived: the next wait starts hot again.
    pub(crate) fn reset(&mut self) {
        self.since = Instant::now();
    }

    /// Pauses before the next poll, longer the longer nothing came.
    pub(crate) fn pause(&self) {
        let quiet = self.since.elapsed();
        if quiet < YIELD {
            std::thread::yield_now();
        } else {
            std::thread::sleep((quiet / 16).min(NAP_MAX));
        }
    }
}
