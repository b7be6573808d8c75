//! The MPI pool beside the local Pool, in the same run: `mpirun -n 3`
//! (rank 0 and 2 worker ranks; `cargo xtask bench` runs it so), against a
//! local Pool of 2 processes. The figures beside CPython's are
//! `python_baseline.py pool_map_tiny_items_per_s` and `pool_cpu_speedup_x`,
//! and `benches/python_extra.py pool_apply_async_rtt_us`.

#![allow(missing_docs)] // criterion's items

use std::hint::black_box;

use criterion::Criterion;
use multiproc as mp;

const TINY: u64 = 1_000_000;
const CHUNKS: u64 = 1000;
const CPU_TASKS: usize = 16;
/// About 36 ms a task, as CPython's `_cpu(300000)` takes (as in the local
/// pool's benchmark).
const CPU_WORK: u64 = 20_000_000;

fn square(n: u64) -> u64 {
    n * n
}

/// CPython's `_cpu`: sum of i * i % 7 below n (as in the local pool's
/// benchmark; never inlined, so every run has the same machine code).
#[inline(never)]
fn cpu(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s += black_box(i) * i % 7;
    }
    s
}

fn benches(c: &mut Criterion, mpi: &mp::Pool, workers: usize) {
    let local = mp::Pool::builder()
        .processes(workers)
        .build()
        .expect("a local pool");
    for pool in [mpi, &local] {
        pool.map(square, 0..100).expect("warm up");
    }
    let pools = [("mpi", mpi), ("local", &local)];

    let mut group = c.benchmark_group("mpi_pool");
    for (name, pool) in pools {
        group.bench_function(format!("apply_round_trip_{name}"), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                assert_eq!(pool.apply(square, (i,)).expect("apply"), i * i);
            });
        });
    }
    for (name, pool) in pools {
        group.bench_function(format!("chunks_{name}"), |b| {
            b.iter(|| {
                let r = pool.map_chunked(square, 0..CHUNKS, 1).expect("map");
                assert_eq!(r.len(), CHUNKS as usize);
            });
        });
    }
    group.sample_size(10);
    for (name, pool) in pools {
        group.bench_function(format!("map_tiny_1e6_{name}"), |b| {
            b.iter(|| {
                let r = pool.map(square, 0..TINY).expect("map");
                assert_eq!(r[(TINY - 1) as usize], (TINY - 1) * (TINY - 1));
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mpi_cpu");
    group.sample_size(10);
    let expected = cpu(CPU_WORK);
    group.bench_function("serial", |b| {
        b.iter(|| {
            let r: Vec<u64> = (0..CPU_TASKS).map(|_| cpu(black_box(CPU_WORK))).collect();
            assert_eq!(r[0], expected);
        });
    });
    for (name, pool) in pools {
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = pool
                    .map_chunked(cpu, vec![CPU_WORK; CPU_TASKS], 1)
                    .expect("map");
                assert_eq!(r[0], expected);
            });
        });
    }
    group.finish();
}

fn main() {
    // Ranks 1.. serve in here until rank 0's pool is dropped.
    let pool = mp::mpi::Pool::world().expect("run under mpirun -n 3");
    let workers = pool.processes();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &pool, workers);
    c.final_summary();
}
