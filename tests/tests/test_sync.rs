//! Shared memory and synchronization with real processes, after
//! `_TestLock`, `_TestSemaphore`, `_TestCondition`, `_TestEvent`,
//! `_TestBarrier`, `_TestValue`, `_TestArray` and `_TestSharedMemory` of
//! CPython's `_test_multiprocessing.py`.
//!
//! The tests that pass handles to children run under each start method.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::{LeakCheck, is_running, shm_entries, wait_until, within};

const LIMIT: Duration = Duration::from_secs(30);

fn join<R>(p: &mp::Process<R>) {
    p.join_timeout(LIMIT).expect("child did not end in time");
}

fn start_all<R>(ps: &mut [mp::Process<R>]) {
    for p in ps.iter_mut() {
        p.start().unwrap();
    }
}

fn join_all<R>(ps: &[mp::Process<R>]) {
    for p in ps {
        join(p);
        assert_eq!(p.exitcode(), Some(0), "{p:?}");
    }
}

// ---- Lock, Value, Array -------------------------------------------------

fn add_under_lock(counter: mp::RawValue<u64>, lock: mp::Lock, n: u64) {
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        // A read and a write that race without the lock.
        counter.store(counter.load() + 1);
    }
}

fn add_to_value(v: mp::Value<u64>, n: u64) {
    for _ in 0..n {
        *v.lock() += 1;
    }
}

fn n_processes_times_m_increments_under_a_lock(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let (n, m) = (4, 20_000);
    let counter = mp::RawValue::new(0u64).unwrap();
    let lock = mp::Lock::new().unwrap();
    let value = mp::Value::new(0u64).unwrap();
    let mut ps: Vec<_> = (0..n)
        .map(|_| ctx.process(add_under_lock, (counter.clone(), lock.clone(), m)))
        .collect();
    let mut vs: Vec<_> = (0..n)
        .map(|_| ctx.process(add_to_value, (value.clone(), m)))
        .collect();
    start_all(&mut ps);
    start_all(&mut vs);
    join_all(&ps);
    join_all(&vs);
    assert_eq!(counter.load(), n * m);
    assert_eq!(value.get(), n * m);
    assert!(!lock.is_locked());
    drop((ps, vs, counter, lock, value));
    leaks.assert_clean();
}

fn square_into(nums: Vec<i32>, result: mp::Array<i32>, sum: mp::Value<i32>) {
    for (i, n) in nums.iter().enumerate() {
        result.set(i, n * n);
    }
    *sum.lock() = result.lock().iter().sum();
}

fn arrays_and_values_are_shared_with_children(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let result = mp::Array::<i32>::new(4).unwrap();
    assert_eq!(result.to_vec(), [0; 4], "zero-filled");
    let sum = mp::Value::new(0i32).unwrap();
    let mut p = ctx.process(square_into, (vec![1, 2, 3, 4], result.clone(), sum.clone()));
    p.start().unwrap();
    join(&p);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(result.to_vec(), [1, 4, 9, 16]);
    assert_eq!(sum.get(), 30);
    assert_eq!(result.len(), 4);
    let f = mp::Array::<f64>::from_slice(&[0.5, 1.5]).unwrap();
    assert_eq!(f.get(1), 1.5);
    drop((p, result, sum, f));
    leaks.assert_clean();
}

fn fill_raw(a: mp::RawArray<u32>, v: mp::RawValue<[u8; 3]>) {
    for i in 0..a.len() {
        a.set(i, i as u32 * 3);
    }
    // SAFETY: the parent reads only after joining.
    unsafe { v.write(*b"abc") };
}

fn raw_values_and_arrays_are_shared_with_children(ctx: mp::Context) {
    let a = mp::RawArray::<u32>::new(1000).unwrap();
    let v = mp::RawValue::new([0u8; 3]).unwrap();
    let mut p = ctx.process(fill_raw, (a.clone(), v.clone()));
    p.start().unwrap();
    join(&p);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(a.get(999), 2997);
    // SAFETY: the child has ended.
    assert_eq!(unsafe { v.read() }, *b"abc");
}

