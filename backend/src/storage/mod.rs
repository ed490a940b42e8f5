//! Storage: one [`Storage`] trait, implemented for SQLite (the embedded
//! default) and MySQL/MariaDB (production) over sqlx. All SQL of Hearth lives
//! under this module: the statements both databases share in `sql.rs`, what
//! each says its own way beside its connect options in `sqlite.rs` and
//! `mysql.rs`. Migrations run at start-up.

pub mod access;
mod mysql;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use hearth_proto::v1::Metric;

use crate::domain::{
    delivery::{Arrivals, RunAccount, Sent, StoredHour},
    ActuatorState, Command, Device, DeviceId, DeviceKind, Home, HomeId, LoggedDecision, Reading,
    Resolution, RuleId, RuleState, SeriesPlan, SeriesPoint, ThresholdRule, UnixMs,
};

pub use access::{AccessStore, ApiTokenInfo, AuditEvent};
pub use mysql::MySqlStorage;
pub use sqlite::SqliteStorage;

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
            // A deadlock victim (SQLSTATE 40001): its transaction was rolled
            // back whole, so retrying it is safe.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("40001") => {
                StorageError::Stale(db.message().to_owned())
            }
            _ => StorageError::Internal(e),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A page of history in `order`, strictly past `cursor` (in that order) if
/// given.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingQuery {
    pub device_id: DeviceId,
    /// `None`: every metric.
    pub metric: Option<Metric>,
    /// Inclusive lower bound.
    pub start: Option<UnixMs>,
    /// Exclusive upper bound.
    pub end: Option<UnixMs>,
    pub cursor: Option<ReadingCursor>,
    pub limit: u32,
    pub order: ReadingOrder,
}

/// The order of a page of history, by `(time, metric, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadingOrder {
    /// What a history table shows first.
    #[default]
    NewestFirst,
    /// What an export writes: the order a spreadsheet plots.
    OldestFirst,
}

/// Position in the order `(time, metric, seq)`.
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

/// What [`Storage::insert_readings`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Readings newly stored.
    pub new: u64,
    /// Late and duplicate readings, per device, metric and hour (only those
    /// with some): what was added to the counters.
    pub arrivals: Vec<(DeviceId, Arrivals)>,
    /// Where the duplicates are among the readings given, in order: what
    /// was stored before and is no news to live streams and automation.
    pub repeats: Vec<usize>,
}

impl Inserted {
    /// Duplicates among the readings, of every device.
    pub fn duplicates(&self) -> u64 {
        self.arrivals.iter().map(|(_, a)| a.duplicates).sum()
    }
}

/// A command a device reports it applied, with its measured round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub version: u64,
    pub at: UnixMs,
    pub round_trip_us: u64,
    /// When this replica published it, if it did and has not stored that
    /// yet: stored with the report unless a publish time already is.
    pub published_at: Option<UnixMs>,
}

