//! Pipes: round trip of a small message, and bandwidth of 64 KiB and 1 MiB
//! messages. Python: `python_baseline.py pipe_rtt_us pipe_bw_64k_GBps
//! pipe_bw_1m_GBps`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

fn echo(conn: mp::Connection) {
    while let Ok(i) = conn.recv::<i64>() {
        if i < 0 || conn.send(&i).is_err() {
            return;
        }
    }
}

fn round_trip(c: &mut Criterion) {
    let (a, b) = mp::Pipe::new().expect("pipe");
    let mut child = mp::Process::new(echo, (b,));
    child.start().expect("start");
    c.bench_function("pipe_round_trip", |bench| {
        bench.iter_custom(|iters| {
            let t = Instant::now();
            for i in 0..iters {
                a.send(&(i as i64)).expect("send");
                let _: i64 = a.recv().expect("recv");
            }
            t.elapsed()
        });
    });
    a.send(&-1i64).expect("send");
    child.join_timeout(Duration::from_secs(10)).expect("join");
}

fn sink(conn: mp::Connection) {
    while let Ok(n) = conn.recv::<u64>() {
        for _ in 0..n {
            if conn.recv_bytes().is_err() {
                return;
            }
        }
        if conn.send(&n).is_err() {
            return;
        }
    }
}

fn bandwidth(c: &mut Criterion) {
    let (a, b) = mp::Pipe::new().expect("pipe");
    let mut child = mp::Process::new(sink, (b,));
    child.start().expect("start");
    let mut group = c.benchmark_group("pipe_bandwidth");
    for (name, size) in [("64KiB", 64usize << 10), ("1MiB", 1 << 20)] {
        let buf = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let t = Instant::now();
                a.send(&iters).expect("send");
                for _ in 0..iters {
                    a.send_bytes(&buf).expect("send");
                }
                let _: u64 = a.recv().expect("ack");
                t.elapsed()
            });
        });
    }
    group.finish();
    drop(a);
    child.join_timeout(Duration::from_secs(10)).expect("join");
}

criterion_group!(benches, round_trip, bandwidth);
criterion_main!(benches);
