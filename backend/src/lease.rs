//! A named lease in the database, for work one replica does at a time (the
//! Home Assistant bridge, the delivery audit): taken or renewed at half its
//! length, released on shutdown so the next holder takes over at once.

use std::sync::Arc;

use tracing::{info, warn};

use crate::{core::Core, domain::UnixMs};

/// A lease as this replica sees it.
pub struct Lease {
    core: Arc<Core>,
    name: &'static str,
    length_ms: i64,
    holder: String,
    until: UnixMs,
}

impl Lease {
    /// The lease `name` for `holder` (the replica's name), `length_ms` long
    /// unless renewed.
    pub fn new(core: Arc<Core>, name: &'static str, length_ms: i64, holder: String) -> Self {
        Self {
            core,
            name,
            length_ms,
            holder,
            until: 0,
        }
    }

    /// Takes or renews the lease when due; whether this replica holds it.
    pub async fn hold(&mut self) -> bool {
        let now = self.core.clock.now();
        if self.until - now < self.length_ms / 2 {
            match self
                .core
                .storage
                .acquire_lease(self.name, &self.holder, now, now + self.length_ms)
                .await
            {
                Ok(true) => self.until = now + self.length_ms,
                Ok(false) => {
                    if self.until > now {
                        info!(
                            lease = self.name,
                            holder = self.holder,
                            "another replica holds the lease now"
                        );
                    }
                    self.until = 0;
                }
                Err(e) => warn!(lease = self.name, error = %e, "could not renew the lease"),
            }
        }
        self.until > now
    }

    /// Why: on a rolling update the next holder takes over at once, not
    /// when the lease would have run out.
    pub async fn release(&mut self) {
        if self.until > self.core.clock.now() {
            if let Err(e) = self
                .core
                .storage
                .release_lease(self.name, &self.holder)
                .await
            {
                warn!(lease = self.name, error = %e, "could not release the lease");
            }
            self.until = 0;
        }
    }
}
