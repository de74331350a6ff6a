//! Deadlines that never overflow. A timeout comes from a spec, a control request or a command
//! line; `Instant + timeout` panics when the sum does not fit, so every deadline of the engine
//! is made here, on top of [`troupe_spec::checked_deadline`]: a timeout too long to represent
//! means "no deadline in practice".

use std::time::{Duration, Instant};

use troupe_spec::checked_deadline;

/// `now + d` on tokio's clock, saturating far in the future.
pub fn after(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(std_after(d))
}

/// `now + d` on the standard clock, saturating far in the future.
pub fn std_after(d: Duration) -> Instant {
    checked_deadline(Instant::now(), d)
}

/// `start + d`, saturating far in the future.
pub fn std_from(start: Instant, d: Duration) -> Instant {
    checked_deadline(start, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regression: `Instant::now() + Duration::MAX` panicked in the engine.
    #[test]
    fn huge_timeouts_saturate_instead_of_panicking() {
        let far = std_after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(60 * 60 * 24 * 365));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let far = after(Duration::from_secs(u64::MAX));
            assert!(far > tokio::time::Instant::now());
        });
    }
}
