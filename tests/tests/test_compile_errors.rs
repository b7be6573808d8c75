//! The compile errors a misuse of the API gets, pinned: each says what the
//! rule is and what to write instead. Each case in `ui/` is a program a user
//! might write, built as a crate of its own; its `.stderr` file is the
//! message it must get. The programs in `ui/pass/` must build and run (and
//! make every case build, not only check: a capturing closure is caught when
//! the target is instantiated). `TRYBUILD=overwrite cargo test --test
//! test_compile_errors` rewrites the messages after a deliberate change.

use std::process::Command;

/// The compiler the messages were written with; another one words and
/// places its diagnostics differently.
const BLESSED: &str = "rustc 1.95.";

#[test]
fn misuses_get_messages_that_say_what_to_do() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !version.starts_with(BLESSED) {
        println!("skipped: the messages are pinned for {BLESSED}x, this is {version:?}");
        return;
    }
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/*.rs");
}
