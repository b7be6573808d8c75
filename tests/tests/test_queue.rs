//! Queues between real processes, after `_TestQueue` of CPython's
//! `_test_multiprocessing.py`, plus what CPython cannot promise: a producer
//! killed in the middle of a put neither shows half a message nor wedges the
//! queue.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::LeakCheck;

const LIMIT: Duration = Duration::from_secs(30);

fn join<R>(p: &mp::Process<R>) {
    p.join_timeout(LIMIT).expect("child did not end in time");
}

fn produce(q: mp::Queue<u64>, from: u64, n: u64) -> bool {
    (from..from + n).all(|i| q.put(i).is_ok())
}

fn consume(q: mp::Queue<u64>, n: u64) -> Vec<u64> {
    (0..n).map(|_| q.get_timeout(LIMIT).unwrap()).collect()
}

fn fifo_across_processes(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let q = mp::Queue::new().unwrap();
    let mut p = ctx.process(produce, (q.clone(), 0, 20_000));
    p.start().unwrap();
    let got: Vec<u64> = (0..20_000).map(|_| q.get_timeout(LIMIT).unwrap()).collect();
    join(&p);
    assert!(p.take_result().unwrap());
    assert_eq!(got, (0..20_000).collect::<Vec<_>>());
    assert!(q.empty());
    drop((p, q));
    leaks.assert_clean();
}

fn a_producer_that_exits_at_once_loses_nothing(ctx: mp::Context) {
    let q = mp::Queue::new().unwrap();
    let mut p = ctx.process(produce, (q.clone(), 0, 500));
    p.start().unwrap();
    join(&p);
    // The producer is gone; everything it put is there.
    assert_eq!(q.qsize(), 500);
    assert_eq!(consume(q.clone(), 500), (0..500).collect::<Vec<_>>());
    assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
}

fn every_item_is_delivered_exactly_once(ctx: mp::Context) {
    let q = mp::Queue::with_maxsize(64).unwrap();
    let (producers, per, consumers) = (3u64, 4000u64, 3u64);
    let mut ps: Vec<_> = (0..producers)
        .map(|i| ctx.process(produce, (q.clone(), i * per, per)))
        .collect();
    let share = producers * per / consumers;
    let mut cs: Vec<_> = (0..consumers)
        .map(|_| ctx.process(consume, (q.clone(), share)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for c in &mut cs {
        c.start().unwrap();
    }
    for p in &mut ps {
        join(p);
        assert!(p.take_result().unwrap());
    }
    let mut all = Vec::new();
    for c in &mut cs {
        join(c);
        all.extend(c.take_result().unwrap());
    }
    let set: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        all.len() as u64,
        producers * per,
        "some item was delivered twice"
    );
    assert_eq!(set, (0..producers * per).collect(), "some item was lost");
}

#[test]
fn get_timeout_gives_up_after_about_the_timeout() {
    let q = mp::Queue::<u8>::new().unwrap();
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(200)),
        Err(mp::Error::Timeout)
    ));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
}

