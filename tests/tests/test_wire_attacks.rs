//! A hostile or broken peer cannot stop a `Listener` or a served `Manager`
//! from serving others: drip-fed handshakes, silent connections,
//! connect/close floods, oversized and garbage frames before and after the
//! handshake, a forged release, a server that stops replying. After each,
//! a legitimate client is served within a second, and threads and
//! descriptors return to where they were. Everything is on loopback and
//! bounded in count and time.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mp::connection::{Address, Client, ClientOptions, Listener, ListenerOptions};
use multiproc as mp;
use multiproc_testkit::{wait_until, within};

const LIMIT: Duration = Duration::from_secs(30);
/// The handshake deadline these tests set, to keep them short.
const GRACE: Duration = Duration::from_millis(800);
const KEY: &[u8] = b"attack key";

fn tcp(address: &Address) -> SocketAddr {
    match address {
        Address::Tcp(a) => *a,
        Address::Unix(_) => unreachable!("a TCP address"),
    }
}

/// The threads of process `pid`.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// The open descriptors of process `pid`.
fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// This process's threads running handshakes.
fn handshake_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "listener-handsh")
        })
        .count()
}

/// A listener whose accepted connections echo one message each, on a
/// thread, until the listener is dropped with the guard.
struct Echo {
    address: Address,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(options: ListenerOptions) -> Echo {
        let listener = Listener::bind_with(&"127.0.0.1:0".parse().unwrap(), KEY, options).unwrap();
        let address = listener.address().clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(conn) = listener.accept_timeout(Duration::from_millis(50))
                    && let Ok(b) = conn.recv_bytes_timeout(Duration::from_secs(5))
                {
                    let _ = conn.send_bytes(&b);
                }
            }
        });
        Echo {
            address,
            stop,
            thread: Some(thread),
        }
    }

    /// A legitimate client's round trip, which must take under a second.
    fn served_within_a_second(&self) {
        let address = self.address.clone();
        let took = within(LIMIT, move || {
            let t = Instant::now();
            let c = Client::connect(&address, KEY).unwrap();
            c.send_bytes(b"hello").unwrap();
            assert_eq!(c.recv_bytes_timeout(LIMIT).unwrap(), b"hello");
            t.elapsed()
        });
        assert!(
            took < Duration::from_secs(1),
            "a legitimate client waited {took:?}"
        );
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn grace() -> ListenerOptions {
    ListenerOptions::new().handshake_timeout(GRACE)
}

/// Whether the server closed `s` (EOF or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if start.elapsed() > limit {
            return false;
        }
    }
}

#[test]
fn a_drip_fed_handshake_is_cut_at_its_deadline() {
    let echo = Echo::start(grace());
    let mut drips: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(tcp(&echo.address)).unwrap())
        .collect();
    let start = Instant::now();
    // One byte each every 100 ms: each read alone is quick, the whole is
    // not; a deadline re-armed per read would never fire.
    let mut cut = vec![false; drips.len()];
    while start.elapsed() < GRACE * 4 && cut.contains(&false) {
        for (s, c) in drips.iter_mut().zip(cut.iter_mut()) {
            if !*c && s.write_all(&[0]).is_err() {
                *c = true;
            }
        }
        echo.served_within_a_second();
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in &mut drips {
        assert!(
            closed_within(s, GRACE * 2),
            "a drip-fed connection outlived the deadline"
        );
    }
    assert!(start.elapsed() < GRACE * 5);
    assert!(wait_until(Duration::from_secs(5), || handshake_threads() == 0));
    echo.served_within_a_second();
}

#[test]
fn silent_connections_hold_up_nobody() {
    let echo = Echo::start(grace());
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(tcp(&echo.address)).unwrap())
        .collect();
    // While all 200 are in the handshake, others are served at once.
    for _ in 0..3 {
        echo.served_within_a_second();
    }
    assert!(
        wait_until(GRACE * 5, || handshake_threads() == 0),
        "handshake threads stayed"
    );
    drop(silent);
    echo.served_within_a_second();
}

#[test]
fn beyond_the_cap_connections_are_closed_at_once() {
    let echo = Echo::start(grace().max_pending_handshakes(10));
    let _silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(tcp(&echo.address)).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(5), || handshake_threads() == 10));
    let mut extra = TcpStream::connect(tcp(&echo.address)).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut extra, Duration::from_millis(500)));
    assert!(t.elapsed() < GRACE, "the 11th waited for a slot");
    // Once the silent ones time out, there is room again.
    assert!(wait_until(GRACE * 5, || handshake_threads() == 0));
    echo.served_within_a_second();
}

