//! The async waits under tokio (multi-thread and current-thread) and
//! smol: children joined, connections received from, pool and executor
//! results awaited, with no thread per waiting future.

use std::time::Duration;

use multiproc as mp;
use multiproc_testkit::within;

multiproc::test_setup!();

const LIMIT: Duration = Duration::from_secs(60);

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn square(n: u64) -> u64 {
    n * n
}

/// Sends `n` numbers, `first` onwards, then ends.
fn send_numbers(conn: mp::Connection, first: u64, n: u64) {
    for i in first..first + n {
        conn.send(&i).expect("send");
    }
}

/// Waits `ms`, then sends one message.
fn send_later(conn: mp::Connection, ms: u64, v: u64) {
    nap(ms);
    conn.send(&v).expect("send");
}

fn tokio_multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn tokio_current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The threads of this process named as the reactor is (the kernel keeps
/// 15 bytes of a name).
fn reactor_threads() -> usize {
    let short = &mp::REACTOR_THREAD[..15];
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == short))
        .count()
}

/// 100 children, each napping 20-120 ms, joined concurrently.
async fn join_100() {
    let mut children = Vec::new();
    for i in 0..100u64 {
        let mut p = mp::Process::new(nap, (20 + i,));
        p.start().expect("start");
        children.push(p);
    }
    let joins = children.iter().map(|p| p.join_async());
    for j in joins {
        j.await.expect("join_async");
    }
    assert!(children.iter().all(|p| p.exitcode() == Some(0)));
}

#[test]
fn join_async_of_100_children_under_tokio_and_smol() {
    within(LIMIT, || {
        tokio_multi().block_on(join_100());
        tokio_current().block_on(join_100());
        smol::block_on(join_100());
        assert_eq!(reactor_threads(), 1, "one helper thread, however many wait");
    });
}

#[test]
fn join_async_of_a_process_not_started_is_an_error() {
    within(LIMIT, || {
        let p = mp::Process::new(nap, (1,));
        let got = smol::block_on(p.join_async());
        assert!(matches!(got, Err(mp::Error::NotStarted)), "{got:?}");
    });
}

/// Four children send 250 numbers each over a pipe of their own; four
/// async tasks receive them all: every number once.
async fn receive_1000(
    spawn: impl Fn(
        std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u64>> + Send>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u64>> + Send>>,
) {
    let mut tasks = Vec::new();
    let mut children = Vec::new();
    for k in 0..4u64 {
        let (mine, theirs) = mp::Pipe::new().expect("pipe");
        let mut p = mp::Process::new(send_numbers, (theirs, k * 250, 250));
        p.start().expect("start");
        children.push(p);
        tasks.push(spawn(Box::pin(async move {
            let mut got = Vec::new();
            for _ in 0..250 {
                got.push(mine.recv_async::<u64>().await.expect("recv_async"));
            }
            got
        })));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await);
    }
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<u64>>());
    for c in &children {
        c.join_async().await.expect("join");
    }
}

#[test]
fn recv_async_delivers_every_message_once_under_tokio_and_smol() {
    within(LIMIT, || {
        let rt = tokio_multi();
        let handle = rt.handle().clone();
        rt.block_on(receive_1000(move |f| {
            let h = handle.spawn(f);
            Box::pin(async move { h.await.expect("task") })
        }));
        // Current-thread: the tasks interleave on one thread.
        tokio_current().block_on(receive_1000(|f| f));
        smol::block_on(receive_1000(|f| Box::pin(smol::spawn(f))));
        assert_eq!(reactor_threads(), 1);
    });
}

#[test]
fn a_timeout_that_wins_a_select_leaves_the_message_for_the_next_recv() {
    within(LIMIT, || {
        let (mine, theirs) = mp::Pipe::new().expect("pipe");
        let mut p = mp::Process::new(send_later, (theirs, 300, 7));
        p.start().expect("start");
        tokio_current().block_on(async {
            tokio::select! {
                got = mine.recv_async::<u64>() => panic!("the message came first: {got:?}"),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        });
        // The dropped receive took nothing: the message is there for the
        // next one, blocking or not.
        assert_eq!(
            mine.recv_timeout::<u64>(Duration::from_secs(10))
                .expect("recv"),
            7
        );
        p.join_timeout(Duration::from_secs(10)).expect("join");
    });
}

#[test]
fn a_dropped_recv_future_loses_nothing_under_smol() {
    within(LIMIT, || {
        let (mine, theirs) = mp::Pipe::new().expect("pipe");
        let mut p = mp::Process::new(send_numbers, (theirs, 0, 3));
        // Polled while the pipe is empty, then dropped.
        let timed_out = smol::block_on(smol::future::or(
            async { Some(mine.recv_async::<u64>().await) },
            async {
                smol::Timer::after(Duration::from_millis(20)).await;
                None
            },
        ));
        assert!(timed_out.is_none());
        p.start().expect("start");
        let got: Vec<u64> = smol::block_on(async {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(mine.recv_async().await.expect("recv"));
            }
            got
        });
        assert_eq!(got, vec![0, 1, 2]);
        // Then the end: the sender is gone.
        assert!(matches!(
            smol::block_on(mine.recv_async::<u64>()),
            Err(mp::Error::Closed)
        ));
        p.join_timeout(Duration::from_secs(10)).expect("join");
    });
}

