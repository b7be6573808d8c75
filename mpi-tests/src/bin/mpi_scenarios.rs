//! One MPI pool program per scenario, as a user writes it: `mpirun -n N
//! mpi_scenarios <scenario>`. Rank 0 prints `ok <scenario> ...` when every
//! check held, and exits 1 (printing why) when one did not.

use std::collections::BTreeSet;
use std::time::Duration;

use multiproc as mp;

fn square(n: u64) -> u64 {
    n * n
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Busy for `n` milliseconds, then says which process did it.
fn busy(n: u64) -> (u64, u32) {
    let end = std::time::Instant::now() + Duration::from_millis(n);
    let mut x = n;
    while std::time::Instant::now() < end {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::hint::black_box(x);
    }
    (n, std::process::id())
}

fn fragile(n: u64) -> u64 {
    if n == 7 {
        panic!("seven is unlucky");
    }
    n + 1
}

fn fatal(n: u64) -> u64 {
    if n == 3 {
        std::process::abort();
    }
    n
}

fn leaves(n: u64) -> u64 {
    if n == 3 {
        std::process::exit(3);
    }
    n
}

/// A task that uses its node's cores with a local pool of processes.
fn local_sum(n: u64) -> u64 {
    let pool = mp::Pool::builder()
        .processes(2)
        .build()
        .expect("a local pool in a rank");
    pool.map(square, 0..n).expect("the local map").iter().sum()
}

fn first(a: mp::RawArray<u64>) -> u64 {
    a.get(0)
}

fn make_array(n: usize) -> mp::RawArray<u64> {
    mp::RawArray::new(n).expect("an array")
}

fn check(ok: bool, what: &str) -> mp::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(mp::Error::InvalidArgument(format!("check failed: {what}")))
    }
}