/// Persistence of homes, devices, readings and rules (and, through
/// [`AccessStore`], of people and tokens).
#[async_trait]
pub trait Storage: AccessStore + Send + Sync + 'static {
    /// `Conflict` if the id is taken.
    /// Answers once the database does: what health checks ask.
    async fn ping(&self) -> Result<()>;
    async fn create_home(&self, home: &Home) -> Result<()>;
    async fn list_homes(&self) -> Result<Vec<Home>>;

    /// `NotFound` if the home does not exist, `Conflict` if the id is taken.
    async fn register_device(&self, device: &Device) -> Result<()>;
    async fn list_devices(&self, home: Option<&HomeId>) -> Result<Vec<Device>>;
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>>;

    /// Stores a new mode and desired state if the stored desired version is
    /// still `expected_version` (optimistic concurrency: `Stale` otherwise),
    /// with the `command` that carries a new desired version; older commands
    /// still open become superseded. One transaction (on MySQL one round
    /// trip).
    async fn save_actuator_state(
        &self,
        id: &DeviceId,
        expected_version: u64,
        state: &ActuatorState,
        command: Option<&Command>,
    ) -> Result<()>;
    async fn command_published(&self, id: &DeviceId, version: u64, at: UnixMs) -> Result<()>;
    /// Open commands whose time-to-live has passed become expired; returns
    /// the devices they were for.
    async fn expire_commands(&self, now: UnixMs) -> Result<Vec<DeviceId>>;
    /// Newest first.
    async fn list_commands(&self, id: &DeviceId, limit: u32) -> Result<Vec<Command>>;
    /// Devices whose manual override ended at or before `now`.
    async fn overrides_ended(&self, now: UnixMs) -> Result<Vec<DeviceId>>;
    /// Stores the reported part of `state` (desired is left alone) and, with
    /// `applied`, marks that command applied unless it already was: one
    /// transaction, so one commit on a device's acknowledgement path (and on
    /// MySQL one round trip).
    /// Returns whether a command changed.
    async fn save_reported(
        &self,
        id: &DeviceId,
        state: &ActuatorState,
        applied: Option<Applied>,
    ) -> Result<bool>;
    async fn save_presence(&self, id: &DeviceId, online: Option<bool>, seen: UnixMs) -> Result<()>;

    /// Inserts readings, ignoring any whose idempotency key is already
    /// stored, and adds the late and duplicate ones among them (as
    /// `domain::delivery::arrivals` sorts them, `readings` in the order they
    /// arrived) to their device's counters, in the same transaction.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<Inserted>;
    /// Records that runs of these devices' agents began at these numbers
    /// (`(device, run_start, seen_at)`); a run recorded already is kept.
    async fn record_run_starts(&self, runs: &[(DeviceId, u64, UnixMs)]) -> Result<()>;
    /// Per metric and hour of `device`'s readings taken in `[from, to)`: how
    /// many are stored, and their lowest and highest numbers.
    async fn stored_hours(
        &self,
        device: &DeviceId,
        from: UnixMs,
        to: UnixMs,
    ) -> Result<Vec<StoredHour>>;
    /// How many of `device`'s `metric` readings numbered above `after` and
    /// taken before `taken_before` are stored, and their lowest and highest
    /// numbers (`hour` is that of `taken_before`); `None` if there are none.
    async fn stored_after(
        &self,
        device: &DeviceId,
        metric: Metric,
        after: u64,
        taken_before: UnixMs,
    ) -> Result<Option<StoredHour>>;
    /// The highest number of `device`'s `metric` stored below `seq`.
    async fn highest_seq_below(
        &self,
        device: &DeviceId,
        metric: Metric,
        seq: u64,
    ) -> Result<Option<u64>>;
    /// The late and duplicate readings counted of `device`, per metric and
    /// hour, for the hours that overlap `[from, to)`, ascending by hour.
    async fn arrivals(&self, device: &DeviceId, from: UnixMs, to: UnixMs) -> Result<Vec<Arrivals>>;
    /// The recorded run starts of `device` in `(after, up_to]`, ascending.
    async fn run_starts(&self, device: &DeviceId, after: u64, up_to: u64) -> Result<Vec<u64>>;
    /// Records what a sensor said it sent in the run from
    /// `account.run_start`: up to `account.last_seq`, each batch of
    /// `account.metrics`, at `said_at`. Only a higher number replaces what
    /// is recorded (a status delivered late or twice changes nothing).
    async fn record_sent(
        &self,
        device: &DeviceId,
        account: &RunAccount,
        said_at: UnixMs,
    ) -> Result<()>;
    /// What sensors said they sent, said in `[from, to)`: of `device`, or
    /// of every device with `None`.
    async fn sent(&self, device: Option<&DeviceId>, from: UnixMs, to: UnixMs) -> Result<Vec<Sent>>;
    async fn list_readings(&self, query: &ReadingQuery) -> Result<Vec<Reading>>;
    /// Readings of one metric strictly after `after` = `(time, seq)` and
    /// before `until` (if given), oldest first: what a rule evaluates next.
    async fn readings_after(
        &self,
        device: &DeviceId,
        metric: Metric,
        after: (UnixMs, u64),
        until: Option<UnixMs>,
        limit: u32,
    ) -> Result<Vec<Reading>>;

    /// Recomputes the rollup `resolution` for `devices` over `[from, to)`
    /// (bucket-aligned) from the next finer level: raw readings for minutes,
    /// minutes for hours, hours for days. Idempotent.
    async fn refresh_rollups(
        &self,
        resolution: Resolution,
        devices: &[DeviceId],
        from: UnixMs,
        to: UnixMs,
    ) -> Result<()>;
    /// One series as `plan` says, oldest bucket first; empty buckets left out.
    async fn series(
        &self,
        device: &DeviceId,
        metric: Metric,
        plan: &SeriesPlan,
    ) -> Result<Vec<SeriesPoint>>;
    /// Deletes up to `limit` readings of `device`'s `metric` older than
    /// `before`; returns how many. Small batches keep locks short.
    async fn delete_readings_before(
        &self,
        device: &DeviceId,
        metric: Metric,
        before: UnixMs,
        limit: u32,
    ) -> Result<u64>;
    /// Deletes the late and duplicate counts of `metric` for hours that
    /// ended by `before` (their readings are gone); returns how many rows.
    async fn delete_arrivals_before(&self, metric: Metric, before: UnixMs) -> Result<u64>;
    /// Deletes the agent runs first seen before `before`, except each
    /// device's newest (it may still be going: its start explains the jump
    /// its readings began with); returns how many rows.
    async fn delete_runs_before(&self, before: UnixMs) -> Result<u64>;
    /// Deletes up to `limit` rollup rows of `resolution` older than `before`.
    async fn delete_rollups_before(
        &self,
        resolution: Resolution,
        before: UnixMs,
        limit: u32,
    ) -> Result<u64>;

    /// Stores a new rule with its starting `state` (readings from then on
    /// are what it evaluates).
    async fn create_rule(&self, rule: &ThresholdRule, state: &RuleState) -> Result<()>;
    async fn list_rules(&self, home: Option<&HomeId>) -> Result<Vec<ThresholdRule>>;
    /// Replaces the rule's settings and its state with `state` (it starts
    /// afresh). `NotFound` if there is no such rule.
    async fn update_rule(&self, rule: &ThresholdRule, state: &RuleState) -> Result<()>;
    /// `NotFound` if there is no such rule.
    async fn delete_rule(&self, id: &RuleId) -> Result<()>;
    async fn load_rule_state(&self, id: &RuleId) -> Result<Option<RuleState>>;
    async fn save_rule_state(&self, id: &RuleId, state: &RuleState) -> Result<()>;
    async fn record_decision(&self, decision: &LoggedDecision) -> Result<()>;
    /// Newest first, of one home or one rule.
    async fn list_decisions(&self, of: DecisionsOf<'_>, limit: u32) -> Result<Vec<LoggedDecision>>;

    /// Takes or renews the lease `name` for `holder` until `until`, if it is
    /// free, expired at `now`, or already held by `holder`.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        until: UnixMs,
    ) -> Result<bool>;
    /// Ends `holder`'s lease `name` now, if it holds it (a clean shutdown,
    /// so another replica need not wait for it to expire).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// Whose decisions to list.
#[derive(Debug, Clone, Copy)]
pub enum DecisionsOf<'a> {
    Home(&'a HomeId),
    Rule(&'a RuleId),
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

pub use hearth_runtime::redact;

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
