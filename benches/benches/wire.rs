//! Connections on CPython's wire: the round trip of a 16-byte message over
//! TCP on loopback, our `Client` against a CPython `Listener` that echoes
//! it. Python: `python_extra.py wire_tcp_rtt_us`, a CPython client against
//! the same CPython echo server. Our client against our own `Listener`
//! runs beside it.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use mp::connection::{Address, Client, Listener, SocketConnection};
use multiproc as mp;

multiproc::test_setup!();

const KEY: &[u8] = b"bench";

fn rtt(c: &mut Criterion, name: &str, conn: &SocketConnection) {
    let msg = [b'x'; 16];
    c.benchmark_group("wire").bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                conn.send_bytes(&msg).expect("send");
                let _ = conn.recv_bytes().expect("recv");
            }
            t.elapsed()
        });
    });
}

fn with_python_peer(c: &mut Criterion) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python_extra.py");
    let Ok(mut server) = Command::new("python3")
        .args([script, "--echo"])
        .stdout(Stdio::piped())
        .spawn()
    else {
        eprintln!("wire: python3 not found; no round trip with a CPython peer");
        return;
    };
    let mut port = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut port)
        .expect("the echo server's port");
    let port: u16 = port.trim().parse().expect("a port");
    let conn = Client::connect(&Address::tcp("127.0.0.1", port).expect("address"), KEY)
        .expect("connect to CPython");
    rtt(c, "rtt_with_cpython_listener", &conn);
    drop(conn);
    server.wait().expect("the echo server ends");
}

fn rust_to_rust(c: &mut Criterion) {
    let listener = Listener::bind(&"127.0.0.1:0".parse().expect("address"), KEY).expect("bind");
    let address = listener.address().clone();
    let echo = std::thread::spawn(move || {
        let conn = listener.accept().expect("accept");
        while let Ok(b) = conn.recv_bytes() {
            if conn.send_bytes(&b).is_err() {
                return;
            }
        }
    });
    let conn = Client::connect(&address, KEY).expect("connect");
    rtt(c, "rtt_rust_to_rust", &conn);
    conn.close();
    echo.join().expect("echo thread");
}

criterion_group!(benches, with_python_peer, rust_to_rust);
criterion_main!(benches);
