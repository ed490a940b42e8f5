//! MySQL and MariaDB, for production: how to connect, and the parts of their
//! SQL that differ from SQLite's (the rest is shared, in `sql.rs`), among them
//! the `CALL`s of the stored procedures in migrations/mysql/0004.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
    MySql, Row,
};

use super::{
    redact,
    sql::{decode_err, Dialect, SqlStorage},
    Applied, Result, StorageError,
};
use crate::domain::{ActuatorState, Command, DeviceId};

/// Production: MySQL or MariaDB.
pub type MySqlStorage = SqlStorage<MySql>;

impl SqlStorage<MySql> {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let url = url.replacen("mariadb:", "mysql:", 1);
        let options = MySqlConnectOptions::from_str(&url)
            .context("HEARTH_DATABASE_URL is not a valid mysql:// URL")?;
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            // Why READ COMMITTED: under InnoDB's default REPEATABLE READ, the
            // range update that supersedes a device's open commands also
            // locks the index gap up to the next device's commands, so two
            // SetMode calls on different devices deadlocked (seen with
            // twenty at once). Every write here is a compare-and-set on the
            // row it changes, which needs no gap locks.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the MySQL database at {} (HEARTH_DATABASE_URL)",
                    redact(&url)
                )
            })?;
        sqlx::migrate!("./migrations/mysql")
            .run(&pool)
            .await
            .context("migrating the MySQL database")?;
        Ok(Self::new(pool))
    }
}

/// MySQL's own words; and the two writes of a command's round trip, here one
/// `CALL` each of the procedures in migrations/mysql/0004, so each costs one
/// round trip to the server instead of five or four.
#[async_trait]
impl Dialect for MySql {
    const INSERT_IGNORE: &'static str = "INSERT IGNORE";
    const KEYS_FROM_JSON: &'static str = "JSON_TABLE(?, '$[*]' COLUMNS (i BIGINT PATH '$[0]', \
         d VARCHAR(64) PATH '$[1]', m SMALLINT PATH '$[2]', s BIGINT PATH '$[3]')) AS j";
    const ADD_TO_ARRIVALS: &'static str = " ON DUPLICATE KEY UPDATE late = late + VALUES(late), \
         duplicates = duplicates + VALUES(duplicates)";
    const INT_DIV: &'static str = " DIV ";
    const DELETE_READINGS_BEFORE: &'static str =
        "DELETE FROM readings WHERE device_id = ? AND metric = ? AND ts < ? ORDER BY ts LIMIT ?";
    const DELETE_ROLLUPS_BEFORE: &'static str =
        "DELETE FROM rollups WHERE resolution = ? AND bucket < ? LIMIT ?";
    // For the next transaction only (here the one statement that follows):
    // a consistent read of the source, no locks on it.
    const READ_WITHOUT_LOCKS: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");

    fn rows_affected(done: &sqlx::mysql::MySqlQueryResult) -> u64 {
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
        let rows = sqlx::query(
            "CALL hearth_save_actuator_state(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(expected_version as i64)
        .bind(state.mode.as_str())
        .bind(d.map_or(0, |d| d.version as i64))
        .bind(d.map(|d| d.on))
        .bind(d.map(|d| d.issued_at))
        .bind(d.map(|d| d.reason.as_str()))
        .bind(state.override_until)
        .bind(command.map(|c| c.version as i64))
        .bind(command.map(|c| c.on))
        .bind(command.map(|c| c.requested_by.as_str()))
        .bind(command.map(|c| c.reason.as_str()))
        .bind(command.map(|c| c.state.as_str()))
        .bind(command.map(|c| c.requested_at))
        .bind(command.and_then(|c| c.published_at))
        .bind(command.and_then(|c| c.applied_at))
        .bind(command.map(|c| c.expires_at))
        .bind(command.and_then(|c| c.round_trip_us).map(|v| v as i64))
        // Why all rows: a CALL answers its result set and then a status;
        // reading to the end leaves the connection clean for the pool.
        .fetch_all(&storage.pool)
        .await?;
        let outcome: String = rows
            .first()
            .ok_or_else(|| decode_err("hearth_save_actuator_state answer"))?
            // Why by position: a prepared CALL declares no columns, so
            // sqlx knows the answer's columns by position only.
            .try_get(0)?;
        match outcome.as_str() {
            "saved" => Ok(()),
            "stale" => Err(StorageError::Stale(format!("device {id}"))),
            "not_found" => Err(StorageError::NotFound(format!("device {id}"))),
            _ => Err(decode_err("hearth_save_actuator_state outcome")),
        }
    }

    async fn write_reported(
        storage: &SqlStorage<Self>,
        id: &DeviceId,
        state: &ActuatorState,
        applied: Option<Applied>,
    ) -> Result<bool> {
        let r = state.reported.as_ref();
        let rows = sqlx::query("CALL hearth_save_reported(?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(id.as_str())
            .bind(r.map(|r| r.applied_version as i64))
            .bind(r.map(|r| r.on))
            .bind(r.map(|r| r.recorded_at))
            .bind(applied.map(|a| a.version as i64))
            .bind(applied.map(|a| a.at))
            .bind(applied.map(|a| a.round_trip_us as i64))
            .bind(applied.and_then(|a| a.published_at))
            .fetch_all(&storage.pool)
            .await?;
        let closed: i32 = rows
            .first()
            .ok_or_else(|| decode_err("hearth_save_reported answer"))?
            .try_get(0)?;
        Ok(closed == 1)
    }
}
