//! Pools beside CPython's (`python_baseline.py pool_map_tiny_items_per_s`,
//! `pool_cpu_speedup_x`; `benches/python_extra.py pool_apply_async_rtt_us`,
//! `pool_apply_1GiB_bytes_ms`) and beside rayon's thread pool
//! (`mp::ThreadPool`) doing the same work; and 1 GiB handed to a task as a
//! `RawArray` (a descriptor) against the same bytes sent as a `Vec<u8>`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

const TINY: u64 = 1_000_000;
const CPU_TASKS: usize = 16;
/// About 36 ms a task, as CPython's `_cpu(300000)` takes: the same n would
/// be 0.2 ms here, which measures a pool's latency rather than its speedup.
const CPU_WORK: u64 = 20_000_000;
/// 1 GiB of `u64`s.
const BIG_WORDS: usize = 1 << 27;

fn square(n: u64) -> u64 {
    n * n
}

/// CPython's `_cpu`: sum of i * i % 7 below n. Never inlined, so that the
/// serial run, the workers and the threads run the same machine code (the
/// serial loop inlined it into faster code).
#[inline(never)]
fn cpu(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s += black_box(i) * i % 7;
    }
    s
}

/// The sum of the words, wrapping, at memory speed.
fn sum_words(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |s, &w| s.wrapping_add(w))
}

/// A task: the sum of the array's words, read where the array lives.
fn sum_array(a: mp::RawArray<u64>) -> u64 {
    // SAFETY: nothing writes the array while a benchmark sums it.
    sum_words(unsafe { a.as_slice() })
}

/// A task: the sum of the same words, sent as bytes.
fn sum_bytes(bytes: Vec<u8>) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .fold(0u64, u64::wrapping_add)
}

fn pool_1gib(c: &mut Criterion) {
    let pool = mp::Pool::builder().processes(1).build().expect("pool");
    let array = mp::RawArray::<u64>::new(BIG_WORDS).expect("1 GiB array");
    for i in (0..BIG_WORDS).step_by(4096) {
        array.set(i, i as u64);
    }
    // SAFETY: nothing else writes the array.
    let expected = sum_words(unsafe { array.as_slice() });
    let bytes: Vec<u8> = (0..BIG_WORDS)
        .flat_map(|i| (if i % 4096 == 0 { i as u64 } else { 0 }).to_le_bytes())
        .collect();
    assert_eq!(
        pool.apply(sum_array, (array.clone(),)).expect("warm"),
        expected
    );

    let mut group = c.benchmark_group("pool_1GiB");
    group.sample_size(10);
    group.bench_function("sum_in_place", |b| {
        // SAFETY: as above.
        b.iter(|| assert_eq!(sum_words(unsafe { black_box(&array).as_slice() }), expected));
    });
    group.bench_function("raw_array_handle", |b| {
        b.iter(|| {
            let sum = pool.apply(sum_array, (array.clone(),)).expect("apply");
            assert_eq!(sum, expected);
        });
    });
    group.bench_function("vec_bytes", |b| {
        // The copy to send is made outside the timing, as a caller that
        // moves its own Vec in would not make it.
        b.iter_batched(
            || bytes.clone(),
            |v| {
                let sum = pool.apply(sum_bytes, (v,)).expect("apply");
                assert_eq!(sum, expected);
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn pool(c: &mut Criterion) {
    let workers = mp::cpu_count();
    let pool = mp::Pool::builder()
        .processes(workers)
        .build()
        .expect("pool");
    let threads = mp::ThreadPool::new(workers).expect("thread pool");
    pool.map(square, 0..100).expect("warm up");

    let mut group = c.benchmark_group("pool");
    group.sample_size(10);
    group.bench_function("map_tiny_1e6", |b| {
        b.iter(|| {
            let r = pool.map(square, 0..TINY).expect("map");
            assert_eq!(r[(TINY - 1) as usize], (TINY - 1) * (TINY - 1));
        });
    });
    group.bench_function("map_tiny_1e6_rayon", |b| {
        b.iter(|| {
            let r = threads.map(square, 0..TINY).expect("map");
            assert_eq!(r[(TINY - 1) as usize], (TINY - 1) * (TINY - 1));
        });
    });
    group.finish();

    let mut group = c.benchmark_group("pool_cpu");
    group.sample_size(10);
    let expected = cpu(CPU_WORK);
    group.bench_function("serial", |b| {
        b.iter(|| {
            let r: Vec<u64> = (0..CPU_TASKS).map(|_| cpu(black_box(CPU_WORK))).collect();
            assert_eq!(r[0], expected);
        });
    });
    group.bench_function("pool", |b| {
        b.iter(|| {
            let r = pool
                .map_chunked(cpu, vec![CPU_WORK; CPU_TASKS], 1)
                .expect("map");
            assert_eq!(r[0], expected);
        });
    });
    group.bench_function("rayon", |b| {
        b.iter(|| {
            let r = threads.map(cpu, vec![CPU_WORK; CPU_TASKS]).expect("map");
            assert_eq!(r[0], expected);
        });
    });
    group.finish();

    c.bench_function("pool_apply_async_round_trip", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let r = pool.apply_async(square, (i,)).expect("apply");
            assert_eq!(r.get().expect("get"), i * i);
        });
    });
    c.bench_function("thread_pool_apply_async_round_trip", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let r = threads.apply_async(move || i * i);
            assert_eq!(r.get().expect("get"), i * i);
        });
    });
}

criterion_group!(benches, pool, pool_1gib);
criterion_main!(benches);
