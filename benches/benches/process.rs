//! Start and join of a child process that does nothing, under each start
//! method. Python: `python_baseline.py spawn_fork_us spawn_forkserver_us
//! spawn_spawn_us`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc as mp;

// `init` before criterion's `main`: a spawned child runs its target there.
multiproc::test_setup!();

fn noop() {}

fn start_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("process_start_join");
    group.sample_size(30);
    for &method in mp::StartMethod::all() {
        group.bench_function(method.name(), |b| {
            b.iter(|| {
                let mut p = mp::Process::builder(noop, ()).start_method(method).build();
                p.start().expect("start");
                p.join().expect("join");
                assert_eq!(p.exitcode(), Some(0));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, start_join);
criterion_main!(benches);
