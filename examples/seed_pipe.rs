//! Seed program 6: a sender and a receiver at the two ends of a `Pipe`,
//! first ending on an "END" message, then on the end of the pipe itself.
//!
//! Python:
//! ```python
//! parent_conn, child_conn = multiprocessing.Pipe()
//! p1 = multiprocessing.Process(target=sender, args=(parent_conn, msgs))
//! p2 = multiprocessing.Process(target=receiver, args=(child_conn,))
//! ```

use multiproc as mp;

// send messages to the other end of the pipe
fn sender(conn: mp::Connection, msgs: Vec<String>) {
    for msg in msgs {
        if conn.send(&msg).is_err() {
            return;
        }
        println!("Sent the message: {msg}");
    }
    conn.close();
}

// print the messages received from the other end, until "END"
fn receiver(conn: mp::Connection) {
    while let Ok(msg) = conn.recv::<String>() {
        if msg == "END" {
            break;
        }
        println!("Received the message: {msg}");
    }
}

// the same, until the other end is closed (Python's EOFError)
fn receiver_until_eof(conn: mp::Connection) {
    loop {
        match conn.recv::<String>() {
            Ok(msg) => println!("Received the message: {msg}"),
            Err(mp::Error::Closed) => {
                println!("The sender closed its end.");
                break;
            }
            Err(e) => {
                eprintln!("receiver: {e}");
                break;
            }
        }
    }
}

pub(crate) fn main() -> mp::Result<()> {
    // messages to be sent
    let msgs: Vec<String> = ["hello", "hey", "hru?", "END"].map(String::from).into();

    // creating a pipe
    let (parent_conn, child_conn) = mp::Pipe::new()?;

    // creating new processes
    let mut p1 = mp::Process::new(sender, (parent_conn, msgs));
    let mut p2 = mp::Process::new(receiver, (child_conn,));

    // running processes
    p1.start()?;
    p2.start()?;

    // wait until processes finish
    p1.join()?;
    p2.join()?;

    println!("and ending on the end of the pipe instead of \"END\":");
    let (reader, writer) = mp::Pipe::one_way()?;
    let msgs: Vec<String> = ["one", "two", "three"].map(String::from).into();
    let mut p1 = mp::Process::new(sender, (writer, msgs));
    let mut p2 = mp::Process::new(receiver_until_eof, (reader,));
    // `writer` and `reader` went into the processes' arguments, so once the
    // sender is done no copy of the writing end is left open.
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    Ok(())
}
