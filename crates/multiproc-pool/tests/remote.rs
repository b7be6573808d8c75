//! The remote seam without MPI: a dispatcher thread that runs each job with
//! `run_task` in this process, as a worker elsewhere would, behind the
//! pool's own calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc as mp;
use multiproc_pool::remote::{Next, RemoteJobs, run_task};

multiproc::test_setup!();

fn square(n: u64) -> u64 {
    n * n
}

fn fragile(n: u64) -> u64 {
    assert!(n != 3, "three");
    n
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn first(a: mp::RawArray<u64>) -> u64 {
    a.get(0)
}

/// A pool of `n` "workers" that are one thread of this process: what
/// `multiproc-mpi` does, with a function call in place of MPI.
fn in_process_pool(n: usize) -> mp::Pool {
    let ended = Arc::new(AtomicBool::new(false));
    let end = ended.clone();
    mp::Pool::remote(
        n,
        move |jobs: RemoteJobs| {
            Ok(std::thread::spawn(move || {
                loop {
                    match jobs.next_timeout(Duration::from_millis(20)) {
                        Next::Job(mut job) => {
                            // A completion's callback runs where it is
                            // dropped: here.
                            if ended.load(Ordering::Acquire) {
                                drop(job.fail(mp::Error::Closed));
                                continue;
                            }
                            let done = match job.encode(Vec::new()) {
                                Ok(task) => job.finish(run_task(&task, Vec::new())),
                                Err(e) => job.fail(e),
                            };
                            if let Some(completion) = done {
                                completion.run();
                            }
                        }
                        Next::Empty => {}
                        Next::Closed => return,
                    }
                }
            }))
        },
        move || end.store(true, Ordering::Release),
    )
    .expect("a remote pool")
}

#[test]
fn the_pools_calls_run_through_the_seam() {
    multiproc_testkit::within(Duration::from_secs(60), || {
        let pool = in_process_pool(2);
        assert_eq!(pool.processes(), 2);
        assert!(pool.worker_pids().is_empty());
        assert_eq!(
            pool.map(square, 0..10_000u64).expect("map"),
            (0..10_000).map(square).collect::<Vec<_>>()
        );
        let lazy: Vec<u64> = pool
            .imap_chunked(square, 0..100u64, 7)
            .collect::<mp::Result<_>>()
            .expect("imap");
        assert_eq!(lazy, (0..100).map(square).collect::<Vec<_>>());
        assert_eq!(pool.apply(square, (9,)).expect("apply"), 81);
        let items: Vec<mp::Result<u64>> = pool.imap(fragile, 0..6u64).collect();
        assert!(matches!(items[3], Err(mp::Error::TaskPanicked { .. })));
        assert_eq!(items[4].as_ref().ok(), Some(&4));
    });
}

#[test]
fn a_descriptor_cannot_go_to_a_remote_worker() {
    multiproc_testkit::within(Duration::from_secs(60), || {
        let pool = in_process_pool(1);
        let array = mp::RawArray::<u64>::new(4).expect("array");
        match pool.apply(first, (array,)) {
            Err(mp::Error::Encode(why)) => assert!(why.contains("another machine"), "{why}"),
            other => panic!("expected an encode error, got {other:?}"),
        }
    });
}

#[test]
fn close_lets_work_finish_and_terminate_fails_it() {
    multiproc_testkit::within(Duration::from_secs(60), || {
        let pool = in_process_pool(1);
        let pending = pool.map_async(square, 0..100u64).expect("map_async");
        pool.close();
        assert!(matches!(pool.apply(square, (1,)), Err(mp::Error::Closed)));
        pool.join().expect("join");
        assert_eq!(pending.get().expect("ran").len(), 100);

        // Fifty tasks of 20 ms queued: terminate fails what is left.
        let pool = in_process_pool(1);
        let pending = pool
            .map_async_chunked(nap, vec![20u64; 50], 1)
            .expect("map_async");
        std::thread::sleep(Duration::from_millis(50));
        let started = std::time::Instant::now();
        pool.terminate();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(matches!(pending.get(), Err(mp::Error::Closed)));
        assert!(matches!(pool.apply(square, (1,)), Err(mp::Error::Closed)));
        assert!(matches!(
            mp::Pool::remote(0, |_| unreachable!(), || {}),
            Err(mp::Error::InvalidArgument(_))
        ));
    });
}
