//! Small messages through a `Queue`. Python: `python_baseline.py
//! queue_small_msgs_per_s` (one producer, one consumer, 200,000 integers).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

const N: u64 = 200_000;

fn consume(q: mp::Queue<u64>, n: u64) -> bool {
    (0..n).all(|_| q.get().is_ok())
}

fn produce(q: mp::Queue<u64>, n: u64) -> bool {
    (0..n).all(|i| q.put(i).is_ok())
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    // As CPython's baseline: the parent puts, a child gets, until it ends.
    group.bench_function("one_to_one", |b| {
        b.iter(|| {
            let q = mp::Queue::new().expect("queue");
            let mut c = mp::Process::new(consume, (q.clone(), N));
            c.start().expect("start");
            for i in 0..N {
                q.put(i).expect("put");
            }
            c.join().expect("join");
            assert!(c.take_result().expect("result"));
        });
    });
    group.bench_function("two_to_two", |b| {
        b.iter(|| {
            let q = mp::Queue::new().expect("queue");
            let mut ps: Vec<_> = (0..2)
                .map(|_| mp::Process::new(produce, (q.clone(), N / 2)))
                .chain((0..2).map(|_| mp::Process::new(consume, (q.clone(), N / 2))))
                .collect();
            for p in &mut ps {
                p.start().expect("start");
            }
            for p in &mut ps {
                p.join().expect("join");
                assert!(p.take_result().expect("result"));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);
