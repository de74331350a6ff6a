//! Deadlines that never overflow. A timeout comes from a spec, a control request or a command
//! line; `Instant + timeout` panics when the sum does not fit, so every deadline is made here,
//! where a timeout too long to represent means "no deadline in practice".

use std::time::{Duration, Instant};

/// Far enough to never come, near enough to be added to any `Instant`.
const FAR: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// `now + d` on tokio's clock, saturating far in the future.
pub fn after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + FAR.min(d))
}

/// `now + d` on the standard clock, saturating far in the future.
pub fn std_after(d: Duration) -> Instant {
    std_from(Instant::now(), d)
}

/// `start + d`, saturating far in the future.
pub fn std_from(start: Instant, d: Duration) -> Instant {
    start.checked_add(d).unwrap_or_else(|| start + FAR.min(d))
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