#[test]
fn lock_misuse_is_an_error() {
    let lock = mp::Lock::new().unwrap();
    assert!(matches!(lock.release(), Err(mp::Error::NotHeld(_))));
    let g = lock.try_acquire().unwrap();
    assert!(matches!(
        lock.try_acquire(),
        Err(mp::AcquireError::WouldBlock)
    ));
    let t = Instant::now();
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(100)),
        Err(mp::AcquireError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    std::mem::forget(g);
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

fn try_release(lock: mp::RLock) -> String {
    match lock.release() {
        Ok(()) => "released".into(),
        Err(e) => e.to_string(),
    }
}

fn rlock_is_reentrant_and_owned(ctx: mp::Context) {
    let r = mp::RLock::new().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    assert_eq!(r.count(), 2);
    // Another process may not release it.
    let mut p = ctx.process(try_release, (r.clone(),));
    p.start().unwrap();
    join(&p);
    assert_eq!(p.take_result().unwrap(), "cannot release un-acquired lock");
    // Nor another thread.
    let r2 = r.clone();
    assert!(
        std::thread::spawn(move || r2.release().is_err())
            .join()
            .unwrap()
    );
    drop(b);
    assert_eq!(r.count(), 1);
    drop(a);
    assert_eq!(r.count(), 0);
    assert!(matches!(r.release(), Err(mp::Error::NotHeld(_))));
}

// ---- a holder that dies ---------------------------------------------------

fn hold_forever(lock: mp::Lock, held: mp::Event) {
    std::mem::forget(lock.acquire().unwrap());
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn hold_value_forever(v: mp::Value<u64>, held: mp::Event) {
    let mut g = v.lock();
    *g = 41;
    std::mem::forget(g);
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn a_killed_holder_does_not_wedge_the_lock(ctx: mp::Context) {
    let lock = mp::Lock::new().unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = ctx
        .builder(hold_forever, (lock.clone(), held.clone()))
        .daemon(true)
        .build();
    p.start().unwrap();
    assert!(held.wait_timeout(LIMIT), "the holder never took the lock");
    assert!(lock.is_locked());
    // A waiter is already asleep on the lock when the holder dies.
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let r = lock.acquire_timeout(LIMIT);
            let at = Instant::now();
            let died = matches!(&r, Err(e) if e.owner_died());
            (died, at)
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    p.kill().unwrap();
    let killed = Instant::now();
    let (died, at) = waiter.join().unwrap();
    assert!(died, "the waiter was not told the owner died");
    let latency = at.saturating_duration_since(killed);
    assert!(
        latency < Duration::from_millis(100),
        "took {latency:?} to take over"
    );
    join(&p);
    // The takeover released it when the guard dropped: free again.
    assert!(!lock.is_locked());
    let _free = lock.try_acquire().unwrap();
}

fn a_value_whose_holder_died_is_taken_over(ctx: mp::Context) {
    let v = mp::Value::new(0u64).unwrap();
    let held = mp::Event::new().unwrap();
    let mut p = ctx
        .builder(hold_value_forever, (v.clone(), held.clone()))
        .daemon(true)
        .build();
    p.start().unwrap();
    assert!(held.wait_timeout(LIMIT));
    p.kill().unwrap();
    join(&p);
    let r = within(LIMIT, move || match v.lock_checked() {
        Err(e) if e.owner_died() => e.into_guard().map(|g| *g),
        _ => None,
    });
    assert_eq!(
        r,
        Some(41),
        "the takeover should report the dead owner and keep the data"
    );
}

// ---- Semaphore ----------------------------------------------------------

fn admit(sem: mp::Semaphore, stats: mp::Array<u32>, rounds: u32) {
    for _ in 0..rounds {
        let _g = sem.acquire();
        {
            let mut s = stats.lock();
            s[0] += 1;
            s[1] = s[1].max(s[0]);
        }
        std::thread::sleep(Duration::from_micros(200));
        stats.lock()[0] -= 1;
    }
}

fn a_semaphore_never_admits_more_than_its_count(ctx: mp::Context) {
    let k = 2;
    let sem = mp::Semaphore::new(k).unwrap();
    let stats = mp::Array::<u32>::new(2).unwrap(); // [inside now, most inside]
    let mut ps: Vec<_> = (0..5)
        .map(|_| ctx.process(admit, (sem.clone(), stats.clone(), 50)))
        .collect();
    start_all(&mut ps);
    join_all(&ps);
    let s = stats.to_vec();
    assert_eq!(s[0], 0);
    assert!(s[1] <= k, "{} inside at once, more than {k}", s[1]);
    assert!(s[1] >= 1);
    assert_eq!(sem.value(), k);
}

#[test]
fn semaphore_timeouts_and_bounds() {
    let zero = mp::Semaphore::new(0).unwrap();
    let t = Instant::now();
    assert!(matches!(
        zero.acquire_timeout(Duration::from_millis(200)),
        Err(mp::Error::Timeout)
    ));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(matches!(zero.try_acquire(), Err(mp::Error::WouldBlock)));
    zero.release().unwrap();
    zero.try_acquire().unwrap().forget();
    assert_eq!(zero.value(), 0);

    let b = mp::BoundedSemaphore::new(2).unwrap();
    assert!(
        matches!(b.release(), Err(mp::Error::NotHeld(_))),
        "over-release of a bounded semaphore"
    );
    let g = b.acquire();
    assert_eq!(b.value(), 1);
    drop(g);
    assert_eq!(b.value(), 2);
    assert!(mp::BoundedSemaphore::new(0).is_err());
}

// ---- Event, Condition, Barrier -------------------------------------------

fn wait_for_event(e: mp::Event) -> bool {
    e.wait_timeout(LIMIT)
}

fn an_event_set_in_one_process_wakes_another(ctx: mp::Context) {
    let e = mp::Event::new().unwrap();
    let mut p = ctx.process(wait_for_event, (e.clone(),));
    p.start().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.is_alive(), "the waiter did not wait");
    e.set();
    join(&p);
    assert!(p.take_result().unwrap());
    assert!(e.is_set());
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait_timeout(Duration::from_millis(50)));
}

/// A bounded buffer of `CAP` slots in a RawArray, guarded by the condition.
const CAP: usize = 4;

fn produce(cond: mp::Condition, buf: mp::RawArray<u64>, n: u64) {
    // buf = [head, tail, slots...]
    for i in 0..n {
        let mut g = cond.acquire().unwrap();
        assert!(g.wait_for(|| buf.get(1) - buf.get(0) < CAP as u64, Some(LIMIT)));
        let tail = buf.get(1);
        buf.set(2 + (tail as usize % CAP), i);
        buf.set(1, tail + 1);
        g.notify_all();
    }
}

fn consume(cond: mp::Condition, buf: mp::RawArray<u64>, n: u64) -> Vec<u64> {
    let mut got = Vec::new();
    while (got.len() as u64) < n {
        let mut g = cond.acquire().unwrap();
        assert!(g.wait_for(|| buf.get(1) > buf.get(0), Some(LIMIT)));
        let head = buf.get(0);
        got.push(buf.get(2 + (head as usize % CAP)));
        buf.set(0, head + 1);
        g.notify_all();
    }
    got
}

fn condition_producer_consumer_across_processes(ctx: mp::Context) {
    let cond = mp::Condition::new().unwrap();
    let buf = mp::RawArray::<u64>::new(2 + CAP).unwrap();
    let n = 2000;
    let mut c = ctx.process(consume, (cond.clone(), buf.clone(), n));
    let mut p = ctx.process(produce, (cond.clone(), buf.clone(), n));
    c.start().unwrap();
    p.start().unwrap();
    join(&p);
    join(&c);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(c.take_result().unwrap(), (0..n).collect::<Vec<_>>());
}

#[test]
fn condition_wait_timeout_and_notify_without_waiters() {
    let cond = mp::Condition::new().unwrap();
    let mut g = cond.acquire().unwrap();
    g.notify(1);
    let t = Instant::now();
    assert!(!g.wait_timeout(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(!g.wait_for(|| false, Some(Duration::from_millis(50))));
    drop(g);
    let _free = cond.try_acquire().unwrap();
}

static ACTIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn count_action() {
    ACTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn barrier_rounds(b: mp::Barrier, zeros: mp::Array<u32>, rounds: u32) -> u32 {
    for _ in 0..rounds {
        let i = b.wait().unwrap();
        assert!(i < b.parties());
        if i == 0 {
            zeros.lock()[0] += 1;
        }
    }
    ACTIONS.load(std::sync::atomic::Ordering::SeqCst)
}

fn a_barrier_over_many_rounds(ctx: mp::Context) {
    let parties = 4;
    let rounds = 200;
    let b = mp::Barrier::new(parties)
        .unwrap()
        .with_action(count_action)
        .with_timeout(LIMIT);
    let zeros = mp::Array::<u32>::new(1).unwrap();
    let mut ps: Vec<_> = (0..parties)
        .map(|_| ctx.process(barrier_rounds, (b.clone(), zeros.clone(), rounds)))
        .collect();
    start_all(&mut ps);
    join_all(&ps);
    let actions: u32 = ps.iter_mut().map(|p| p.take_result().unwrap()).sum();
    assert_eq!(
        zeros.get(0),
        rounds,
        "exactly one waiter per round gets index 0"
    );
    assert_eq!(actions, rounds, "the action runs once per round");
    assert!(!b.is_broken());
}

fn wait_once(b: mp::Barrier) -> String {
    match b.wait() {
        Ok(i) => format!("passed {i}"),
        Err(e) => e.to_string(),
    }
}

fn a_barrier_breaks_on_timeout_abort_and_reset(ctx: mp::Context) {
    let b = mp::Barrier::new(3).unwrap();
    // A timeout breaks the barrier for everyone.
    let mut p = ctx.process(wait_once, (b.clone(),));
    p.start().unwrap();
    assert!(wait_until(LIMIT, || b.n_waiting() == 1));
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(100)),
        Err(mp::Error::BrokenBarrier)
    ));
    join(&p);
    assert_eq!(p.take_result().unwrap(), "the barrier is broken");
    assert!(b.is_broken());
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(10)),
        Err(mp::Error::BrokenBarrier)
    ));
    // Reset makes it usable again, and breaks a waiter in the way.
    b.reset();
    assert!(!b.is_broken());
    let mut q = ctx.process(wait_once, (b.clone(),));
    q.start().unwrap();
    assert!(wait_until(LIMIT, || b.n_waiting() == 1));
    b.reset();
    join(&q);
    assert_eq!(q.take_result().unwrap(), "the barrier is broken");
    // Abort breaks it until the next reset.
    b.abort();
    assert!(b.is_broken());
    b.reset();
    let two = mp::Barrier::new(2).unwrap();
    let mut r = ctx.process(wait_once, (two.clone(),));
    r.start().unwrap();
    let mine = two.wait_timeout(LIMIT).unwrap();
    join(&r);
    let theirs = r.take_result().unwrap();
    assert!(
        theirs == format!("passed {}", 1 - mine),
        "{theirs} / {mine}"
    );
    assert!(mp::Barrier::new(0).is_err());
}

