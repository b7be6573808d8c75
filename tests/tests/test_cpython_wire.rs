#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

//! Our `Listener` and `Client` against CPython's
//! `multiprocessing.connection`, with every CPython 3.x this machine has:
//! the framing, both handshakes, bytes of every size both ways, plain values
//! through the pickle codec both ways, exceptions, and a wrong key each way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use mp::connection::{Address, Client, Listener, SocketConnection};
use multiproc as mp;
use multiproc_testkit::{Python, cpythons, output_within, within};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

const LIMIT: Duration = Duration::from_secs(60);
const SIZES: [usize; 4] = [0, 1, 64 << 10, 16 << 20];
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/wire_peer.py");

/// What `wire_peer.py` expects first, and echoes back.
type Sample = (
    Option<i64>,
    bool,
    i64,
    i64,
    f64,
    String,
    ByteBuf,
    Vec<i64>,
    BTreeMap<String, i64>,
    (i64, i64),
);

fn sample() -> Sample {
    (
        None,
        true,
        5,
        -7,
        1.5,
        "h\u{e9}llo".into(),
        ByteBuf::from(vec![0, 1]),
        vec![1, 2],
        BTreeMap::from([("a".to_string(), 1)]),
        (3, 4),
    )
}

/// What it sends next: the kinds the sample has not covered.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Extra {
    set: BTreeSet<i64>,
    frozen: BTreeSet<i64>,
    big: i64,
    neg: i64,
}

fn pattern(n: usize) -> Vec<u8> {
    let unit: Vec<u8> = (0..251).collect();
    unit.iter().copied().cycle().take(n).collect()
}

/// Our half of the exchange in `wire_peer.py`.
fn exchange(conn: SocketConnection) {
    let conn = conn.with_pickle();
    conn.set_max_message_size(32 << 20);
    for n in SIZES {
        let bytes = pattern(n);
        conn.send_bytes(&bytes).unwrap();
        let back = conn.recv_bytes_timeout(LIMIT).unwrap();
        assert_eq!(back.len(), n);
        assert!(
            back.iter().eq(bytes.iter().rev()),
            "{n} bytes came back wrong"
        );
    }
    conn.send(&sample()).unwrap();
    let (tag, echoed): (String, Sample) = conn.recv_timeout(LIMIT).unwrap();
    assert_eq!((tag.as_str(), echoed), ("echo", sample()));
    let extra: Extra = conn.recv_timeout(LIMIT).unwrap();
    assert_eq!(
        extra,
        Extra {
            set: BTreeSet::from([1, 2]),
            frozen: BTreeSet::from([3]),
            big: 1 << 62,
            neg: -(1 << 40),
        }
    );
    // An int beyond 64 bits: refused clearly, not wrapped.
    match conn.recv_timeout::<i64>(LIMIT) {
        Err(mp::Error::Decode(why)) => assert!(why.contains("too large"), "{why}"),
        other => panic!("expected a Decode error for 2**70, got {other:?}"),
    }
    match conn.recv_timeout::<String>(LIMIT) {
        // `_queue.Empty` in 3.11, `queue.Empty` in later versions.
        Err(mp::Error::Python { class, .. }) => assert!(class.ends_with("queue.Empty"), "{class}"),
        other => panic!("expected queue.Empty, got {other:?}"),
    }
    match conn.recv_timeout::<String>(LIMIT) {
        Err(mp::Error::Python { class, message }) => {
            assert_eq!(class, "builtins.KeyError");
            assert!(message.contains('k'), "{message}");
        }
        other => panic!("expected KeyError, got {other:?}"),
    }
    conn.send(&"bye").unwrap();
}

/// Addresses to listen on, as we name them and as `wire_peer.py` does.
fn addresses(tag: &str) -> Vec<(Address, String)> {
    let name = format!("mp-wire-{}-{tag}", std::process::id());
    let path = std::env::temp_dir().join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&path);
    vec![
        ("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".into()),
        (Address::unix(&path), path.display().to_string()),
        (Address::unix(format!("\0{name}")), format!("@{name}")),
    ]
}

