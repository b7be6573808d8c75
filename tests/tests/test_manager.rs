//! Managers and proxies between real processes, after `_TestManager*`,
//! `_TestContainers`, `_TestRemoteManager` and `_TestListenerClient` of
//! CPython's `_test_multiprocessing.py`, plus what CPython does not
//! promise: a client killed while holding a lock or waiting in a call
//! neither wedges the server nor loses an item, and objects are freed once
//! nothing refers to them.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use mp::connection::{Address, Client, Listener};
use multiproc as mp;
use multiproc_testkit::{LeakCheck, is_running, wait_until, within};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(30);

fn join<R>(p: &mp::Process<R>) {
    p.join_timeout(LIMIT).expect("child did not end in time");
}

fn run<R: serde::de::DeserializeOwned>(mut p: mp::Process<R>) -> R {
    p.start().unwrap();
    join(&p);
    p.take_result().unwrap()
}

/// Starts every process, then joins each and takes its result: they run
/// at the same time.
fn run_all<R: serde::de::DeserializeOwned>(mut ps: Vec<mp::Process<R>>) -> Vec<R> {
    for p in &mut ps {
        p.start().unwrap();
    }
    ps.into_iter()
        .map(|mut p| {
            join(&p);
            p.take_result().unwrap()
        })
        .collect()
}

fn manager(ctx: &mp::Context) -> mp::Manager {
    mp::Manager::builder()
        .start_method(ctx.start_method())
        .start()
        .unwrap()
}

// --- The seed program: one process appends, another prints. ---

fn insert_record(record: (String, u32), records: mp::ListProxy<(String, u32)>) {
    records.append(&record).unwrap();
}

fn print_records(records: mp::ListProxy<(String, u32)>) -> String {
    let mut out = String::new();
    for (name, score) in records.iter().unwrap() {
        out.push_str(&format!("Name: {name}\nScore: {score}\n"));
    }
    out
}

fn records_seen_across_processes(ctx: mp::Context) {
    let m = manager(&ctx);
    let records = m
        .list([
            ("Sam".to_string(), 10),
            ("Adam".into(), 9),
            ("Kevin".into(), 9),
        ])
        .unwrap();
    run(ctx.process(insert_record, (("Jeff".to_string(), 8), records.clone())));
    let printed = run(ctx.process(print_records, (records.clone(),)));
    assert_eq!(
        printed,
        "Name: Sam\nScore: 10\nName: Adam\nScore: 9\nName: Kevin\nScore: 9\nName: Jeff\nScore: 8\n"
    );
}

// --- Lists and dicts. ---

fn list_ops_in_child(l: mp::ListProxy<i64>) -> Vec<i64> {
    l.extend([4, 5, 6]).unwrap();
    l.insert(0, &-1).unwrap();
    l.insert(-100, &-2).unwrap(); // clamped to the front, as in Python
    l.set(-1, &60).unwrap();
    l.remove(&4).unwrap();
    let popped = l.pop().unwrap();
    let first = l.pop_at(0).unwrap();
    vec![
        popped,
        first,
        l.len().unwrap() as i64,
        l.index(&5).unwrap() as i64,
    ]
}

fn list_operations(ctx: mp::Context) {
    let m = manager(&ctx);
    let l = m.list([1i64, 2, 3]).unwrap();
    let got = run(ctx.process(list_ops_in_child, (l.clone(),)));
    // After the child: [-1, 1, 2, 3, 5]; it popped 60 and -2.
    assert_eq!(got, vec![60, -2, 5, 4]);
    assert_eq!(l.to_vec().unwrap(), vec![-1, 1, 2, 3, 5]);
    assert_eq!(l.get(-1).unwrap(), 5);
    assert!(l.contains(&2).unwrap());
    assert!(!l.contains(&42).unwrap());
    assert!(matches!(l.get(5), Err(mp::Error::InvalidArgument(_))));
    assert!(matches!(l.remove(&42), Err(mp::Error::InvalidArgument(_))));
    assert!(matches!(l.index(&42), Err(mp::Error::InvalidArgument(_))));
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    assert!(matches!(l.pop(), Err(mp::Error::InvalidArgument(_))));
    // A proxy of another item type reads the bytes and says so.
    let words = m.list(["a".to_string()]).unwrap();
    assert_eq!(words.get(0).unwrap(), "a");
}

fn fill_dict(d: mp::DictProxy<String, u32>, from: u32) {
    for i in from..from + 100 {
        d.insert(format!("k{i}"), i).unwrap();
    }
    d.update([("shared".to_string(), from)]).unwrap();
}

