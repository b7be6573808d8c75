//! The executor with real worker processes, under each start method, after
//! `concurrent.futures`' own tests: results, completion order, `wait`,
//! cancellation of queued and running tasks, time limits that kill, deaths,
//! strict mode, shutdown and drop.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mp::futures::{ReturnWhen, as_completed, wait};
use multiproc as mp;
use multiproc_testkit::{is_running, wait_until};

const LIMIT: Duration = Duration::from_secs(30);

fn executor(ctx: &mp::Context, n: usize) -> mp::ExecutorBuilder {
    mp::Executor::builder()
        .workers(n)
        .start_method(ctx.start_method())
}

fn square(n: u64) -> u64 {
    n * n
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn spin() -> u64 {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn fail_if_odd(n: u64) -> mp::Result<u64> {
    if n % 2 == 1 {
        return Err(mp::Error::InvalidArgument(format!("{n} is odd")));
    }
    Ok(n)
}

fn set(e: mp::Event) {
    e.set();
}

/// Says it started, then sleeps.
fn started_then_sleep(started: mp::Event, ms: u64) -> u64 {
    started.set();
    sleep_ms(ms)
}

/// `n * n`, computed by a worker of `ex`.
fn square_on(ex: &mp::Executor, n: u64) -> u64 {
    ex.submit(square, (n,))
        .unwrap()
        .result_timeout(LIMIT)
        .unwrap()
}

/// Submits the squares of `0..n` and checks every result.
fn assert_squares(ex: &mp::Executor, n: u64) {
    let futures: Vec<_> = (0..n).map(|i| ex.submit(square, (i,)).unwrap()).collect();
    let got: Vec<u64> = futures
        .iter()
        .map(|f| f.result_timeout(LIMIT).unwrap())
        .collect();
    assert_eq!(got, (0..n).map(|i| i * i).collect::<Vec<_>>());
}

/// Waits until `f` runs on a worker.
fn until_running<R>(f: &mp::TaskFuture<R>) {
    assert!(wait_until(LIMIT, || f.running()), "the task never started");
}

fn results_equal_the_serial_ones(ctx: mp::Context) {
    let ex = executor(&ctx, 2).build().unwrap();
    assert_squares(&ex, 50);
    // A result can be read again.
    let f = ex.submit(square, (7u64,)).unwrap();
    assert_eq!(f.result_timeout(LIMIT).unwrap(), 49);
    assert_eq!(f.result().unwrap(), 49);
    // map: in order, in chunks, a bounded look-ahead.
    let mapped: Vec<u64> = ex
        .map(square, 0..100u64, 7, Some(2))
        .map(Result::unwrap)
        .collect();
    assert_eq!(mapped, (0..100u64).map(|n| n * n).collect::<Vec<_>>());
    // A failing chunk fails each of its items, and only those.
    let items: Vec<mp::Result<u64>> = ex
        .map(fail_if_odd, [0u64, 2, 4, 5, 6, 8], 2, None)
        .collect();
    let oks: Vec<bool> = items.iter().map(Result::is_ok).collect();
    assert_eq!(oks, [true, true, false, false, true, true]);
    assert!(
        matches!(&items[2], Err(mp::Error::TaskFailed { message }) if message.contains("5 is odd"))
    );
    // exception() and callbacks.
    let f = ex.submit(fail_if_odd, (3u64,)).unwrap();
    assert!(matches!(f.exception(), Some(mp::Error::TaskFailed { .. })));
    assert!(ex.submit(square, (2u64,)).unwrap().exception().is_none());
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let f = ex.submit(sleep_ms, (100u64,)).unwrap();
    f.add_done_callback(move |f| {
        assert_eq!(f.result().unwrap(), 100);
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(matches!(
        f.result_timeout(Duration::from_millis(1)),
        Err(mp::Error::Timeout)
    ));
    assert_eq!(f.result_timeout(LIMIT).unwrap(), 100);
    assert!(wait_until(LIMIT, || called.load(Ordering::SeqCst) == 1));
    // A callback added after the end runs at once.
    let c = called.clone();
    f.add_done_callback(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(called.load(Ordering::SeqCst), 2);
}

fn as_completed_follows_completion_order(ctx: mp::Context) {
    let ex = executor(&ctx, 3).build().unwrap();
    let futures: Vec<_> = [600u64, 100, 350]
        .iter()
        .map(|&ms| ex.submit(sleep_ms, (ms,)).unwrap())
        .collect();
    let order: Vec<u64> = as_completed(&futures, Some(LIMIT))
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    assert_eq!(order, vec![100, 350, 600]);
    // Past its timeout it says so, once, and ends.
    let slow = vec![ex.submit(sleep_ms, (2000u64,)).unwrap()];
    let mut it = as_completed(&slow, Some(Duration::from_millis(100)));
    assert!(matches!(it.next(), Some(Err(mp::Error::Timeout))));
    assert!(it.next().is_none());
}

fn wait_returns_when_asked(ctx: mp::Context) {
    let ex = executor(&ctx, 2).build().unwrap();
    let fs = vec![
        ex.submit(sleep_ms, (50u64,)).unwrap(),
        ex.submit(sleep_ms, (1500u64,)).unwrap(),
    ];
    let t = Instant::now();
    let w = wait(&fs, Some(LIMIT), ReturnWhen::FirstCompleted);
    assert!(t.elapsed() < Duration::from_millis(1000));
    assert_eq!((w.done, w.not_done), (vec![0], vec![1]));
    let w = wait(&fs, Some(LIMIT), ReturnWhen::AllCompleted);
    assert_eq!((w.done, w.not_done), (vec![0, 1], vec![]));
    // FirstException: the failure ends the wait, the slow one is not done.
    let fs = vec![
        ex.submit(sleep_ms, (1500u64,)).unwrap(),
        ex.submit(fail_if_odd, (1u64,)).unwrap(),
    ];
    let w = wait(&fs, Some(LIMIT), ReturnWhen::FirstException);
    assert_eq!((w.done, w.not_done), (vec![1], vec![0]));
    // A timeout gives what is done by then.
    let w = wait(
        &fs,
        Some(Duration::from_millis(10)),
        ReturnWhen::AllCompleted,
    );
    assert_eq!(w.not_done, vec![0]);
}

fn a_cancelled_queued_task_never_runs(ctx: mp::Context) {
    let ex = executor(&ctx, 1).build().unwrap();
    let flag = mp::Event::new().unwrap();
    let blocker = ex.submit(sleep_ms, (300u64,)).unwrap();
    let queued = ex.submit(set, (flag.clone(),)).unwrap();
    assert!(!queued.running());
    assert!(queued.cancel());
    assert!(queued.cancelled() && queued.done());
    assert!(matches!(queued.result(), Err(mp::Error::Cancelled)));
    assert_eq!(blocker.result_timeout(LIMIT).unwrap(), 300);
    // Something after it runs, and the flag was never set.
    assert_eq!(square_on(&ex, 3), 9);
    assert!(!flag.is_set());
    // A finished task cannot be cancelled.
    assert!(!blocker.cancel());
}

fn a_cancelled_running_task_kills_its_worker_and_nothing_else(ctx: mp::Context) {
    let ex = executor(&ctx, 2).cancel_running(true).build().unwrap();
    let stuck = ex.submit(spin, ()).unwrap();
    until_running(&stuck);
    let before = ex.worker_pids();
    let others: Vec<_> = (0..50u64)
        .map(|n| ex.submit(square, (n,)).unwrap())
        .collect();
    let t = Instant::now();
    assert!(stuck.cancel());
    assert!(matches!(
        stuck.result_timeout(LIMIT),
        Err(mp::Error::Cancelled)
    ));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "cancel took {:?}",
        t.elapsed()
    );
    let got: Vec<u64> = others
        .iter()
        .map(|f| f.result_timeout(LIMIT).unwrap())
        .collect();
    assert_eq!(got, (0..50u64).map(|n| n * n).collect::<Vec<_>>());
    let gone: Vec<u32> = before
        .iter()
        .copied()
        .filter(|p| !ex.worker_pids().contains(p))
        .collect();
    assert_eq!(gone.len(), 1, "exactly the spinning worker is replaced");
    assert!(wait_until(LIMIT, || !is_running(gone[0])));
    // A fresh worker takes its place.
    assert!(wait_until(LIMIT, || ex.worker_pids().len() == 2));
    // Without the option a running task runs on.
    let plain = executor(&ctx, 1).build().unwrap();
    let f = plain.submit(sleep_ms, (200u64,)).unwrap();
    until_running(&f);
    assert!(!f.cancel());
    assert_eq!(f.result_timeout(LIMIT).unwrap(), 200);
}

fn a_task_past_its_limit_is_killed_and_the_executor_goes_on(ctx: mp::Context) {
    let ex = executor(&ctx, 2)
        .task_time_limit(Duration::from_millis(200))
        .build()
        .unwrap();
    let t = Instant::now();
    let f = ex.submit(spin, ()).unwrap();
    match f.result_timeout(LIMIT) {
        Err(mp::Error::TaskTimedOut { after }) => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("{other:?}"),
    }
    let took = t.elapsed();
    assert!(took < Duration::from_millis(300), "ended after {took:?}");
    // Its own limit wins over the executor's.
    let f = ex
        .submit_with_limit(sleep_ms, (400u64,), Duration::from_secs(5))
        .unwrap();
    assert_eq!(f.result_timeout(LIMIT).unwrap(), 400);
    assert_squares(&ex, 100);
}

fn a_worker_killed_from_outside_fails_only_its_task(ctx: mp::Context) {
    let ex = executor(&ctx, 1).build().unwrap();
    let started = mp::Event::new().unwrap();
    let f = ex
        .submit(started_then_sleep, (started.clone(), 5000u64))
        .unwrap();
    // Killed once it runs the task (before, the task would go to the
    // worker that replaces it, as in a pool).
    assert!(started.wait_timeout(LIMIT));
    let pid = ex.worker_pids()[0];
    let queued = ex.submit(square, (4u64,)).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    match f.result_timeout(LIMIT) {
        Err(mp::Error::WorkerDied { pid: p, signal, .. }) => {
            assert_eq!((p, signal), (pid, Some(9)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(queued.result_timeout(LIMIT).unwrap(), 16);
}

fn strict_mode_breaks_on_a_death(ctx: mp::Context) {
    let ex = executor(&ctx, 1).broken_on_death(true).build().unwrap();
    let started = mp::Event::new().unwrap();
    let f = ex
        .submit(started_then_sleep, (started.clone(), 5000u64))
        .unwrap();
    assert!(started.wait_timeout(LIMIT));
    let queued: Vec<_> = (0..5u64)
        .map(|n| ex.submit(square, (n,)).unwrap())
        .collect();
    let pid = ex.worker_pids()[0];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert!(matches!(
        f.result_timeout(LIMIT),
        Err(mp::Error::WorkerDied { .. })
    ));
    for q in &queued {
        assert!(matches!(
            q.result_timeout(LIMIT),
            Err(mp::Error::BrokenPool { .. })
        ));
    }
    assert!(matches!(
        ex.submit(square, (1u64,)),
        Err(mp::Error::BrokenPool { .. })
    ));
}

fn shutdown_with_and_without_cancelling(ctx: mp::Context) {
    let ex = executor(&ctx, 1).build().unwrap();
    let running = ex.submit(sleep_ms, (200u64,)).unwrap();
    until_running(&running);
    let queued: Vec<_> = (0..5u64)
        .map(|n| ex.submit(square, (n,)).unwrap())
        .collect();
    ex.shutdown(true, false);
    assert_eq!(running.result().unwrap(), 200);
    assert_eq!(queued.iter().map(|f| f.result().unwrap()).sum::<u64>(), 30);
    assert!(ex.worker_pids().is_empty());
    assert!(matches!(ex.submit(square, (1u64,)), Err(mp::Error::Closed)));

    let ex = executor(&ctx, 1).build().unwrap();
    let running = ex.submit(sleep_ms, (200u64,)).unwrap();
    until_running(&running);
    let queued: Vec<_> = (0..5u64)
        .map(|n| ex.submit(square, (n,)).unwrap())
        .collect();
    ex.shutdown(false, true);
    for q in &queued {
        assert!(q.cancelled());
    }
    assert_eq!(running.result_timeout(LIMIT).unwrap(), 200);
}

fn dropping_it_leaves_no_process_behind(ctx: mp::Context) {
    let ex = executor(&ctx, 2).build().unwrap();
    let stuck = ex.submit(spin, ()).unwrap();
    let stuck2 = ex.submit(spin, ()).unwrap();
    until_running(&stuck);
    until_running(&stuck2);
    let queued = ex.submit(square, (1u64,)).unwrap();
    let pids = ex.worker_pids();
    assert_eq!(pids.len(), 2);
    let t = Instant::now();
    drop(ex);
    assert!(t.elapsed() < Duration::from_secs(5));
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(5), || !is_running(pid)),
            "worker {pid} outlived the executor"
        );
    }
    assert!(matches!(
        stuck.result_timeout(LIMIT),
        Err(mp::Error::Closed)
    ));
    assert!(matches!(
        stuck2.result_timeout(LIMIT),
        Err(mp::Error::Closed)
    ));
    assert!(queued.cancelled());
}

/// Puts `n` on the queue, except that task 300 kills its own worker.
fn report_or_die(n: u64, seen: mp::Queue<u64>) -> u64 {
    if n == 300 {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    seen.put(n).unwrap();
    n
}

/// Many tiny tasks go to a worker ahead of their replies; a worker that
/// dies among them fails exactly its task, and every other task runs
/// exactly once.
fn a_death_among_tasks_sent_ahead_costs_one_task(ctx: mp::Context) {
    let ex = executor(&ctx, 2).build().unwrap();
    let seen = mp::Queue::<u64>::new().unwrap();
    let futures: Vec<_> = (0..1000u64)
        .map(|n| ex.submit(report_or_die, (n, seen.clone())).unwrap())
        .collect();
    for (n, f) in (0..1000u64).zip(&futures) {
        match f.result_timeout(LIMIT) {
            Ok(v) => assert_eq!(v, n),
            Err(mp::Error::WorkerDied { signal, .. }) => {
                assert_eq!((n, signal), (300, Some(9)));
            }
            Err(e) => panic!("task {n}: {e}"),
        }
    }
    let mut got: Vec<u64> = (0..999).map(|_| seen.get_timeout(LIMIT).unwrap()).collect();
    assert!(
        seen.get_timeout(Duration::from_millis(100)).is_err(),
        "a task ran twice"
    );
    got.sort_unstable();
    let want: Vec<u64> = (0..1000u64).filter(|&n| n != 300).collect();
    assert_eq!(got, want);
}

static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn remember(tag: String) {
    let _ = TAG.set(tag);
}

fn recall() -> (String, u32) {
    (TAG.get().cloned().unwrap_or_default(), std::process::id())
}

fn the_initializer_runs_and_workers_retire_after_their_tasks(ctx: mp::Context) {
    let ex = executor(&ctx, 1)
        .initializer(remember, ("ready".to_string(),))
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let got: Vec<(String, u32)> = (0..9)
        .map(|_| {
            ex.submit(recall, ())
                .unwrap()
                .result_timeout(LIMIT)
                .unwrap()
        })
        .collect();
    assert!(got.iter().all(|(t, _)| t == "ready"), "{got:?}");
    let pids: std::collections::BTreeSet<u32> = got.iter().map(|(_, p)| *p).collect();
    assert_eq!(pids.len(), 3, "three workers of three tasks each: {got:?}");
}

fn map_submits_at_once_and_odd_limits_are_taken_as_meant(ctx: mp::Context) {
    let ex = executor(&ctx, 1).build().unwrap();
    // Submitted when map is called, not at the first read.
    let flag = mp::Event::new().unwrap();
    let it = ex.map(set, [flag.clone()], 1, None);
    assert!(
        flag.wait_timeout(LIMIT),
        "map ran nothing before its first read"
    );
    drop(it);
    // Dropping the iterator cancels what it did not read.
    let blocker = ex.submit(sleep_ms, (300u64,)).unwrap();
    until_running(&blocker);
    let late = mp::Event::new().unwrap();
    drop(ex.map(set, [late.clone()], 1, None));
    assert_eq!(blocker.result_timeout(LIMIT).unwrap(), 300);
    assert_eq!(square_on(&ex, 5), 25);
    assert!(!late.is_set(), "a chunk of a dropped map ran");
    // A limit too large to add to a clock is no limit.
    let f = ex
        .submit_with_limit(sleep_ms, (50u64,), Duration::MAX)
        .unwrap();
    assert_eq!(f.result_timeout(LIMIT).unwrap(), 50);
    // A callback that panics, added after the end, goes no further.
    f.add_done_callback(|_| panic!("in a callback"));
    assert_eq!(f.result().unwrap(), 50);
}

/// In a `#[tokio::main]` program (threads before anything of ours), from
/// `spawn_blocking`: the time limit kills the hung task, the other one
/// ends right, and `main` runs once.
#[test]
fn an_executor_in_a_tokio_program() {
    let file = std::env::temp_dir().join(format!("mp-exec-tokio-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mp_tokio"))
        .args(["executor", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = multiproc_testkit::output_within(child, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "timed-out 49");
    let log = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("main ")).count(),
        1,
        "{log}"
    );
    let _ = std::fs::remove_file(&file);
}

/// The same API on threads: results, a panic failing alone, cancel of a
/// queued task (a running one cannot be), `as_completed` and `wait`,
/// shutdown with cancelling.
#[test]
fn the_thread_executor_has_the_same_api() {
    let ex = mp::ThreadExecutor::new(2).unwrap();
    let futures: Vec<_> = (0..20u64)
        .map(|n| ex.submit(move || n * n).unwrap())
        .collect();
    let got: Vec<u64> = futures
        .iter()
        .map(|f| f.result_timeout(LIMIT).unwrap())
        .collect();
    assert_eq!(got, (0..20u64).map(|n| n * n).collect::<Vec<_>>());
    let boom = ex.submit(|| -> u64 { panic!("boom") }).unwrap();
    assert!(
        matches!(boom.result_timeout(LIMIT), Err(mp::Error::TaskPanicked { message }) if message == "boom")
    );
    // Two threads busy, a third task queued: cancelled, it never runs.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            ex.submit(move || rx.lock().unwrap().recv_timeout(LIMIT).is_ok())
                .unwrap()
        })
        .collect();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let queued = ex.submit(move || r.fetch_add(1, Ordering::SeqCst)).unwrap();
    assert!(wait_until(LIMIT, || blockers
        .iter()
        .all(mp::ThreadFuture::running)));
    assert!(
        !blockers[0].cancel(),
        "a running thread task cannot be cancelled"
    );
    assert!(queued.cancel() && queued.cancelled());
    tx.send(()).unwrap();
    tx.send(()).unwrap();
    let w = wait(&blockers, Some(LIMIT), ReturnWhen::AllCompleted);
    assert_eq!(w.done, vec![0, 1]);
    assert!(matches!(queued.result(), Err(mp::Error::Cancelled)));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // as_completed over thread futures, in completion order.
    let fs: Vec<_> = [300u64, 50, 150]
        .iter()
        .map(|&ms| ex.submit(move || sleep_ms(ms)).unwrap())
        .collect();
    let order: Vec<u64> = as_completed(&fs, Some(LIMIT))
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    assert_eq!(order, vec![50, 150, 300]);
    // Shutdown cancels what is queued, lets what runs finish.
    let slow = ex.submit(|| sleep_ms(200)).unwrap();
    let slow2 = ex.submit(|| sleep_ms(200)).unwrap();
    let later = ex.submit(|| 1u64).unwrap();
    assert!(wait_until(LIMIT, || slow.running() && slow2.running()));
    ex.shutdown(true, true);
    assert_eq!(slow.result().unwrap(), 200);
    assert!(later.cancelled());
    assert!(matches!(ex.submit(|| 2u64), Err(mp::Error::Closed)));
}

multiproc_testkit::each_start_method!(
    results_equal_the_serial_ones,
    as_completed_follows_completion_order,
    wait_returns_when_asked,
    a_cancelled_queued_task_never_runs,
    a_cancelled_running_task_kills_its_worker_and_nothing_else,
    a_task_past_its_limit_is_killed_and_the_executor_goes_on,
    a_worker_killed_from_outside_fails_only_its_task,
    strict_mode_breaks_on_a_death,
    shutdown_with_and_without_cancelling,
    dropping_it_leaves_no_process_behind,
    a_death_among_tasks_sent_ahead_costs_one_task,
    the_initializer_runs_and_workers_retire_after_their_tasks,
    map_submits_at_once_and_odd_limits_are_taken_as_meant,
);