fn main() -> mp::Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    let pool = mp::mpi::Pool::world()?;
    let workers = pool.processes();
    check(
        workers == pool.ranks() - 1,
        "one worker per rank after the first",
    )?;
    match scenario.as_str() {
        "map" => {
            let n = 100_000;
            let got = pool.map(square, 0..n)?;
            let want: Vec<u64> = (0..n).map(square).collect();
            check(got == want, "map equals the serial result")?;
            let chunked = pool.map_chunked(square, 0..1000u64, 7)?;
            check(
                chunked == want[..1000],
                "map_chunked equals the serial result",
            )?;
            println!("ok map {n} items on {workers} workers");
        }
        "calls" => {
            let pairs: Vec<(u64, u64)> = (0..500).map(|i| (i, 2 * i)).collect();
            check(
                pool.starmap(add, pairs.clone())?
                    == pairs.iter().map(|(a, b)| a + b).collect::<Vec<_>>(),
                "starmap",
            )?;
            check(pool.apply(add, (40, 2))? == 42, "apply")?;
            let later = pool.apply_async(square, (12,))?;
            let many = pool.map_async(square, 0..100u64)?;
            check(
                later.get_timeout(Duration::from_secs(30))? == 144,
                "apply_async",
            )?;
            check(
                many.get_timeout(Duration::from_secs(30))?
                    == (0..100).map(square).collect::<Vec<_>>(),
                "map_async",
            )?;
            println!("ok calls");
        }
        "imap" => {
            let got: Vec<u64> = pool
                .imap_chunked(square, 0..10_000u64, 13)
                .collect::<mp::Result<_>>()?;
            check(
                got == (0..10_000).map(square).collect::<Vec<_>>(),
                "imap in input order",
            )?;
            let got: Vec<u64> = pool.imap(square, 0..1000u64).collect::<mp::Result<_>>()?;
            check(
                got == (0..1000).map(square).collect::<Vec<_>>(),
                "imap, chunks of one",
            )?;
            println!("ok imap");
        }
        "unordered" => {
            let mut got: Vec<u64> = pool
                .imap_unordered_chunked(square, 0..10_000u64, 13)
                .collect::<mp::Result<_>>()?;
            got.sort_unstable();
            check(
                got == (0..10_000).map(square).collect::<Vec<_>>(),
                "every result, once",
            )?;
            println!("ok unordered");
        }
        "uneven" => {
            // One long task, many short ones: the long one's worker takes
            // no more while the others drain the rest.
            let lengths: Vec<u64> = std::iter::once(400)
                .chain(std::iter::repeat_n(5, 60))
                .collect();
            let done = pool.map_chunked(busy, lengths.clone(), 1)?;
            check(
                done.iter().map(|(n, _)| *n).eq(lengths.iter().copied()),
                "results in order",
            )?;
            let pids: BTreeSet<u32> = done.iter().map(|(_, pid)| *pid).collect();
            check(pids.len() == workers, "every worker ran some")?;
            check(!pids.contains(&std::process::id()), "rank 0 runs no task")?;
            let long_pid = done[0].1;
            let long_share = done.iter().filter(|(_, p)| *p == long_pid).count();
            check(long_share <= 2, "the busy worker took no more")?;
            println!(
                "ok uneven on {} workers, the long task's worker ran {long_share}",
                pids.len()
            );
        }
        "panic" => {
            let got: Vec<mp::Result<u64>> = pool.imap(fragile, 0..20u64).collect();
            for (i, r) in got.iter().enumerate() {
                match r {
                    Ok(v) => check(i != 7 && *v == i as u64 + 1, "the other items")?,
                    Err(mp::Error::TaskPanicked { message }) => {
                        check(i == 7 && message.contains("unlucky"), "item 7 panicked")?;
                    }
                    Err(e) => return Err(mp::Error::InvalidArgument(format!("item {i}: {e}"))),
                }
            }
            check(
                matches!(
                    pool.apply(fragile, (7,)),
                    Err(mp::Error::TaskPanicked { .. })
                ),
                "apply",
            )?;
            check(pool.apply(fragile, (8,))? == 9, "the worker goes on")?;
            println!("ok panic");
        }
        "local" => {
            let sums = pool.map_chunked(local_sum, vec![100u64; workers * 2], 1)?;
            let want: u64 = (0..100).map(square).sum();
            check(
                sums.iter().all(|s| *s == want),
                "a local pool inside each rank",
            )?;
            println!("ok local");
        }
        "close" => {
            let pending = pool.map_async(busy, vec![50u64; workers * 2])?;
            pool.close();
            check(
                matches!(pool.apply(square, (2,)), Err(mp::Error::Closed)),
                "closed",
            )?;
            pool.join()?;
            check(
                pending.get_timeout(Duration::from_secs(30))?.len() == workers * 2,
                "queued work ran",
            )?;
            println!("ok close");
        }
        "terminate" => {
            // Four rounds of 200 ms tasks queued; terminate waits only for
            // the round running.
            let pending = pool.map_async_chunked(busy, vec![200u64; workers * 4], 1)?;
            std::thread::sleep(Duration::from_millis(50));
            let started = std::time::Instant::now();
            pool.terminate();
            let took = started.elapsed();
            let got = pending.get_timeout(Duration::from_secs(30));
            check(matches!(got, Err(mp::Error::Closed)), "terminated")?;
            check(took < Duration::from_millis(500), "queued work was not run")?;
            println!("ok terminate in {took:?}");
        }
        "drop" => {
            let started = std::time::Instant::now();
            let pending = pool.map_async_chunked(busy, vec![200u64; workers * 4], 1)?;
            std::thread::sleep(Duration::from_millis(50));
            drop(pool);
            let got = pending.get_timeout(Duration::from_secs(30));
            check(matches!(got, Err(mp::Error::Closed)), "dropped")?;
            check(
                started.elapsed() < Duration::from_millis(600),
                "queued work was not run",
            )?;
            println!("ok drop");
            return Ok(());
        }
        "callback" => {
            // A callback that waits for another call of the pool: another
            // delivery thread brings that call's result.
            let (tx, rx) = std::sync::mpsc::channel();
            let second = pool.apply_async(busy, (100,))?;
            let first = pool.apply_async_with(
                square,
                (3,),
                move |r| {
                    let other = second.get_timeout(Duration::from_secs(20)).map(|(n, _)| n);
                    let _ = tx.send((r, other.ok()));
                },
                |e| eprintln!("failed: {e}"),
            )?;
            check(
                first.get_timeout(Duration::from_secs(30))? == 9,
                "the first result",
            )?;
            let got = rx.recv_timeout(Duration::from_secs(30)).ok();
            check(got == Some((9, Some(100))), "the callback saw both")?;
            println!("ok callback");
        }
        "fatal" => {
            let _ = pool.map_chunked(fatal, 0..8u64, 1);
            println!("a rank died and this went on");
        }
        "exit" => {
            let _ = pool.map_chunked(leaves, 0..8u64, 1);
            println!("a rank left and this went on");
        }
        "descriptor" => {
            let array = mp::RawArray::<u64>::new(4)?;
            match pool.apply(first, (array,)) {
                Err(mp::Error::Encode(why)) => check(why.contains("another machine"), "why")?,
                other => return Err(mp::Error::InvalidArgument(format!("got {other:?}"))),
            }
            match pool.apply(make_array, (4,)) {
                Err(mp::Error::Encode(why)) => check(why.contains("another machine"), "why")?,
                other => return Err(mp::Error::InvalidArgument(format!("got {other:?}"))),
            }
            check(pool.apply(square, (3,))? == 9, "the pool goes on")?;
            println!("ok descriptor");
        }
        "hosts" => {
            let hosts = pool.hosts();
            check(hosts.len() == pool.ranks(), "a host per rank")?;
            check(hosts.iter().all(|h| !h.is_empty()), "named hosts")?;
            println!("ok hosts: {} names for {} ranks", hosts.len(), pool.ranks());
        }
        other => {
            return Err(mp::Error::InvalidArgument(format!("no scenario {other:?}")));
        }
    }
    Ok(())
}