fn dict_operations(ctx: mp::Context) {
    let m = manager(&ctx);
    let d = m.dict::<String, u32>().unwrap();
    let ps: Vec<_> = [0, 100, 200]
        .into_iter()
        .map(|from| ctx.process(fill_dict, (d.clone(), from)))
        .collect();
    for p in ps {
        run(p);
    }
    assert_eq!(d.len().unwrap(), 301);
    assert_eq!(d.get("k150").unwrap(), Some(150));
    assert!([0, 100, 200].contains(&d.get("shared").unwrap().unwrap()));
    assert_eq!(d.insert("k1".into(), 7).unwrap(), Some(1));
    assert_eq!(d.remove("k1").unwrap(), Some(7));
    assert_eq!(d.remove("k1").unwrap(), None);
    assert!(!d.contains_key("k1").unwrap());
    assert_eq!(d.setdefault("new".into(), 5).unwrap(), 5);
    assert_eq!(d.setdefault("new".into(), 6).unwrap(), 5);
    let map: HashMap<String, u32> = d.to_hashmap().unwrap();
    assert_eq!(map.len(), 301);
    assert_eq!(d.keys().unwrap().len(), d.values().unwrap().len());
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    // Insertion order is kept, as in Python.
    let o = m.dict_from([(3u8, 'c'), (1, 'a'), (2, 'b')]).unwrap();
    assert_eq!(o.keys().unwrap(), vec![3, 1, 2]);
    assert_eq!(o.items().unwrap(), vec![(3, 'c'), (1, 'a'), (2, 'b')]);
}

// --- Namespace, Value, Array. ---

fn set_attributes(ns: mp::Namespace, v: mp::ValueProxy<f64>, a: mp::ArrayProxy<i32>) {
    ns.set("x", &10).unwrap();
    ns.set("name", "child").unwrap();
    v.set(&(v.get().unwrap() * 2.0)).unwrap();
    for i in 0..a.len().unwrap() {
        a.set(i, &(a.get(i).unwrap() * a.get(i).unwrap())).unwrap();
    }
}

fn namespace_value_array(ctx: mp::Context) {
    let m = manager(&ctx);
    let ns = m.namespace().unwrap();
    let v = m.value(1.5f64).unwrap();
    let a = m.array([1, 2, 3, 4]).unwrap();
    run(ctx.process(set_attributes, (ns.clone(), v.clone(), a.clone())));
    assert_eq!(ns.get::<i32>("x").unwrap(), 10);
    assert_eq!(ns.get::<String>("name").unwrap(), "child");
    assert_eq!(ns.names().unwrap(), vec!["x", "name"]);
    assert!(matches!(
        ns.get::<i32>("missing"),
        Err(mp::Error::NotFound(_))
    ));
    ns.remove("x").unwrap();
    assert!(!ns.contains("x").unwrap());
    assert_eq!(v.get().unwrap(), 3.0);
    assert_eq!(a.to_vec().unwrap(), vec![1, 4, 9, 16]);
    assert!(matches!(a.get(4), Err(mp::Error::InvalidArgument(_))));
}

// --- Queues. ---

fn produce(q: mp::QueueProxy<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn queue_across_processes(ctx: mp::Context) {
    let m = manager(&ctx);
    let q = m.queue_bounded::<u64>(16).unwrap();
    let mut p = ctx.process(produce, (q.clone(), 2000));
    p.start().unwrap();
    let got: Vec<u64> = (0..2000).map(|_| q.get_timeout(LIMIT).unwrap()).collect();
    join(&p);
    p.take_result().unwrap();
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
    assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(mp::Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    for i in 0..16 {
        q.try_put(i).unwrap();
    }
    assert!(q.full().unwrap());
    match q.try_put(99) {
        Err(mp::PutError::Full(item)) => assert_eq!(item, 99),
        other => panic!("expected Full, got {other:?}"),
    }
    match q.put_timeout(98, Duration::from_millis(50)) {
        Err(mp::PutError::Timeout(item)) => assert_eq!(item, 98),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(q.qsize().unwrap(), 16);
}

fn work_and_mark_done(q: mp::JoinableQueueProxy<u32>, done: mp::ListProxy<u32>) {
    loop {
        let item = q.get_timeout(LIMIT).unwrap();
        if item == u32::MAX {
            q.task_done().unwrap();
            return;
        }
        done.push(&(item * 10)).unwrap();
        q.task_done().unwrap();
    }
}

fn joinable_queue(ctx: mp::Context) {
    let m = manager(&ctx);
    let q = m.joinable_queue::<u32>().unwrap();
    let done = m.list(Vec::<u32>::new()).unwrap();
    let mut p = ctx.process(work_and_mark_done, (q.clone(), done.clone()));
    p.start().unwrap();
    for i in 0..50 {
        q.put(i).unwrap();
    }
    q.put(u32::MAX).unwrap();
    q.join_timeout(LIMIT).unwrap();
    // join returned: every item was marked done, so every push happened.
    assert_eq!(done.len().unwrap(), 50);
    join(&p);
    p.take_result().unwrap();
    assert!(matches!(q.task_done(), Err(mp::Error::NotHeld(_))));
}

// --- Locks, semaphores, conditions, events, barriers. ---

fn add_under_lock(lock: mp::LockProxy, total: mp::ValueProxy<u64>, n: u64) {
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        total.set(&(total.get().unwrap() + 1)).unwrap();
    }
}

fn lock_makes_increments_exact(ctx: mp::Context) {
    let m = manager(&ctx);
    let lock = m.lock().unwrap();
    let total = m.value(0u64).unwrap();
    run_all(
        (0..3)
            .map(|_| ctx.process(add_under_lock, (lock.clone(), total.clone(), 300)))
            .collect(),
    );
    assert_eq!(total.get().unwrap(), 900);
    let g = lock.try_acquire().unwrap();
    assert!(matches!(lock.try_acquire(), Err(mp::Error::WouldBlock)));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(50)),
        Err(mp::Error::Timeout)
    ));
    g.release().unwrap();
    assert!(matches!(lock.release(), Err(mp::Error::NotHeld(_))));
}

