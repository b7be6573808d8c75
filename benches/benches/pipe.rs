//! Pipes: round trip of a small message, and bandwidth of 64 KiB and 1 MiB
//! messages. Python: `python_baseline.py pipe_rtt_us pipe_bw_64k_GBps
//! pipe_bw_1m_GBps`. The same work through ipc-channel, the other
//! cross-process channel crate, runs beside it.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipc_channel::ipc::{self, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender};
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

type EchoBoot = (IpcSender<i64>, IpcReceiver<i64>);

fn ipc_echo(name: String) {
    let (to_child, in_child) = ipc::channel::<i64>().expect("channel");
    let (to_parent, in_parent) = ipc::channel::<i64>().expect("channel");
    let boot = IpcSender::<EchoBoot>::connect(name).expect("connect");
    boot.send((to_child, in_parent)).expect("boot");
    while let Ok(i) = in_child.recv() {
        if i < 0 || to_parent.send(i).is_err() {
            return;
        }
    }
}

fn ipc_round_trip(c: &mut Criterion) {
    let (server, name) = IpcOneShotServer::<EchoBoot>::new().expect("server");
    let mut child = mp::Process::new(ipc_echo, (name,));
    child.start().expect("start");
    let (_, (tx, rx)) = server.accept().expect("accept");
    c.bench_function("ipc_channel_round_trip", |bench| {
        bench.iter_custom(|iters| {
            let t = Instant::now();
            for i in 0..iters {
                tx.send(i as i64).expect("send");
                let _: i64 = rx.recv().expect("recv");
            }
            t.elapsed()
        });
    });
    tx.send(-1).expect("send");
    child.join_timeout(Duration::from_secs(10)).expect("join");
}

type SinkBoot = (IpcBytesSender, IpcSender<u64>, IpcReceiver<u64>);

fn ipc_sink(name: String) {
    let (bytes_tx, bytes_rx) = ipc::bytes_channel().expect("channel");
    let (cmd_tx, cmd_rx) = ipc::channel::<u64>().expect("channel");
    let (ack_tx, ack_rx) = ipc::channel::<u64>().expect("channel");
    let boot = IpcSender::<SinkBoot>::connect(name).expect("connect");
    boot.send((bytes_tx, cmd_tx, ack_rx)).expect("boot");
    while let Ok(n) = cmd_rx.recv() {
        for _ in 0..n {
            if bytes_rx.recv().is_err() {
                return;
            }
        }
        if ack_tx.send(n).is_err() {
            return;
        }
    }
}

fn ipc_bandwidth(c: &mut Criterion) {
    let (server, name) = IpcOneShotServer::<SinkBoot>::new().expect("server");
    let mut child = mp::Process::new(ipc_sink, (name,));
    child.start().expect("start");
    let (_, (bytes, cmd, ack)) = server.accept().expect("accept");
    let mut group = c.benchmark_group("ipc_channel_bandwidth");
    for (label, size) in [("64KiB", 64usize << 10), ("1MiB", 1 << 20)] {
        let buf = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(label, |bench| {
            bench.iter_custom(|iters| {
                let t = Instant::now();
                cmd.send(iters).expect("send");
                for _ in 0..iters {
                    bytes.send(&buf).expect("send");
                }
                let _: u64 = ack.recv().expect("ack");
                t.elapsed()
            });
        });
    }
    group.finish();
    drop((bytes, cmd));
    child.kill().expect("kill");
    child.join_timeout(Duration::from_secs(10)).expect("join");
}

criterion_group!(
    benches,
    round_trip,
    bandwidth,
    ipc_round_trip,
    ipc_bandwidth
);
criterion_main!(benches);
