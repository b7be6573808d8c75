//! A timeout too long to matter (`Duration::MAX`, as a user writes for "no
//! limit" through an API that takes one) waits as long as it takes: every
//! blocking call with a timeout returns when another process lets it,
//! instead of panicking on `Instant` overflow.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::time::Duration;

use multiproc as mp;
use multiproc_testkit::within;

const LIMIT: Duration = Duration::from_secs(30);
const HUGE: Duration = Duration::MAX;
/// Long enough that the parent is waiting when the child acts.
const LATER: Duration = Duration::from_millis(100);

fn later_put(q: mp::Queue<u64>, jq: mp::JoinableQueue<u64>, c: mp::Connection) {
    std::thread::sleep(LATER);
    q.put(7).unwrap();
    jq.put(8).unwrap();
    c.send(&9u64).unwrap();
}

fn later_release(lock: mp::Lock, rlock: mp::RLock, sem: mp::Semaphore, ev: mp::Event) {
    let held = lock.acquire();
    let rheld = rlock.acquire();
    // Released by the parent's waits: the semaphore starts at zero.
    std::thread::sleep(LATER);
    drop(held);
    drop(rheld);
    sem.release().unwrap();
    ev.set();
}

fn later_notify(cond: mp::Condition, barrier: mp::Barrier) {
    // Wait until the parent waits, then wake it.
    while cond.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    cond.acquire().unwrap().notify_all();
    barrier.wait_timeout(HUGE).unwrap();
}

fn a_huge_timeout_waits_as_long_as_it_takes(ctx: mp::Context) {
    within(LIMIT, move || {
        // Queues and connections.
        let q = mp::Queue::<u64>::new().unwrap();
        let jq = mp::JoinableQueue::<u64>::new().unwrap();
        let (a, b) = mp::Pipe::new().unwrap();
        let mut p = ctx.process(later_put, (q.clone(), jq.clone(), b));
        p.start().unwrap();
        assert_eq!(mp::wait(&[&a], Some(HUGE)).unwrap(), vec![0]);
        assert!(a.poll(Some(HUGE)).unwrap());
        assert_eq!(a.recv_timeout::<u64>(HUGE).unwrap(), 9);
        assert_eq!(q.get_timeout(HUGE).unwrap(), 7);
        assert_eq!(jq.get_timeout(HUGE).unwrap(), 8);
        jq.task_done().unwrap();
        jq.join_timeout(HUGE).unwrap();
        q.put_timeout(1, HUGE).unwrap();
        p.join_timeout(HUGE).unwrap();
        assert_eq!(p.exitcode(), Some(0));

        // Locks, semaphores, events: taken by the child, released later.
        let lock = mp::Lock::new().unwrap();
        let rlock = mp::RLock::new().unwrap();
        let sem = mp::Semaphore::new(0).unwrap();
        let ev = mp::Event::new().unwrap();
        let mut p = ctx.process(
            later_release,
            (lock.clone(), rlock.clone(), sem.clone(), ev.clone()),
        );
        p.start().unwrap();
        assert!(ev.wait_timeout(HUGE));
        drop(lock.acquire_timeout(HUGE).unwrap());
        drop(rlock.acquire_timeout(HUGE).unwrap());
        drop(sem.acquire_timeout(HUGE).unwrap());
        p.join_timeout(HUGE).unwrap();

        // A condition and a barrier (whose own timeout is huge too).
        let cond = mp::Condition::new().unwrap();
        let barrier = mp::Barrier::new(2).unwrap().with_timeout(HUGE);
        let mut p = ctx.process(later_notify, (cond.clone(), barrier.clone()));
        p.start().unwrap();
        let mut guard = cond.acquire_timeout(HUGE).unwrap();
        assert!(guard.wait_timeout(HUGE));
        drop(guard);
        barrier.wait().unwrap();
        p.join_timeout(HUGE).unwrap();
        assert_eq!(p.exitcode(), Some(0));
    });
}

fn square(n: u64) -> u64 {
    n * n
}

fn a_pool_and_a_manager_take_a_huge_timeout(ctx: mp::Context) {
    within(LIMIT, move || {
        let pool = mp::Pool::builder()
            .processes(1)
            .start_method(ctx.start_method())
            .build()
            .unwrap();
        let r = pool.apply_async(square, (12,)).unwrap();
        assert!(r.wait(Some(HUGE)));
        assert_eq!(r.get_timeout(HUGE).unwrap(), 144);

        let m = mp::Manager::builder()
            .start_method(ctx.start_method())
            .start()
            .unwrap();
        let q = m.queue::<u64>().unwrap();
        q.put_timeout(3, HUGE).unwrap();
        assert_eq!(q.get_timeout(HUGE).unwrap(), 3);
        let ev = m.event().unwrap();
        ev.set().unwrap();
        assert!(ev.wait_timeout(HUGE).unwrap());
        let lock = m.lock().unwrap();
        drop(lock.acquire_timeout(HUGE).unwrap());
        m.shutdown().unwrap();
    });
}

multiproc_testkit::each_start_method!(
    a_huge_timeout_waits_as_long_as_it_takes,
    a_pool_and_a_manager_take_a_huge_timeout,
);
