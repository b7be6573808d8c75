//! Managers between Rust and Python programs, over TCP on loopback:
//!
//! - a Python client's `d[i] = i` on a Rust manager served to Python
//!   (`serve_python_on`), beside `python_extra.py
//!   py_client_dict_set_cpython_manager_ops_per_s`, the same client on a
//!   CPython `SyncManager`;
//! - a Rust client's `qsize()` on a CPython `BaseManager`'s queue
//!   (`mp::python`), beside `python_extra.py
//!   py_client_queue_call_cpython_manager_us`, a Python client on it.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc as mp;

multiproc::test_setup!();

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python_extra.py");
const KEY: &str = "bench";

fn python(args: &[&str]) -> Option<Child> {
    Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()
}

fn python_client_on_a_rust_manager(c: &mut Criterion) {
    let m = mp::Manager::builder()
        .serve_python_on("127.0.0.1:0".parse().expect("address"), KEY.as_bytes())
        .start()
        .expect("manager");
    let address = m.python_address().expect("served").to_string();
    let Some(mut client) = python(&["--dict-client", &address, KEY]) else {
        eprintln!("python_managers: python3 not found");
        return;
    };
    let mut stdin = client.stdin.take().expect("piped");
    let mut lines = BufReader::new(client.stdout.take().expect("piped"));
    let mut run = |n: u64| -> Duration {
        writeln!(stdin, "{n}").expect("ask the client");
        let mut line = String::new();
        lines.read_line(&mut line).expect("its time");
        Duration::from_secs_f64(line.trim().parse().expect("seconds"))
    };
    run(100);
    c.benchmark_group("python_managers").bench_function(
        "python_client_dict_set_rust_manager",
        |b| {
            b.iter_custom(&mut run);
        },
    );
    drop(stdin);
    let _ = client.wait();
}

fn rust_client_on_a_cpython_manager(c: &mut Criterion) {
    let Some(mut server) = python(&["--queue-manager"]) else {
        eprintln!("python_managers: python3 not found");
        return;
    };
    let mut port = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut port)
        .expect("the manager's port");
    let address = format!("127.0.0.1:{}", port.trim())
        .parse()
        .expect("address");
    let m = mp::python::Manager::connect(&address, KEY.as_bytes()).expect("connect");
    let q = m.queue::<i64>("get_queue").expect("get_queue");
    c.benchmark_group("python_managers").bench_function(
        "rust_client_queue_call_cpython_manager",
        |b| {
            b.iter(|| q.qsize().expect("qsize"));
        },
    );
    drop(q);
    drop(server.stdin.take());
    let _ = server.wait();
}

criterion_group!(
    benches,
    python_client_on_a_rust_manager,
    rust_client_on_a_cpython_manager
);
criterion_main!(benches);
