//! Processes killed (or stopped) at the worst moment, in loops: nothing
//! hangs, nothing is miscounted, nothing whole is lost that the docs say is
//! kept. Each loop is bounded in rounds and in time.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::within;

/// Every wait on a child in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

/// A small, fast source of kill delays (xorshift), seeded by the clock.
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        println!("dice seed {seed}");
        Dice(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// A pause of up to `max_us` microseconds.
    fn pause(&mut self, max_us: u64) {
        let us = self.below(max_us);
        let until = Instant::now() + Duration::from_micros(us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

/// Runs `round` until `rounds` are done or `budget` is spent; returns how
/// many ran.
fn rounds(rounds: usize, budget: Duration, mut round: impl FnMut(usize)) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while n < rounds && start.elapsed() < budget {
        round(n);
        n += 1;
    }
    n
}

fn fork() -> mp::Context {
    mp::get_context(mp::StartMethod::Fork)
}

fn produce_forever(q: mp::Queue<u8>, running: mp::RawValue<u32>) {
    running.store(1);
    loop {
        let _ = q.put(7);
    }
}

/// Waits until `flag` is set (a child is at work), for at most `LIMIT`.
fn wait_set(flag: &mp::RawValue<u32>) {
    let deadline = Instant::now() + LIMIT;
    while flag.load() == 0 {
        assert!(Instant::now() < deadline, "the child never started");
        std::hint::spin_loop();
    }
}

fn consume_forever(q: mp::Queue<u8>, running: mp::RawValue<u32>) {
    running.store(1);
    loop {
        let _ = q.get();
    }
}

/// Drains `q` without waiting; returns how many messages it held.
fn drain(q: &mp::Queue<u8>) -> usize {
    let mut n = 0;
    while q.try_get().is_ok() {
        n += 1;
    }
    n
}

#[test]
fn a_killed_producer_never_leaves_a_message_uncounted() {
    let q = mp::Queue::<u8>::new().unwrap();
    let mut dice = Dice::new();
    let ran = rounds(1000, Duration::from_secs(5), |i| {
        let running = mp::RawValue::new(0u32).unwrap();
        let mut p = fork().process(produce_forever, (q.clone(), running.clone()));
        p.start().unwrap();
        wait_set(&running);
        // A consumer that keeps up, and so is often asleep waiting: each
        // put then wakes it, between publishing and returning.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let consumer = {
            let (q, stop) = (q.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = q.get_timeout(Duration::from_millis(1));
                }
            })
        };
        dice.pause(500);
        p.kill().unwrap();
        p.join_timeout(LIMIT).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        consumer.join().unwrap();
        let counted = q.qsize();
        assert_eq!(counted == 0, q.empty());
        let held = drain(&q);
        assert_eq!(
            counted, held,
            "round {i}: qsize {counted}, {held} in the queue"
        );
        assert!(q.empty() && q.qsize() == 0);
    });
    assert!(ran >= 20, "only {ran} rounds");
}

#[test]
fn a_killed_consumer_never_leaves_a_phantom_in_a_bounded_queue() {
    let q = mp::Queue::<u8>::with_maxsize(4).unwrap();
    let mut dice = Dice::new();
    let ran = rounds(1000, Duration::from_secs(5), |i| {
        let running = mp::RawValue::new(0u32).unwrap();
        let mut c = fork().process(consume_forever, (q.clone(), running.clone()));
        c.start().unwrap();
        wait_set(&running);
        // Keep the consumer busy while it is killed.
        let until = Instant::now() + Duration::from_micros(dice.below(500));
        while Instant::now() < until {
            let _ = q.try_put(1);
        }
        c.kill().unwrap();
        c.join_timeout(LIMIT).unwrap();
        let counted = q.qsize();
        let held = drain(&q);
        assert_eq!(
            counted, held,
            "round {i}: qsize {counted}, {held} in the queue"
        );
        // Never wedged: the bounded queue takes its four again.
        for _ in 0..4 {
            q.put_timeout(1, Duration::from_secs(1)).unwrap();
        }
        assert!(q.full());
        assert_eq!(drain(&q), 4);
    });
    assert!(ran >= 20, "only {ran} rounds");
}

fn get_one(q: mp::Queue<u8>) -> u8 {
    q.get().unwrap_or(0)
}

fn hold_forever(lock: mp::Lock) {
    let _g = lock.acquire().ok();
    std::thread::sleep(Duration::from_secs(60));
}

