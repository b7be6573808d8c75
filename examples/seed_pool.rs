//! Seed program 8: a `Pool` maps `square` over a list; each call prints the
//! worker process that ran it.
//!
//! Python:
//! ```python
//! p = multiprocessing.Pool()
//! result = p.map(square, mylist)
//! print(result)
//! ```

use multiproc as mp;

fn square(n: i64) -> i64 {
    println!("Worker process id for {n}: {}", std::process::id());
    n * n
}

pub(crate) fn main() -> mp::Result<()> {
    // input list
    let mylist = vec![1, 2, 3, 4, 5];

    // creating a pool object (one worker per CPU)
    let p = mp::Pool::new()?;

    // map list to target function
    let result = p.map(square, mylist)?;

    println!("{result:?}");
    Ok(())
}
