//! SQLite, the embedded default: how to open the file, and the parts of its
//! SQL that differ from MySQL's (the rest is shared, in `sql.rs`).

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Sqlite,
};

use super::{
    sql::{insert_command, Dialect, SqlStorage},
    Applied, Result, Storage, StorageError,
};
use crate::domain::{ActuatorState, Command, DeviceId};

/// The embedded default: one SQLite file.
pub type SqliteStorage = SqlStorage<Sqlite>;

impl SqlStorage<Sqlite> {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = SqliteConnectOptions::from_str(url)
            .context("HEARTH_DATABASE_URL is not a valid sqlite:// URL")?
            .create_if_missing(true)
            // Why: WAL lets history reads run while the ingest writer commits;
            // NORMAL syncs at checkpoints, durable against process crashes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| {
                format!("cannot open the SQLite database {url} (HEARTH_DATABASE_URL)")
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("migrating the SQLite database")?;
        Ok(Self::new(pool))
    }
}

/// SQLite's own words; and the two writes of a command's round trip, here a
/// transaction of several statements, which costs nothing extra in process.
#[async_trait]
impl Dialect for Sqlite {
    const INSERT_IGNORE: &'static str = "INSERT OR IGNORE";
    const KEYS_FROM_JSON: &'static str = "(SELECT value ->> 0 AS i, value ->> 1 AS d, \
         value ->> 2 AS m, value ->> 3 AS s FROM json_each(?)) AS j";
    const ADD_TO_ARRIVALS: &'static str = " ON CONFLICT (device_id, hour_start, metric) \
         DO UPDATE SET late = late + excluded.late, duplicates = duplicates + excluded.duplicates";
    const INT_DIV: &'static str = " / ";
    const DELETE_READINGS_BEFORE: &'static str = "DELETE FROM readings \
         WHERE (device_id, metric, seq) IN (SELECT device_id, metric, seq FROM readings \
         WHERE device_id = ? AND metric = ? AND ts < ? LIMIT ?)";
    const DELETE_ROLLUPS_BEFORE: &'static str = "DELETE FROM rollups \
         WHERE (device_id, metric, resolution, bucket) IN (SELECT device_id, metric, resolution, \
         bucket FROM rollups WHERE resolution = ? AND bucket < ? LIMIT ?)";
    // One writer at a time: a read holds no row locks to wait on.
    const READ_WITHOUT_LOCKS: Option<&'static str> = None;

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn write_actuator_state(
        storage: &SqlStorage<Self>,
        id: &DeviceId,
        expected_version: u64,
        state: &ActuatorState,
        command: Option<&Command>,
    ) -> Result<()> {
        let d = state.desired.as_ref();
        let mut tx = storage.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE devices SET mode = ?, desired_version = ?, desired_on = ?, desired_at = ?, \
             desired_reason = ?, override_until = ? WHERE id = ? AND desired_version = ?",
        )
        .bind(state.mode.as_str())
        .bind(d.map_or(0, |d| d.version as i64))
        .bind(d.map(|d| d.on))
        .bind(d.map(|d| d.issued_at))
        .bind(d.map(|d| d.reason.as_str()))
        .bind(state.override_until)
        .bind(id.as_str())
        .bind(expected_version as i64)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return if storage.get_device(id).await?.is_none() {
                Err(StorageError::NotFound(format!("device {id}")))
            } else {
                Err(StorageError::Stale(format!("device {id}")))
            };
        }
        if let Some(c) = command {
            sqlx::query(
                "UPDATE commands SET state = 'superseded' WHERE device_id = ? AND version < ? \
                 AND state IN ('requested', 'published')",
            )
            .bind(id.as_str())
            .bind(c.version as i64)
            .execute(&mut *tx)
            .await?;
            sqlx::query(&insert_command())
                .bind(id.as_str())
                .bind(c.version as i64)
                .bind(c.on)
                .bind(&c.requested_by)
                .bind(&c.reason)
                .bind(c.state.as_str())
                .bind(c.requested_at)
                .bind(c.published_at)
                .bind(c.applied_at)
                .bind(c.expires_at)
                .bind(c.round_trip_us.map(|v| v as i64))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn write_reported(
        storage: &SqlStorage<Self>,
        id: &DeviceId,
        state: &ActuatorState,
        applied: Option<Applied>,
    ) -> Result<bool> {
        let r = state.reported.as_ref();
        let mut tx = storage.pool.begin().await?;
        sqlx::query(
            "UPDATE devices SET reported_version = ?, reported_on = ?, reported_at = ? \
             WHERE id = ?",
        )
        .bind(r.map(|r| r.applied_version as i64))
        .bind(r.map(|r| r.on))
        .bind(r.map(|r| r.recorded_at))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let mut closed = false;
        if let Some(Applied {
            version,
            at,
            round_trip_us,
            published_at,
        }) = applied
        {
            let done = sqlx::query(
                "UPDATE commands SET state = 'applied', applied_at = ?, round_trip_us = ?, \
                 published_at = COALESCE(published_at, ?) \
                 WHERE device_id = ? AND version = ? AND state <> 'applied'",
            )
            .bind(at)
            .bind(round_trip_us as i64)
            .bind(published_at)
            .bind(id.as_str())
            .bind(version as i64)
            .execute(&mut *tx)
            .await?;
            closed = done.rows_affected() == 1;
        }
        tx.commit().await?;
        Ok(closed)
    }
}
