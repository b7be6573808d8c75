//! The async waits under tokio (multi-thread and current-thread) and
//! smol: children joined, connections received from, pool and executor
//! results awaited, with no thread per waiting future.

use std::future::IntoFuture;
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
            let tasks: Vec<_> = results
                .into_iter()
                .map(|r| tokio::spawn(r.into_future()))
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
