//! Processes and a pool from a `#[tokio::main]` program.
//!
//! Starting a process and a whole `map` block the calling thread, so async
//! code runs them through `tokio::task::spawn_blocking`, which moves them
//! to tokio's blocking threads and gives back a future. (The waits have
//! async forms, `join_async`, `get_async`, `recv_async`, and pool results
//! are futures: see `async_pipeline.rs`.) Each child is a fresh
//! process of this program in which nothing of `main` ran (no runtime, no
//! threads), so it may build a tokio runtime of its own.
//!
//! `cargo run --release --example tokio_processes`

use std::sync::Arc;
use std::time::Duration;

use multiproc as mp;

/// Runs in a child: an async task of its own, on a runtime of its own.
fn fetch(id: u64) -> mp::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let answer = runtime.block_on(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        id * 10
    });
    Ok(format!(
        "{} (pid {}) answered {answer}",
        mp::current_process().name(),
        std::process::id()
    ))
}

fn collatz_steps(mut n: u64) -> u64 {
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

/// Starts a process, waits for it and takes its result: blocking work,
/// for `spawn_blocking`.
fn run_fetch(id: u64) -> mp::Result<String> {
    let mut p = mp::Process::new(fetch, (id,));
    p.start()?;
    p.join()?;
    p.take_result()
}

/// A task of this program that panicked, as an `mp::Error`.
fn joined<T>(r: Result<mp::Result<T>, tokio::task::JoinError>) -> mp::Result<T> {
    r.map_err(|e| mp::Error::TaskPanicked {
        message: e.to_string(),
    })?
}

#[tokio::main]
pub(crate) async fn main() -> mp::Result<()> {
    // Three processes at once, awaited together.
    let handles: Vec<_> = (1..=3)
        .map(|id| tokio::task::spawn_blocking(move || run_fetch(id)))
        .collect();
    for handle in handles {
        println!("{}", joined(handle.await)?);
    }

    // A pool, shared by async tasks; each map runs on a blocking thread.
    let pool = Arc::new(mp::Pool::builder().processes(2).build()?);
    let ranges = [(1u64, 10_000u64), (10_000, 20_000)];
    let mut handles = Vec::new();
    for (from, to) in ranges {
        let pool = Arc::clone(&pool);
        handles.push(tokio::task::spawn_blocking(move || {
            let steps = pool.map(collatz_steps, from..to)?;
            let (best, n) = steps
                .iter()
                .zip(from..)
                .max()
                .map_or((0, from), |(s, n)| (*s, n));
            Ok::<_, mp::Error>(format!(
                "longest Collatz chain in [{from}, {to}): {n} takes {best} steps"
            ))
        }));
    }
    for handle in handles {
        println!("{}", joined(handle.await)?);
    }
    Ok(())
}
