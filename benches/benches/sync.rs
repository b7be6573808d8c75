//! Locks, events and shared arrays. Python: `python_baseline.py
//! lock_uncontended_ns lock_contended_ops_per_s shared_array_write_GBps`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

/// Increments per process in the contended benchmark (the seed's
/// deposit/withdraw, scaled up so process start-up is noise).
const CONTENDED_OPS: u64 = 500_000;

fn uncontended(c: &mut Criterion) {
    let lock = mp::Lock::new().expect("lock");
    c.bench_function("lock/uncontended_acquire_release", |b| {
        b.iter(|| drop(std::hint::black_box(lock.acquire())));
    });
}

fn add(v: mp::RawValue<i64>, lock: mp::Lock, n: u64, d: i64) {
    for _ in 0..n {
        let _g = lock.acquire();
        v.store(v.load() + d);
    }
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * CONTENDED_OPS));
    group.bench_function("contended_two_processes", |b| {
        b.iter(|| {
            let v = mp::RawValue::new(100i64).expect("value");
            let lock = mp::Lock::new().expect("lock");
            let mut ps =
                [1, -1].map(|d| mp::Process::new(add, (v.clone(), lock.clone(), CONTENDED_OPS, d)));
            for p in &mut ps {
                p.start().expect("start");
            }
            for p in &ps {
                p.join().expect("join");
            }
            assert_eq!(v.load(), 100);
        });
    });
    group.finish();
}

fn pong(ping: mp::Event, pong: mp::Event, stop: mp::RawValue<u32>) {
    loop {
        ping.wait();
        ping.clear();
        if stop.load() == 1 {
            return;
        }
        pong.set();
    }
}

fn event_ping_pong(c: &mut Criterion) {
    let (ping, pongs) = (
        mp::Event::new().expect("event"),
        mp::Event::new().expect("event"),
    );
    let stop = mp::RawValue::new(0u32).expect("value");
    let mut child = mp::Process::new(pong, (ping.clone(), pongs.clone(), stop.clone()));
    child.start().expect("start");
    c.bench_function("event/ping_pong_round_trip", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                ping.set();
                pongs.wait();
                pongs.clear();
            }
            t.elapsed()
        });
    });
    stop.store(1);
    ping.set();
    child.join_timeout(Duration::from_secs(10)).expect("join");
}

fn array_write(c: &mut Criterion) {
    const LEN: usize = 256 << 20;
    let a = mp::RawArray::<u8>::new(LEN).expect("array");
    let src = vec![b'y'; LEN];
    let mut group = c.benchmark_group("shared_array");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function("write_256MiB", |b| {
        // SAFETY: no other process maps this array.
        b.iter(|| unsafe { a.as_mut_slice() }.copy_from_slice(&src));
    });
    group.finish();
}

criterion_group!(
    benches,
    uncontended,
    contended,
    event_ping_pong,
    array_write
);
criterion_main!(benches);
