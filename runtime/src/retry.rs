//! The one retry policy of every Hearth binary: wait, doubling each time up
//! to a cap, with jitter so that many clients failing together (a fleet of
//! devices after a broker restart, replicas after a database failover) do not
//! retry in step.

use std::time::Duration;

use rand::Rng as _;

/// Delays between attempts: `first`, doubling to `max`, each ±25 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The delay before retry `attempt` (0: the first retry), before jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The delay before retry `attempt`, with ±25 % jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.base(attempt)
            .mul_f64(rand::rng().random_range(0.75..1.25))
    }

    /// Sleeps [`Backoff::delay`]`(attempt)`.
    pub async fn wait(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

    #[test]
    fn doubles_from_the_first_delay_up_to_the_cap() {
        let bases: Vec<u128> = (0..7).map(|a| POLICY.base(a).as_millis()).collect();
        assert_eq!(bases, [100, 200, 400, 800, 1_600, 2_000, 2_000]);
        assert_eq!(POLICY.base(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_varies() {
        let delays: Vec<Duration> = (0..200).map(|_| POLICY.delay(3)).collect();
        for d in &delays {
            assert!((600..=1_000).contains(&d.as_millis()), "{d:?}");
        }
        assert!(delays.iter().any(|d| *d != delays[0]), "no jitter");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_the_delay() {
        let start = tokio::time::Instant::now();
        POLICY.wait(0).await;
        let waited = start.elapsed().as_millis();
        assert!((75..=125).contains(&waited), "{waited} ms");
    }
}
