//! Process pools between real processes, after `_TestPool` of CPython's
//! `_test_multiprocessing.py`, plus what CPython cannot do: a worker killed
//! in the middle of a `map` or an `imap` fails that call, naming the signal,
//! and the pool goes on (CPython's hangs, gh-66587).

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::{is_running, wait_until, within};

const LIMIT: Duration = Duration::from_secs(30);

fn pool(ctx: &mp::Context, n: usize) -> mp::Pool {
    mp::Pool::builder()
        .processes(n)
        .start_method(ctx.start_method())
        .build()
        .unwrap()
}

fn square(n: u64) -> u64 {
    n * n
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

/// As `pid_of`, after a millisecond: long enough that one worker cannot
/// take every task before the others wake.
fn pid_of_after_a_while(_: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    std::process::id()
}

fn results_equal_the_serial_ones(ctx: mp::Context) {
    let p = pool(&ctx, 3);
    let serial: Vec<u64> = (0..1000).map(square).collect();
    assert_eq!(p.map(square, 0..1000).unwrap(), serial);
    assert_eq!(p.map_chunked(square, 0..1000, 7).unwrap(), serial);
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(
        p.starmap(add, (0..100).map(|i| (i, 2 * i))).unwrap(),
        (0..100).map(|i| 3 * i).collect::<Vec<_>>()
    );
    assert_eq!(p.apply(add, (40, 2)).unwrap(), 42);
    let r = p.apply_async(square, (12,)).unwrap();
    assert_eq!(r.get_timeout(LIMIT).unwrap(), 144);
    assert!(r.ready());
    assert!(r.successful().unwrap());
    let m = p.map_async(square, 0..10).unwrap();
    assert!(m.wait(Some(LIMIT)));
    assert_eq!(m.get().unwrap(), (0..10).map(square).collect::<Vec<_>>());
    let ordered: Vec<u64> = p.imap(square, 0..200).map(Result::unwrap).collect();
    assert_eq!(ordered, (0..200).map(square).collect::<Vec<_>>());
    let ordered: Vec<u64> = p
        .imap_chunked(square, 0..200, 9)
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, (0..200).map(square).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = p
        .imap_unordered(square, 0..200)
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, (0..200).map(square).collect::<Vec<_>>());
    // The work was spread over the workers.
    let pids: BTreeSet<u32> = p
        .map_chunked(pid_of_after_a_while, 0..100, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(pids.len() >= 2, "one worker did everything: {pids:?}");
    assert!(pids.iter().all(|pid| p.worker_pids().contains(pid)));
}

/// An iterator whose length hint claims `claims` items, exactly, whatever
/// it yields.
struct Lying {
    items: std::ops::Range<u64>,
    claims: usize,
}

impl Iterator for Lying {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.items.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claims, Some(self.claims))
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    name: String,
    value: Option<f64>,
    tags: Vec<u8>,
}

fn describe(r: Reading) -> (String, usize) {
    (format!("{}={:?}", r.name, r.value), r.tags.len())
}

fn inputs_of_any_shape_and_length(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let serial = |n: u64| (0..n).map(square).collect::<Vec<_>>();
    // A length hint that lies either way costs nothing but the chunk size.
    for (n, claims) in [(20, 5), (3, 100), (1000, 0)] {
        let items = Lying {
            items: 0..n,
            claims,
        };
        assert_eq!(
            p.map(square, items).unwrap(),
            serial(n),
            "{n} claiming {claims}"
        );
    }
    // An input that does not know its length is collected first.
    let odd: Vec<u64> = (0..999).filter(|x| x % 2 == 1).map(square).collect();
    assert_eq!(p.map(square, (0..999).filter(|x| x % 2 == 1)).unwrap(), odd);
    // Strings, options and nested vectors through the fixed-width encoding.
    let readings: Vec<Reading> = (0..500)
        .map(|i| Reading {
            name: format!("sensor-{i}"),
            value: (i % 3 != 0).then_some(i as f64 / 4.0),
            tags: vec![7; i % 5],
        })
        .collect();
    let expected: Vec<(String, usize)> = readings.iter().cloned().map(describe).collect();
    assert_eq!(
        p.map_chunked(describe, readings.clone(), 17).unwrap(),
        expected
    );
    // A result read twice is the same twice.
    let m = p.map_async(describe, readings).unwrap();
    assert_eq!(m.get_timeout(LIMIT).unwrap(), expected);
    assert_eq!(m.get().unwrap(), expected);
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn imap_is_lazy_and_unordered_follows_completion(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    // An endless input: only a window of it is ever taken.
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let first: Vec<u64> = p
        .imap(square, endless)
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, vec![0, 1, 4, 9, 16]);
    assert!(
        pulled.load(Ordering::SeqCst) < 100,
        "imap read {} items ahead",
        pulled.load(Ordering::SeqCst)
    );
    // ExactSizeIterator when the input is.
    let it = p.imap(square, vec![1u64, 2, 3]);
    assert_eq!(it.len(), 3);
    // Completion order: the slow task comes last.
    let order: Vec<u64> = p
        .imap_unordered(sleep_ms, vec![300, 1, 1, 1])
        .map(Result::unwrap)
        .collect();
    assert_eq!(order.last(), Some(&300));
}