fn hold_semaphore(
    sem: mp::SemaphoreProxy,
    inside: mp::ValueProxy<u32>,
    most: mp::ValueProxy<u32>,
    guard: mp::LockProxy,
) {
    for _ in 0..20 {
        let _s = sem.acquire().unwrap();
        {
            let _g = guard.acquire().unwrap();
            let now = inside.get().unwrap() + 1;
            inside.set(&now).unwrap();
            most.set(&most.get().unwrap().max(now)).unwrap();
        }
        std::thread::sleep(Duration::from_micros(300));
        let _g = guard.acquire().unwrap();
        inside.set(&(inside.get().unwrap() - 1)).unwrap();
    }
}

fn semaphore_bounds_concurrency(ctx: mp::Context) {
    let m = manager(&ctx);
    let sem = m.semaphore(2).unwrap();
    let (inside, most, guard) = (
        m.value(0u32).unwrap(),
        m.value(0u32).unwrap(),
        m.lock().unwrap(),
    );
    let mut ps: Vec<_> = (0..4)
        .map(|_| {
            ctx.process(
                hold_semaphore,
                (sem.clone(), inside.clone(), most.clone(), guard.clone()),
            )
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        join(p);
        assert_eq!(p.exitcode(), Some(0));
    }
    let most = most.get().unwrap();
    assert!((1..=2).contains(&most), "{most} inside at once");
    assert_eq!(sem.value().unwrap(), 2);
    let b = m.bounded_semaphore(1).unwrap();
    let g = b.acquire().unwrap();
    drop(g);
    assert!(matches!(b.release(), Err(mp::Error::InvalidArgument(_))));
}

fn rlock_is_reentrant_and_owned() {
    let m = mp::Manager::start().unwrap();
    let r = m.rlock().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    let r2 = r.clone();
    // Another thread neither takes it nor releases it.
    let other = std::thread::spawn(move || {
        let taken = r2.try_acquire().is_ok();
        let released = r2.release().is_ok();
        (taken, released)
    })
    .join()
    .unwrap();
    assert_eq!(other, (false, false));
    drop(b);
    drop(a);
    let r3 = r.clone();
    assert!(
        std::thread::spawn(move || r3.try_acquire().map(drop).is_ok())
            .join()
            .unwrap()
    );
}

fn wait_for_ready(cond: mp::ConditionProxy, ns: mp::Namespace) -> u32 {
    let mut g = cond.acquire().unwrap();
    ns.set("waiting", &true).unwrap();
    g.notify_all().unwrap();
    let ok = g
        .wait_for(|| ns.get::<u32>("ready").is_ok(), Some(LIMIT))
        .unwrap();
    assert!(ok);
    ns.get("ready").unwrap()
}

fn condition_wakes_a_waiter_in_another_process(ctx: mp::Context) {
    let m = manager(&ctx);
    let cond = m.condition().unwrap();
    let ns = m.namespace().unwrap();
    let mut p = ctx.process(wait_for_ready, (cond.clone(), ns.clone()));
    p.start().unwrap();
    {
        let mut g = cond.acquire().unwrap();
        assert!(
            g.wait_for(|| ns.contains("waiting").unwrap(), Some(LIMIT))
                .unwrap()
        );
        ns.set("ready", &7u32).unwrap();
        g.notify(1).unwrap();
    }
    join(&p);
    assert_eq!(p.take_result().unwrap(), 7);
    let mut g = cond.acquire().unwrap();
    let t = Instant::now();
    assert!(!g.wait_timeout(Duration::from_millis(50)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(50));
}

fn wait_event(e: mp::EventProxy) -> bool {
    e.wait_timeout(LIMIT).unwrap()
}

fn barrier_party(b: mp::BarrierProxy) -> u32 {
    b.wait_timeout(LIMIT).unwrap()
}

fn event_and_barrier(ctx: mp::Context) {
    let m = manager(&ctx);
    let e = m.event().unwrap();
    let mut p = ctx.process(wait_event, (e.clone(),));
    p.start().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(p.is_alive());
    e.set().unwrap();
    join(&p);
    assert!(p.take_result().unwrap());
    assert!(e.is_set().unwrap());
    e.clear().unwrap();
    assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());

    let b = m.barrier(4).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| ctx.process(barrier_party, (b.clone(),)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let mine = b.wait_timeout(LIMIT).unwrap();
    let mut indexes = BTreeSet::from([mine]);
    for mut p in ps {
        join(&p);
        indexes.insert(p.take_result().unwrap());
    }
    assert_eq!(indexes, BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(b.parties().unwrap(), 4);
    // A timeout breaks it for everyone, as in Python; reset mends it.
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(30)),
        Err(mp::Error::BrokenBarrier)
    ));
    assert!(b.is_broken().unwrap());
    assert!(matches!(b.wait(), Err(mp::Error::BrokenBarrier)));
    b.reset().unwrap();
    assert!(!b.is_broken().unwrap());
    b.abort().unwrap();
    assert!(b.is_broken().unwrap());
}

