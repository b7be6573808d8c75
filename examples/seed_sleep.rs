//! Seed program 1: two processes sleep at the same time, so the whole run
//! takes about one sleep, not two.
//!
//! Python:
//! ```python
//! p1 = multiprocessing.Process(target=sleep, args=(5, ))
//! p2 = multiprocessing.Process(target=sleep, args=(5, ))
//! p1.start(); p2.start(); p1.join(); p2.join()
//! ```
//!
//! `cargo run --example seed_sleep [SECONDS]` (default 1 second).

use multiproc as mp;
use std::time::{Duration, Instant};

fn sleep(seconds: f64) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
}

pub(crate) fn main() -> mp::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let start = Instant::now();
    // creating processes
    let mut p1 = mp::Process::new(sleep, (seconds,));
    let mut p2 = mp::Process::new(sleep, (seconds,));

    // starting the processes
    p1.start()?;
    p2.start()?;

    // wait until both are finished
    p1.join()?;
    p2.join()?;

    let took = start.elapsed();
    println!(
        "two processes each slept {seconds} s; together they took {:.3} s",
        took.as_secs_f64()
    );
    Ok(())
}
