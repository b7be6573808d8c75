//! Benchmarks of multiproc live in this package's `benches/` directory;
//! `cargo xtask bench` runs them beside CPython's figures and writes the
//! ratios to `docs/benchmarks.md`. The library is empty.

#![forbid(unsafe_code)]