// --- Nested proxies, copies, lifetimes. ---

fn append_to_nested(
    d: mp::DictProxy<String, mp::ListProxy<u32>>,
    copies: mp::DictProxy<String, Vec<u32>>,
) {
    d.get("live").unwrap().unwrap().push(&42).unwrap();
    let mut copy = copies.get("copy").unwrap().unwrap();
    copy.push(42); // a copy: the manager's value does not change
}

fn nested_proxies_stay_live_plain_values_are_copies(ctx: mp::Context) {
    let m = manager(&ctx);
    let d = m.dict::<String, mp::ListProxy<u32>>().unwrap();
    let copies = m.dict::<String, Vec<u32>>().unwrap();
    {
        let inner = m.list([1u32]).unwrap();
        d.insert("live".into(), inner).unwrap();
        copies.insert("copy".into(), vec![1]).unwrap();
        // `inner` is dropped here: the dict keeps the list alive.
    }
    assert_eq!(m.number_of_objects().unwrap(), 3);
    run(ctx.process(append_to_nested, (d.clone(), copies.clone())));
    assert_eq!(
        d.get("live").unwrap().unwrap().to_vec().unwrap(),
        vec![1, 42]
    );
    assert_eq!(copies.get("copy").unwrap().unwrap(), vec![1]);
    // Removing the entry frees the list once no proxy holds it.
    let inner = d.remove("live").unwrap().unwrap();
    assert_eq!(m.number_of_objects().unwrap(), 3);
    drop(inner);
    assert!(
        objects_settle_at(&m, 2),
        "objects left: {:?}",
        m.number_of_objects()
    );
    drop((d, copies));
    assert!(
        objects_settle_at(&m, 0),
        "objects left: {:?}",
        m.number_of_objects()
    );
}

/// Whether the manager's object count reaches `n` (drops are sent
/// without waiting for the server).
fn objects_settle_at(m: &mp::Manager, n: usize) -> bool {
    wait_until(Duration::from_secs(5), || {
        m.number_of_objects().unwrap() == n
    })
}

fn objects_are_freed_when_no_process_refers_to_them(ctx: mp::Context) {
    let m = manager(&ctx);
    let l = m.list([1u8, 2, 3]).unwrap();
    assert_eq!(run(ctx.process(count_records, (l.clone(),))), 3);
    let _others: Vec<_> = (0..5).map(|_| m.dict::<u8, u8>().unwrap()).collect();
    assert_eq!(m.number_of_objects().unwrap(), 6);
    drop(_others);
    drop(l);
    assert!(
        objects_settle_at(&m, 0),
        "objects left: {:?}",
        m.number_of_objects()
    );
}

fn count_records(records: mp::ListProxy<u8>) -> usize {
    records.len().unwrap()
}

fn a_proxy_moved_into_a_child_outlives_the_parents_drop(ctx: mp::Context) {
    let m = manager(&ctx);
    let l = m.list([1u8, 2]).unwrap();
    // The parent's only proxy goes with the arguments, which the parent
    // drops once the child has started, before the child decodes them.
    let mut p = ctx.process(count_records, (l,));
    p.start().unwrap();
    join(&p);
    assert_eq!(p.take_result().unwrap(), 2);
    assert!(
        objects_settle_at(&m, 0),
        "objects left: {:?}",
        m.number_of_objects()
    );
}

fn recv_proxy_and_push(conn: mp::Connection) -> usize {
    let l: mp::ListProxy<u8> = conn.recv_timeout(LIMIT).unwrap();
    l.push(&9).unwrap();
    l.len().unwrap()
}

fn lend_and_forget(l: mp::ListProxy<u8>) {
    // Encoded for a receiver that never comes: the hold it took must be
    // given back when this process ends.
    let (bytes, fds) = mp::handoff::encode_with_fds(&l).unwrap();
    drop((bytes, fds));
}

fn proxies_sent_through_a_pipe_and_lost_in_transit(ctx: mp::Context) {
    let m = manager(&ctx);
    let (a, b) = mp::Pipe::new().unwrap();
    let mut p = ctx.process(recv_proxy_and_push, (b,));
    p.start().unwrap();
    {
        let l = m.list([1u8]).unwrap();
        a.send(&l).unwrap();
        // dropped at once: the message holds the object for the child
    }
    join(&p);
    assert_eq!(p.take_result().unwrap(), 2);
    assert!(
        objects_settle_at(&m, 0),
        "objects left: {:?}",
        m.number_of_objects()
    );

    let l = m.list([1u8]).unwrap();
    run(ctx.process(lend_and_forget, (l.clone(),)));
    drop(l);
    assert!(
        objects_settle_at(&m, 0),
        "objects left: {:?}",
        m.number_of_objects()
    );
}

// --- Registered types. ---

#[derive(Serialize, Deserialize)]
struct Counter {
    n: i64,
}

#[derive(Serialize, Deserialize)]
enum CounterOp {
    Add(i64),
    Get,
    Explode,
}

impl mp::Served for Counter {
    const NAME: &'static str = "Counter";
    type Request = CounterOp;
    type Reply = i64;

