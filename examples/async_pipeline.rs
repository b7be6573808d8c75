//! An async pipeline on tokio: two producer processes put jobs on a
//! `Queue`; an async task takes them with `get_async`, hands each to a
//! `Pool` and awaits the results together; the producers are awaited with
//! `join_async`. No call blocks a runtime thread, and no `spawn_blocking`
//! is needed: one helper thread of this process wakes every waiting task.
//!
//! `cargo run --release --example async_pipeline`

use std::time::Duration;

use multiproc as mp;

const PER_PRODUCER: u64 = 20;

/// A producer process: puts its jobs, then a `None` to say it is done.
fn produce(jobs: mp::Queue<Option<u64>>, first: u64) {
    for n in first..first + PER_PRODUCER {
        if jobs.put(Some(n)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = jobs.put(None);
}

/// The work itself, on the pool: the number of steps of `n`'s Collatz
/// chain.
fn collatz_steps(mut n: u64) -> u64 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

#[tokio::main]
pub(crate) async fn main() -> mp::Result<()> {
    let jobs: mp::Queue<Option<u64>> = mp::Queue::new()?;
    let pool = mp::Pool::builder().processes(2).build()?;
    let mut producers = Vec::new();
    for first in [1_000_000, 2_000_000] {
        let mut p = mp::Process::new(produce, (jobs.clone(), first));
        p.start()?;
        producers.push(p);
    }

    // Take jobs as they come; each goes to the pool at once, and its
    // result is a future to await later.
    let mut pending = Vec::new();
    let mut done = 0;
    while done < producers.len() {
        tokio::select! {
            job = jobs.get_async() => match job? {
                Some(n) => pending.push((n, pool.apply_async(collatz_steps, (n,))?)),
                None => done += 1,
            },
            () = tokio::time::sleep(Duration::from_secs(10)) => {
                return Err(mp::Error::Timeout);
            }
        }
    }
    for p in &producers {
        p.join_async().await?;
    }

    // Await every result; the longest chain wins.
    let mut best = (0, 0);
    let count = pending.len();
    for (n, result) in pending {
        let steps = result.await?;
        best = best.max((steps, n));
    }
    println!(
        "{count} jobs from {} producer processes, run by a pool of {}: \
         the longest chain starts at {} ({} steps)",
        producers.len(),
        pool.processes(),
        best.1,
        best.0
    );
    assert_eq!(count as u64, 2 * PER_PRODUCER);
    Ok(())
}