// ---- SharedMemory -------------------------------------------------------

fn write_named(name: String, text: String) -> usize {
    let shm = mp::SharedMemory::open(&name).unwrap();
    shm.write_at(0, text.as_bytes()).unwrap();
    shm.size()
}

fn write_passed(shm: mp::SharedMemory, text: String) {
    shm.write_at(8, text.as_bytes()).unwrap();
}

fn shared_memory_by_name_and_by_handle(ctx: mp::Context) {
    let shm = mp::SharedMemory::create(None, 64).unwrap();
    assert!(shm.name().starts_with("psm_"));
    let mut p = ctx.process(write_named, (shm.name().to_string(), "by name".to_string()));
    p.start().unwrap();
    join(&p);
    assert_eq!(p.take_result().unwrap(), 64);
    let mut q = ctx.process(write_passed, (shm.clone(), "by handle".to_string()));
    q.start().unwrap();
    join(&q);
    assert_eq!(q.exitcode(), Some(0));
    let mut buf = [0u8; 17];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"by name\0by handle");
    shm.unlink().unwrap();
}

fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

#[test]
fn shared_memory_errors_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let name = format!("mp_test_{}", std::process::id());
    let shm = mp::SharedMemory::create(Some(&name), 100).unwrap();
    assert_eq!(shm.size(), 100);
    let mode = std::fs::metadata(shm_path(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        matches!(mp::SharedMemory::create(Some(&name), 100), Err(mp::Error::AlreadyExists(n)) if n == name)
    );
    assert!(matches!(
        mp::SharedMemory::create(None, 0),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mp::SharedMemory::create(Some("a/b"), 1),
        Err(mp::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        shm.write_at(99, b"xy"),
        Err(mp::Error::InvalidArgument(_))
    ));
    shm.unlink().unwrap();
    assert!(
        matches!(shm.unlink(), Err(mp::Error::NotFound(_))),
        "double unlink"
    );
    assert!(matches!(
        mp::SharedMemory::open(&name),
        Err(mp::Error::NotFound(_))
    ));
    // The mapping outlives the name.
    shm.write_at(0, b"still here").unwrap();
}

#[test]
fn the_creator_unlinks_at_exit_unless_told_to_keep() {
    for (mode, stays) in [("unlink", false), ("keep", true)] {
        let name = format!("mp_exit_{}_{mode}", std::process::id());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mp_helper"))
            .args(["shm-exit", "forkserver", &name, mode])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(shm_path(&name).exists(), stays, "{mode}");
        if stays {
            mp::SharedMemory::open(&name).unwrap().unlink().unwrap();
        }
    }
}

#[test]
fn anonymous_segments_leave_nothing_in_dev_shm() {
    let before = shm_entries();
    let objects = (
        mp::Lock::new().unwrap(),
        mp::Value::new(1u8).unwrap(),
        mp::RawArray::<u8>::new(1 << 20).unwrap(),
        mp::Barrier::new(2).unwrap(),
    );
    assert_eq!(shm_entries(), before);
    drop(objects);
}

#[test]
fn a_dead_process_is_not_running() {
    // The testkit's view of a process, used above, is right about the dead.
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    assert!(!is_running(pid));
}

fn wait_once_notified(cond: mp::Condition, woken: mp::Value<u32>) {
    let mut g = cond.acquire().unwrap();
    if g.wait_timeout(LIMIT) {
        *woken.lock() += 1;
    }
}

/// `notify(n)` wakes exactly `n` of the processes waiting, even when they
/// have released the lock inside `wait` but are not asleep yet.
fn notify_wakes_exactly_as_many_as_asked(ctx: mp::Context) {
    for round in 0..10 {
        let (cond, woken) = (mp::Condition::new().unwrap(), mp::Value::new(0u32).unwrap());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let mut p = ctx.process(wait_once_notified, (cond.clone(), woken.clone()));
                p.start().unwrap();
                p
            })
            .collect();
        // At once: some may not sleep yet.
        assert!(wait_until(LIMIT, || cond.waiting() == 3));
        assert_eq!(cond.acquire().unwrap().notify(1), 1);
        assert!(wait_until(LIMIT, || woken.get() == 1));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            woken.get(),
            1,
            "round {round}: notify(1) woke {}",
            woken.get()
        );
        assert_eq!(cond.waiting(), 2);
        assert_eq!(cond.acquire().unwrap().notify_all(), 2);
        join_all(&waiters);
        assert_eq!(woken.get(), 3);
        assert_eq!(cond.waiting(), 0);
    }
}

