//! The examples of multiproc live in this package's `examples` targets:
//! `cargo run --release --example tour` runs the seed tutorial's programs
//! one after another. The library itself is empty.

#![forbid(unsafe_code)]