/// How we name an address `wire_peer.py` printed.
fn parse_peer_address(s: &str) -> Address {
    match s.strip_prefix('@') {
        Some(name) => Address::unix(format!("\0{name}")),
        None => s.parse().unwrap(),
    }
}

fn peer(python: &Python, role: &str, address: &str, key: &str) -> Child {
    python
        .command()
        .args([PEER, role, address, key])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

/// The peer's last line, after it ended successfully.
fn finish(python: &Python, child: Child, earlier: Option<PeerOut>) -> String {
    let mut child = child;
    let rest = earlier.or_else(|| child.stdout.take().map(BufReader::new));
    let out = output_within(child, LIMIT);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(mut r) = rest {
        r.read_to_string(&mut text).unwrap();
    }
    assert!(
        out.status.success(),
        "CPython {} failed: {}",
        python.version,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().last().unwrap_or("").to_string()
}

type PeerOut = BufReader<std::process::ChildStdout>;

/// Starts a CPython listener at `named`, and reads the address it bound.
fn python_listener(python: &Python, named: &str, key: &str) -> (Child, PeerOut, Address) {
    let mut child = peer(python, "server", named, key);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (line, out) = within(LIMIT, move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (line, out)
    });
    (child, out, parse_peer_address(line.trim()))
}

/// Runs our half of the exchange, then waits for the peer: a failure on
/// the Python side shows with its stderr, before ours.
fn exchange_with(
    python: &Python,
    child: Child,
    out: Option<PeerOut>,
    conn: SocketConnection,
) -> String {
    let ours = std::panic::catch_unwind(move || exchange(conn));
    let last = finish(python, child, out);
    if let Err(e) = ours {
        std::panic::resume_unwind(e);
    }
    last
}

fn address_for_python(listener: &Listener, given: &str) -> String {
    match listener.address() {
        Address::Tcp(a) => a.to_string(),
        _ => given.to_string(),
    }
}

#[test]
fn a_rust_listener_serves_cpython_clients() {
    for python in cpythons() {
        for (address, named) in addresses("listener") {
            let listener = Listener::bind(&address, b"wire key").unwrap();
            let child = peer(
                &python,
                "client",
                &address_for_python(&listener, &named),
                "wire key",
            );
            let conn = within(LIMIT, move || listener.accept_timeout(LIMIT).unwrap());
            let last = exchange_with(&python, child, None, conn);
            assert_eq!(last, "ok", "CPython {} client at {named}", python.version);
        }
    }
}

#[test]
fn a_rust_client_talks_to_cpython_listeners() {
    for python in cpythons() {
        for (_, named) in addresses("client") {
            let (child, out, address) = python_listener(&python, &named, "wire key");
            let conn = Client::connect(&address, b"wire key").unwrap();
            let last = exchange_with(&python, child, Some(out), conn);
            assert_eq!(last, "ok", "CPython {} listener at {named}", python.version);
        }
    }
}

#[test]
fn a_wrong_key_is_refused_each_way() {
    for python in cpythons() {
        // A CPython client with the wrong key: refused, and our listener
        // hands out nothing.
        let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), b"right").unwrap();
        let child = peer(&python, "client", &listener.address().to_string(), "wrong");
        // The handshakes run once `accept` has been called, and go on
        // after it returns: the peer that failed is never handed out.
        assert!(matches!(
            listener.accept_timeout(Duration::from_millis(300)),
            Err(mp::Error::Timeout)
        ));
        assert_eq!(finish(&python, child, None), "AuthenticationError");
        assert!(matches!(
            listener.accept_timeout(Duration::from_millis(100)),
            Err(mp::Error::Timeout)
        ));
        assert_eq!(
            listener.refused(),
            1,
            "CPython {}: the peer was not counted",
            python.version
        );
        // Our client with the wrong key to a CPython listener.
        let (child, out, address) = python_listener(&python, "127.0.0.1:0", "right");
        match Client::connect(&address, b"wrong") {
            Err(mp::Error::Auth(_)) => {}
            other => panic!("CPython {}: expected Auth, got {other:?}", python.version),
        }
        assert_eq!(finish(&python, child, Some(out)), "AuthenticationError");
    }
}