/// Moves `n` units from `from` to `to` and counts each move in `moves[0]`,
/// all under the one lock the three share, in each of the three ways a
/// Python program writes it.
fn transfer(
    lock: mp::Lock,
    from: mp::Value<i64>,
    to: mp::Value<i64>,
    moves: mp::Array<i64>,
    n: i64,
) {
    for i in 0..n {
        match i % 3 {
            // `with lock: a.value -= 1; b.value += 1`
            0 => {
                let _held = lock.acquire().unwrap();
                from.set(from.get() - 1);
                to.set(to.get() + 1);
                moves.set(0, moves.get(0) + 1);
            }
            // A guard of one value holds the lock for the others too.
            1 => {
                let mut f = from.lock();
                *f -= 1;
                to.set(to.get() + 1);
                let mut m = moves.lock();
                m[0] += 1;
            }
            // Each through its own lock call: the same lock, taken once.
            _ => {
                let _held = from.get_lock().acquire().unwrap();
                *to.lock() += 1;
                *from.lock() -= 1;
                moves.lock()[0] += 1;
            }
        }
    }
}

fn values_share_one_lock(ctx: mp::Context) {
    let lock = mp::Lock::new().unwrap();
    let a = mp::Value::with_lock(300i64, lock.clone()).unwrap();
    let b = mp::Value::with_lock(0i64, lock.clone()).unwrap();
    let moves = mp::Array::<i64>::with_lock(4, lock.clone()).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| {
            ctx.process(
                transfer,
                (lock.clone(), a.clone(), b.clone(), moves.clone(), 100),
            )
        })
        .collect();
    start_all(&mut ps);
    // Under the lock, no move is ever half made.
    let mut looks = 0;
    while ps.iter().any(|p| p.is_alive()) && looks < 10_000 {
        let _held = lock.acquire().unwrap();
        assert_eq!(a.get() + b.get(), 300);
        assert_eq!(b.get(), moves.get(0));
        looks += 1;
    }
    join_all(&ps);
    assert_eq!(
        (a.get(), b.get(), moves.to_vec()),
        (0, 300, vec![300, 0, 0, 0])
    );
    // A guard of one value does not hide the others; a second guard of the
    // same value is refused.
    let g = a.lock();
    assert_eq!(b.get(), 300);
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.get()));
    assert!(refused.is_err());
    drop(g);
    assert!(!lock.is_locked());
}

