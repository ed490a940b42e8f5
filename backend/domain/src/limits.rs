//! Limits per caller: a request rate (a token bucket) and a cap on open
//! streams, so one script or one leaked token cannot starve the others.

use crate::UnixMs;

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: UnixMs,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(burst: u32, now: UnixMs) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes one token at `now` if there is one; whether it could.
    pub fn take(&mut self, now: UnixMs, per_second: u32, burst: u32) -> bool {
        let elapsed = (now - self.at).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        self.at = now.max(self.at);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let mut b = Bucket::full(3, 0);
        assert!((0..3).all(|_| b.take(0, 10, 3)), "the burst");
        assert!(!b.take(0, 10, 3), "empty");
        assert!(!b.take(50, 10, 3), "half a token after 50 ms at 10/s");
        assert!(b.take(100, 10, 3), "one token after 100 ms");
        assert!(!b.take(100, 10, 3));
    }

    #[test]
    fn it_never_holds_more_than_the_burst_nor_minds_a_clock_going_back() {
        let mut b = Bucket::full(2, 0);
        assert!(b.take(60_000, 10, 2) && b.take(60_000, 10, 2));
        assert!(
            !b.take(60_000, 10, 2),
            "an hour idle still gives only the burst"
        );
        assert!(!b.take(0, 10, 2), "a clock gone back adds nothing");
    }
}
