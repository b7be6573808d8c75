//! Seed program 4: a list held by a `Manager`'s server process; one process
//! appends a record, another, started after it, prints them all.
//!
//! Python:
//! ```python
//! with multiprocessing.Manager() as manager:
//!     records = manager.list([('Sam', 10), ('Adam', 9), ('Kevin', 9)])
//!     p1 = multiprocessing.Process(target=insert_record, args=(new_record, records))
//!     p2 = multiprocessing.Process(target=print_records, args=(records,))
//! ```

use multiproc as mp;

type Record = (String, u32);

// function to print record(tuples) in records(list)
fn print_records(records: mp::ListProxy<Record>) {
    // A snapshot of the list, in one request to the manager.
    for (name, score) in records.iter().expect("the manager is running") {
        println!("Name: {name}\nScore: {score}\n");
    }
}

// function to add a new record to records(list)
fn insert_record(record: Record, records: mp::ListProxy<Record>) {
    records.append(&record).expect("the manager is running");
    println!("New record added!\n");
}

pub(crate) fn main() -> mp::Result<()> {
    // the manager's server process lives until `manager` is dropped
    let manager = mp::Manager::start()?;
    // creating a list in server process memory
    let records = manager.list([
        ("Sam".to_string(), 10),
        ("Adam".to_string(), 9),
        ("Kevin".to_string(), 9),
    ])?;
    // new record to be inserted in records
    let new_record = ("Jeff".to_string(), 8);

    // creating new processes
    let mut p1 = mp::Process::new(insert_record, (new_record, records.clone()));
    let mut p2 = mp::Process::new(print_records, (records,));

    // running process p1 to insert new record
    p1.start()?;
    p1.join()?;

    // running process p2 to print records
    p2.start()?;
    p2.join()?;
    Ok(())
}