#[test]
fn pool_and_executor_results_are_futures() {
    within(LIMIT, || {
        let pool = mp::Pool::builder().processes(2).build().expect("pool");
        let ex = mp::Executor::builder()
            .workers(2)
            .build()
            .expect("executor");
        let rt = tokio_multi();
        rt.block_on(async {
            let results: Vec<_> = (0..50u64)
                .map(|i| pool.apply_async(square, (i,)).expect("apply_async"))
                .collect();
            let all = futures::future::join_all(results).await;
            for (i, r) in all.into_iter().enumerate() {
                assert_eq!(r.expect("result"), square(i as u64));
            }
            // Spawned as tasks of their own, too.
            let tasks: Vec<_> = (0..10u64)
                .map(|i| tokio::spawn(pool.apply_async(square, (i,)).expect("apply_async")))
                .collect();
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await.expect("task").expect("result"), square(i as u64));
            }
            let map = pool.map_async(square, 0..1000u64).expect("map_async");
            assert_eq!(
                map.await.expect("map"),
                (0..1000).map(square).collect::<Vec<_>>()
            );
            let futures: Vec<_> = (0..50u64)
                .map(|i| ex.submit(square, (i,)).expect("submit"))
                .collect();
            for (i, f) in futures.iter().enumerate() {
                assert_eq!(f.clone().await.expect("result"), square(i as u64));
            }
            // Awaited again: a future can be read more than once.
            assert_eq!(futures[3].clone().await.expect("again"), 9);
        });
        smol::block_on(async {
            let r = pool.apply_async(square, (12,)).expect("apply_async");
            assert_eq!(r.await.expect("result"), 144);
            assert_eq!(
                ex.submit(square, (5,))
                    .expect("submit")
                    .await
                    .expect("result"),
                25
            );
        });
    });
}

#[test]
fn a_pool_future_dropped_before_the_result_leaves_the_call_running() {
    within(LIMIT, || {
        let pool = mp::Pool::builder().processes(1).build().expect("pool");
        let r = pool.apply_async(nap, (200,)).expect("apply_async");
        let ready_before = r.ready();
        // A future made and dropped unready; the call goes on and its
        // result is there for the blocking `get` of a second handle.
        let second = pool.apply_async(square, (3,)).expect("apply_async");
        let timed_out = smol::block_on(smol::future::or(async { Some(second.await) }, async {
            smol::Timer::after(Duration::from_millis(10)).await;
            None
        }));
        assert!(!ready_before);
        assert!(timed_out.is_none(), "it waited behind the nap");
        r.get_timeout(Duration::from_secs(10))
            .expect("the first call ran");
        assert_eq!(pool.apply(square, (4,)).expect("the pool goes on"), 16);
    });
}

/// Puts `n` numbers from `first` onwards, each into queue `i % len`.
fn feed_queues(queues: Vec<mp::Queue<u64>>, first: u64, n: u64) {
    for i in first..first + n {
        queues[(i % queues.len() as u64) as usize]
            .put(i)
            .expect("put");
    }
}

/// 1,000 tasks each take one message from one of 10 queues, which 4
/// processes feed with 250 messages each: every message once.
async fn get_1000(
    spawn: impl Fn(
        std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>,
) {
    let queues: Vec<mp::Queue<u64>> = (0..10).map(|_| mp::Queue::new().expect("queue")).collect();
    // The takers first, so that most wait before anything is put.
    let mut tasks = Vec::new();
    for t in 0..1000usize {
        let q = queues[t % 10].clone();
        tasks.push(spawn(Box::pin(async move {
            q.get_async().await.expect("get_async")
        })));
    }
    let mut feeders = Vec::new();
    for k in 0..4u64 {
        let mut p = mp::Process::new(feed_queues, (queues.clone(), k * 250, 250));
        p.start().expect("start");
        feeders.push(p);
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await);
    }
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<u64>>());
    assert!(
        queues.iter().all(|q| q.empty()),
        "nothing taken twice, nothing left"
    );
    for p in &feeders {
        p.join_async().await.expect("join");
    }
}

