//! The SQL of Hearth, for SQLite and MySQL. Both speak `?` placeholders and
//! the same queries except where noted, so one macro writes both
//! implementations and each statement exists once.

use std::str::FromStr;

use async_trait::async_trait;
use hearth_proto::v1::Metric;
use sqlx::{
    mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
    QueryBuilder, Row,
};

use super::{kind_of, ReadingQuery, Result, Storage, StorageError};
use crate::domain::{
    ActuatorState, Desired, Device, DeviceId, Home, HomeId, Mode, Reading, Reported, RuleId,
    ThresholdRule,
};

/// Rows per multi-row INSERT. Why: MySQL allows 65,535 placeholders per
/// statement (5 per reading), and few distinct batch shapes keep prepared
/// statements cached.
const INSERT_CHUNK: usize = 1_000;

const DEVICE_COLUMNS: &str =
    "id, home_id, kind, name, mode, desired_version, desired_on, desired_at, desired_reason, \
     reported_version, reported_on, reported_at, online, last_seen";
const RULE_COLUMNS: &str =
    "id, home_id, name, source_device_id, metric, target_device_id, on_above, off_below, enabled";

fn decode_err(what: &str) -> StorageError {
    StorageError::Internal(sqlx::Error::Decode(
        format!("stored {what} is not valid").into(),
    ))
}

fn metric_of(code: i16) -> Result<Metric> {
    match Metric::try_from(i32::from(code)) {
        Ok(Metric::Unspecified) | Err(_) => Err(decode_err("metric")),
        Ok(m) => Ok(m),
    }
}