    fn handle(&mut self, op: CounterOp) -> i64 {
        match op {
            CounterOp::Add(k) => self.n += k,
            CounterOp::Get => {}
            CounterOp::Explode => panic!("counter exploded at {}", self.n),
        }
        self.n
    }
}

#[derive(Serialize, Deserialize)]
struct Unregistered;

impl mp::Served for Unregistered {
    const NAME: &'static str = "Unregistered";
    type Request = ();
    type Reply = ();
    fn handle(&mut self, (): ()) {}
}

fn add_many(c: mp::Proxy<Counter>, n: i64) {
    for _ in 0..n {
        c.call(CounterOp::Add(1)).unwrap();
    }
}

fn registered_types_are_served(ctx: mp::Context) {
    let m = mp::Manager::builder()
        .start_method(ctx.start_method())
        .register::<Counter>()
        .start()
        .unwrap();
    let c = m.create(Counter { n: 100 }).unwrap();
    run_all(
        (0..2)
            .map(|_| ctx.process(add_many, (c.clone(), 250)))
            .collect(),
    );
    assert_eq!(c.call(CounterOp::Get).unwrap(), 600);
    // A panic in the server reaches the caller; object and server go on.
    match c.call(CounterOp::Explode) {
        Err(mp::Error::TaskPanicked { message }) => assert_eq!(message, "counter exploded at 600"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert_eq!(c.call(CounterOp::Add(1)).unwrap(), 601);
    assert!(matches!(
        m.create(Unregistered),
        Err(mp::Error::NotFound(_))
    ));
    m.publish("counter", &c).unwrap();
    let again: mp::Proxy<Counter> = m.lookup("counter").unwrap();
    assert_eq!(again.call(CounterOp::Get).unwrap(), 601);
    assert!(matches!(
        m.lookup::<mp::LockProxy>("counter"),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        m.lookup::<mp::LockProxy>("nothing"),
        Err(mp::Error::NotFound(_))
    ));
}

// --- Robustness: clients that die. ---

fn take_lock_and_wait(lock: mp::LockProxy, e: mp::EventProxy) {
    let _g = lock.acquire().unwrap();
    e.set().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn a_killed_holder_releases_its_lock(ctx: mp::Context) {
    let m = manager(&ctx);
    let (lock, e) = (m.lock().unwrap(), m.event().unwrap());
    let mut p = ctx.process(take_lock_and_wait, (lock.clone(), e.clone()));
    p.start().unwrap();
    assert!(e.wait_timeout(LIMIT).unwrap());
    assert!(matches!(lock.try_acquire(), Err(mp::Error::WouldBlock)));
    p.kill().unwrap();
    join(&p);
    let g = lock.acquire_timeout(Duration::from_secs(5)).unwrap();
    drop(g);
}

fn block_in_get(q: mp::QueueProxy<u32>, e: mp::EventProxy) -> u32 {
    e.set().unwrap();
    q.get().unwrap()
}

fn a_client_killed_in_a_call_neither_wedges_nor_loses(ctx: mp::Context) {
    let m = manager(&ctx);
    let (q, e) = (m.queue::<u32>().unwrap(), m.event().unwrap());
    let mut p = ctx.process(block_in_get, (q.clone(), e.clone()));
    p.start().unwrap();
    assert!(e.wait_timeout(LIMIT).unwrap());
    std::thread::sleep(Duration::from_millis(50)); // into the blocking get
    p.kill().unwrap();
    join(&p);
    // The dead client's pending get must not swallow this item.
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 7);
    assert_eq!(q.qsize().unwrap(), 0);
}

fn the_server_ends_with_its_manager_and_leaks_nothing(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let m = manager(&ctx);
    let pid = m.pid().unwrap();
    let l = m.list([1u8]).unwrap();
    assert!(is_running(pid));
    drop(m);
    assert!(wait_until(Duration::from_secs(5), || !is_running(pid)));
    assert!(matches!(l.len(), Err(mp::Error::Closed)));
    drop(l);
    leaks.assert_clean();
}

fn helper(ctx: &mp::Context, scenario: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_mp_helper"))
        .arg(scenario)
        .arg(ctx.start_method().name())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap()
}

fn read_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

fn the_server_dies_with_its_owner(ctx: mp::Context) {
    let mut h = helper(&ctx, "manager-orphan", &[]);
    let pid: u32 = read_line(&mut h).parse().unwrap();
    assert!(is_running(pid));
    h.kill().unwrap();
    h.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !is_running(pid)),
        "manager server {pid} outlived its SIGKILLed owner"
    );
}

// --- Remote managers and the key handshake. ---

fn served(ctx: &mp::Context, key: &[u8]) -> mp::Manager {
    mp::Manager::builder()
        .start_method(ctx.start_method())
        .serve_on("127.0.0.1:0".parse().unwrap(), key)
        .start()
        .unwrap()
}

