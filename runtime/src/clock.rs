//! The one source of "now", so time-dependent logic can be tested with a
//! clock the test controls.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

/// Milliseconds since the Unix epoch by the system clock.
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the Unix epoch, from the system or from a test.
#[derive(Clone, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock that says `start` until moved with [`Clock::set`] or
    /// [`Clock::advance`]; clones share the same time.
    pub fn manual(start: i64) -> Self {
        Self {
            fixed: Some(Arc::new(AtomicI64::new(start))),
        }
    }

    /// Moves a manual clock to `now`; the system clock ignores it.
    pub fn set(&self, now: i64) {
        if let Some(fixed) = &self.fixed {
            fixed.store(now, Ordering::SeqCst);
        }
    }

    /// Moves a manual clock on by `ms`; the system clock ignores it.
    pub fn advance(&self, ms: i64) {
        if let Some(fixed) = &self.fixed {
            fixed.fetch_add(ms, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(fixed) => fixed.load(Ordering::SeqCst),
            None => unix_ms_now(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fixed {
            Some(_) => write!(f, "Clock::manual({})", self.now()),
            None => f.write_str("Clock::system()"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::manual(1_000);
        let other = clock.clone();
        assert_eq!(other.now(), 1_000);
        clock.advance(250);
        assert_eq!(other.now(), 1_250);
        other.set(5);
        assert_eq!(clock.now(), 5);
    }

    #[test]
    fn the_system_clock_ignores_set() {
        let clock = Clock::system();
        clock.set(5);
        assert!(clock.now() > 1_700_000_000_000);
    }
}
