//! Pipes and `wait` between real processes, after `_TestConnection` and
//! `_TestWait` of CPython's `_test_multiprocessing.py`.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::LeakCheck;

const LIMIT: Duration = Duration::from_secs(30);

fn join<R>(p: &mp::Process<R>) {
    p.join_timeout(LIMIT).expect("child did not end in time");
}

/// Echoes until the sentinel `u32::MAX` (under fork the child also holds
/// the parent's end, inherited, so it would never see end of file; CPython
/// is the same).
fn echo(conn: mp::Connection) {
    while let Ok(v) = conn.recv::<(u32, String)>() {
        if v.0 == u32::MAX || conn.send(&v).is_err() {
            return;
        }
    }
}

fn values_go_both_ways(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let (a, b) = mp::Pipe::new().unwrap();
    let mut p = ctx.process(echo, (b,));
    p.start().unwrap();
    for i in 0..2000u32 {
        a.send(&(i, format!("message {i}"))).unwrap();
        let back: (u32, String) = a.recv_timeout(LIMIT).unwrap();
        assert_eq!(back, (i, format!("message {i}")));
    }
    a.send(&(u32::MAX, String::new())).unwrap();
    join(&p);
    assert_eq!(p.exitcode(), Some(0));
    drop((p, a));
    leaks.assert_clean();
}

fn send_three(conn: mp::Connection) {
    for m in ["hello", "hey", "hru?"] {
        conn.send(m).unwrap();
    }
}

fn recv_after_the_other_end_closed_is_closed(ctx: mp::Context) {
    let (r, w) = mp::Pipe::one_way().unwrap();
    let mut p = ctx.process(send_three, (w,));
    // The child holds the only other copy of the writer once ours is gone.
    p.start().unwrap();
    join(&p);
    let got: Vec<String> = (0..3).map(|_| r.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, ["hello", "hey", "hru?"]);
    assert!(matches!(
        r.recv_timeout::<String>(LIMIT),
        Err(mp::Error::Closed)
    ));
    assert!(
        r.poll(Some(Duration::ZERO)).unwrap(),
        "poll is true at the end, as in Python"
    );
}

fn send_after(conn: mp::Connection, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    conn.send_bytes(b"late").unwrap();
}

fn poll_waits_about_its_timeout(ctx: mp::Context) {
    let (a, b) = mp::Pipe::new().unwrap();
    let t = Instant::now();
    assert!(!a.poll(Some(Duration::from_millis(150))).unwrap());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let mut p = ctx.process(send_after, (b.clone(), 100));
    p.start().unwrap();
    assert!(a.poll(Some(LIMIT)).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"late");
    join(&p);
}