fn remote_programs_share_a_queue(ctx: mp::Context) {
    let m = served(&ctx, b"abracadabra");
    let address = m.address().unwrap().to_string();
    let (jobs, results) = (m.queue::<u64>().unwrap(), m.queue::<u64>().unwrap());
    m.publish("jobs", &jobs).unwrap();
    m.publish("results", &results).unwrap();
    for n in 1..=100 {
        jobs.put(n).unwrap();
    }
    let mut workers: Vec<_> = (0..2)
        .map(|_| helper(&ctx, "manager-client", &[&address, "abracadabra"]))
        .collect();
    let mut got: Vec<u64> = (0..100)
        .map(|_| results.get_timeout(LIMIT).unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=100u64).map(|n| n * n).collect::<Vec<_>>());
    for w in &mut workers {
        assert_eq!(read_line(w), "done");
        assert!(w.wait().unwrap().success());
    }
}

fn a_wrong_key_is_refused_and_touches_nothing(ctx: mp::Context) {
    let m = served(&ctx, b"right key");
    let address = m.address().unwrap().clone();
    let _l = m.list([1u8]).unwrap();
    let before = m.number_of_objects().unwrap();
    match mp::Manager::connect(&address, b"wrong key") {
        Err(mp::Error::Auth(_)) => {}
        other => panic!("expected Auth, got {other:?}"),
    }
    assert_eq!(m.number_of_objects().unwrap(), before);
    let remote = mp::Manager::connect(&address, b"right key").unwrap();
    let d = remote.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    assert_eq!(m.number_of_objects().unwrap(), before + 1);
}

fn push_remote(address: String, key: Vec<u8>) -> usize {
    let m = mp::Manager::connect(&address.parse().unwrap(), &key).unwrap();
    let l: mp::ListProxy<String> = m.lookup("names").unwrap();
    l.push(&format!("pid {}", std::process::id())).unwrap();
    l.len().unwrap()
}

fn a_manager_served_on_a_unix_socket(ctx: mp::Context) {
    let path = std::env::temp_dir().join(format!(
        "mp-manager-{}-{}.sock",
        std::process::id(),
        ctx.start_method().name()
    ));
    let _ = std::fs::remove_file(&path);
    let m = mp::Manager::builder()
        .start_method(ctx.start_method())
        .serve_on(Address::unix(&path), b"unix key")
        .start()
        .unwrap();
    let names = m.list(Vec::<String>::new()).unwrap();
    m.publish("names", &names).unwrap();
    let got = run(ctx.process(
        push_remote,
        (m.address().unwrap().to_string(), b"unix key".to_vec()),
    ));
    assert_eq!(got, 1);
    assert!(names.get(0).unwrap().starts_with("pid "));
    // Shutting down ends the server; proxies then say so.
    let pid = m.pid().unwrap();
    m.shutdown().unwrap();
    assert!(!is_running(pid));
    assert!(matches!(names.len(), Err(mp::Error::Closed)));
    assert!(!path.exists(), "the manager's socket file was left behind");
}

fn malformed_and_oversized_requests_drop_one_connection() {
    let m = mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().unwrap(), b"k")
        .max_message_size(4096)
        .start()
        .unwrap();
    let address = m.address().unwrap().clone();
    let Address::Tcp(tcp) = address.clone() else {
        unreachable!()
    };
    let l = m.list([1u32]).unwrap();
    m.publish("l", &l).unwrap();
    let good = mp::Manager::connect(&address, b"k").unwrap();
    let remote_l: mp::ListProxy<u32> = good.lookup("l").unwrap();

    // Garbage before the handshake: a header claiming a huge frame.
    let mut raw = std::net::TcpStream::connect(tcp).unwrap();
    raw.write_all(&u64::MAX.to_le_bytes()).unwrap();
    raw.write_all(b"junk").unwrap();
    // Authenticated, then bytes that are no request.
    let bad = Client::connect(&address, b"k").unwrap();
    bad.send_bytes(&[0xff; 64]).unwrap();
    assert!(matches!(bad.recv_bytes(), Err(mp::Error::Closed)));
    // Authenticated, then a request over the limit.
    let big = Client::connect(&address, b"k").unwrap();
    big.send_bytes(&vec![0u8; 10_000]).unwrap();
    assert!(matches!(big.recv_bytes(), Err(mp::Error::Closed)));
    // A client cut off in the middle of a frame.
    let mut cut = std::net::TcpStream::connect(tcp).unwrap();
    cut.write_all(&100u64.to_le_bytes()).unwrap();
    cut.write_all(&[1, 2, 3]).unwrap();
    drop(cut);

    // Everyone else is still served.
    remote_l.push(&2).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![1, 2]);
    drop(raw);
}

fn echo_server(listener_address: String) -> String {
    let conn = Client::connect(&listener_address.parse().unwrap(), b"secret").unwrap();
    let msg: String = conn.recv().unwrap();
    conn.send(&format!("{msg}, back")).unwrap();
    msg
}

fn listener_and_client_across_processes(ctx: mp::Context) {
    let dir = std::env::temp_dir().join(format!(
        "mp-listener-{}-{:?}",
        std::process::id(),
        ctx.start_method()
    ));
    let _ = std::fs::remove_file(&dir);
    // A name in the abstract namespace (a leading NUL byte) has no file.
    let hidden = format!(
        "\0mp-listener-{}-{:?}",
        std::process::id(),
        ctx.start_method()
    );
    for address in [
        Address::Tcp("127.0.0.1:0".parse().unwrap()),
        Address::unix(&dir),
        Address::unix(&hidden),
    ] {
        let listener = Listener::bind(&address, b"secret").unwrap();
        let mut p = ctx.process(echo_server, (listener.address().to_string(),));
        p.start().unwrap();
        let conn = within(LIMIT, move || listener.accept().unwrap());
        conn.send(&"hello".to_string()).unwrap();
        assert_eq!(conn.recv_timeout::<String>(LIMIT).unwrap(), "hello, back");
        join(&p);
        assert_eq!(p.take_result().unwrap(), "hello");
    }
    assert!(!dir.exists(), "the listener's socket file was left behind");
}

