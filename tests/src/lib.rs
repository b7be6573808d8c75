//! Integration tests of multiproc live in this package's `tests/`
//! directory, one file per area, named after the classes of CPython's
//! `Lib/test/_test_multiprocessing.py` they follow. The library is empty.

#![forbid(unsafe_code)]
