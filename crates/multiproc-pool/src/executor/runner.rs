//! The runner threads, one per worker: each takes the next task off the
//! executor's queue, sends it to its worker and waits for the reply, the
//! time limit or a cancel, whichever comes first. A task cut short has its
//! worker killed; the next task starts a new one.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Core;
use super::future::{Task, TaskState};
use crate::group::{Failure, Piece};
use crate::handler::{Watch, Worker};

/// Empties the cancel socket of a slot.
fn drain(wake: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!((&*wake).read(&mut buf), Ok(n) if n > 0) {}
}

/// Runs one task on the slot's worker.
fn run(
    core: &Core,
    slot: usize,
    worker: &mut Option<Worker>,
    wake: &UnixStream,
    task: &Task,
) -> Piece {
    let Some(message) = task.input.lock().take() else {
        return Err(Failure::Closed);
    };
    let limit = task.limit.or(core.default_limit);
    if limit.is_none() && !core.cancel_running {
        // Nothing can cut it short: the plain exchange, as a pool's.
        return core.shared.exchange(slot, worker, &message);
    }
    drain(wake);
    let cancelled = || {
        drain(wake);
        task.cancel_requested.load(Ordering::SeqCst)
    };
    let watch = Watch {
        deadline: limit.map(|l| (Instant::now() + l, l)),
        wake: core.cancel_running.then(|| wake.as_fd()),
        cancelled: &cancelled,
    };
    core.shared
        .exchange_watched(slot, worker, &message, Some(&watch))
}

/// A runner thread: tasks until the executor shuts down and its queue is
/// empty.
pub(crate) fn runner(core: Arc<Core>, slot: usize, wake: UnixStream, mut worker: Option<Worker>) {
    while let Some(task) = core.next_task() {
        {
            let mut state = task.state.lock();
            if !matches!(*state, TaskState::Queued) {
                // Cancelled while queued.
                continue;
            }
            *state = TaskState::Running(slot);
        }
        let piece = match run(&core, slot, &mut worker, &wake, &task) {
            // Ended by strict mode's break, not by the caller.
            Err(Failure::Closed) => match core.broken() {
                Some(why) => Err(Failure::Broken(why)),
                None => Err(Failure::Closed),
            },
            piece => piece,
        };
        if let Err(Failure::WorkerDied {
            pid,
            signal,
            exitcode,
        }) = &piece
            && core.broken_on_death
        {
            let why = Failure::WorkerDied {
                pid: *pid,
                signal: *signal,
                exitcode: *exitcode,
            }
            .to_error()
            .to_string();
            task.finish(piece);
            core.break_down(&why);
            continue;
        }
        task.finish(piece);
        if worker.is_none() && !core.is_shut() {
            // A worker killed for a time limit or a cancel, or dead: its
            // replacement starts now, after the task's end was told. A
            // failure to start one is met again by the next task.
            worker = core.shared.start_worker(slot).ok();
        }
    }
    if let Some(w) = worker.take() {
        core.shared.retire(slot, w);
    }
}