fn listener_refuses_a_wrong_key() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), b"one").unwrap();
    let address = listener.address().clone();
    let t = std::thread::spawn(move || Client::connect(&address, b"two").map(drop));
    // The peer that fails is dropped: accept hands out nothing, and the
    // next peer with the key is served.
    assert!(matches!(
        listener.accept_timeout(Duration::from_millis(500)),
        Err(mp::Error::Timeout)
    ));
    assert!(matches!(t.join().unwrap(), Err(mp::Error::Auth(_))));
    let address = listener.address().clone();
    let t = std::thread::spawn(move || Client::connect(&address, b"one").map(drop));
    assert!(within(LIMIT, move || listener.accept_timeout(LIMIT)).is_ok());
    assert!(t.join().unwrap().is_ok());
    let small = Listener::bind(&"127.0.0.1:0".parse().unwrap(), b"k").unwrap();
    let address = small.address().clone();
    let t = std::thread::spawn(move || {
        let c = Client::connect(&address, b"k").unwrap();
        c.send_bytes(&[7u8; 100]).unwrap();
    });
    let conn = within(LIMIT, move || small.accept().unwrap());
    conn.set_max_message_size(10);
    assert!(matches!(
        conn.recv_bytes(),
        Err(mp::Error::MessageTooLarge { size: 100, max: 10 })
    ));
    t.join().unwrap();
    assert!(matches!(
        Listener::bind(&"127.0.0.1:0".parse().unwrap(), b""),
        Err(mp::Error::InvalidArgument(_))
    ));
}

#[test]
fn rlock() {
    rlock_is_reentrant_and_owned();
}

#[test]
fn malformed() {
    malformed_and_oversized_requests_drop_one_connection();
}

#[test]
fn listener_wrong_key() {
    listener_refuses_a_wrong_key();
}

/// A proxy given by value to `list`, `extend`, `dict_from` or `update` is
/// dropped by the call: the object must live on in the container.
fn a_stored_proxy_keeps_its_object_alive_however_it_got_there(ctx: mp::Context) {
    let m = manager(&ctx);
    let outer = m.list(vec![m.list(0..3u32).unwrap()]).unwrap();
    let inner: mp::ListProxy<u32> = outer.get(0).unwrap();
    assert_eq!(inner.to_vec().unwrap(), [0, 1, 2]);

    let l = m.list(Vec::<mp::ListProxy<u32>>::new()).unwrap();
    l.extend(vec![m.list(3..5u32).unwrap()]).unwrap();
    assert_eq!(l.get(0).unwrap().to_vec().unwrap(), [3, 4]);

    let d = m
        .dict_from(vec![("a".to_string(), m.list(5..7u32).unwrap())])
        .unwrap();
    d.update(vec![("b".to_string(), m.list(7..9u32).unwrap())])
        .unwrap();
    assert_eq!(d.get("a").unwrap().unwrap().to_vec().unwrap(), [5, 6]);
    assert_eq!(d.get("b").unwrap().unwrap().to_vec().unwrap(), [7, 8]);
    // Held by the containers alone now: the outer ones and four inner ones.
    drop(inner);
    assert!(wait_until(LIMIT, || m.number_of_objects().unwrap() == 7));
    // And freed with them.
    drop((outer, l, d));
    assert!(wait_until(LIMIT, || m.number_of_objects().unwrap() == 0));
}

/// Slices and the in-place operations, from a child, as a Python program
/// does them through a `ListProxy`.
fn reshape(l: mp::ListProxy<i64>, d: mp::DictProxy<String, i64>) -> (Vec<i64>, usize) {
    let head = l.get_range(..3).unwrap();
    l.set_range(1..3, [10, 11, 12]).unwrap(); // l[1:3] = [10, 11, 12]
    l.delete_range(-2..).unwrap(); // del l[-2:]
    l.reverse().unwrap();
    l.repeat(2).unwrap(); // l *= 2
    d.insert("last".into(), 99).unwrap();
    (head, l.count(&10).unwrap())
}

/// Pushes `n` numbers while another process sorts.
fn push_while_sorted(l: mp::ListProxy<i64>, n: i64) {
    for i in 0..n {
        l.push(&(1000 + i)).unwrap();
    }
}

fn list_slices_sort_and_dict_popitem(ctx: mp::Context) {
    within(LIMIT, move || slices_sort_and_popitem(ctx));
}