/// Retries `f` until it gives `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn non_blocking_calls_take_over_from_a_dead_owner() {
    for _ in 0..10 {
        // A consumer that dies while it waits in `get` holds the get lock.
        let q = mp::Queue::<u8>::new().unwrap();
        let mut c = fork().process(get_one, (q.clone(),));
        c.start().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        c.kill().unwrap();
        c.join_timeout(LIMIT).unwrap();
        q.put(9).unwrap();
        assert_eq!(q.qsize(), 1);
        let got = eventually(Duration::from_secs(1), || q.try_get().ok());
        assert_eq!(got, Some(9), "try_get never took the dead consumer's lock");

        // A lock whose holder died: try_acquire takes it, and says so.
        let lock = mp::Lock::new().unwrap();
        let mut h = fork().process(hold_forever, (lock.clone(),));
        h.start().unwrap();
        assert!(eventually(Duration::from_secs(5), || lock.is_locked().then_some(())).is_some());
        h.kill().unwrap();
        h.join_timeout(LIMIT).unwrap();
        let took = eventually(Duration::from_secs(1), || match lock.try_acquire() {
            Err(mp::AcquireError::OwnerDied(g)) => {
                drop(g);
                Some(true)
            }
            Ok(_) => Some(false),
            Err(_) => None,
        });
        assert_eq!(took, Some(true), "try_acquire never took over");
        assert!(lock.try_acquire().is_ok());
    }
}

#[test]
fn try_put_never_waits_behind_a_producer_that_waits_for_room() {
    let q = mp::Queue::<u32>::with_maxsize(1).unwrap();
    q.put(0).unwrap();
    // Another producer waits for room: with a timeout, then for good.
    let waiting = {
        let q = q.clone();
        std::thread::spawn(move || {
            let _ = q.put_timeout(1, Duration::from_secs(3));
            q.put(2).unwrap();
        })
    };
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        let r = within(LIMIT, {
            let q = q.clone();
            move || q.try_put(3).map_err(|e| e.into_inner())
        });
        assert_eq!(r, Err(3));
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "try_put took {:?}",
            started.elapsed()
        );
    }
    // Let the other producer finish.
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(q.get_timeout(LIMIT).unwrap());
    }
    waiting.join().unwrap();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2]);
}

fn get_big(q: mp::Queue<Vec<u8>>, running: mp::RawValue<u32>) -> usize {
    running.store(1);
    q.get().map_or(0, |v| v.len())
}

#[test]
fn a_consumer_killed_inside_a_large_get_leaves_the_message_whole() {
    // Messages of more than half the ring (but less than all of it): the
    // ring is small, so that taking one is a long moment to be killed in.
    let q = mp::Queue::<Vec<u8>>::with_capacity(0, 256).unwrap();
    let big: Vec<u8> = (0..180u32).map(|i| (i % 251) as u8).collect();
    let mut dice = Dice::new();
    let mut kept = 0;
    let ran = rounds(600, Duration::from_secs(5), |i| {
        q.put(big.clone()).unwrap();
        let running = mp::RawValue::new(0u32).unwrap();
        let mut c = fork().process(get_big, (q.clone(), running.clone()));
        c.start().unwrap();
        // Killed just as it begins to take the message, or while it does.
        wait_set(&running);
        dice.pause(30);
        c.kill().unwrap();
        c.join_timeout(LIMIT).unwrap();
        // Taken whole by the consumer, or there whole for the next one.
        match q.qsize() {
            0 => assert!(q.try_get().is_err(), "round {i}: counted 0, yet a message"),
            1 => {
                let again = q.get_timeout(Duration::from_secs(2));
                assert_eq!(
                    again.as_ref().map(Vec::len).ok(),
                    Some(big.len()),
                    "round {i}: the message was counted but lost"
                );
                assert!(again.unwrap() == big);
                kept += 1;
            }
            n => panic!("round {i}: qsize {n}"),
        }
    });
    println!("{ran} rounds, the message kept in {kept}");
}

fn read_big(b: mp::Connection) {
    let _ = b.recv::<serde_bytes::ByteBuf>();
}

