//! The facade's promises about its types: every handle can cross threads,
//! and the error type composes with `?` and `Box<dyn Error>`.

use multiproc as mp;

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_handles_are_send_and_sync() {
    send_sync::<mp::Process<u64>>();
    send_sync::<mp::ProcessBuilder<u64>>();
    send_sync::<mp::Context>();
    send_sync::<mp::ProcessInfo>();
    send_sync::<mp::ParentProcess>();
    send_sync::<mp::StartMethod>();
    send_sync::<mp::handoff::HandoffFd>();
    send::<mp::Error>();
}

#[test]
fn the_error_is_a_std_error() {
    fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(mp::Error::Timeout)?
    }
    let e = boxed().unwrap_err();
    assert_eq!(e.to_string(), "timed out");
}
