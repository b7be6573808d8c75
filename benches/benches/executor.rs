//! The executor beside CPython's `ProcessPoolExecutor`
//! (`benches/python_extra.py executor_submit_rtt_us
//! executor_as_completed_per_s`) and beside rayon's threads doing the same
//! round trip: submit + result of a no-op, 100,000 no-op submits gathered
//! with `as_completed`, and how long after its deadline a task's kill ends
//! its future.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

const MANY: u64 = 100_000;

fn noop(n: u64) -> u64 {
    n
}

fn spin() -> u64 {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn executor(c: &mut Criterion) {
    let ex = mp::Executor::new().expect("executor");
    let mut group = c.benchmark_group("executor");
    group.bench_function("submit_result_rtt", |b| {
        b.iter(|| {
            ex.submit(noop, (1u64,))
                .expect("submit")
                .result()
                .expect("result")
        });
    });
    let pool = rayon::ThreadPoolBuilder::new().build().expect("rayon");
    group.bench_function("rayon_spawn_rtt", |b| {
        b.iter(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            pool.spawn(move || {
                let _ = tx.send(noop(1));
            });
            rx.recv().expect("rayon result")
        });
    });
    group.sample_size(10);
    group.bench_function("as_completed_100k", |b| {
        b.iter(|| {
            let futures: Vec<_> = (0..MANY)
                .map(|n| ex.submit(noop, (n,)).expect("submit"))
                .collect();
            let mut sum = 0u64;
            for f in mp::futures::as_completed(&futures, None) {
                sum += f.expect("done").result().expect("result");
            }
            assert_eq!(sum, MANY * (MANY - 1) / 2);
        });
    });
    group.finish();
}

/// The time from a task's deadline to the end of its future: a spinning
/// task with a 20 ms limit, less the 20 ms.
fn kill_latency(c: &mut Criterion) {
    let limit = Duration::from_millis(20);
    let ex = mp::Executor::builder()
        .workers(1)
        .task_time_limit(limit)
        .build()
        .expect("executor");
    // The first task also waits for the worker to start.
    let _ = ex.submit(noop, (0u64,)).expect("submit").result();
    let mut group = c.benchmark_group("executor");
    group.sample_size(20);
    group.bench_function("kill_after_deadline", |b| {
        b.iter_custom(|iters| {
            let mut past = Duration::ZERO;
            for _ in 0..iters {
                // A fresh worker each time: the last one was killed.
                let _ = ex.submit(noop, (0u64,)).expect("submit").result();
                let f = ex.submit(spin, ()).expect("submit");
                let t = Instant::now();
                assert!(matches!(f.result(), Err(mp::Error::TaskTimedOut { .. })));
                past += t.elapsed().saturating_sub(limit);
            }
            past
        });
    });
    group.finish();
}

criterion_group!(benches, executor, kill_latency);
criterion_main!(benches);
