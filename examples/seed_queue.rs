//! Seed program 5: one process puts squares on a `Queue` and exits; another,
//! started after it ended, prints them.
//!
//! Python:
//! ```python
//! q = multiprocessing.Queue()
//! p1 = multiprocessing.Process(target=square_list, args=(mylist, q))
//! p2 = multiprocessing.Process(target=print_queue, args=(q,))
//! ```

use multiproc as mp;

// append squares of mylist to queue
fn square_list(mylist: Vec<i64>, q: mp::Queue<i64>) -> bool {
    mylist.iter().all(|num| q.put(num * num).is_ok())
}

// print queue elements
fn print_queue(q: mp::Queue<i64>) {
    println!("Queue elements:");
    while let Ok(item) = q.try_get() {
        println!("{item}");
    }
    println!("Queue is now empty!");
}

pub(crate) fn main() -> mp::Result<()> {
    // input list
    let mylist = vec![1, 2, 3, 4];
    // creating a queue
    let q = mp::Queue::new()?;

    // creating new processes
    let mut p1 = mp::Process::new(square_list, (mylist, q.clone()));
    let mut p2 = mp::Process::new(print_queue, (q,));

    // running process p1 to square list; it has exited when p2 starts
    p1.start()?;
    p1.join()?;

    // running process p2 to get queue elements
    p2.start()?;
    p2.join()?;
    Ok(())
}
