//! Seed program 2: the pids of the main process and of two children, and
//! `is_alive` after `join`.
//!
//! Python:
//! ```python
//! print("ID of main process: {}".format(os.getpid()))
//! p1 = multiprocessing.Process(target=worker1)
//! ...
//! print("Process p1 is alive: {}".format(p1.is_alive()))
//! ```

use multiproc as mp;

fn worker1() {
    // printing process id
    println!("ID of process running worker1: {}", std::process::id());
}

fn worker2() {
    println!("ID of process running worker2: {}", std::process::id());
}

pub(crate) fn main() -> mp::Result<()> {
    // printing main program process id
    println!("ID of main process: {}", std::process::id());

    // creating processes
    let mut p1 = mp::Process::new(worker1, ());
    let mut p2 = mp::Process::new(worker2, ());

    // starting processes
    p1.start()?;
    p2.start()?;

    // process IDs
    let pid = |p: &mp::Process| p.pid().map_or("-".to_string(), |n| n.to_string());
    println!("ID of process p1: {}", pid(&p1));
    println!("ID of process p2: {}", pid(&p2));

    // wait until processes are finished
    p1.join()?;
    p2.join()?;

    // both processes finished
    println!("Both processes finished execution!");

    // check if processes are alive
    println!("Process p1 is alive: {}", p1.is_alive());
    println!("Process p2 is alive: {}", p2.is_alive());
    Ok(())
}