#[test]
fn a_short_buffer_loses_nothing() {
    let (a, b) = mp::Pipe::new().unwrap();
    a.send_bytes(b"0123456789").unwrap();
    a.send_bytes(b"abc").unwrap();
    let mut small = [0u8; 4];
    match b.recv_bytes_into(&mut small) {
        Err(mp::Error::BufferTooShort { message }) => assert_eq!(message, b"0123456789"),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    assert_eq!(b.recv_bytes_into(&mut small).unwrap(), 3);
    assert_eq!(&small[..3], b"abc");
}

#[test]
fn an_oversized_message_is_refused_and_closes_the_connection() {
    let (a, b) = mp::Pipe::new().unwrap();
    b.set_max_message_size(1000);
    a.send_bytes(&vec![7u8; 5000]).unwrap();
    a.send_bytes(b"after").unwrap();
    match b.recv_bytes() {
        Err(mp::Error::MessageTooLarge {
            size: 5000,
            max: 1000,
        }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(b.closed());
    assert!(matches!(b.recv_bytes(), Err(mp::Error::Closed)));
}

#[test]
fn one_way_ends_refuse_the_other_direction() {
    let (r, w) = mp::Pipe::one_way().unwrap();
    assert!(r.readable() && !r.writable());
    assert!(w.writable() && !w.readable());
    assert!(matches!(r.send(&1u8), Err(mp::Error::Unsupported(_))));
    assert!(matches!(w.recv::<u8>(), Err(mp::Error::Unsupported(_))));
}

fn sink(conn: mp::Connection, n: usize) -> u64 {
    (0..n)
        .map(|_| {
            conn.recv_bytes()
                .unwrap()
                .iter()
                .map(|b| u64::from(*b))
                .sum::<u64>()
        })
        .sum()
}

fn messages_are_never_merged_or_split(ctx: mp::Context) {
    let (a, b) = mp::Pipe::with_capacity(64 * 1024).unwrap();
    let mut p = ctx.process(sink, (b, 300));
    p.start().unwrap();
    let mut expect = 0u64;
    for i in 0..300usize {
        // From 0 bytes to far beyond the ring.
        let len = (i * 7919) % 300_000;
        let byte = (i % 251) as u8;
        expect += len as u64 * u64::from(byte);
        a.send_bytes(&vec![byte; len]).unwrap();
    }
    join(&p);
    assert_eq!(p.take_result().unwrap(), expect);
}

#[test]
fn a_message_of_one_gibibyte_goes_through() {
    let ctx = mp::get_context(mp::StartMethod::Fork);
    let (a, b) = mp::Pipe::new().unwrap();
    let mut p = ctx.process(sink, (b, 1));
    p.start().unwrap();
    let big = vec![1u8; 1 << 30];
    a.send_bytes(&big).unwrap();
    drop(big);
    join(&p);
    assert_eq!(p.take_result().unwrap(), 1 << 30);
}

fn use_handles(conn: mp::Connection) {
    let (lock, value, queue, back): (mp::Lock, mp::Value<u32>, mp::Queue<String>, mp::Connection) =
        conn.recv().unwrap();
    {
        let _g = lock.acquire().unwrap();
        *value.lock() += 41;
    }
    queue.put("through a queue".to_string()).unwrap();
    back.send("through a connection sent through a connection")
        .unwrap();
}

fn handles_travel_through_a_connection(ctx: mp::Context) {
    let (a, b) = mp::Pipe::new().unwrap();
    let mut p = ctx.process(use_handles, (b,));
    p.start().unwrap();
    let lock = mp::Lock::new().unwrap();
    let value = mp::Value::new(1u32).unwrap();
    let queue = mp::Queue::<String>::new().unwrap();
    let (mine, theirs) = mp::Pipe::new().unwrap();
    // Created after the child started: they reach it only through `a`.
    a.send(&(lock.clone(), value.clone(), queue.clone(), theirs))
        .unwrap();
    join(&p);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(value.get(), 42);
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), "through a queue");
    assert_eq!(
        mine.recv_timeout::<String>(LIMIT).unwrap(),
        "through a connection sent through a connection"
    );
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn wait_returns_the_ready_subset(ctx: mp::Context) {
    let (a, b) = mp::Pipe::new().unwrap();
    let (c, d) = mp::Pipe::new().unwrap();
    let q = mp::Queue::<u8>::new().unwrap();
    let mut quick = ctx.process(nap, (0,));
    let mut slow = ctx.builder(nap, (60_000,)).daemon(true).build();
    // Nothing ready: times out empty.
    let t = Instant::now();
    assert!(
        mp::wait(&[&a, &c, &q], Some(Duration::from_millis(100)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    d.send(&1u8).unwrap();
    assert_eq!(mp::wait(&[&a, &c, &q], Some(LIMIT)).unwrap(), [1]);
    q.put(5).unwrap();
    assert_eq!(mp::wait(&[&a, &c, &q], Some(LIMIT)).unwrap(), [1, 2]);
    // A sender in another process wakes a waiter.
    let mut p = ctx.process(send_after, (b.clone(), 50));
    p.start().unwrap();
    assert_eq!(mp::wait(&[&a], Some(LIMIT)).unwrap(), [0]);
    join(&p);
    // Process sentinels.
    quick.start().unwrap();
    slow.start().unwrap();
    assert_eq!(mp::wait(&[&slow, &quick], Some(LIMIT)).unwrap(), [1]);
    slow.kill().unwrap();
    join(&slow);
    join(&quick);
}

/// Sends messages of the given sizes, each filled with its index.
fn send_sizes(conn: mp::Connection, sizes: Vec<usize>) {
    for (i, n) in sizes.into_iter().enumerate() {
        conn.send_bytes(&vec![i as u8; n]).unwrap();
    }
}

fn one_buffer_receives_messages_of_any_size(ctx: mp::Context) {
    // A 64 KiB ring: the 300 KB message travels in chunks.
    let (a, b) = mp::Pipe::with_capacity(64 << 10).unwrap();
    let sizes = vec![10, 300_000, 0, 5, 40_000, 300_000, 1];
    let mut p = ctx.process(send_sizes, (b, sizes.clone()));
    p.start().unwrap();
    let mut buf = b"left over from before".to_vec();
    for (i, n) in sizes.iter().enumerate() {
        assert!(a.poll(Some(LIMIT)).unwrap());
        assert_eq!(a.recv_bytes_into_vec(&mut buf).unwrap(), *n);
        assert_eq!(buf.len(), *n);
        assert!(buf.iter().all(|&x| x == i as u8), "message {i} altered");
        if i >= 1 {
            // The largest message's allocation is kept for the rest.
            assert!(buf.capacity() >= 300_000);
        }
    }
    join(&p);
    // The other end is gone: an error, and an empty buffer.
    assert!(matches!(
        a.recv_bytes_into_vec(&mut buf),
        Err(mp::Error::Closed)
    ));
    assert!(buf.is_empty());
}

fn hold_a_while(end: mp::Connection) {
    let _ = end.recv_timeout::<u32>(Duration::from_millis(200));
}

/// As CPython's `BrokenPipeError`: a send to an end that nobody holds any
/// more fails, instead of losing the message.
fn send_to_a_closed_end_is_an_error(ctx: mp::Context) {
    let (a, b) = mp::Pipe::new().unwrap();
    drop(b);
    assert!(matches!(a.send(&1u32), Err(mp::Error::Closed)));
    assert!(matches!(a.send_bytes(b"x"), Err(mp::Error::Closed)));

    let (a, b) = mp::Pipe::new().unwrap();
    b.close();
    assert!(matches!(a.send(&1u32), Err(mp::Error::Closed)));
    // And the other way.
    let (a, b) = mp::Pipe::new().unwrap();
    drop(a);
    assert!(matches!(b.send(&1u32), Err(mp::Error::Closed)));

    // Held by a child only: sends work while it lives, fail once it exits.
    let (a, b) = mp::Pipe::new().unwrap();
    let mut p = ctx.process(hold_a_while, (b,));
    p.start().unwrap();
    a.send(&1u32).unwrap();
    join(&p);
    assert_eq!(p.exitcode(), Some(0));
    assert!(matches!(a.send(&2u32), Err(mp::Error::Closed)));
}

fn connect_and_send_after(address: String, ms: u64, fd_out: mp::handoff::HandoffFd) {
    use std::io::Write;
    let conn = mp::connection::Client::connect(&address.parse().unwrap(), b"wait").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    conn.send(&"over the socket".to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::File::from(std::os::fd::OwnedFd::from(fd_out))
        .write_all(b"!")
        .unwrap();
}

/// A descriptor of the user's own, behind a type of theirs.
struct Doorbell(std::os::fd::OwnedFd);

impl mp::Waitable for Doorbell {
    fn is_ready(&self) -> bool {
        use std::os::fd::AsFd;
        self.0.as_fd().is_ready()
    }

    fn wait_fd(&self) -> Option<mp::WaitFd<'_>> {
        use std::os::fd::AsFd;
        Some(mp::WaitFd::Borrowed(self.0.as_fd()))
    }
}

fn wait_takes_sockets_and_descriptors(ctx: mp::Context) {
    use std::os::fd::AsFd;
    let listener =
        mp::connection::Listener::bind(&"127.0.0.1:0".parse().unwrap(), b"wait").unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let bell = Doorbell(reader.into());
    let (a, _b) = mp::Pipe::new().unwrap();
    let mut p = ctx.process(
        connect_and_send_after,
        (
            listener.address().to_string(),
            50,
            mp::handoff::HandoffFd::from(std::os::fd::OwnedFd::from(writer)),
        ),
    );
    p.start().unwrap();
    let conn = multiproc_testkit::within(LIMIT, move || listener.accept().unwrap());
    // Nothing yet.
    assert!(
        mp::wait(&[&conn, &bell, &a], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    // The socket first, then the user's descriptor, then the process.
    assert_eq!(mp::wait(&[&a, &conn, &bell], Some(LIMIT)).unwrap(), [1]);
    assert_eq!(
        conn.recv_timeout::<String>(LIMIT).unwrap(),
        "over the socket"
    );
    // (The socket may be ready again: its peer ends once it rang.)
    let ready = mp::wait(&[&a, &conn, &bell], Some(LIMIT)).unwrap();
    assert!(ready.contains(&2) && !ready.contains(&0), "{ready:?}");
    join(&p);
    assert_eq!(p.exitcode(), Some(0));
    // A borrowed descriptor too; and the socket whose peer is gone is
    // ready (a recv says it is closed).
    assert_eq!(
        mp::wait(&[&bell.0.as_fd(), &p], Some(LIMIT)).unwrap(),
        [0, 1]
    );
    assert_eq!(mp::wait(&[&conn], Some(LIMIT)).unwrap(), [0]);
    assert!(matches!(conn.recv::<String>(), Err(mp::Error::Closed)));
}

multiproc_testkit::each_start_method!(
    send_to_a_closed_end_is_an_error,
    one_buffer_receives_messages_of_any_size,
    values_go_both_ways,
    recv_after_the_other_end_closed_is_closed,
    poll_waits_about_its_timeout,
    messages_are_never_merged_or_split,
    handles_travel_through_a_connection,
    wait_returns_the_ready_subset,
    wait_takes_sockets_and_descriptors,
);
