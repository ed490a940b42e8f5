//! Storage: one [`Storage`] trait, implemented for SQLite (the embedded
//! default) and MySQL/MariaDB (production) over sqlx. All SQL of Hearth lives
//! under this module; migrations run at start-up.

mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use hearth_proto::v1::Metric;

use crate::domain::{
    ActuatorState, Device, DeviceId, DeviceKind, Home, HomeId, Reading, RuleId, ThresholdRule,
    UnixMs,
};

pub use sql::{redact, MySqlStorage, SqliteStorage};

/// What went wrong, named for what a caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// Someone else changed the row first; reload and retry.
    #[error("concurrent update of {0}")]
    Stale(String),
    /// The database cannot be reached; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Internal(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StorageError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StorageError::Conflict(db.message().to_owned())
            }
            _ => StorageError::Internal(e),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A page of history: newest first, strictly older than `before` if given.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingQuery {
    pub device_id: DeviceId,
    /// `None`: every metric.
    pub metric: Option<Metric>,
    /// Inclusive lower bound.
    pub start: Option<UnixMs>,
    /// Exclusive upper bound.
    pub end: Option<UnixMs>,
    pub before: Option<ReadingCursor>,
    pub limit: u32,
}

/// Position in the newest-first order `(time, metric, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingCursor {
    pub time: UnixMs,
    pub metric: i32,
    pub seq: u64,
}

impl ReadingCursor {
    pub fn of(r: &Reading) -> Self {
        Self {
            time: r.time,
            metric: r.metric as i32,
            seq: r.seq,
        }
    }

    /// The opaque page token handed to clients.
    pub fn to_token(self) -> String {
        format!("{}.{}.{}", self.time, self.metric, self.seq)
    }

    pub fn from_token(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let c = Self {
            time: parts.next()?.parse().ok()?,
            metric: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(c)
    }
}

/// Persistence of homes, devices, readings and rules.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// `Conflict` if the id is taken.
    async fn create_home(&self, home: &Home) -> Result<()>;
    async fn list_homes(&self) -> Result<Vec<Home>>;

    /// `NotFound` if the home does not exist, `Conflict` if the id is taken.
    async fn register_device(&self, device: &Device) -> Result<()>;
    async fn list_devices(&self, home: Option<&HomeId>) -> Result<Vec<Device>>;
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>>;

    /// Stores a new mode and desired state if the stored desired version is
    /// still `expected_version` (optimistic concurrency: `Stale` otherwise).
    async fn save_actuator_state(
        &self,
        id: &DeviceId,
        expected_version: u64,
        state: &ActuatorState,
    ) -> Result<()>;
    /// Stores the reported part of `state` (desired is left alone).
    async fn save_reported(&self, id: &DeviceId, state: &ActuatorState) -> Result<()>;
    async fn save_presence(&self, id: &DeviceId, online: Option<bool>, seen: UnixMs) -> Result<()>;

    /// Inserts readings, ignoring any whose idempotency key is already stored.
    /// Returns how many were new.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<u64>;
    async fn list_readings(&self, query: &ReadingQuery) -> Result<Vec<Reading>>;

    async fn create_rule(&self, rule: &ThresholdRule) -> Result<()>;
    async fn list_rules(&self, home: Option<&HomeId>) -> Result<Vec<ThresholdRule>>;
    /// `NotFound` if there is no such rule.
    async fn delete_rule(&self, id: &RuleId) -> Result<()>;
}

/// Connects to `url` (`sqlite://…` or `mysql://…`) and runs the migrations.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Storage>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStorage::connect(url).await?))
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        Ok(Arc::new(MySqlStorage::connect(url).await?))
    } else {
        anyhow::bail!("HEARTH_DATABASE_URL must start with sqlite:// or mysql://")
    }
}

fn kind_of(s: &str) -> Result<DeviceKind> {
    DeviceKind::parse(s).ok_or_else(|| StorageError::NotFound(format!("device kind {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let c = ReadingCursor {
            time: 1_700_000_000_123,
            metric: 2,
            seq: 42,
        };
        assert_eq!(ReadingCursor::from_token(&c.to_token()), Some(c));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1.2.-3"] {
            assert_eq!(ReadingCursor::from_token(bad), None, "{bad:?}");
        }
    }
}
