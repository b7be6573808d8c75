//! The runner threads, one per worker: each takes the next task off the
//! executor's queue, sends it to its worker and waits for the reply, the
//! time limit or a cancel, whichever comes first. A task cut short has its
//! worker killed; the next task starts a new one.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::Core;
use super::future::{Task, TaskState};
use crate::group::{Failure, Piece};
use crate::handler::{Watch, Worker};

/// Empties the cancel socket of a slot.
fn drain(wake: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!((&*wake).read(&mut buf), Ok(n) if n > 0) {}
}

/// How many tasks a runner sends its worker ahead of their replies, so
/// that the worker finds its next task waiting instead of sleeping for it.
const AHEAD: usize = 16;

/// Tasks go ahead only while they take less than this each: a task sent
/// ahead waits behind the ones before it, which must be short.
const SHORT: Duration = Duration::from_micros(100);

/// The largest task sent ahead: with at most [`AHEAD`] of them the ring to
/// the worker (4 MiB) never fills, so the runner's send never waits while
/// the worker waits for it to read a reply.
const AHEAD_BYTES: usize = 64 << 10;

/// Whether nothing can cut the task short and it is small: it may be sent
/// ahead.
fn plain(core: &Core, task: &Task) -> bool {
    task.limit.or(core.default_limit).is_none()
        && !core.cancel_running
        && core.shared.pipelines()
        && task
            .input
            .lock()
            .as_ref()
            .is_some_and(|m| m.bytes.len() <= AHEAD_BYTES)
}

/// Marks a queued task as running on `slot`; false if it was cancelled.
fn claim(task: &Task, slot: usize) -> bool {
    let mut state = task.state.lock();
    if !matches!(*state, TaskState::Queued) {
        return false;
    }
    *state = TaskState::Running(slot);
    true
}

/// Runs `first` and the plain tasks that follow it in the queue, up to
/// [`AHEAD`] sent at once, each reply ending its own task, in order. A
/// worker that dies fails the task it was running; those it never took go
/// to the next worker. Returns a task taken off the queue that is not
/// plain, for the caller to run.
fn run_ahead(
    core: &Core,
    slot: usize,
    queue: &Receiver<Arc<Task>>,
    worker: &mut Option<Worker>,
    first: Arc<Task>,
) -> Option<Arc<Task>> {
    let mut flight: VecDeque<Arc<Task>> = VecDeque::new();
    let mut retry: VecDeque<Arc<Task>> = VecDeque::new();
    let mut held = None;
    let mut next = Some(first);
    // How long the recent tasks took, each (a moving average); unknown
    // (long) until one is measured.
    let mut each = Duration::MAX;
    let mut last = Instant::now();
    loop {
        // Top up what is in flight, unless tasks wait to be sent again:
        // only with short tasks, and while no other runner is idle (one
        // that is would take the next task sooner).
        while flight.len() < AHEAD && retry.is_empty() && held.is_none() {
            let ahead = each < SHORT && core.idle.load(Ordering::SeqCst) == 0;
            let Some(task) = next.take().or_else(|| {
                if ahead || flight.is_empty() {
                    queue.try_recv().ok()
                } else {
                    None
                }
            }) else {
                break;
            };
            if !plain(core, &task) {
                held = Some(task);
                break;
            }
            if !claim(&task, slot) {
                // Cancelled while queued.
                continue;
            }
            let Some(message) = task.input.lock().take() else {
                task.finish(Err(Failure::Closed));
                continue;
            };
            let sent = core.shared.send_ahead(slot, worker, &message, flight.len());
            *task.input.lock() = Some(message);
            match sent {
                Ok(true) => flight.push_back(task),
                // Its worker's end was gone: it goes to the next worker,
                // after the replies of those before it.
                Ok(false) => retry.push_back(task),
                Err(f) => task.finish(Err(f)),
            }
        }
        let Some(head) = flight.pop_front() else {
            // Nothing in flight: those to send again run one at a time.
            while let Some(t) = retry.pop_front() {
                let piece = run(core, slot, worker, None, &t);
                end(core, &t, piece);
            }
            return held;
        };
        match core.shared.receive_ahead(slot, worker, flight.len() + 1) {
            Ok(reply) => {
                let took = last.elapsed();
                last = Instant::now();
                each = if each == Duration::MAX {
                    took
                } else {
                    (each * 7 + took) / 8
                };
                let piece = core.shared.reply_ahead(slot, worker, reply);
                end(core, &head, piece);
            }
            Err((failure, _untaken)) => {
                match failure {
                    // Never taken either: it goes to the next worker too.
                    Failure::NeverTaken { .. } => retry.push_front(head),
                    f => end(core, &head, Err(f)),
                }
                // The worker runs one task at a time, so the others were
                // never taken: they go to the next worker.
                retry.extend(flight.drain(..));
            }
        }
    }
}