multiproc_testkit::each_start_method!(
    notify_wakes_exactly_as_many_as_asked,
    n_processes_times_m_increments_under_a_lock,
    arrays_and_values_are_shared_with_children,
    raw_values_and_arrays_are_shared_with_children,
    rlock_is_reentrant_and_owned,
    a_killed_holder_does_not_wedge_the_lock,
    a_value_whose_holder_died_is_taken_over,
    a_semaphore_never_admits_more_than_its_count,
    an_event_set_in_one_process_wakes_another,
    condition_producer_consumer_across_processes,
    a_barrier_over_many_rounds,
    a_barrier_breaks_on_timeout_abort_and_reset,
    shared_memory_by_name_and_by_handle,
    values_share_one_lock,
);

#[test]
fn a_value_under_its_own_lock_never_hangs() {
    within(LIMIT, || {
        let v = mp::Value::new(5u64).unwrap();
        // Python's `with v.get_lock(): v.value += 1`.
        {
            let _held = v.get_lock().acquire().unwrap();
            v.set(v.get() + 1);
            *v.lock() += 1;
            assert_eq!(v.get(), 7);
        }
        assert!(!v.get_lock().is_locked());
        // Under a guard of the value itself, a second view is refused.
        let g = v.lock();
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.get()));
        let message = mp::panic_message(&*refused.unwrap_err());
        assert!(message.contains("already holds a guard"), "{message}");
        drop(g);
        assert_eq!(v.get(), 7);

        let a = mp::Array::from_slice(&[1u32, 2, 3]).unwrap();
        {
            let _held = a.get_lock().acquire().unwrap();
            a.set(0, a.get(1) + a.get(2));
            assert_eq!(a.to_vec(), [5, 2, 3]);
            a.lock()[2] = 9;
        }
        let g = a.lock();
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.get(0))).is_err());
        drop(g);
        assert_eq!(a.to_vec(), [5, 2, 9]);
        // Another thread waits for the holder, as before.
        let held = a.lock();
        let other = {
            let a = a.clone();
            std::thread::spawn(move || a.get(2))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert_eq!(other.join().unwrap(), 9);
    });
}