#[test]
fn a_thousand_get_async_on_10_queues_fed_by_4_processes_take_every_message_once() {
    within(LIMIT, || {
        let rt = tokio_multi();
        let handle = rt.handle().clone();
        rt.block_on(get_1000(move |f| {
            let h = handle.spawn(f);
            Box::pin(async move { h.await.expect("task") })
        }));
        let rt = tokio_current();
        let handle = rt.handle().clone();
        rt.block_on(get_1000(move |f| {
            let h = handle.spawn(f);
            Box::pin(async move { h.await.expect("task") })
        }));
        smol::block_on(get_1000(|f| Box::pin(smol::spawn(f))));
        assert_eq!(reactor_threads(), 1);
    });
}

/// Waits `ms`, then puts one message.
fn put_later(q: mp::Queue<u64>, ms: u64, v: u64) {
    nap(ms);
    q.put(v).expect("put");
}

/// Takes one message after `ms`.
fn take_later(q: mp::Queue<u64>, ms: u64) -> u64 {
    nap(ms);
    q.get().expect("get")
}

#[test]
fn a_timeout_that_wins_over_get_async_leaves_the_message_in_the_queue() {
    within(LIMIT, || {
        let q: mp::Queue<u64> = mp::Queue::new().expect("queue");
        let mut p = mp::Process::new(put_later, (q.clone(), 300, 11));
        p.start().expect("start");
        tokio_current().block_on(async {
            tokio::select! {
                got = q.get_async() => panic!("the message came first: {got:?}"),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        });
        assert_eq!(q.get_timeout(Duration::from_secs(10)).expect("get"), 11);
        p.join_timeout(Duration::from_secs(10)).expect("join");
    });
}

#[test]
fn put_async_waits_for_room_that_another_process_makes() {
    within(LIMIT, || {
        let q: mp::Queue<u64> = mp::Queue::with_maxsize(1).expect("queue");
        q.put(1).expect("put");
        let mut p = mp::Process::new(take_later, (q.clone(), 100));
        p.start().expect("start");
        let started = std::time::Instant::now();
        smol::block_on(q.put_async(2)).expect("put_async");
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "it waited for room"
        );
        p.join_timeout(Duration::from_secs(10)).expect("join");
        assert_eq!(p.take_result().expect("took"), 1);
        assert_eq!(q.get_timeout(Duration::from_secs(10)).expect("get"), 2);
        let jq: mp::JoinableQueue<u64> = mp::JoinableQueue::new().expect("joinable");
        smol::block_on(jq.put_async(5)).expect("put_async");
        assert_eq!(smol::block_on(jq.get_async()).expect("get_async"), 5);
        jq.task_done().expect("task_done");
        let sq: mp::SimpleQueue<u64> = mp::SimpleQueue::new().expect("simple");
        smol::block_on(sq.put_async(6)).expect("put_async");
        assert_eq!(smol::block_on(sq.get_async()).expect("get_async"), 6);
    });
}

