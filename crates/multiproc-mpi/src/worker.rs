//! A worker rank: runs the tasks rank 0 sends until told to stop.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::Communicator;
use multiproc_pool::remote::run_task;

use crate::wire::{MAX_MESSAGE, Patience, REPLY, STOP, TASK, TOO_LARGE};

/// Whether this rank is running a task now.
static IN_TASK: AtomicBool = AtomicBool::new(false);
/// "rank 2 on node7", for the line below.
static WHO: OnceLock<String> = OnceLock::new();

/// At this process's exit: a task that exits the process takes its rank
/// out of the job, which MPI then ends; say so, since `mpirun` tells only
/// that a process ended badly.
fn exit_in_task() {
    if IN_TASK.load(Ordering::Relaxed) {
        eprintln!(
            "multiproc: MPI {} exited while running a task; a rank cannot leave an MPI job, so \
             mpirun ends it",
            WHO.get().map_or("rank", String::as_str)
        );
    }
}

/// Serves rank 0 until it says stop, then finalizes MPI.
pub(crate) fn serve(universe: Universe) {
    let world = universe.world();
    let root = world.process_at_rank(0);
    let host = mpi::environment::processor_name().unwrap_or_default();
    let _ = WHO.set(format!("rank {} on {host}", world.rank()));
    multiproc_process::at_exit(exit_in_task);
    let mut out = Vec::new();
    let mut patience = Patience::new();
    loop {
        let Some(probed) = root.immediate_matched_probe() else {
            patience.pause();
            continue;
        };
        let (task, status) = probed.matched_receive_vec::<u8>();
        match status.tag() {
            STOP => break,
            TASK => {
                IN_TASK.store(true, Ordering::Relaxed);
                let reply = run_task(&task, std::mem::take(&mut out));
                IN_TASK.store(false, Ordering::Relaxed);
                if reply.len() > MAX_MESSAGE {
                    let why = format!(
                        "a result of {} bytes: an MPI message carries at most {MAX_MESSAGE}",
                        reply.len()
                    );
                    root.send_with_tag(why.as_bytes(), TOO_LARGE);
                } else {
                    root.send_with_tag(&reply[..], REPLY);
                }
                out = reply;
            }
            // Nothing else is sent to a worker.
            _ => {}
        }
        patience.reset();
    }
    drop(world);
    drop(universe);
}
