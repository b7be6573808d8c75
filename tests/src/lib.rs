//! Integration tests of multiproc live in this package's `tests/`
//! directory, one file per area, named after the classes of CPython's
//! `Lib/test/_test_multiprocessing.py` they follow. The library holds what
//! the helper programs in `src/bin` share.

#![forbid(unsafe_code)]

use std::io::Write;

/// Appends `line` and a newline to `file`, creating it: how the helper
/// programs and their children leave a trace a test can count.
///
/// # Panics
///
/// If the file cannot be opened or written: a helper that cannot leave its
/// trace must fail loudly.
pub fn append_line(file: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .expect("open the trace file");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write the trace file");
}
