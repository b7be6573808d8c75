//! A batch of jobs on an executor, some of which hang: each job has a time
//! limit, and a hung one is stopped by killing its worker (which is
//! replaced), while the others go on. The results are gathered with
//! `as_completed` as they come, under a progress bar.
//!
//! `cargo run --release --example executor`

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use multiproc as mp;

const JOBS: u64 = 24;
const LIMIT: Duration = Duration::from_millis(500);

/// Sums the digits of the numbers below `n`; job numbers divisible by 7
/// "hang" (a loop that never ends, as a stuck call would).
fn job(number: u64, n: u64) -> u64 {
    if number.is_multiple_of(7) {
        let mut spins = 0u64;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
    (0..n)
        .map(|mut k| {
            let mut s = 0;
            while k > 0 {
                s += k % 10;
                k /= 10;
            }
            s
        })
        .sum()
}

pub(crate) fn main() -> mp::Result<()> {
    let ex = mp::Executor::builder().task_time_limit(LIMIT).build()?;
    let started = Instant::now();
    let futures = (0..JOBS)
        .map(|i| ex.submit(job, (i, 2_000_000 + i * 100_000)))
        .collect::<mp::Result<Vec<_>>>()?;
    let bar = ProgressBar::new(JOBS).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} jobs, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut finished, mut killed) = (0, 0);
    for f in mp::futures::as_completed(&futures, None) {
        match f?.result() {
            Ok(_) => finished += 1,
            Err(mp::Error::TaskTimedOut { .. }) => {
                killed += 1;
                bar.set_message(format!("{killed} hung, killed"));
            }
            Err(e) => return Err(e),
        }
        bar.inc(1);
    }
    bar.finish();
    println!(
        "{JOBS} jobs on {} workers in {:.2?}: {finished} finished, {killed} hung and were \
         killed after {LIMIT:?}, their workers replaced",
        ex.workers(),
        started.elapsed()
    );
    Ok(())
}
