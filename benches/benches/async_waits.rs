//! The async waits beside the blocking ones: a queue round trip between
//! two processes, the reply taken with `get_async` under tokio's
//! current-thread runtime, against the same round trip with `get`; and
//! 100,000 futures pending at once on one runtime (the time to make,
//! poll and drop them, and the memory each holds, printed).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

/// Echoes every number from `input` to `output` until a zero.
fn echo(input: mp::Queue<u64>, output: mp::Queue<u64>) {
    while let Ok(v) = input.get() {
        if output.put(v).is_err() || v == 0 {
            return;
        }
    }
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn round_trip(c: &mut Criterion) {
    let to: mp::Queue<u64> = mp::Queue::new().expect("queue");
    let back: mp::Queue<u64> = mp::Queue::new().expect("queue");
    let mut child = mp::Process::new(echo, (to.clone(), back.clone()));
    child.start().expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("async");
    group.bench_function("queue_round_trip_blocking", |b| {
        let mut i = 1u64;
        b.iter(|| {
            to.put(i).expect("put");
            assert_eq!(back.get().expect("get"), i);
            i += 1;
        });
    });
    group.bench_function("queue_round_trip_get_async", |b| {
        let mut i = 1u64;
        b.iter(|| {
            to.put(i).expect("put");
            let got = rt.block_on(back.get_async()).expect("get_async");
            assert_eq!(got, i);
            i += 1;
        });
    });
    group.finish();
    to.put(0).expect("put");
    child.join().expect("join");
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(f).poll(&mut cx), Poll::Ready(_))
}

fn pending(c: &mut Criterion) {
    const N: usize = 100_000;
    let q: mp::Queue<u64> = mp::Queue::new().expect("queue");
    // The memory of 100,000 pending `get_async` futures, each polled once
    // (a reactor waiter each, on the queue's one bell).
    let before = rss_bytes();
    let mut futures: Vec<_> = (0..N).map(|_| Box::pin(q.get_async())).collect();
    assert!(futures.iter_mut().all(|f| !poll_once(f)));
    let held = rss_bytes().saturating_sub(before);
    println!(
        "async: {N} pending get_async futures hold {} bytes each ({} MB in all)",
        held / N,
        held >> 20
    );
    drop(futures);
    let mut group = c.benchmark_group("async");
    group.sample_size(10);
    group.bench_function("pending_futures_100k", |b| {
        b.iter(|| {
            let mut futures: Vec<_> = (0..N).map(|_| Box::pin(q.get_async())).collect();
            assert!(futures.iter_mut().all(|f| !poll_once(f)));
        });
    });
    group.finish();
}

criterion_group!(benches, round_trip, pending);
criterion_main!(benches);