#[test]
fn a_connect_and_close_flood_leaves_nothing_behind() {
    let echo = Echo::start(grace());
    echo.served_within_a_second();
    let fds = multiproc_testkit::fd_count();
    let start = Instant::now();
    let mut n = 0;
    while n < 2000 && start.elapsed() < Duration::from_secs(20) {
        drop(TcpStream::connect(tcp(&echo.address)).unwrap());
        n += 1;
    }
    assert_eq!(n, 2000);
    echo.served_within_a_second();
    assert!(wait_until(Duration::from_secs(5), || handshake_threads() == 0));
    assert!(
        wait_until(Duration::from_secs(5), || multiproc_testkit::fd_count()
            <= fds),
        "descriptors: {fds} before, {} after",
        multiproc_testkit::fd_count()
    );
}

#[test]
fn garbage_and_oversized_frames_before_and_after_the_handshake() {
    let echo = Echo::start(grace());
    // Before: a header claiming 2 GiB - 1, a negative length, the 8-byte
    // form claiming 2^63, plain noise.
    let headers: [&[u8]; 4] = [
        &0x7fff_ffffu32.to_be_bytes(),
        &(-5i32).to_be_bytes(),
        &[0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for h in headers {
        let mut s = TcpStream::connect(tcp(&echo.address)).unwrap();
        s.write_all(h).unwrap();
        assert!(
            closed_within(&mut s, GRACE * 3),
            "{h:?} kept the connection open"
        );
        echo.served_within_a_second();
    }
    // After: an authenticated client over our limit is cut off, and only
    // it.
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), KEY).unwrap();
    let address = listener.address().clone();
    let t = std::thread::spawn(move || {
        let c = Client::connect(&address, KEY).unwrap();
        c.send_bytes(&vec![1u8; 4096]).unwrap();
        c.send_bytes(b"after").ok();
        c.recv_bytes_timeout(LIMIT)
    });
    let conn = listener.accept_timeout(LIMIT).unwrap();
    conn.set_max_message_size(1024);
    assert!(matches!(
        conn.recv_bytes(),
        Err(mp::Error::MessageTooLarge {
            size: 4096,
            max: 1024
        })
    ));
    assert!(matches!(conn.recv_bytes(), Err(mp::Error::Closed)));
    assert!(matches!(t.join().unwrap(), Err(mp::Error::Closed)));
}

// --- A served manager. ---

fn served(options: ListenerOptions) -> mp::Manager {
    mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().unwrap(), KEY)
        .listener_options(options)
        .max_message_size(1 << 20)
        .start()
        .unwrap()
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn manager_serves_within_a_second(address: &Address) {
    let address = address.clone();
    let took = within(LIMIT, move || {
        let t = Instant::now();
        let m = mp::Manager::connect(&address, KEY).unwrap();
        let l = m.list([1u8, 2]).unwrap();
        assert_eq!(l.to_vec().unwrap(), vec![1, 2]);
        t.elapsed()
    });
    assert!(
        took < Duration::from_secs(1),
        "a legitimate client waited {took:?}"
    );
}

#[test]
fn a_served_manager_survives_every_attack_and_returns_to_its_baseline() {
    let m = served(grace().max_pending_handshakes(512));
    let address = m.address().unwrap().clone();
    let pid = m.pid().unwrap();
    manager_serves_within_a_second(&address);
    let (threads, fds, rss) = (threads_of(pid), fds_of(pid), rss_kib(pid));

    // Silent connections and drips, all at once.
    let mut silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(tcp(&address)).unwrap())
        .collect();
    for s in silent.iter_mut().take(20) {
        s.write_all(&[0]).unwrap();
    }
    manager_serves_within_a_second(&address);
    // Connect and close.
    for _ in 0..500 {
        drop(TcpStream::connect(tcp(&address)).unwrap());
    }
    manager_serves_within_a_second(&address);
    // Garbage after the handshake, and a request over the limit.
    let bad = Client::connect(&address, KEY).unwrap();
    bad.send_bytes(&[0xff; 64]).unwrap();
    assert!(matches!(
        bad.recv_bytes_timeout(LIMIT),
        Err(mp::Error::Closed)
    ));
    let big = Client::connect(&address, KEY).unwrap();
    big.send_bytes(&vec![0u8; 2 << 20]).ok();
    assert!(matches!(
        big.recv_bytes_timeout(LIMIT),
        Err(mp::Error::Closed)
    ));
    manager_serves_within_a_second(&address);
    drop((bad, big));

    // Everything timed out or closed: back to the baseline.
    assert!(wait_until(GRACE * 6, || silent
        .iter_mut()
        .all(|s| closed_within(s, Duration::from_millis(1)))));
    drop(silent);
    assert!(
        wait_until(Duration::from_secs(10), || threads_of(pid) <= threads
            && fds_of(pid) <= fds),
        "server threads {threads} -> {}, descriptors {fds} -> {}",
        threads_of(pid),
        fds_of(pid)
    );
    // Thread stacks and buffers are given back (allocator caches aside).
    assert!(
        rss_kib(pid) < rss + 16 * 1024,
        "server memory {rss} KiB -> {} KiB",
        rss_kib(pid)
    );
    manager_serves_within_a_second(&address);
}

