//! A `#[tokio::main]` program, as a user writes one, for the start-model
//! tests: `mp_tokio MODE FILE`.
//!
//! It appends `main <pid>` to FILE first thing in `main`, then:
//! - `init-only`: calls `mp::init()` and returns at once;
//! - `start-one`: starts one process from async code (no `init`), whose
//!   target builds a tokio runtime of its own and appends
//!   `child <pid> <start method> <value>` to FILE, and returns at once
//!   (the child is joined at exit, as in Python);
//! - `pool`: maps over a `Pool` from `spawn_blocking` and prints the sum;
//! - `executor`: from `spawn_blocking`, runs a task that hangs under a time
//!   limit and one that does not, and prints how each ended.

use multiproc as mp;

fn child(file: String) {
    let value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a child builds its own runtime")
        .block_on(async { 7 });
    multiproc_tests::append_line(
        &file,
        &format!(
            "child {} {} {value}",
            std::process::id(),
            mp::get_start_method()
        ),
    );
}

fn square(n: u64) -> u64 {
    n * n
}

fn hang() -> u64 {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[tokio::main]
async fn main() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, file) = (args[1].as_str(), args[2].clone());
    multiproc_tests::append_line(&file, &format!("main {}", std::process::id()));
    match mode {
        "init-only" => mp::init(),
        "start-one" => {
            let mut p = mp::Process::new(child, (file,));
            p.start()?;
        }
        "pool" => {
            let sum = tokio::task::spawn_blocking(|| -> mp::Result<u64> {
                let pool = mp::Pool::builder().processes(2).build()?;
                Ok(pool.map(square, 1..=10u64)?.into_iter().sum())
            })
            .await
            .map_err(|_| mp::Error::Unsupported("the blocking task panicked"))??;
            println!("{sum}");
        }
        "executor" => {
            let line = tokio::task::spawn_blocking(|| -> mp::Result<String> {
                let ex = mp::Executor::builder()
                    .workers(2)
                    .task_time_limit(std::time::Duration::from_millis(200))
                    .build()?;
                let hung = ex.submit(hang, ())?;
                let fine = ex.submit(square, (7u64,))?;
                let hung = match hung.result() {
                    Err(mp::Error::TaskTimedOut { .. }) => "timed-out".to_string(),
                    other => format!("{other:?}"),
                };
                Ok(format!("{hung} {}", fine.result()?))
            })
            .await
            .map_err(|_| mp::Error::Unsupported("the blocking task panicked"))??;
            println!("{line}");
        }
        _ => std::process::exit(2),
    }
    Ok(())
}