fn explode(n: u64) -> u64 {
    assert!(n != 13, "unlucky {n}");
    n
}

fn a_panicking_task_fails_alone(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let before = p.worker_pids();
    match p.apply(explode, (13,)) {
        Err(mp::Error::TaskPanicked { message }) => assert_eq!(message, "unlucky 13"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert!(matches!(
        p.map(explode, 0..20),
        Err(mp::Error::TaskPanicked { .. })
    ));
    let r = p.apply_async(explode, (13,)).unwrap();
    assert!(r.wait(Some(LIMIT)));
    assert!(!r.successful().unwrap());
    // The workers survived their tasks' panics.
    assert_eq!(p.worker_pids(), before);
    assert_eq!(p.map(explode, 0..10).unwrap(), (0..10).collect::<Vec<_>>());
}

fn die_on(n: u64) -> u64 {
    if n == 7 {
        // As if killed from outside while running this task.
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(2));
    n
}

fn a_killed_worker_fails_the_map_and_is_replaced(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let before: BTreeSet<u32> = p.worker_pids().into_iter().collect();
    let (result, p) = within(LIMIT, move || (p.map_chunked(die_on, 0..40, 1), p));
    match result {
        Err(mp::Error::WorkerDied { pid, signal, .. }) => {
            assert_eq!(signal, Some(9));
            assert!(before.contains(&pid));
            assert!(wait_until(Duration::from_secs(5), || !is_running(pid)));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // The next call works, on a replaced worker.
    assert_eq!(
        p.map(square, 0..50).unwrap(),
        (0..50).map(square).collect::<Vec<_>>()
    );
    let after: BTreeSet<u32> = p.worker_pids().into_iter().collect();
    assert_eq!(after.len(), 2);
    assert_ne!(after, before);
    // The same during an imap: the failed item is an error, the others
    // come through.
    let items: Vec<mp::Result<u64>> = within(LIMIT, move || {
        let items = p.imap(die_on, 0..20).collect();
        drop(p);
        items
    });
    assert_eq!(items.len(), 20);
    let errors: Vec<_> = items.iter().filter(|r| r.is_err()).collect();
    assert_eq!(errors.len(), 1);
    assert!(matches!(
        items[7],
        Err(mp::Error::WorkerDied {
            signal: Some(9),
            ..
        })
    ));
}

fn exit_with(code: i32) -> u64 {
    std::process::exit(code)
}

/// A worker that exits in a task names its exit code; one that dies while
/// idle, just before a call, costs that call nothing: the task goes to the
/// worker that replaces it.
fn a_worker_death_says_how_and_an_idle_one_costs_nothing(ctx: mp::Context) {
    let p = Arc::new(pool(&ctx, 1));
    match within(LIMIT, {
        let p = pool(&ctx, 1);
        move || p.apply(exit_with, (3,))
    }) {
        Err(mp::Error::WorkerDied {
            signal: None,
            exitcode: Some(3),
            ..
        }) => {}
        other => panic!("expected WorkerDied with code 3, got {other:?}"),
    }
    for i in 0..50u64 {
        let pid = p.worker_pids()[0];
        // Killed between calls; the call comes at once, before the pool
        // can have seen the death.
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
        let r = within(LIMIT, {
            let p = Arc::clone(&p);
            move || p.apply(square, (i,))
        });
        assert_eq!(r.unwrap(), i * i, "call {i} after an idle worker died");
    }
}

fn max_tasks_per_child_replaces_workers(ctx: mp::Context) {
    let p = mp::Pool::builder()
        .processes(1)
        .max_tasks_per_child(3)
        .start_method(ctx.start_method())
        .build()
        .unwrap();
    // Two retirements: each worker stops when told, well before the 5 s
    // after which it would be killed.
    let pids: Vec<u32> = within(Duration::from_secs(8), move || {
        (0..9).map(|i| p.apply(pid_of, (i,)).unwrap()).collect()
    });
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    assert!(pids.chunks(3).all(|c| c.iter().all(|&x| x == c[0])));
}

fn remember(tag: String) {
    // A file named after this worker: what the initializer left behind.
    let path = std::env::temp_dir().join(format!("mp-pool-init-{}", std::process::id()));
    std::fs::write(path, tag).unwrap();
}

fn recall(_: u64) -> String {
    let path = std::env::temp_dir().join(format!("mp-pool-init-{}", std::process::id()));
    std::fs::read_to_string(&path).unwrap_or_default()
}

fn initializer_runs_in_each_worker(ctx: mp::Context) {
    let p = mp::Pool::builder()
        .processes(2)
        .initializer(remember, ("ready".to_string(),))
        .start_method(ctx.start_method())
        .build()
        .unwrap();
    let tags = p.map_chunked(recall, 0..20, 1).unwrap();
    assert!(tags.iter().all(|t| t == "ready"), "{tags:?}");
    for pid in p.worker_pids() {
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("mp-pool-init-{pid}")));
    }
}

fn terminate_is_prompt_with_thousands_queued(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let pids = p.worker_pids();
    let r = p.map_async(sleep_ms, vec![5u64; 5000]).unwrap();
    let pending: Vec<_> = (0..1000)
        .map(|_| p.apply_async(sleep_ms, (5,)).unwrap())
        .collect();
    let t = Instant::now();
    p.terminate();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "terminate took {:?}",
        t.elapsed()
    );
    assert!(matches!(r.get_timeout(LIMIT), Err(mp::Error::Closed)));
    assert!(
        pending
            .iter()
            .all(|a| matches!(a.get_timeout(LIMIT), Err(mp::Error::Closed)))
    );
    assert!(pids.iter().all(|&pid| !is_running(pid)));
    assert!(matches!(p.apply(square, (1,)), Err(mp::Error::Closed)));
}

fn close_and_join_finish_queued_work(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let pids = p.worker_pids();
    let r = p.map_async(sleep_ms, vec![2u64; 20]).unwrap();
    assert!(matches!(p.join(), Err(mp::Error::InvalidArgument(_))));
    p.close();
    assert!(matches!(p.apply(square, (1,)), Err(mp::Error::Closed)));
    // Workers stop when told, not after the pool's 5 s of patience (under
    // fork a sibling holds a copy of each pipe, so its end alone is not
    // seen).
    within(Duration::from_secs(4), move || {
        p.join().unwrap();
        drop(p);
    });
    assert_eq!(r.get().unwrap(), vec![2u64; 20]);
    assert!(pids.iter().all(|&pid| !is_running(pid)));
}

fn callbacks_are_called(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let _a = p
        .apply_async_with(
            square,
            (9,),
            move |v| tx.send(Ok(v)).unwrap(),
            |e| panic!("{e}"),
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), Ok::<u64, String>(81));
    let _b = p
        .apply_async_with(
            explode,
            (13,),
            |v| panic!("got {v}"),
            move |e| tx2.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    assert!(
        rx.recv_timeout(LIMIT)
            .unwrap()
            .unwrap_err()
            .contains("unlucky 13")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let _m = p
        .map_async_with(
            square,
            0..5,
            move |v| tx.send(v).unwrap(),
            |e| panic!("{e}"),
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), vec![0, 1, 4, 9, 16]);
    // A panicking callback costs its own call nothing, and every worker
    // still gets work afterwards.
    let r = p
        .apply_async_with(square, (3,), |_| panic!("callback"), |_| {})
        .unwrap();
    assert_eq!(r.get_timeout(LIMIT).unwrap(), 9);
    // (The handler may be busy a while printing the panic's backtrace, so
    // the other one may take a whole map meanwhile: ask until both serve.)
    let both_serve = wait_until(LIMIT, || {
        let pids: BTreeSet<u32> = p
            .map_chunked(pid_of_after_a_while, 0..100, 1)
            .unwrap()
            .into_iter()
            .collect();
        pids.len() == 2
    });
    assert!(both_serve, "a handler was lost with its callback");
}

fn dropping_the_pool_ends_its_workers(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let pids = p.worker_pids();
    assert_eq!(pids.len(), 2);
    drop(p);
    assert!(pids.iter().all(|&pid| !is_running(pid)));
}

#[test]
fn zero_processes_is_an_error() {
    assert!(matches!(
        mp::Pool::builder().processes(0).build(),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mp::Pool::builder()
            .processes(1)
            .max_tasks_per_child(0)
            .build(),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mp::ThreadPool::new(0),
        Err(mp::Error::InvalidArgument(_))
    ));
}

#[test]
fn thread_pool_has_the_same_api() {
    let tp = mp::ThreadPool::new(2).unwrap();
    let base = 100u64;
    assert_eq!(
        tp.map(|x: u64| x + base, 0..5).unwrap(),
        vec![100, 101, 102, 103, 104]
    );
    assert_eq!(
        tp.starmap(|(a, b): (u64, u64)| a * b, vec![(2, 3), (4, 5)])
            .unwrap(),
        vec![6, 20]
    );
    assert_eq!(
        tp.imap(|x: u64| x * 2, 0..3)
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    // Lazy: an endless input is read a few items per thread ahead; order
    // holds though later items finish first; a panic is that item's Err.
    let read = Arc::new(AtomicU64::new(0));
    let counted = read.clone();
    let endless = (0u64..).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let slow_first = |x: u64| {
        if x == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        if x == 5 {
            panic!("five");
        }
        x * 2
    };
    let it = tp.imap(slow_first, endless);
    let got: Vec<_> = it.take(10).collect();
    assert!(
        read.load(Ordering::SeqCst) <= 10 + 4 * 2,
        "read too far ahead"
    );
    assert_eq!(got.len(), 10);
    for (x, r) in got.into_iter().enumerate() {
        match (x, r) {
            (5, Err(mp::Error::TaskPanicked { message })) => assert_eq!(message, "five"),
            (x, Ok(v)) => assert_eq!(v, 2 * x as u64),
            (x, r) => panic!("item {x}: {r:?}"),
        }
    }
    assert_eq!(tp.imap(|x: u64| x, vec![1, 2, 3]).len(), 3);
    let mut un: Vec<u64> = tp
        .imap_unordered(|x: u64| x * 2, 0..50)
        .map(Result::unwrap)
        .collect();
    un.sort_unstable();
    assert_eq!(un, (0..50).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(tp.apply(|| 7).unwrap(), 7);
    let mut r = tp.apply_async(|| {
        std::thread::sleep(Duration::from_millis(50));
        5
    });
    assert!(matches!(
        r.get_timeout(Duration::from_millis(1)),
        Err(mp::Error::Timeout)
    ));
    assert_eq!(r.get_timeout(LIMIT).unwrap(), 5);
    assert_eq!(
        tp.map_async(|x: u64| x + 1, 0..3).get().unwrap(),
        vec![1, 2, 3]
    );
    match tp.map(|x: u64| if x == 3 { panic!("three") } else { x }, 0..5) {
        Err(mp::Error::TaskPanicked { message }) => assert_eq!(message, "three"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert_eq!(tp.threads(), 2);
}

#[test]
fn thread_pool_chunks_callbacks_close_and_terminate() {
    let tp = mp::ThreadPool::new(2).unwrap();
    assert_eq!(
        tp.map_chunked(|x: u64| x * x, 0..100, 7).unwrap(),
        (0..100).map(square).collect::<Vec<_>>()
    );
    let chunked: Vec<u64> = tp
        .imap_chunked(|x: u64| x * x, 0..100, 9)
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunked, (0..100).map(square).collect::<Vec<_>>());
    // Callbacks, on a pool thread; one that panics harms nothing.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let r = tp.apply_async_with(|| 6 * 7, move |v| tx.send(Ok(v)).unwrap(), |_| {});
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), Ok::<u64, String>(42));
    assert_eq!(within(LIMIT, move || r.get()).unwrap(), 42);
    let _e = tp.apply_async_with(
        || -> u64 { panic!("boom") },
        |_| {},
        move |e| tx2.send(Err(e.to_string())).unwrap(),
    );
    assert!(
        rx.recv_timeout(LIMIT)
            .unwrap()
            .unwrap_err()
            .contains("boom")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let _m = tp.map_async_with(|x: u64| x + 1, 0..3, move |v| tx.send(v).unwrap(), |_| {});
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), vec![1, 2, 3]);
    let r = tp.apply_async_with(|| 1, |_| panic!("callback"), |_| {});
    assert_eq!(within(LIMIT, move || r.get()).unwrap(), 1);
    assert_eq!(tp.apply(|| 2).unwrap(), 2);

    // close: running work finishes, new work is refused, join waits.
    let tp = Arc::new(tp);
    assert!(matches!(tp.join(), Err(mp::Error::InvalidArgument(_))));
    let slow = tp.apply_async(|| {
        std::thread::sleep(Duration::from_millis(100));
        5
    });
    tp.close();
    assert!(matches!(tp.map(|x: u64| x, 0..3), Err(mp::Error::Closed)));
    assert!(matches!(tp.apply(|| 1), Err(mp::Error::Closed)));
    assert!(matches!(tp.apply_async(|| 1).get(), Err(mp::Error::Closed)));
    let mut it = tp.imap(|x: u64| x, 0..3);
    assert!(matches!(it.next(), Some(Err(mp::Error::Closed))));
    assert!(it.next().is_none());
    let t = Instant::now();
    let joined = tp.clone();
    within(LIMIT, move || joined.join().unwrap());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(within(LIMIT, move || slow.get()).unwrap(), 5);

    // terminate: calls already running finish, queued ones fail.
    let tp = mp::ThreadPool::new(1).unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let running = tp.apply_async(move || {
        started_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        1
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    let queued: Vec<_> = (0..50u64).map(|i| tp.apply_async(move || i)).collect();
    tp.terminate();
    within(LIMIT, move || tp.join().unwrap());
    assert_eq!(within(LIMIT, move || running.get()).unwrap(), 1);
    for q in queued {
        assert!(matches!(
            within(LIMIT, move || q.get()),
            Err(mp::Error::Closed)
        ));
    }
}

/// Fails on multiples of seven, as a task that uses `?` does.
fn checked_half(n: u64) -> mp::Result<u64> {
    if n.is_multiple_of(7) {
        return Err(mp::Error::InvalidArgument(format!(
            "{n} is a multiple of seven"
        )));
    }
    Ok(n / 2)
}

fn read_len(path: String) -> std::io::Result<usize> {
    Ok(std::fs::read(path)?.len())
}

fn a_task_that_returns_an_error_fails_its_call_and_the_pool_goes_on(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    let pids = p.worker_pids();
    assert_eq!(pids.len(), 2);
    assert_eq!(p.map(checked_half, [2, 4, 6]).unwrap(), vec![1, 2, 3]);
    // The first failing chunk's error is the call's, as in CPython.
    match p.map_chunked(checked_half, 1..30, 5) {
        Err(mp::Error::TaskFailed { message }) => {
            assert_eq!(message, "invalid argument: 7 is a multiple of seven");
        }
        other => panic!("{other:?}"),
    }
    match p.apply(read_len, ("/no/such/file".to_string(),)) {
        Err(mp::Error::TaskFailed { message }) => assert!(message.contains("No such file")),
        other => panic!("{other:?}"),
    }
    assert!(p.apply(read_len, ("/proc/self/stat".to_string(),)).unwrap() > 0);
    // imap: exactly the failing items are errors, the others come through.
    let items: Vec<mp::Result<u64>> = p.imap(checked_half, 1..=14).collect();
    for (n, r) in (1..=14u64).zip(&items) {
        match r {
            Ok(v) => assert_eq!(*v, n / 2),
            Err(mp::Error::TaskFailed { .. }) => assert!(n.is_multiple_of(7), "{n}"),
            Err(e) => panic!("{n}: {e}"),
        }
    }
    assert_eq!(items.iter().filter(|r| r.is_err()).count(), 2);
    // An error is not a death: the same workers serve on.
    assert_eq!(p.worker_pids(), pids);
    assert_eq!(p.map(checked_half, [8]).unwrap(), vec![4]);
}

multiproc_testkit::each_start_method!(
    a_worker_death_says_how_and_an_idle_one_costs_nothing,
    a_task_that_returns_an_error_fails_its_call_and_the_pool_goes_on,
    results_equal_the_serial_ones,
    inputs_of_any_shape_and_length,
    imap_is_lazy_and_unordered_follows_completion,
    a_panicking_task_fails_alone,
    a_killed_worker_fails_the_map_and_is_replaced,
    max_tasks_per_child_replaces_workers,
    initializer_runs_in_each_worker,
    terminate_is_prompt_with_thousands_queued,
    close_and_join_finish_queued_work,
    callbacks_are_called,
    dropping_the_pool_ends_its_workers,
);