#[test]
fn a_full_bounded_queue_refuses_at_once_and_hands_the_value_back() {
    let q = mp::Queue::with_maxsize(2).unwrap();
    q.put("a".to_string()).unwrap();
    q.put("b".to_string()).unwrap();
    assert!(q.full());
    let t = Instant::now();
    match q.try_put("c".to_string()) {
        Err(mp::PutError::Full(v)) => assert_eq!(v, "c"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(100), "try_put waited");
    match q.put_timeout("d".to_string(), Duration::from_millis(100)) {
        Err(e @ mp::PutError::Timeout(_)) => assert_eq!(e.into_inner(), "d"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(q.get().unwrap(), "a");
    q.try_put("c".to_string()).unwrap();
    assert_eq!(q.qsize(), 2);
    q.close();
    assert!(matches!(
        q.put("e".to_string()),
        Err(mp::PutError::Closed(_))
    ));
    assert!(matches!(q.get(), Err(mp::Error::Closed)));
}

fn put_big(q: mp::Queue<Vec<u32>>, n: usize) -> bool {
    q.put((0..n as u32).collect()).is_ok()
}

fn messages_larger_than_the_ring_go_through(ctx: mp::Context) {
    let q = mp::Queue::with_capacity(0, 64 * 1024).unwrap();
    let n = 1_000_000; // 4 MB, 60 times the ring
    let mut p = ctx.process(put_big, (q.clone(), n));
    p.start().unwrap();
    let v = q.get_timeout(LIMIT).unwrap();
    join(&p);
    assert!(p.take_result().unwrap());
    assert_eq!(v.len(), n);
    assert!(v.iter().enumerate().all(|(i, x)| *x == i as u32));
}

/// A message that tells whether it is whole: its length and every byte
/// derive from its first word.
fn message(seed: u32, len: usize) -> Vec<u32> {
    let mut v = vec![seed; len.max(2)];
    v[1] = len as u32;
    for (i, x) in v.iter_mut().enumerate().skip(2) {
        *x = seed.wrapping_mul(31).wrapping_add(i as u32);
    }
    v
}

fn is_whole(v: &[u32]) -> bool {
    v.len() >= 2 && v[1] as usize == v.len().max(2) && *v == message(v[0], v.len())
}

fn put_forever(q: mp::Queue<Vec<u32>>, seed: u32) {
    for i in 0.. {
        // Mostly small messages, some larger than half the ring (chunked).
        let len = if i % 4 == 0 {
            40_000
        } else {
            2 + (i % 50) as usize
        };
        if q.put(message(seed.wrapping_add(i), len)).is_err() {
            return;
        }
    }
}

fn consume_until(q: mp::Queue<Vec<u32>>, sentinel: u32) -> (u64, u64) {
    let (mut whole, mut broken) = (0, 0);
    loop {
        let v = q.get_timeout(LIMIT).unwrap();
        if v.len() == 2 && v[0] == sentinel {
            return (whole, broken);
        }
        if is_whole(&v) {
            whole += 1
        } else {
            broken += 1
        }
    }
}

fn a_producer_killed_mid_put_never_shows_half_a_message(ctx: mp::Context) {
    let q = mp::Queue::with_capacity(0, 64 * 1024).unwrap();
    let sentinel = u32::MAX;
    let mut consumer = ctx.process(consume_until, (q.clone(), sentinel));
    consumer.start().unwrap();
    for round in 0..15u32 {
        let mut p = ctx
            .builder(put_forever, (q.clone(), round * 1_000_000))
            .daemon(true)
            .build();
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(5 + u64::from(round % 7) * 5));
        p.kill().unwrap();
        join(&p);
        assert_eq!(p.exitcode(), Some(-9));
    }
    // The queue is not wedged: one more put reaches the consumer.
    q.put_timeout(vec![sentinel, 2], LIMIT).unwrap();
    join(&consumer);
    let (whole, broken) = consumer.take_result().unwrap();
    assert_eq!(broken, 0, "a consumer saw part of a message");
    assert!(whole > 0, "nothing went through");
}

fn get_one(q: mp::Queue<u64>) -> u64 {
    q.get().unwrap()
}

fn a_consumer_killed_while_waiting_does_not_wedge_the_queue(ctx: mp::Context) {
    let q = mp::Queue::new().unwrap();
    let mut c = ctx.builder(get_one, (q.clone(),)).daemon(true).build();
    c.start().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // it holds the get lock, asleep
    c.kill().unwrap();
    join(&c);
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(LIMIT).unwrap(), 7);
}

fn work(jobs: mp::JoinableQueue<u64>, done: mp::Value<u64>) {
    while let Ok(n) = jobs.get_timeout(Duration::from_millis(500)) {
        *done.lock() += n;
        jobs.task_done().unwrap();
    }
}

fn a_joinable_queue_joins_when_every_task_is_done(ctx: mp::Context) {
    let jobs = mp::JoinableQueue::new().unwrap();
    let done = mp::Value::new(0u64).unwrap();
    let mut ws: Vec<_> = (0..2)
        .map(|_| ctx.process(work, (jobs.clone(), done.clone())))
        .collect();
    for w in &mut ws {
        w.start().unwrap();
    }
    for n in 1..=100 {
        jobs.put(n).unwrap();
    }
    jobs.join_timeout(LIMIT).unwrap();
    assert_eq!(done.get(), 5050, "join returned before every task was done");
    for w in &ws {
        join(w);
    }
    assert!(matches!(jobs.task_done(), Err(mp::Error::NotHeld(_))));
    assert!(matches!(
        jobs.join_timeout(Duration::from_millis(10)),
        Ok(())
    ));
}

#[test]
fn a_simple_queue_puts_and_gets() {
    let q = mp::SimpleQueue::new().unwrap();
    assert!(q.empty());
    q.put((1, "one".to_string())).unwrap();
    assert!(!q.empty());
    assert_eq!(q.get().unwrap(), (1, "one".to_string()));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(20)),
        Err(mp::Error::Timeout)
    ));
    q.close();
    assert!(matches!(q.get(), Err(mp::Error::Closed)));
}