/// The next item of a stream, awaited.
async fn next_of<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn imap_and_imap_unordered_are_streams() {
    within(LIMIT, || {
        let pool = mp::Pool::builder().processes(2).build().expect("pool");
        let ordered: Vec<u64> = tokio_current().block_on(async {
            let mut it = pool.imap_chunked(square, 0..500u64, 7);
            let mut got = Vec::new();
            while let Some(r) = next_of(&mut it).await {
                got.push(r.expect("item"));
            }
            got
        });
        assert_eq!(ordered, (0..500).map(square).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = smol::block_on(async {
            let mut it = pool.imap_unordered(square, 0..300u64);
            let mut got = Vec::new();
            while let Some(r) = next_of(&mut it).await {
                got.push(r.expect("item"));
            }
            got
        });
        unordered.sort_unstable();
        assert_eq!(unordered, (0..300).map(square).collect::<Vec<_>>());
    });
}

#[test]
fn an_executor_with_cancel_on_drop_cancels_a_task_whose_wait_is_dropped() {
    within(LIMIT, || {
        let ex = mp::Executor::builder()
            .workers(1)
            .cancel_running(true)
            .cancel_on_drop(true)
            .build()
            .expect("executor");
        let slow = ex.submit(nap, (5_000,)).expect("submit");
        let handle = slow.clone();
        let waited = smol::block_on(smol::future::or(async { Some(slow.await) }, async {
            smol::Timer::after(Duration::from_millis(100)).await;
            None
        }));
        assert!(waited.is_none());
        // The dropped wait cancelled it (its worker killed, as
        // `cancel_running` allows), long before its 5 s.
        assert!(matches!(
            handle.result_timeout(Duration::from_secs(3)),
            Err(mp::Error::Cancelled)
        ));
        // Without the option, the task runs on.
        let ex = mp::Executor::builder()
            .workers(1)
            .build()
            .expect("executor");
        let quick = ex.submit(square, (6,)).expect("submit");
        let handle = quick.clone();
        drop(quick.into_future());
        assert_eq!(
            handle.result_timeout(Duration::from_secs(10)).expect("ran"),
            36
        );
    });
}

/// Sets `event` after `ms`.
fn set_later(event: mp::Event, ms: u64) {
    nap(ms);
    event.set();
}

#[test]
fn event_wait_async_wakes_every_waiter_when_another_process_sets_it() {
    within(LIMIT, || {
        let event = mp::Event::new().expect("event");
        let mut p = mp::Process::new(set_later, (event.clone(), 100));
        p.start().expect("start");
        let rt = tokio_multi();
        rt.block_on(async {
            // A timeout first: the event is not set yet.
            tokio::select! {
                () = event.wait_async() => panic!("set too early"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            let waiters: Vec<_> = (0..100)
                .map(|_| {
                    let e = event.clone();
                    tokio::spawn(async move { e.wait_async().await })
                })
                .collect();
            for w in waiters {
                w.await.expect("waiter");
            }
        });
        assert!(event.is_set());
        p.join_timeout(Duration::from_secs(10)).expect("join");
        // Set already: at once, under smol too.
        smol::block_on(event.wait_async());
    });
}

#[test]
fn as_completed_is_a_stream_in_completion_order() {
    within(LIMIT, || {
        let ex = mp::Executor::builder()
            .workers(2)
            .build()
            .expect("executor");
        // The longer nap first: it ends last.
        let futures = vec![
            ex.submit(nap, (300,)).expect("submit"),
            ex.submit(nap, (10,)).expect("submit"),
        ];
        let order: Vec<usize> = tokio_current().block_on(async {
            let mut done = mp::futures::as_completed(&futures, None);
            let mut order = Vec::new();
            while let Some(f) = next_of(&mut done).await {
                let f = f.expect("ended");
                order.push(
                    futures
                        .iter()
                        .position(|g| std::ptr::eq(g, f))
                        .expect("one of them"),
                );
            }
            order
        });
        assert_eq!(order, vec![1, 0]);
    });
}

/// Takes one unit, holds it `ms`, gives it back.
fn hold_unit(sem: mp::Semaphore, ms: u64) {
    let guard = sem.acquire();
    nap(ms);
    drop(guard);
}

#[test]
fn semaphore_acquire_async_waits_for_a_release_in_another_process() {
    within(LIMIT, || {
        let sem = mp::Semaphore::new(1).expect("semaphore");
        let mut p = mp::Process::new(hold_unit, (sem.clone(), 150));
        p.start().expect("start");
        // Until the child holds it.
        assert!(multiproc_testkit::wait_until(
            Duration::from_secs(10),
            || sem.value() == 0
        ));
        let rt = tokio_multi();
        let started = std::time::Instant::now();
        rt.block_on(async {
            // 20 tasks take the one unit in turn.
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let s = sem.clone();
                    tokio::spawn(async move {
                        let g = s.acquire_async().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        drop(g);
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "they waited for the child"
        );
        assert_eq!(sem.value(), 1, "every unit given back");
        p.join_timeout(Duration::from_secs(10)).expect("join");
        let bounded = mp::BoundedSemaphore::new(1).expect("bounded");
        drop(smol::block_on(bounded.acquire_async()));
        assert_eq!(bounded.value(), 1);
    });
}

/// A result of `n` bytes, larger than the pipe the outcome travels by.
fn big_result(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

#[test]
fn join_async_reads_a_large_result_while_the_child_writes_it() {
    within(LIMIT, || {
        let mut p = mp::Process::new(big_result, (10 << 20,));
        p.start().expect("start");
        let started = std::time::Instant::now();
        tokio_current()
            .block_on(p.join_async())
            .expect("join_async");
        // A wait on the pidfd alone would read 64 KiB a slice: minutes.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        let got = p.take_result().expect("result");
        assert_eq!(got.len(), 10 << 20);
    });
}

#[test]
fn put_async_into_a_full_ring_yields_to_the_consumer_task() {
    within(LIMIT, || {
        // An unbounded queue of a tiny ring: `full()` is never true, the
        // ring is. Producer and consumer are tasks of one thread.
        let q: mp::Queue<Vec<u8>> = mp::Queue::with_capacity(0, 4096).expect("queue");
        let got = tokio_current().block_on(async {
            let producer = {
                let q = q.clone();
                tokio::spawn(async move {
                    for i in 0..200u8 {
                        q.put_async(vec![i; 500]).await.expect("put_async");
                    }
                })
            };
            let mut got = Vec::new();
            for _ in 0..200 {
                got.push(q.get_async().await.expect("get_async")[0]);
            }
            producer.await.expect("producer");
            got
        });
        assert_eq!(got, (0..200u8).collect::<Vec<_>>());
    });
}

/// Waits at `barrier` (blocking), after `ms`.
fn meet(barrier: mp::Barrier, ms: u64) -> u32 {
    nap(ms);
    barrier.wait().expect("wait")
}

#[test]
fn barrier_wait_async_meets_processes_that_wait_blocking() {
    within(LIMIT, || {
        let barrier = mp::Barrier::new(4).expect("barrier");
        let mut ps: Vec<_> = (0..3)
            .map(|k| mp::Process::new(meet, (barrier.clone(), 50 * k)))
            .collect();
        for p in &mut ps {
            p.start().expect("start");
        }
        let mine = tokio_current()
            .block_on(barrier.wait_async())
            .expect("wait_async");
        let mut indexes = vec![mine];
        for p in &mut ps {
            p.join_timeout(Duration::from_secs(10)).expect("join");
            indexes.push(p.take_result().expect("index"));
        }
        indexes.sort_unstable();
        assert_eq!(indexes, vec![0, 1, 2, 3], "each arrival its own index");
        // A timeout breaks the round for everyone, async too.
        let lonely = mp::Barrier::new(2)
            .expect("barrier")
            .with_timeout(Duration::from_millis(50));
        assert!(matches!(
            smol::block_on(lonely.wait_async()),
            Err(mp::Error::BrokenBarrier)
        ));
        assert!(lonely.is_broken());
    });
}

/// After `ms`, receives `n` messages, giving the first byte of each.
fn read_later(conn: mp::Connection, ms: u64, n: usize) -> Vec<u8> {
    nap(ms);
    (0..n)
        .map(|_| {
            assert!(conn.poll(Some(Duration::from_secs(10))).expect("poll"));
            conn.recv_bytes().expect("recv")[0]
        })
        .collect()
}

#[test]
fn send_async_waits_for_room_without_blocking_the_runtime_thread() {
    within(LIMIT, || {
        let (mine, theirs) = mp::Pipe::with_capacity(4096).expect("pipe");
        let mut p = mp::Process::new(read_later, (theirs, 100, 200));
        p.start().expect("start");
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let started = std::time::Instant::now();
        tokio_current().block_on(async {
            // A task of the same thread ticks while the sends wait.
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            };
            for i in 0..200u8 {
                mine.send_bytes_async(&[i; 500])
                    .await
                    .expect("send_bytes_async");
            }
            ticker.abort();
        });
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "it waited for room"
        );
        let ticks = ticks.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ticks >= 5,
            "the runtime's thread went on while it waited: {ticks} ticks"
        );
        p.join_timeout(Duration::from_secs(10)).expect("join");
        assert_eq!(
            p.take_result().expect("result"),
            (0..200u8).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_dropped_send_async_sends_nothing_and_a_gone_reader_is_closed() {
    within(LIMIT, || {
        let (mine, theirs) = mp::Pipe::with_capacity(4096).expect("pipe");
        let full = smol::block_on(async {
            // Fill the ring: the first send that does not finish at once
            // loses to the timer and is dropped.
            for i in 0..100u8 {
                let sent = smol::future::or(
                    async { Some(mine.send_bytes_async(&[i; 500]).await) },
                    async {
                        smol::Timer::after(Duration::from_millis(50)).await;
                        None
                    },
                )
                .await;
                match sent {
                    Some(done) => done.expect("send_async"),
                    None => return i,
                }
            }
            panic!("a 4 KiB ring took 100 messages of 500 bytes");
        });
        assert!(full > 0);
        let mut p = mp::Process::new(read_later, (theirs.clone(), 0, usize::from(full) + 1));
        p.start().expect("start");
        // Sent after the dropped one, and received right after the ones
        // before it.
        smol::block_on(mine.send_bytes_async(&[200u8; 500])).expect("send_async");
        p.join_timeout(Duration::from_secs(10)).expect("join");
        let mut want: Vec<u8> = (0..full).collect();
        want.push(200);
        assert_eq!(p.take_result().expect("result"), want);
        // The reader's end is dropped everywhere: a send waiting for room
        // (in a ring filled again) ends `Closed`.
        for _ in 0..usize::from(full) {
            mine.send_bytes(&[0u8; 500]).expect("send");
        }
        let waiting = std::thread::spawn({
            let mine = mine.clone();
            move || smol::block_on(mine.send_bytes_async(&[1u8; 500]))
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(theirs);
        let end = waiting.join().expect("thread");
        assert!(matches!(end, Err(mp::Error::Closed)), "{end:?}");
    });
}

/// Takes `lock`, says so, holds it `ms`, then adds `n` to `total` under it
/// one by one.
fn hold_then_add(lock: mp::Lock, held: mp::Event, total: mp::Value<u64>, ms: u64, n: u64) {
    {
        let _g = lock.acquire().expect("acquire");
        held.set();
        nap(ms);
    }
    for _ in 0..n {
        let _g = lock.acquire().expect("acquire");
        total.set(total.get() + 1);
    }
}

#[test]
fn lock_acquire_async_excludes_tasks_and_a_process_and_waits_for_its_holder() {
    within(LIMIT, || {
        let lock = mp::Lock::new().expect("lock");
        let held = mp::Event::new().expect("event");
        let total = mp::Value::new(0u64).expect("value");
        let mut p = mp::Process::new(
            hold_then_add,
            (lock.clone(), held.clone(), total.clone(), 150, 200),
        );
        p.start().expect("start");
        assert!(held.wait_timeout(Duration::from_secs(10)));
        let started = std::time::Instant::now();
        let first = tokio_multi().block_on(async {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let (lock, total) = (lock.clone(), total.clone());
                    tokio::spawn(async move {
                        let mut first = None;
                        for _ in 0..10 {
                            let _g = lock.acquire_async().await.expect("acquire_async");
                            first.get_or_insert_with(std::time::Instant::now);
                            // A read and a write with an await between:
                            // only the lock keeps them together.
                            let v = total.get();
                            tokio::task::yield_now().await;
                            total.set(v + 1);
                        }
                        first.expect("acquired")
                    })
                })
                .collect();
            let mut first = Vec::new();
            for t in tasks {
                first.push(t.await.expect("task"));
            }
            first.into_iter().min().expect("tasks")
        });
        p.join_timeout(Duration::from_secs(10)).expect("join");
        assert_eq!(p.exitcode(), Some(0));
        assert!(
            first.duration_since(started) >= Duration::from_millis(100),
            "no task took the lock while the child held it"
        );
        assert_eq!(total.get(), 200 + 20 * 10);
        assert_eq!(reactor_threads(), 1);
    });
}

/// Takes `lock` and ends without releasing it.
fn die_holding(lock: mp::Lock) {
    std::mem::forget(lock.acquire().expect("acquire"));
}

#[test]
fn lock_acquire_async_takes_over_from_a_holder_that_died_and_works_without_a_bell() {
    within(LIMIT, || {
        let lock = mp::Lock::new().expect("lock");
        let mut p = mp::Process::new(die_holding, (lock.clone(),));
        p.start().expect("start");
        p.join_timeout(Duration::from_secs(10)).expect("join");
        assert!(lock.is_locked());
        let got = smol::block_on(lock.acquire_async());
        assert!(
            matches!(got, Err(mp::AcquireError::OwnerDied(_))),
            "{got:?}"
        );
        drop(got);
        assert!(!lock.is_locked());
        // A lock without a bell looks again in slices.
        let plain = mp::Lock::without_bell().expect("lock");
        let held = mp::Event::new().expect("event");
        let total = mp::Value::new(0u64).expect("value");
        let mut p = mp::Process::new(
            hold_then_add,
            (plain.clone(), held.clone(), total.clone(), 100, 0),
        );
        p.start().expect("start");
        assert!(held.wait_timeout(Duration::from_secs(10)));
        let started = std::time::Instant::now();
        let g = tokio_current()
            .block_on(plain.acquire_async())
            .expect("acquire_async");
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "it waited for the holder"
        );
        drop(g);
        p.join_timeout(Duration::from_secs(10)).expect("join");
    });
}

/// Takes `lock` (a reentrant one), says so, and holds it `ms`.
fn hold_rlock(lock: mp::RLock, held: mp::Event, ms: u64) {
    let _g = lock.acquire().expect("acquire");
    held.set();
    nap(ms);
}

#[test]
fn rlock_acquire_async_waits_for_another_process_and_nests() {
    within(LIMIT, || {
        let lock = mp::RLock::new().expect("rlock");
        let held = mp::Event::new().expect("event");
        let mut p = mp::Process::new(hold_rlock, (lock.clone(), held.clone(), 100));
        p.start().expect("start");
        assert!(held.wait_timeout(Duration::from_secs(10)));
        let started = std::time::Instant::now();
        tokio_current().block_on(async {
            let outer = lock.acquire_async().await.expect("acquire_async");
            assert!(started.elapsed() >= Duration::from_millis(50), "it waited");
            let inner = lock.acquire_async().await.expect("again");
            assert_eq!(lock.count(), 2);
            drop(inner);
            drop(outer);
        });
        assert_eq!(lock.count(), 0);
        p.join_timeout(Duration::from_secs(10)).expect("join");
    });
}

/// After `ms`, sets `flag` to 1 under the condition and wakes everyone.
fn notify_later(cond: mp::Condition, flag: mp::Value<u32>, ms: u64) {
    nap(ms);
    let g = cond.acquire().expect("acquire");
    flag.set(1);
    g.notify_all();
}

#[test]
fn condition_wait_async_wakes_tasks_notified_by_another_process() {
    within(LIMIT, || {
        let cond = mp::Condition::new().expect("condition");
        let flag = mp::Value::new(0u32).expect("value");
        let mut p = mp::Process::new(notify_later, (cond.clone(), flag.clone(), 150));
        p.start().expect("start");
        let woken = tokio_current().block_on(async {
            let tasks: Vec<_> = (0..10)
                .map(|_| {
                    let (cond, flag) = (cond.clone(), flag.clone());
                    tokio::task::spawn(async move {
                        let mut g = cond.acquire_async().await.expect("acquire_async");
                        while flag.get() == 0 {
                            g.wait_async().await;
                        }
                        // The guard holds the lock again.
                        assert!(matches!(
                            cond.try_acquire(),
                            Err(mp::AcquireError::WouldBlock)
                        ));
                        1u32
                    })
                })
                .collect();
            let mut woken = 0;
            for t in tasks {
                woken += t.await.expect("task");
            }
            woken
        });
        assert_eq!(woken, 10);
        p.join_timeout(Duration::from_secs(10)).expect("join");
        // A wait that loses a select still leaves the guard holding the
        // lock, and the waiter counted out.
        tokio_current().block_on(async {
            let mut g = cond.acquire_async().await.expect("acquire_async");
            tokio::select! {
                () = g.wait_async() => panic!("nobody notified"),
                () = tokio::time::sleep(Duration::from_millis(30)) => {}
            }
            assert!(matches!(
                cond.try_acquire(),
                Err(mp::AcquireError::WouldBlock)
            ));
            assert_eq!(cond.waiting(), 0);
            drop(g);
        });
        assert!(cond.try_acquire().is_ok());
    });
}

/// After `ms`, puts `v` on a managed queue.
fn put_later_managed(q: mp::QueueProxy<u64>, ms: u64, v: u64) {
    nap(ms);
    q.put(v).expect("put");
}

/// After `ms`, sets a managed event.
fn set_later_managed(e: mp::EventProxy, ms: u64) {
    nap(ms);
    e.set().expect("set");
}

fn served_manager() -> mp::Manager {
    mp::Manager::builder()
        .serve_on("127.0.0.1:0".parse().expect("address"), b"async key")
        .start()
        .expect("manager")
}

/// A queue and a lock of a served manager, with proxies of them through
/// a session over TCP.
struct Managed {
    m: mp::Manager,
    q: mp::QueueProxy<u64>,
    lock: mp::LockProxy,
    rq: mp::QueueProxy<u64>,
    rlock: mp::LockProxy,
}

fn managed_queue_and_lock() -> Managed {
    let m = served_manager();
    let q = m.queue::<u64>().expect("queue");
    let lock = m.lock().expect("lock");
    m.publish("q", &q).expect("publish");
    m.publish("lock", &lock).expect("publish");
    let remote = mp::Manager::connect(m.address().expect("served"), b"async key").expect("connect");
    let rq = remote.lookup("q").expect("lookup");
    let rlock = remote.lookup("lock").expect("lookup");
    Managed {
        m,
        q,
        lock,
        rq,
        rlock,
    }
}

#[test]
fn manager_proxies_are_awaited_through_a_pipe_and_over_tcp() {
    within(LIMIT, || {
        let Managed {
            m,
            q,
            lock,
            rq,
            rlock,
        } = managed_queue_and_lock();
        let e = m.event().expect("event");
        let mut ps = vec![
            mp::Process::new(put_later_managed, (q.clone(), 100, 1)),
            mp::Process::new(put_later_managed, (q.clone(), 150, 2)),
        ];
        let mut setter = mp::Process::new(set_later_managed, (e.clone(), 100));
        for p in &mut ps {
            p.start().expect("start");
        }
        setter.start().expect("start");
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let got = tokio_current().block_on(async {
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            };
            // One item through this process's pipe, one over TCP, the
            // event through the pipe, all awaited together.
            let (a, b, set) = tokio::join!(q.get_async(), rq.get_async(), e.wait_async());
            set.expect("wait_async");
            // A lock taken over TCP holds off the one through the pipe.
            let held = rlock.acquire_async().await.expect("acquire_async");
            let waiting = tokio::spawn({
                let lock = lock.clone();
                async move {
                    let started = std::time::Instant::now();
                    let g = lock.acquire_async().await.expect("acquire_async");
                    g.release().expect("release");
                    started.elapsed()
                }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            held.release().expect("release");
            let waited = waiting.await.expect("task");
            ticker.abort();
            (a.expect("get_async"), b.expect("get_async"), waited)
        });
        let mut items = vec![got.0, got.1];
        items.sort_unstable();
        assert_eq!(items, vec![1, 2]);
        assert!(
            got.2 >= Duration::from_millis(40),
            "the lock was held: {:?}",
            got.2
        );
        let ticks = ticks.load(std::sync::atomic::Ordering::SeqCst);
        assert!(ticks >= 10, "the runtime's thread went on: {ticks} ticks");
        for p in ps.iter_mut().chain([&mut setter]) {
            p.join_timeout(Duration::from_secs(10)).expect("join");
            assert_eq!(p.exitcode(), Some(0));
        }
    });
}

#[test]
fn a_dropped_get_async_on_a_managed_queue_loses_nothing() {
    within(LIMIT, || {
        let m = served_manager();
        let q = m.queue::<u64>().expect("queue");
        m.publish("q", &q).expect("publish");
        let remote =
            mp::Manager::connect(m.address().expect("served"), b"async key").expect("connect");
        let rq: mp::QueueProxy<u64> = remote.lookup("q").expect("lookup");
        for (round, waiter) in [&q, &rq].into_iter().enumerate() {
            for k in 0..5u64 {
                tokio_current().block_on(async {
                    tokio::select! {
                        got = waiter.get_async() => panic!("nothing was put: {got:?}"),
                        () = tokio::time::sleep(Duration::from_millis(30)) => {}
                    }
                });
                // Put at once, while the manager may still wait for the
                // dropped call: the item must not go to it.
                let base = (round as u64 * 5 + k) * 10;
                for i in 0..10 {
                    q.put(base + i).expect("put");
                }
                let mut got: Vec<u64> = (0..10)
                    .map(|_| q.get_timeout(Duration::from_secs(10)).expect("every item"))
                    .collect();
                // An item the dropped call took goes back to the front,
                // after any that were got meanwhile.
                got.sort_unstable();
                assert_eq!(got, (base..base + 10).collect::<Vec<_>>());
            }
        }
        assert_eq!(q.qsize().expect("qsize"), 0);
    });
}

#[test]
fn a_managed_call_dropped_with_its_reply_on_the_way_gives_back_what_it_took() {
    within(LIMIT, || {
        let Managed {
            m: _m,
            q,
            lock,
            rq,
            rlock,
        } = managed_queue_and_lock();
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        for (round, waiter) in [&q, &rq].into_iter().enumerate() {
            for k in 0..3u64 {
                let v = round as u64 * 10 + k;
                let mut get = Box::pin(waiter.get_async());
                // Polled once: the request is out and the manager waits.
                assert!(get.as_mut().poll(&mut cx).is_pending());
                nap(30);
                // The manager hands the item to the waiting call; its reply
                // is on the way when the future is dropped unread.
                q.put(v).expect("put");
                nap(100);
                drop(get);
                assert_eq!(
                    q.get_timeout(Duration::from_secs(10)).expect("given back"),
                    v
                );
            }
        }
        for waiter in [&lock, &rlock] {
            let held = lock.acquire().expect("acquire");
            let mut acquire = Box::pin(waiter.acquire_async());
            assert!(acquire.as_mut().poll(&mut cx).is_pending());
            nap(30);
            // Granted to the waiting call, which is dropped unread.
            drop(held);
            nap(100);
            drop(acquire);
            let again = lock
                .acquire_timeout(Duration::from_secs(10))
                .expect("the grant was let go");
            drop(again);
        }
    });
}

/// In a child forked from a parent whose other thread waits async: an
/// async wait of its own, which needs a reactor of its own. Its count of
/// reactor threads.
fn sleep_async_in_a_forked_child() -> usize {
    futures::executor::block_on(mp::sleep(Duration::from_millis(1)));
    reactor_threads()
}

#[test]
fn a_child_forked_while_another_thread_waits_async_gets_a_reactor_of_its_own() {
    within(LIMIT, || {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        // A pipe nothing is written to.
        let (never, _writer) = std::io::pipe().expect("pipe");
        let hammer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let waker = futures::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                // Registers and leaves, again and again: the reactor's
                // locks are taken all the time a child may be forked.
                while !stop.load(Ordering::Relaxed) {
                    let fd = std::os::fd::AsFd::as_fd(&never);
                    let mut wait = Box::pin(mp::readable(fd, None));
                    assert!(std::future::Future::poll(wait.as_mut(), &mut cx).is_pending());
                }
            })
        };
        let ctx = mp::get_context(mp::StartMethod::Fork);
        for round in 0..200 {
            let mut p = ctx.process(sleep_async_in_a_forked_child, ());
            p.start().expect("start");
            let joined = p.join_timeout(Duration::from_secs(5));
            if joined.is_err() || p.exitcode().is_none() {
                let _ = p.kill();
                panic!("round {round}: the forked child hung in its first async wait");
            }
            assert_eq!(p.take_result().expect("result"), 1, "round {round}");
        }
        stop.store(true, Ordering::Relaxed);
        hammer.join().expect("hammer");
    });
}
