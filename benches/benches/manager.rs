//! A dict held by a `Manager`, set from a child process. Python:
//! `python_baseline.py manager_dict_set_ops_per_s` (20,000 `d[i % 100] = i`
//! in a child, its start and join included).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

const N: u64 = 20_000;

fn set_items(d: mp::DictProxy<u64, u64>, n: u64) -> bool {
    (0..n).all(|i| d.insert(i % 100, i).is_ok())
}

fn set_items_remote(address: String, n: u64) -> bool {
    let Ok(address) = address.parse() else {
        return false;
    };
    let Ok(m) = mp::Manager::connect(&address, b"bench") else {
        return false;
    };
    let Ok(d) = m.lookup::<mp::DictProxy<u64, u64>>("d") else {
        return false;
    };
    (0..n).all(|i| d.insert(i % 100, i).is_ok())
}

fn manager(c: &mut Criterion) {
    let mut group = c.benchmark_group("manager");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    let m = mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().expect("address"), b"bench")
        .start()
        .expect("manager");
    let d = m.dict::<u64, u64>().expect("dict");
    m.publish("d", &d).expect("publish");
    group.bench_function("dict_set_from_child", |b| {
        b.iter(|| {
            let mut p = mp::Process::new(set_items, (d.clone(), N));
            p.start().expect("start");
            p.join().expect("join");
            assert!(p.take_result().expect("result"));
        });
    });
    let address = m.address().expect("served").to_string();
    group.bench_function("dict_set_from_child_over_tcp", |b| {
        b.iter(|| {
            let mut p = mp::Process::new(set_items_remote, (address.clone(), N));
            p.start().expect("start");
            p.join().expect("join");
            assert!(p.take_result().expect("result"));
        });
    });
    group.finish();
    // Every child set the same 100 keys (none if a filter skipped both).
    let len = d.len().expect("len");
    assert!(len == 100 || len == 0, "{len} keys");
}

criterion_group!(benches, manager);
criterion_main!(benches);