#[test]
fn a_served_manager_serves_at_most_max_connections() {
    let m = mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().unwrap(), KEY)
        .max_connections(4)
        .start()
        .unwrap();
    let address = m.address().unwrap().clone();
    // Each remote session holds two connections once it has made a call:
    // one that keeps the session, one for calls.
    let a = mp::Manager::connect(&address, KEY).unwrap();
    let la = a.list([1u8]).unwrap();
    let b = mp::Manager::connect(&address, KEY).unwrap();
    let lb = b.list([2u8]).unwrap();
    // The fifth passes the handshake and is closed at once.
    assert!(matches!(
        mp::Manager::connect(&address, KEY),
        Err(mp::Error::Closed | mp::Error::Io(_))
    ));
    assert_eq!(
        (la.to_vec().unwrap(), lb.to_vec().unwrap()),
        (vec![1], vec![2])
    );
    drop((la, lb, a, b));
    // Their places are given back.
    assert!(wait_until(Duration::from_secs(5), || mp::Manager::connect(
        &address, KEY
    )
    .is_ok()));
}

#[test]
fn a_remote_client_can_raise_its_message_limit() {
    let m = mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().unwrap(), KEY)
        .start()
        .unwrap();
    let address = m.address().unwrap().clone();
    let big = serde_bytes::ByteBuf::from(vec![7u8; 70 << 20]);
    // With the default limit (64 MiB) it can store the value but its
    // reply is refused, and says why.
    let small = mp::Manager::connect(&address, KEY).unwrap();
    let l = small.list([big.clone()]).unwrap();
    assert!(matches!(
        l.get(0),
        Err(mp::Error::MessageTooLarge { max, .. }) if max == mp::connection::DEFAULT_MAX_SOCKET_MESSAGE
    ));
    small.publish("big", &l).unwrap();
    // A client that asked for more reads it back.
    let options = ClientOptions::new().max_message_size(128 << 20);
    let large = mp::Manager::connect_with(&address, KEY, &options).unwrap();
    let l: mp::ListProxy<serde_bytes::ByteBuf> = large.lookup("big").unwrap();
    assert_eq!(l.get(0).unwrap(), big);
}

#[test]
fn a_server_that_stops_replying_fails_the_call_with_a_timeout() {
    let m = served(grace());
    let address = m.address().unwrap().clone();
    let pid = m.pid().unwrap();
    let options = ClientOptions::new().reply_timeout(Duration::from_millis(700));
    let remote = mp::Manager::connect_with(&address, KEY, &options).unwrap();
    let q = remote.queue::<u32>().unwrap();
    // A call that waits longer than the reply timeout is not cut short:
    // the server says it is still waiting.
    let t = Instant::now();
    let got = q.get_timeout(Duration::from_millis(2500));
    // The queue's own timeout, at 2.5 s, not the reply timeout at 0.7 s.
    assert!(matches!(got, Err(mp::Error::Timeout)), "{got:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(2400),
        "cut short at {:?}",
        t.elapsed()
    );
    // A server that stops (SIGSTOP) fails the call in about that time.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::STOP,
    )
    .unwrap();
    let t = Instant::now();
    let got = within(LIMIT, move || q.qsize());
    let took = t.elapsed();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::CONT,
    )
    .unwrap();
    assert!(matches!(got, Err(mp::Error::Timeout)), "{got:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // A listener that accepts and then says nothing: connect times out.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_address = Address::Tcp(mute.local_addr().unwrap());
    let quick = ClientOptions::new().handshake_timeout(Duration::from_millis(500));
    let t = Instant::now();
    assert!(matches!(
        mp::Manager::connect_with(&mute_address, KEY, &quick),
        Err(mp::Error::Timeout)
    ));
    assert!(t.elapsed() < Duration::from_secs(2));
    manager_serves_within_a_second(&address);
}

#[test]
fn a_unix_socket_with_a_full_backlog_times_the_connect_out() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let path = std::env::temp_dir().join(format!("mp-backlog-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&fd, 0).unwrap();
    let address = Address::unix(&path);
    let quick = ClientOptions::new()
        .connect_timeout(Duration::from_millis(300))
        .handshake_timeout(Duration::from_millis(300));
    // Fill the backlog (nobody accepts), then one more must give up.
    let mut results = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        results.push((
            SocketConnectionResult::of(Client::connect_with(&address, KEY, &quick)),
            t.elapsed(),
        ));
    }
    assert!(
        results
            .iter()
            .all(|(r, _)| *r == SocketConnectionResult::Timeout),
        "{results:?}"
    );
    assert!(
        results.iter().all(|(_, t)| *t < Duration::from_secs(2)),
        "{results:?}"
    );
    let _ = std::fs::remove_file(&path);
}

