//! Seed program 7: a race on a shared balance, then the same with a lock.
//!
//! Without the lock, `withdraw` and `deposit` each read the balance and
//! write it back in two separately locked steps, as Python's
//! `balance.value = balance.value - 1` does, so updates get lost and the
//! final balance is usually not 100. With the lock held around both steps
//! it is always 100. Rust runs the 10,000 rounds in about a millisecond,
//! less than the time between two process starts, so both processes first
//! meet at a start line (a `Barrier`) to make them really overlap, as the
//! slower Python loops do.
//!
//! Python:
//! ```python
//! def withdraw(balance, lock):
//!     for _ in range(10000):
//!         lock.acquire()
//!         balance.value = balance.value - 1
//!         lock.release()
//! ```

use multiproc as mp;

const ROUNDS: u32 = 10_000;

/// Waits for the other process, so both loops run at the same time.
fn start_line(start: &mp::Barrier) {
    // A broken barrier only means the other process is gone: run anyway.
    let _ = start.wait();
}

// function to withdraw from account, racing
fn withdraw(balance: mp::Value<i32>, start: mp::Barrier) {
    start_line(&start);
    for _ in 0..ROUNDS {
        balance.set(balance.get() - 1);
    }
}

// function to deposit to account, racing
fn deposit(balance: mp::Value<i32>, start: mp::Barrier) {
    start_line(&start);
    for _ in 0..ROUNDS {
        balance.set(balance.get() + 1);
    }
}

// the same under a lock
fn withdraw_locked(balance: mp::Value<i32>, lock: mp::Lock, start: mp::Barrier) {
    start_line(&start);
    for _ in 0..ROUNDS {
        // Held until the end of the loop body: `lock.acquire()` is Ok(guard),
        // or Err(OwnerDied(guard)) if a holder died, and holds it either way.
        let _held = lock.acquire();
        balance.set(balance.get() - 1);
    }
}

fn deposit_locked(balance: mp::Value<i32>, lock: mp::Lock, start: mp::Barrier) {
    start_line(&start);
    for _ in 0..ROUNDS {
        let _held = lock.acquire();
        balance.set(balance.get() + 1);
    }
}

fn run_both(mut p1: mp::Process, mut p2: mp::Process) -> mp::Result<()> {
    // starting processes
    p1.start()?;
    p2.start()?;
    // wait until processes are finished
    p1.join()?;
    p2.join()?;
    Ok(())
}

fn perform_transactions(locked: bool) -> mp::Result<i32> {
    // initial balance (in shared memory)
    let balance = mp::Value::new(100i32)?;
    let start = mp::Barrier::new(2)?.with_timeout(std::time::Duration::from_secs(10));
    if locked {
        // creating a lock object
        let lock = mp::Lock::new()?;
        run_both(
            mp::Process::new(
                withdraw_locked,
                (balance.clone(), lock.clone(), start.clone()),
            ),
            mp::Process::new(deposit_locked, (balance.clone(), lock, start)),
        )?;
    } else {
        run_both(
            mp::Process::new(withdraw, (balance.clone(), start.clone())),
            mp::Process::new(deposit, (balance.clone(), start)),
        )?;
    }
    Ok(balance.get())
}

pub(crate) fn main() -> mp::Result<()> {
    println!("without a lock (updates get lost):");
    for _ in 0..10 {
        println!("Final balance = {}", perform_transactions(false)?);
    }
    println!("with a lock:");
    for _ in 0..10 {
        let balance = perform_transactions(true)?;
        println!("Final balance = {balance}");
        if balance != 100 {
            return Err(mp::Error::InvalidArgument(format!(
                "the lock let the balance go to {balance}"
            )));
        }
    }
    Ok(())
}