/// Runs one task on the slot's worker.
fn run(
    core: &Core,
    slot: usize,
    worker: &mut Option<Worker>,
    wake: Option<&UnixStream>,
    task: &Task,
) -> Piece {
    let Some(message) = task.input.lock().take() else {
        return Err(Failure::Closed);
    };
    let limit = task.limit.or(core.default_limit);
    let Some(wake) = wake.filter(|_| limit.is_some() || core.cancel_running) else {
        // Nothing can cut it short: the plain exchange, as a pool's.
        return core.shared.exchange(slot, worker, &message);
    };
    let cancelled = || {
        drain(wake);
        task.cancel_requested.load(Ordering::SeqCst)
    };
    let watch = Watch {
        limit,
        wake: core.cancel_running.then(|| wake.as_fd()),
        cancelled: &cancelled,
    };
    core.shared
        .exchange_watched(slot, worker, &message, Some(&watch))
}

/// Ends `task` with `piece`. In strict mode a worker's death then breaks
/// the executor; a task ended by that break says so.
fn end(core: &Core, task: &Task, piece: Piece) {
    if task.cancel_requested.load(Ordering::SeqCst) {
        // `cancel` said yes: whatever came back, it is cancelled.
        task.finish(Err(Failure::Cancelled));
        return;
    }
    let piece = match piece {
        Err(Failure::Closed) => match core.broken() {
            Some(why) => Err(Failure::Broken(why)),
            None => Err(Failure::Closed),
        },
        piece => piece,
    };
    let death = match &piece {
        Err(f @ Failure::WorkerDied { .. }) if core.broken_on_death => {
            Some(f.to_error().to_string())
        }
        _ => None,
    };
    task.finish(piece);
    if let Some(why) = death {
        core.break_down(&why);
    }
}

/// A worker killed for a time limit or a cancel, or dead: its replacement
/// starts now, after the task's end was told. A failure to start one is
/// met again by the next task.
fn replace(core: &Core, slot: usize, worker: &mut Option<Worker>) {
    if worker.is_none() && !core.is_shut() {
        *worker = core.shared.start_worker(slot).ok();
    }
}

/// A runner thread: tasks until the executor shuts down and its queue is
/// empty.
pub(crate) fn runner(
    core: Arc<Core>,
    slot: usize,
    queue: Receiver<Arc<Task>>,
    wake: UnixStream,
    mut worker: Option<Worker>,
) {
    // Ends when the executor is shut down and the queue is empty.
    let mut held: Option<Arc<Task>> = None;
    while let Some(task) = held.take().or_else(|| {
        core.idle.fetch_add(1, Ordering::SeqCst);
        let task = queue.recv().ok();
        core.idle.fetch_sub(1, Ordering::SeqCst);
        task
    }) {
        if plain(&core, &task) {
            held = run_ahead(&core, slot, &queue, &mut worker, task);
            replace(&core, slot, &mut worker);
            continue;
        }
        // Before the claim: a cancel of this task from now on leaves its
        // byte for the watch to see.
        drain(&wake);
        if !claim(&task, slot) {
            // Cancelled while queued.
            continue;
        }
        let piece = run(&core, slot, &mut worker, Some(&wake), &task);
        end(&core, &task, piece);
        replace(&core, slot, &mut worker);
    }
    if let Some(w) = worker.take() {
        core.shared.retire(slot, w);
    }
}