#[derive(Debug, PartialEq)]
enum SocketConnectionResult {
    Timeout,
    Other(String),
}

impl SocketConnectionResult {
    fn of(r: mp::Result<mp::connection::SocketConnection>) -> SocketConnectionResult {
        match r {
            Err(mp::Error::Timeout) => SocketConnectionResult::Timeout,
            other => SocketConnectionResult::Other(format!("{other:?}")),
        }
    }
}

#[test]
fn unix_socket_files_are_made_for_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("mp-mode-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // Whatever the umask, the default is 0600.
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let l = Listener::bind(&Address::unix(&path), KEY);
    rustix::process::umask(old);
    let l = l.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(l);
    let l = Listener::bind_with(
        &Address::unix(&path),
        KEY,
        ListenerOptions::new().unix_mode(0o660),
    )
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(l);
    assert!(!path.exists());
}

// --- Keys stay where they were given. ---

const DISTINCT_KEY: &[u8] = b"a key no proxy may carry 7f3a";

fn receive_remote_proxy(conn: mp::Connection, address: String, connect_first: bool) -> String {
    let _m = connect_first
        .then(|| mp::Manager::connect(&address.parse().unwrap(), DISTINCT_KEY).unwrap());
    match conn.recv_timeout::<mp::ListProxy<u32>>(LIMIT) {
        Ok(l) => format!("len {}", l.len().unwrap()),
        Err(e) => format!("err {e}"),
    }
}

#[test]
fn a_remote_proxy_carries_no_key() {
    let m = mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().unwrap(), DISTINCT_KEY)
        .start()
        .unwrap();
    let address = m.address().unwrap().clone();
    let remote = mp::Manager::connect(&address, DISTINCT_KEY).unwrap();
    let l = remote.list([1u32, 2, 3]).unwrap();
    let bytes = mp::codec::encode(&l).unwrap();
    assert!(
        !bytes.windows(DISTINCT_KEY.len()).any(|w| w == DISTINCT_KEY),
        "the encoded proxy holds the key"
    );
    for (connect_first, want) in [(false, "Manager::connect"), (true, "len 3")] {
        let (ours, theirs) = mp::Pipe::new().unwrap();
        let mut p = mp::Process::new(
            receive_remote_proxy,
            (theirs, address.to_string(), connect_first),
        );
        p.start().unwrap();
        ours.send(&l).unwrap();
        p.join_timeout(LIMIT).unwrap();
        let got = p.take_result().unwrap();
        assert!(got.contains(want), "connect first: {connect_first}: {got}");
    }
    assert_eq!(l.len().unwrap(), 3);
}

// --- Signals and fork. ---

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn a_child_made_by_fork_does_not_hold_up_the_listeners_drop() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), KEY).unwrap();
    // Starts the acceptor thread.
    assert!(listener.accept_timeout(Duration::from_millis(10)).is_err());
    let mut p = mp::Process::builder(sleep_ms, (3000u64,))
        .start_method(mp::StartMethod::Fork)
        .build();
    p.start().unwrap();
    let t = Instant::now();
    drop(listener);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "drop waited {:?}",
        t.elapsed()
    );
    p.join_timeout(LIMIT).unwrap();
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn a_signal_is_not_a_timeout() {
    // SAFETY: the handler does nothing, so it is async-signal-safe; the
    // sigaction struct is zeroed and then filled as the call expects.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as libc::sighandler_t;
        // No SA_RESTART: the signal interrupts poll with EINTR.
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), KEY).unwrap();
    let address = listener.address().clone();
    let server = std::thread::spawn(move || {
        let conn = listener.accept_timeout(LIMIT).unwrap();
        sleep_ms(400);
        conn.send_bytes(b"late").unwrap();
        sleep_ms(200);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let c = Client::connect(&address, KEY).unwrap();
        c.recv_bytes_timeout(Duration::from_secs(5))
    });
    let target = rx.recv().unwrap();
    let start = Instant::now();
    while !client.is_finished() && start.elapsed() < Duration::from_secs(10) {
        // SAFETY: the thread is joinable and joined only below, so its id
        // stays valid even after it returns.
        unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
        sleep_ms(5);
    }
    assert_eq!(client.join().unwrap().unwrap(), b"late");
    server.join().unwrap();
}