fn write_big(a: mp::Connection) {
    let _ = a.send(&serde_bytes::ByteBuf::from(vec![5u8; 8 << 20]));
    let _ = a.send(&serde_bytes::ByteBuf::from(b"after".to_vec()));
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Waits until process `pid` sleeps (state `S`): blocked in the middle of
/// its work, in these tests.
fn wait_asleep(pid: u32) {
    assert!(
        multiproc_testkit::wait_until(LIMIT, || multiproc_testkit::process_state(pid) == Some('S')),
        "process {pid} never slept"
    );
}

#[test]
fn a_reader_that_dies_inside_a_message_does_not_stall_the_other_reader() {
    for round in 0..5 {
        let (a, b) = mp::Pipe::with_capacity(64 << 10).unwrap();
        // A writer sends a message larger than the ring: with nobody
        // reading, it fills the ring and waits. Stop it there.
        let mut w = fork().process(write_big, (a.clone(),));
        w.start().unwrap();
        wait_asleep(w.pid().unwrap());
        signal(w.pid().unwrap(), rustix::process::Signal::STOP);
        // A reader takes what is there and waits for the rest, holding the
        // get lock: kill it there.
        let mut r = fork().process(read_big, (b.clone(),));
        r.start().unwrap();
        wait_asleep(r.pid().unwrap());
        r.kill().unwrap();
        r.join_timeout(LIMIT).unwrap();
        signal(w.pid().unwrap(), rustix::process::Signal::CONT);
        // This process reads the same end: every call returns on time, and
        // the next whole message arrives.
        let mut last = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let got = within(LIMIT, {
                let b = b.clone();
                move || b.recv_timeout::<serde_bytes::ByteBuf>(Duration::from_secs(1))
            });
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "round {round}: recv_timeout(1 s) took {:?}",
                started.elapsed()
            );
            if let Ok(bytes) = got {
                last = bytes.into_vec();
                if last == b"after" {
                    break;
                }
            }
        }
        assert_eq!(last, b"after", "round {round}");
        w.join_timeout(LIMIT).unwrap();
    }
}

fn put_big(q: mp::Queue<serde_bytes::ByteBuf>, big: serde_bytes::ByteBuf) {
    q.put(big).unwrap();
}

#[test]
fn a_stopped_producer_does_not_hold_a_timeout_past_its_deadline() {
    let big = serde_bytes::ByteBuf::from(
        (0..2_000_000u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    for round in 0..5 {
        let q = mp::Queue::<serde_bytes::ByteBuf>::with_capacity(0, 64 << 10).unwrap();
        let mut p = fork().process(put_big, (q.clone(), big.clone()));
        p.start().unwrap();
        // The producer has written what fits, and waits for the consumer:
        // stop it there.
        wait_asleep(p.pid().unwrap());
        signal(p.pid().unwrap(), rustix::process::Signal::STOP);
        // The first gets take chunks, then the producer does not go on.
        for _ in 0..3 {
            let started = Instant::now();
            let r = q.get_timeout(Duration::from_millis(100));
            assert!(matches!(r, Err(mp::Error::Timeout)), "round {round}: {r:?}");
            assert!(
                started.elapsed() < Duration::from_millis(800),
                "round {round}: get_timeout(100 ms) took {:?}",
                started.elapsed()
            );
        }
        signal(p.pid().unwrap(), rustix::process::Signal::CONT);
        // Nothing was lost by the timeouts: the message comes whole.
        let got = q.get_timeout(LIMIT).unwrap();
        assert!(got == big, "round {round}: the message changed");
        p.join_timeout(LIMIT).unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
}

/// Counts its runs in a shared value.
fn count_run(runs: mp::Value<u64>) {
    *runs.lock() += 1;
}

/// The live children of this process that are fork servers.
fn fork_servers() -> Vec<u32> {
    multiproc_testkit::my_children()
        .into_iter()
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|e| e.starts_with(b"MULTIPROC_FORKSERVER="))
            })
        })
        .collect()
}

#[test]
fn a_fork_server_killed_mid_start_never_loses_a_child() {
    let ctx = mp::get_context(mp::StartMethod::ForkServer);
    let runs = mp::Value::new(0u64).unwrap();
    let mut dice = Dice::new();
    let mut started = 0u64;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A killer thread: shoots the fork server at random moments.
    let killer = {
        let stop = stop.clone();
        let mut dice = Dice(dice.below(u64::MAX) | 1);
        std::thread::spawn(move || {
            let mut kills = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                dice.pause(4000);
                for pid in fork_servers() {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        kills += 1;
                    }
                }
            }
            kills
        })
    };
    let ran = rounds(100, Duration::from_secs(6), |i| {
        let mut p = ctx.process(count_run, (runs.clone(),));
        match p.start() {
            Ok(()) => {
                started += 1;
                within(LIMIT, move || {
                    p.join_timeout(LIMIT).unwrap();
                    p.exitcode()
                });
            }
            Err(e) => println!("round {i}: start failed: {e}"),
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().unwrap();
    // Every start that said Ok ran its target.
    assert_eq!(runs.get(), started, "{ran} rounds, {kills} kills");
    // No killed server is left a zombie once the program looks at its
    // children (as each start does).
    let _ = mp::active_children();
    assert!(multiproc_testkit::wait_until(
        Duration::from_secs(5),
        || {
            multiproc_testkit::my_children()
                .iter()
                .all(|&pid| multiproc_testkit::process_state(pid) != Some('Z'))
        }
    ));
    println!("{ran} rounds, {kills} kills, {started} started");
}