fn slices_sort_and_popitem(ctx: mp::Context) {
    let m = manager(&ctx);
    let l = m.list(0..6i64).unwrap();
    let d = m
        .dict_from([("a".to_string(), 1i64), ("b".to_string(), 2)])
        .unwrap();
    let mut p = ctx.process(reshape, (l.clone(), d.clone()));
    p.start().unwrap();
    join(&p);
    let (head, tens) = p.take_result().unwrap();
    assert_eq!(head, vec![0, 1, 2]);
    // [0, 10, 11, 12, 3, 4, 5] -> del [-2:] -> [0, 10, 11, 12, 3]
    // -> reversed -> twice.
    let once = vec![3, 12, 11, 10, 0];
    assert_eq!(l.to_vec().unwrap(), [once.clone(), once].concat());
    assert_eq!(tens, 2);
    assert_eq!(l.get_range(-3..=-2).unwrap(), vec![11, 10]);
    assert_eq!(l.get_range(100..).unwrap(), Vec::<i64>::new());
    l.sort().unwrap();
    assert_eq!(
        l.to_vec().unwrap(),
        vec![0, 0, 3, 3, 10, 10, 11, 11, 12, 12]
    );
    l.sort_by_key(|v| std::cmp::Reverse(*v)).unwrap();
    assert_eq!(l.get(0).unwrap(), 12);
    l.repeat(0).unwrap();
    assert!(l.is_empty().unwrap());
    assert!(matches!(l.repeat(usize::MAX), Ok(())));
    l.push(&1).unwrap();
    assert!(matches!(
        l.repeat(usize::MAX),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert_eq!(l.to_vec().unwrap(), vec![1]);

    // A sort is atomic: items pushed meanwhile by another process are
    // neither lost nor doubled.
    l.clear().unwrap();
    l.extend((0..200).rev()).unwrap();
    let mut p = ctx.process(push_while_sorted, (l.clone(), 300));
    p.start().unwrap();
    let mut sorts = 0;
    while p.is_alive() || sorts == 0 {
        l.sort().unwrap();
        sorts += 1;
    }
    join(&p);
    let mut all = l.to_vec().unwrap();
    all.sort_unstable();
    let want: Vec<i64> = (0..200).chain(1000..1300).collect();
    assert_eq!(all, want);

    // popitem takes the last inserted; None when empty; copy is local.
    assert_eq!(d.popitem().unwrap(), Some(("last".to_string(), 99)));
    let copy = d.copy().unwrap();
    assert_eq!(copy.len(), 2);
    assert_eq!(d.popitem().unwrap(), Some(("b".to_string(), 2)));
    assert_eq!(d.popitem().unwrap(), Some(("a".to_string(), 1)));
    assert_eq!(d.popitem().unwrap(), None);
    assert_eq!(copy["a"], 1);

    // Proxies inside keep their objects through repeat and slice calls,
    // and let go when the list does.
    let before = m.number_of_objects().unwrap();
    let outer = m.list(vec![m.list([7i64]).unwrap()]).unwrap();
    outer.repeat(3).unwrap();
    outer.delete_range(..1).unwrap();
    outer.set_range(..1, [m.list([8i64]).unwrap()]).unwrap();
    assert_eq!(outer.get(1).unwrap().to_vec().unwrap(), vec![7]);
    assert_eq!(outer.get_range(..).unwrap()[0].to_vec().unwrap(), vec![8]);
    assert_eq!(m.number_of_objects().unwrap(), before + 3);
    outer.clear().unwrap();
    assert!(wait_until(LIMIT, || m.number_of_objects().unwrap() == before + 1));
}

multiproc_testkit::each_start_method!(
    a_stored_proxy_keeps_its_object_alive_however_it_got_there,
    records_seen_across_processes,
    list_operations,
    dict_operations,
    namespace_value_array,
    queue_across_processes,
    joinable_queue,
    lock_makes_increments_exact,
    semaphore_bounds_concurrency,
    condition_wakes_a_waiter_in_another_process,
    event_and_barrier,
    nested_proxies_stay_live_plain_values_are_copies,
    objects_are_freed_when_no_process_refers_to_them,
    a_proxy_moved_into_a_child_outlives_the_parents_drop,
    proxies_sent_through_a_pipe_and_lost_in_transit,
    registered_types_are_served,
    a_killed_holder_releases_its_lock,
    a_client_killed_in_a_call_neither_wedges_nor_loses,
    the_server_ends_with_its_manager_and_leaks_nothing,
    the_server_dies_with_its_owner,
    remote_programs_share_a_queue,
    a_wrong_key_is_refused_and_touches_nothing,
    listener_and_client_across_processes,
    a_manager_served_on_a_unix_socket,
    list_slices_sort_and_dict_popitem,
);

/// A proxy dropped while every connection of its session is busy (a thread
/// waits in a call on each) still gives its hold back.
#[test]
fn a_proxy_dropped_while_all_connections_wait_is_freed() {
    let m = mp::Manager::start().unwrap();
    let q = m.queue::<u8>().unwrap();
    let l = m.list([1u8, 2, 3]).unwrap();
    let before = m.number_of_objects().unwrap();
    let waiter = std::thread::spawn(move || q.get_timeout(Duration::from_secs(3)));
    // Let the waiter take the one idle connection.
    std::thread::sleep(Duration::from_millis(300));
    drop(l);
    assert_eq!(m.number_of_objects().unwrap(), before - 1);
    assert!(waiter.join().unwrap().is_err());
}
