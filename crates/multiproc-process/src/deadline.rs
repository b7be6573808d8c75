//! Deadlines from timeouts, for every blocking call of the workspace.

use std::time::{Duration, Instant};

/// A timeout this long is no limit at all: past it, `Instant` arithmetic
/// may overflow, and no program waits a century.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The instant `timeout` from now, or `None` (no deadline) for a timeout
/// too long to matter, such as `Duration::MAX`: a huge timeout waits as
/// long as it takes, as Python's does, instead of panicking on overflow.
pub fn deadline(timeout: Duration) -> Option<Instant> {
    if timeout >= FOREVER {
        return None;
    }
    Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_timeout_is_no_deadline() {
        assert_eq!(deadline(Duration::MAX), None);
        assert_eq!(deadline(Duration::from_secs(u64::MAX / 2)), None);
        let soon = deadline(Duration::from_secs(1)).unwrap();
        assert!(soon > Instant::now());
    }
}
