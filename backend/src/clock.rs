//! The backend's one source of "now", so time-dependent logic can be tested
//! with a clock the test controls.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

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

    /// A clock that says `start` until moved with [`Clock::set`].
    pub fn manual(start: i64) -> Self {
        Self {
            fixed: Some(Arc::new(AtomicI64::new(start))),
        }
    }

    pub fn set(&self, now: i64) {
        if let Some(fixed) = &self.fixed {
            fixed.store(now, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(fixed) => fixed.load(Ordering::SeqCst),
            None => hearth_agent::unix_ms_now(),
        }
    }
}
