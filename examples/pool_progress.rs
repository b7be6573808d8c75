//! Counting primes below 3 million in ranges, on a process pool, with a
//! progress bar: `imap` yields each range's count as soon as it is in order,
//! and indicatif's `ProgressIterator` draws the bar over it.
//!
//! `cargo run --release --example pool_progress`

use indicatif::{ProgressBar, ProgressIterator, ProgressStyle};
use multiproc as mp;

const LIMIT: u64 = 3_000_000;
const STEP: u64 = 50_000;

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The primes in `[from, from + STEP)`.
fn count_primes(from: u64) -> u64 {
    (from..from + STEP).filter(|&n| is_prime(n)).count() as u64
}

pub(crate) fn main() -> mp::Result<()> {
    let pool = mp::Pool::new()?;
    let starts: Vec<u64> = (0..LIMIT).step_by(STEP as usize).collect();
    let started = std::time::Instant::now();
    let bar = ProgressBar::new(starts.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ranges, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut total = 0;
    for count in pool.imap(count_primes, starts).progress_with(bar) {
        total += count?;
    }
    println!(
        "{total} primes below {LIMIT}, counted by {} worker processes in {:.2?}",
        pool.processes(),
        started.elapsed()
    );
    Ok(())
}