/// Generates a `Storage` implementation over one sqlx database.
macro_rules! sql_storage {
    ($storage:ident, $db:ty, insert_ignore = $insert_ignore:literal) => {
        impl $storage {
            fn device_from_row(row: &<$db as sqlx::Database>::Row) -> Result<Device> {
                let id: String = row.try_get("id")?;
                let home_id: String = row.try_get("home_id")?;
                let kind: String = row.try_get("kind")?;
                let mode: String = row.try_get("mode")?;
                let desired_version: i64 = row.try_get("desired_version")?;
                let desired_on: Option<bool> = row.try_get("desired_on")?;
                let reported_version: Option<i64> = row.try_get("reported_version")?;
                let reported_on: Option<bool> = row.try_get("reported_on")?;
                let desired = match desired_on {
                    Some(on) if desired_version > 0 => Some(Desired {
                        version: desired_version as u64,
                        on,
                        issued_at: row.try_get::<Option<i64>, _>("desired_at")?.unwrap_or_default(),
                        reason: row.try_get::<Option<String>, _>("desired_reason")?.unwrap_or_default(),
                    }),
                    _ => None,
                };
                let reported = match (reported_version, reported_on) {
                    (Some(v), Some(on)) => Some(Reported {
                        applied_version: v as u64,
                        on,
                        recorded_at: row.try_get::<Option<i64>, _>("reported_at")?.unwrap_or_default(),
                    }),
                    _ => None,
                };
                Ok(Device {
                    id: DeviceId::parse(&id, "devices.id").map_err(|_| decode_err("device id"))?,
                    home_id: HomeId::parse(&home_id, "devices.home_id").map_err(|_| decode_err("home id"))?,
                    kind: kind_of(&kind)?,
                    name: row.try_get("name")?,
                    state: ActuatorState {
                        mode: Mode::parse(&mode).ok_or_else(|| decode_err("mode"))?,
                        desired,
                        reported,
                    },
                    online: row.try_get("online")?,
                    last_seen: row.try_get("last_seen")?,
                })
            }

            fn rule_from_row(row: &<$db as sqlx::Database>::Row) -> Result<ThresholdRule> {
                let id = |col: &'static str| -> Result<String> { Ok(row.try_get::<String, _>(col)?) };
                Ok(ThresholdRule {
                    id: RuleId::parse(&id("id")?, "rules.id").map_err(|_| decode_err("rule id"))?,
                    home_id: HomeId::parse(&id("home_id")?, "rules.home_id").map_err(|_| decode_err("home id"))?,
                    name: row.try_get("name")?,
                    source: DeviceId::parse(&id("source_device_id")?, "source").map_err(|_| decode_err("device id"))?,
                    metric: metric_of(row.try_get("metric")?)?,
                    target: DeviceId::parse(&id("target_device_id")?, "target").map_err(|_| decode_err("device id"))?,
                    on_above: row.try_get("on_above")?,
                    off_below: row.try_get("off_below")?,
                    enabled: row.try_get("enabled")?,
                })
            }

            async fn home_exists(&self, id: &HomeId) -> Result<bool> {
                Ok(sqlx::query("SELECT 1 FROM homes WHERE id = ?")
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some())
            }
        }

        #[async_trait]
        impl Storage for $storage {
            async fn create_home(&self, home: &Home) -> Result<()> {
                sqlx::query("INSERT INTO homes (id, name, created_at) VALUES (?, ?, ?)")
                    .bind(home.id.as_str())
                    .bind(&home.name)
                    .bind(home.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| match StorageError::from(e) {
                        StorageError::Conflict(_) => StorageError::Conflict(format!("home {}", home.id)),
                        other => other,
                    })?;
                Ok(())
            }

            async fn list_homes(&self) -> Result<Vec<Home>> {
                let rows = sqlx::query("SELECT id, name, created_at FROM homes ORDER BY id").fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        let id: String = row.try_get("id")?;
                        Ok(Home {
                            id: HomeId::parse(&id, "homes.id").map_err(|_| decode_err("home id"))?,
                            name: row.try_get("name")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn register_device(&self, d: &Device) -> Result<()> {
                if !self.home_exists(&d.home_id).await? {
                    return Err(StorageError::NotFound(format!("home {}", d.home_id)));
                }
                sqlx::query("INSERT INTO devices (id, home_id, kind, name, mode) VALUES (?, ?, ?, ?, ?)")
                    .bind(d.id.as_str())
                    .bind(d.home_id.as_str())
                    .bind(d.kind.as_str())
                    .bind(&d.name)
                    .bind(d.state.mode.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| match StorageError::from(e) {
                        StorageError::Conflict(_) => StorageError::Conflict(format!("device {}", d.id)),
                        other => other,
                    })?;
                Ok(())
            }

            async fn list_devices(&self, home: Option<&HomeId>) -> Result<Vec<Device>> {
                let rows = match home {
                    Some(h) => {
                        sqlx::query(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE home_id = ? ORDER BY id"))
                            .bind(h.as_str())
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => sqlx::query(&format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id")).fetch_all(&self.pool).await?,
                };
                rows.iter().map(Self::device_from_row).collect()
            }

            async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>> {
                sqlx::query(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?"))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(Self::device_from_row)
                    .transpose()
            }

            async fn save_actuator_state(&self, id: &DeviceId, expected_version: u64, state: &ActuatorState) -> Result<()> {
                let d = state.desired.as_ref();
                let done = sqlx::query(
                    "UPDATE devices SET mode = ?, desired_version = ?, desired_on = ?, desired_at = ?, desired_reason = ? \
                     WHERE id = ? AND desired_version = ?",
                )
                .bind(state.mode.as_str())
                .bind(d.map_or(0, |d| d.version as i64))
                .bind(d.map(|d| d.on))
                .bind(d.map(|d| d.issued_at))
                .bind(d.map(|d| d.reason.as_str()))
                .bind(id.as_str())
                .bind(expected_version as i64)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else if self.get_device(id).await?.is_none() {
                    Err(StorageError::NotFound(format!("device {id}")))
                } else {
                    Err(StorageError::Stale(format!("device {id}")))
                }
            }

            async fn save_reported(&self, id: &DeviceId, state: &ActuatorState) -> Result<()> {
                let r = state.reported.as_ref();
                sqlx::query("UPDATE devices SET reported_version = ?, reported_on = ?, reported_at = ? WHERE id = ?")
                    .bind(r.map(|r| r.applied_version as i64))
                    .bind(r.map(|r| r.on))
                    .bind(r.map(|r| r.recorded_at))
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn save_presence(&self, id: &DeviceId, online: Option<bool>, seen: i64) -> Result<()> {
                sqlx::query("UPDATE devices SET online = COALESCE(?, online), last_seen = ? WHERE id = ?")
                    .bind(online)
                    .bind(seen)
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_readings(&self, readings: &[Reading]) -> Result<u64> {
                let mut inserted = 0;
                let mut tx = self.pool.begin().await?;
                for chunk in readings.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(concat!($insert_ignore, " INTO readings (device_id, metric, seq, ts, value) "));
                    q.push_values(chunk, |mut row, r| {
                        row.push_bind(r.device_id.as_str())
                            .push_bind(r.metric as i16)
                            .push_bind(r.seq as i64)
                            .push_bind(r.time)
                            .push_bind(r.value);
                    });
                    inserted += q.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn list_readings(&self, query: &ReadingQuery) -> Result<Vec<Reading>> {
                let mut q = QueryBuilder::<$db>::new("SELECT metric, seq, ts, value FROM readings WHERE device_id = ");
                q.push_bind(query.device_id.as_str());
                if let Some(m) = query.metric {
                    q.push(" AND metric = ").push_bind(m as i16);
                }
                if let Some(start) = query.start {
                    q.push(" AND ts >= ").push_bind(start);
                }
                if let Some(end) = query.end {
                    q.push(" AND ts < ").push_bind(end);
                }
                if let Some(c) = query.before {
                    // Why expanded: MySQL does not use an index for row-value comparisons.
                    q.push(" AND (ts < ").push_bind(c.time);
                    q.push(" OR (ts = ").push_bind(c.time);
                    q.push(" AND (metric < ").push_bind(c.metric as i16);
                    q.push(" OR (metric = ").push_bind(c.metric as i16);
                    q.push(" AND seq < ").push_bind(c.seq as i64).push("))))");
                }
                q.push(" ORDER BY ts DESC, metric DESC, seq DESC LIMIT ").push_bind(i64::from(query.limit));
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        Ok(Reading {
                            device_id: query.device_id.clone(),
                            metric: metric_of(row.try_get("metric")?)?,
                            seq: row.try_get::<i64, _>("seq")? as u64,
                            time: row.try_get("ts")?,
                            value: row.try_get("value")?,
                        })
                    })
                    .collect()
            }

            async fn create_rule(&self, r: &ThresholdRule) -> Result<()> {
                sqlx::query(&format!("INSERT INTO rules ({RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                    .bind(r.id.as_str())
                    .bind(r.home_id.as_str())
                    .bind(&r.name)
                    .bind(r.source.as_str())
                    .bind(r.metric as i16)
                    .bind(r.target.as_str())
                    .bind(r.on_above)
                    .bind(r.off_below)
                    .bind(r.enabled)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| match StorageError::from(e) {
                        StorageError::Conflict(_) => StorageError::Conflict(format!("rule {}", r.id)),
                        other => other,
                    })?;
                Ok(())
            }

            async fn list_rules(&self, home: Option<&HomeId>) -> Result<Vec<ThresholdRule>> {
                let rows = match home {
                    Some(h) => {
                        sqlx::query(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE home_id = ? ORDER BY id"))
                            .bind(h.as_str())
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => sqlx::query(&format!("SELECT {RULE_COLUMNS} FROM rules ORDER BY id")).fetch_all(&self.pool).await?,
                };
                rows.iter().map(Self::rule_from_row).collect()
            }

            async fn delete_rule(&self, id: &RuleId) -> Result<()> {
                let done = sqlx::query("DELETE FROM rules WHERE id = ?").bind(id.as_str()).execute(&self.pool).await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("rule {id}")));
                }
                Ok(())
            }
        }
    };
}

/// The embedded default: one SQLite file.
pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
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
        Ok(Self { pool })
    }
}

sql_storage!(
    SqliteStorage,
    sqlx::Sqlite,
    insert_ignore = "INSERT OR IGNORE"
);

/// Production: MySQL or MariaDB.
pub struct MySqlStorage {
    pool: MySqlPool,
}

impl MySqlStorage {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let url = url.replacen("mariadb:", "mysql:", 1);
        let options = MySqlConnectOptions::from_str(&url)
            .context("HEARTH_DATABASE_URL is not a valid mysql:// URL")?;
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
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
        Ok(Self { pool })
    }
}

sql_storage!(MySqlStorage, sqlx::MySql, insert_ignore = "INSERT IGNORE");

/// `url` without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            super::redact("mysql://root:s3cret@db:3306/hearth"),
            "mysql://root:***@db:3306/hearth"
        );
        assert_eq!(
            super::redact("mysql://127.0.0.1/test"),
            "mysql://127.0.0.1/test"
        );
    }
}