#[test]
fn a_descriptor_cannot_ride_a_queue() {
    let q = mp::Queue::new().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    let err = q
        .put(mp::handoff::HandoffFd::from(std::os::fd::OwnedFd::from(r)))
        .unwrap_err();
    assert!(err.to_string().contains("file descriptor"), "{err}");
}

fn drain_until_closed(
    q: mp::Queue<u64>,
    jq: mp::JoinableQueue<u64>,
    sq: mp::SimpleQueue<u64>,
) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    // Another thread of this process closes each handle once its queue is
    // empty (taken in that order); each iteration then ends.
    let (stop, jstop, sstop) = (q.clone(), jq.clone(), sq.clone());
    let closer = std::thread::spawn(move || {
        let when_empty = |empty: &dyn Fn() -> bool, close: &dyn Fn()| {
            while !empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
            close();
        };
        when_empty(&|| stop.empty(), &|| stop.close());
        when_empty(&|| jstop.empty(), &|| jstop.close());
        when_empty(&|| sstop.empty(), &|| sstop.close());
    });
    let a: Vec<u64> = q.iter().map(Result::unwrap).collect();
    let b: Vec<u64> = (&jq)
        .into_iter()
        .map(|r| {
            jq.task_done().unwrap();
            r.unwrap()
        })
        .collect();
    let c: Vec<u64> = sq.iter().map(Result::unwrap).collect();
    closer.join().unwrap();
    (a, b, c)
}

fn queues_iterate_until_closed(ctx: mp::Context) {
    let q = mp::Queue::new().unwrap();
    let jq = mp::JoinableQueue::with_maxsize(100).unwrap();
    let sq = mp::SimpleQueue::new().unwrap();
    for i in 0..50 {
        q.put(i).unwrap();
        jq.put_timeout(i, LIMIT).unwrap();
        sq.put(i).unwrap();
    }
    let mut p = ctx.process(drain_until_closed, (q.clone(), jq.clone(), sq.clone()));
    p.start().unwrap();
    join(&p);
    let (a, b, c) = p.take_result().unwrap();
    let all: Vec<u64> = (0..50).collect();
    assert_eq!((a, b, c), (all.clone(), all.clone(), all));
    // The child closed its handles; ours are open.
    assert!(!q.is_closed() && !jq.is_closed() && !sq.is_closed());
    jq.join_timeout(LIMIT).unwrap();

    // try_iter takes what is there and ends.
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(
        q.try_iter().map(Result::unwrap).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(q.try_iter().count(), 0);
}

fn fill_joinable(jq: mp::JoinableQueue<u64>, n: u64) -> usize {
    (0..n)
        .filter(|&i| jq.put_timeout(i, Duration::from_millis(50)).is_ok())
        .count()
}

fn a_joinable_queue_is_bounded_and_closes_as_a_queue(ctx: mp::Context) {
    let jq = mp::JoinableQueue::<u64>::with_maxsize(3).unwrap();
    assert_eq!(jq.maxsize(), 3);
    assert!(!jq.full());
    let mut p = ctx.process(fill_joinable, (jq.clone(), 5));
    p.start().unwrap();
    join(&p);
    // Three fit; two timed out, and are not counted unfinished.
    assert_eq!(p.take_result().unwrap(), 3);
    assert!(jq.full());
    assert_eq!(jq.qsize(), 3);
    match jq.put_timeout(9, Duration::from_millis(10)) {
        Err(mp::PutError::Timeout(9)) => {}
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        jq.get_timeout(LIMIT).unwrap();
        jq.task_done().unwrap();
    }
    jq.join_timeout(LIMIT).unwrap();
    jq.close();
    assert!(jq.is_closed());
    assert!(matches!(jq.put(1), Err(mp::PutError::Closed(1))));
    assert!(matches!(jq.get(), Err(mp::Error::Closed)));
    assert_eq!(jq.iter().count(), 0);
    let sq = mp::SimpleQueue::<u64>::new().unwrap();
    assert!(!sq.is_closed());
    sq.close();
    assert!(sq.is_closed());
}

multiproc_testkit::each_start_method!(
    fifo_across_processes,
    a_producer_that_exits_at_once_loses_nothing,
    every_item_is_delivered_exactly_once,
    messages_larger_than_the_ring_go_through,
    a_producer_killed_mid_put_never_shows_half_a_message,
    a_consumer_killed_while_waiting_does_not_wedge_the_queue,
    a_joinable_queue_joins_when_every_task_is_done,
    queues_iterate_until_closed,
    a_joinable_queue_is_bounded_and_closes_as_a_queue,
);
