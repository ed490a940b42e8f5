//! The SQL of Hearth, for SQLite and MySQL. Both speak `?` placeholders and
//! the same queries except where noted, so one macro writes both
//! implementations and each statement exists once. The exception: the two
//! writes of a command's round trip, which MySQL runs as stored procedures
//! (one round trip each; migrations/mysql/0004) and SQLite as transactions
//! (`write_actuator_state`, `write_reported` below).

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

use super::{kind_of, Applied, DecisionsOf, ReadingQuery, Result, Storage, StorageError};
use crate::domain::{
    Action, ActuatorState, Command, CommandState, Desired, Device, DeviceId, Home, HomeId,
    LoggedDecision, Mode, Pending, Reading, Reported, Resolution, RuleDecision, RuleId, RuleState,
    SeriesPlan, SeriesPoint, StaleAction, ThresholdRule, UnixMs,
};

/// Rows per multi-row INSERT. Why: MySQL allows 65,535 placeholders per
/// statement (5 per reading), and few distinct batch shapes keep prepared
/// statements cached.
const INSERT_CHUNK: usize = 1_000;

/// A device with the command behind its desired state.
const DEVICE_SELECT: &str =
    "SELECT d.id, d.home_id, d.kind, d.name, d.mode, d.desired_version, d.desired_on, d.desired_at, \
     d.desired_reason, d.reported_version, d.reported_on, d.reported_at, d.online, d.last_seen, \
     d.override_until, c.version, c.on_state, c.requested_by, c.reason, c.state, c.requested_at, \
     c.published_at, c.applied_at, c.expires_at, c.round_trip_us \
     FROM devices d LEFT JOIN commands c ON c.device_id = d.id AND c.version = d.desired_version";
const COMMAND_COLUMNS: &str =
    "device_id, version, on_state, requested_by, reason, state, requested_at, \
     published_at, applied_at, expires_at, round_trip_us";
const RULE_COLUMNS: &str =
    "id, home_id, name, source_device_id, metric, target_device_id, on_above, off_below, enabled, \
     min_on_s, min_off_s, sustain_s, stale_after_s, stale_action";
const RULE_STATE_COLUMNS: &str =
    "rule_id, output, switched_at, pending_on, pending_since, pending_value, \
     last_reading_at, last_value, stale, started_at, cursor_ts, cursor_seq";
const DECISION_COLUMNS: &str =
    "rule_id, home_id, target_device_id, action, at, value, reason, command_version";

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
    (
        $storage:ident,
        $db:ty,
        insert_ignore = $insert_ignore:literal,
        int_div = $int_div:literal,
        delete_readings = $delete_readings:literal,
        delete_rollups = $delete_rollups:literal
    ) => {
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
                let id = DeviceId::parse(&id, "devices.id").map_err(|_| decode_err("device id"))?;
                let last_command = match row.try_get::<Option<i64>, _>("version")? {
                    Some(_) => Some(Self::command_from_row(row, Some(&id))?),
                    None => None,
                };
                Ok(Device {
                    id,
                    home_id: HomeId::parse(&home_id, "devices.home_id").map_err(|_| decode_err("home id"))?,
                    kind: kind_of(&kind)?,
                    name: row.try_get("name")?,
                    state: ActuatorState {
                        mode: Mode::parse(&mode).ok_or_else(|| decode_err("mode"))?,
                        desired,
                        reported,
                        override_until: row.try_get("override_until")?,
                    },
                    online: row.try_get("online")?,
                    last_seen: row.try_get("last_seen")?,
                    last_command,
                })
            }

            /// `device`: known already (a joined row has no `device_id` column).
            fn command_from_row(row: &<$db as sqlx::Database>::Row, device: Option<&DeviceId>) -> Result<Command> {
                let device_id = match device {
                    Some(d) => d.clone(),
                    None => DeviceId::parse(&row.try_get::<String, _>("device_id")?, "commands.device_id")
                        .map_err(|_| decode_err("device id"))?,
                };
                let state: String = row.try_get("state")?;
                Ok(Command {
                    device_id,
                    version: row.try_get::<i64, _>("version")? as u64,
                    on: row.try_get("on_state")?,
                    requested_by: row.try_get("requested_by")?,
                    reason: row.try_get("reason")?,
                    state: CommandState::parse(&state).ok_or_else(|| decode_err("command state"))?,
                    requested_at: row.try_get("requested_at")?,
                    published_at: row.try_get("published_at")?,
                    applied_at: row.try_get("applied_at")?,
                    expires_at: row.try_get("expires_at")?,
                    round_trip_us: row.try_get::<Option<i64>, _>("round_trip_us")?.map(|v| v as u64),
                })
            }

            fn rule_state_from_row(row: &<$db as sqlx::Database>::Row) -> Result<RuleState> {
                let pending = match (
                    row.try_get::<Option<bool>, _>("pending_on")?,
                    row.try_get::<Option<i64>, _>("pending_since")?,
                ) {
                    (Some(on), Some(since)) => Some(Pending {
                        on,
                        since,
                        value: row.try_get::<Option<f64>, _>("pending_value")?.unwrap_or(f64::NAN),
                        held: false,
                    }),
                    _ => None,
                };
                Ok(RuleState {
                    output: row.try_get("output")?,
                    switched_at: row.try_get("switched_at")?,
                    pending,
                    last_reading_at: row.try_get("last_reading_at")?,
                    last_value: row.try_get("last_value")?,
                    stale: row.try_get("stale")?,
                    started_at: row.try_get("started_at")?,
                    cursor: (row.try_get("cursor_ts")?, row.try_get::<i64, _>("cursor_seq")? as u64),
                })
            }

            fn decision_from_row(row: &<$db as sqlx::Database>::Row) -> Result<LoggedDecision> {
                let action: String = row.try_get("action")?;
                let action = Action::parse(&action).ok_or_else(|| decode_err("decision action"))?;
                Ok(LoggedDecision {
                    rule_id: RuleId::parse(&row.try_get::<String, _>("rule_id")?, "rule_id").map_err(|_| decode_err("rule id"))?,
                    home_id: HomeId::parse(&row.try_get::<String, _>("home_id")?, "home_id").map_err(|_| decode_err("home id"))?,
                    target: DeviceId::parse(&row.try_get::<String, _>("target_device_id")?, "target").map_err(|_| decode_err("device id"))?,
                    decision: RuleDecision {
                        action,
                        at: row.try_get("at")?,
                        value: row.try_get("value")?,
                        reason: row.try_get("reason")?,
                        switch: match action {
                            Action::SwitchOn => Some(true),
                            Action::SwitchOff => Some(false),
                            _ => None,
                        },
                    },
                    command_version: row.try_get::<i64, _>("command_version")? as u64,
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
                    min_on_s: row.try_get::<i64, _>("min_on_s")? as u32,
                    min_off_s: row.try_get::<i64, _>("min_off_s")? as u32,
                    sustain_s: row.try_get::<i64, _>("sustain_s")? as u32,
                    stale_after_s: row.try_get::<i64, _>("stale_after_s")? as u32,
                    stale_action: StaleAction::parse(&row.try_get::<String, _>("stale_action")?)
                        .ok_or_else(|| decode_err("stale action"))?,
                })
            }

            /// Replaces a rule's state inside `tx`.
            async fn put_rule_state(
                tx: &mut sqlx::Transaction<'_, $db>,
                id: &RuleId,
                st: &RuleState,
            ) -> Result<()> {
                // Why delete + insert: one statement shape for both databases.
                sqlx::query("DELETE FROM rule_state WHERE rule_id = ?").bind(id.as_str()).execute(&mut **tx).await?;
                let p = st.pending.as_ref();
                sqlx::query(&format!("INSERT INTO rule_state ({RULE_STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                    .bind(id.as_str())
                    .bind(st.output)
                    .bind(st.switched_at)
                    .bind(p.map(|p| p.on))
                    .bind(p.map(|p| p.since))
                    .bind(p.map(|p| p.value).filter(|v| v.is_finite()))
                    .bind(st.last_reading_at)
                    .bind(st.last_value)
                    .bind(st.stale)
                    .bind(st.started_at)
                    .bind(st.cursor.0)
                    .bind(st.cursor.1 as i64)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
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
                        sqlx::query(&format!("{DEVICE_SELECT} WHERE d.home_id = ? ORDER BY d.id"))
                            .bind(h.as_str())
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => sqlx::query(&format!("{DEVICE_SELECT} ORDER BY d.id")).fetch_all(&self.pool).await?,
                };
                rows.iter().map(Self::device_from_row).collect()
            }

            async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>> {
                sqlx::query(&format!("{DEVICE_SELECT} WHERE d.id = ?"))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(Self::device_from_row)
                    .transpose()
            }

            async fn save_actuator_state(
                &self,
                id: &DeviceId,
                expected_version: u64,
                state: &ActuatorState,
                command: Option<&Command>,
            ) -> Result<()> {
                self.write_actuator_state(id, expected_version, state, command).await
            }

            async fn command_published(&self, id: &DeviceId, version: u64, at: UnixMs) -> Result<()> {
                // Why also when already closed: on loopback the device's
                // report can be stored before this, and the lifecycle should
                // still show when the command went out.
                sqlx::query("UPDATE commands SET published_at = COALESCE(published_at, ?), state = CASE WHEN state = 'requested' THEN 'published' ELSE state END WHERE device_id = ? AND version = ?")
                    .bind(at)
                    .bind(id.as_str())
                    .bind(version as i64)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn expire_commands(&self, now: UnixMs) -> Result<Vec<DeviceId>> {
                let mut tx = self.pool.begin().await?;
                let rows = sqlx::query("SELECT device_id FROM commands WHERE state IN ('requested', 'published') AND expires_at <= ?")
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                sqlx::query("UPDATE commands SET state = 'expired' WHERE state IN ('requested', 'published') AND expires_at <= ?")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| DeviceId::parse(&r.try_get::<String, _>("device_id")?, "device_id").map_err(|_| decode_err("device id")))
                    .collect()
            }

            async fn list_commands(&self, id: &DeviceId, limit: u32) -> Result<Vec<Command>> {
                let rows = sqlx::query(&format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = ? ORDER BY version DESC LIMIT ?"))
                    .bind(id.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|r| Self::command_from_row(r, None)).collect()
            }

            async fn overrides_ended(&self, now: UnixMs) -> Result<Vec<DeviceId>> {
                let rows = sqlx::query("SELECT id FROM devices WHERE override_until IS NOT NULL AND override_until <= ?")
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| DeviceId::parse(&r.try_get::<String, _>("id")?, "id").map_err(|_| decode_err("device id")))
                    .collect()
            }

            async fn save_reported(&self, id: &DeviceId, state: &ActuatorState, applied: Option<Applied>) -> Result<bool> {
                self.write_reported(id, state, applied).await
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

            async fn readings_after(
                &self,
                device: &DeviceId,
                metric: Metric,
                after: (UnixMs, u64),
                until: Option<UnixMs>,
                limit: u32,
            ) -> Result<Vec<Reading>> {
                let mut q = QueryBuilder::<$db>::new("SELECT seq, ts, value FROM readings WHERE device_id = ");
                q.push_bind(device.as_str());
                q.push(" AND metric = ").push_bind(metric as i16);
                q.push(" AND (ts > ").push_bind(after.0);
                q.push(" OR (ts = ").push_bind(after.0);
                q.push(" AND seq > ").push_bind(after.1 as i64).push("))");
                if let Some(until) = until {
                    q.push(" AND ts < ").push_bind(until);
                }
                q.push(" ORDER BY ts, seq LIMIT ").push_bind(i64::from(limit));
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        Ok(Reading {
                            device_id: device.clone(),
                            metric,
                            seq: row.try_get::<i64, _>("seq")? as u64,
                            time: row.try_get("ts")?,
                            value: row.try_get("value")?,
                        })
                    })
                    .collect()
            }

            async fn refresh_rollups(&self, resolution: Resolution, devices: &[DeviceId], from: UnixMs, to: UnixMs) -> Result<()> {
                if devices.is_empty() || from >= to {
                    return Ok(());
                }
                let width = resolution.ms();
                let mut q = QueryBuilder::<$db>::new("REPLACE INTO rollups (device_id, metric, resolution, bucket, vmin, vmax, vsum, n) ");
                match resolution {
                    Resolution::Raw => return Ok(()),
                    Resolution::Minute => {
                        q.push("SELECT device_id, metric, ").push_bind(width).push(", ").push_bind(from);
                        q.push(concat!(" + ((ts - ")).push_bind(from).push(concat!(")", $int_div)).push_bind(width).push(") * ").push_bind(width);
                        q.push(", MIN(value), MAX(value), SUM(value), COUNT(*) FROM readings WHERE ts >= ").push_bind(from);
                        q.push(" AND ts < ").push_bind(to);
                    }
                    Resolution::Hour | Resolution::Day => {
                        let finer = if resolution == Resolution::Hour { Resolution::Minute } else { Resolution::Hour };
                        q.push("SELECT device_id, metric, ").push_bind(width).push(", ").push_bind(from);
                        q.push(" + ((bucket - ").push_bind(from).push(concat!(")", $int_div)).push_bind(width).push(") * ").push_bind(width);
                        q.push(", MIN(vmin), MAX(vmax), SUM(vsum), SUM(n) FROM rollups WHERE resolution = ").push_bind(finer.ms());
                        q.push(" AND bucket >= ").push_bind(from).push(" AND bucket < ").push_bind(to);
                    }
                }
                q.push(" AND device_id IN (");
                let mut ids = q.separated(", ");
                for d in devices {
                    ids.push_bind(d.as_str());
                }
                q.push(") GROUP BY 1, 2, 3, 4");
                q.build().execute(&self.pool).await?;
                Ok(())
            }

            async fn series(&self, device: &DeviceId, metric: Metric, plan: &SeriesPlan) -> Result<Vec<SeriesPoint>> {
                let mut q = QueryBuilder::<$db>::new("SELECT ");
                // `+ 0e0`: a floating-point sum in both databases (MySQL's SUM of integers is DECIMAL).
                if plan.resolution == Resolution::Raw {
                    q.push("(ts - ").push_bind(plan.start).push(concat!(")", $int_div)).push_bind(plan.bucket_ms);
                    q.push(" AS b, MIN(value) AS vmin, MAX(value) AS vmax, SUM(value) AS vsum, COUNT(*) + 0e0 AS n FROM readings WHERE device_id = ");
                    q.push_bind(device.as_str()).push(" AND metric = ").push_bind(metric as i16);
                    q.push(" AND ts >= ").push_bind(plan.start).push(" AND ts < ").push_bind(plan.end);
                } else {
                    q.push("(bucket - ").push_bind(plan.start).push(concat!(")", $int_div)).push_bind(plan.bucket_ms);
                    q.push(" AS b, MIN(vmin) AS vmin, MAX(vmax) AS vmax, SUM(vsum) AS vsum, SUM(n) + 0e0 AS n FROM rollups WHERE device_id = ");
                    q.push_bind(device.as_str()).push(" AND metric = ").push_bind(metric as i16);
                    q.push(" AND resolution = ").push_bind(plan.resolution.ms());
                    q.push(" AND bucket >= ").push_bind(plan.start).push(" AND bucket < ").push_bind(plan.end);
                }
                q.push(" GROUP BY b ORDER BY b");
                let rows = q.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        let b: i64 = row.try_get("b")?;
                        Ok(SeriesPoint {
                            start: plan.start + b * plan.bucket_ms,
                            min: row.try_get("vmin")?,
                            max: row.try_get("vmax")?,
                            sum: row.try_get("vsum")?,
                            count: row.try_get::<f64, _>("n")? as u64,
                        })
                    })
                    .collect()
            }

            async fn delete_readings_before(&self, device: &DeviceId, metric: Metric, before: UnixMs, limit: u32) -> Result<u64> {
                let done = sqlx::query($delete_readings)
                    .bind(device.as_str())
                    .bind(metric as i16)
                    .bind(before)
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn delete_rollups_before(&self, resolution: Resolution, before: UnixMs, limit: u32) -> Result<u64> {
                let done = sqlx::query($delete_rollups)
                    .bind(resolution.ms())
                    .bind(before)
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn create_rule(&self, r: &ThresholdRule, state: &RuleState) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(&format!("INSERT INTO rules ({RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                    .bind(r.id.as_str())
                    .bind(r.home_id.as_str())
                    .bind(&r.name)
                    .bind(r.source.as_str())
                    .bind(r.metric as i16)
                    .bind(r.target.as_str())
                    .bind(r.on_above)
                    .bind(r.off_below)
                    .bind(r.enabled)
                    .bind(i64::from(r.min_on_s))
                    .bind(i64::from(r.min_off_s))
                    .bind(i64::from(r.sustain_s))
                    .bind(i64::from(r.stale_after_s))
                    .bind(r.stale_action.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match StorageError::from(e) {
                        StorageError::Conflict(_) => StorageError::Conflict(format!("rule {}", r.id)),
                        other => other,
                    })?;
                Self::put_rule_state(&mut tx, &r.id, state).await?;
                tx.commit().await?;
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

            async fn update_rule(&self, r: &ThresholdRule, state: &RuleState) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE rules SET name = ?, source_device_id = ?, metric = ?, target_device_id = ?, on_above = ?, \
                     off_below = ?, enabled = ?, min_on_s = ?, min_off_s = ?, sustain_s = ?, stale_after_s = ?, \
                     stale_action = ? WHERE id = ? AND home_id = ?",
                )
                .bind(&r.name)
                .bind(r.source.as_str())
                .bind(r.metric as i16)
                .bind(r.target.as_str())
                .bind(r.on_above)
                .bind(r.off_below)
                .bind(r.enabled)
                .bind(i64::from(r.min_on_s))
                .bind(i64::from(r.min_off_s))
                .bind(i64::from(r.sustain_s))
                .bind(i64::from(r.stale_after_s))
                .bind(r.stale_action.as_str())
                .bind(r.id.as_str())
                .bind(r.home_id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("rule {} in home {}", r.id, r.home_id)));
                }
                Self::put_rule_state(&mut tx, &r.id, state).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_rule(&self, id: &RuleId) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("DELETE FROM rules WHERE id = ?").bind(id.as_str()).execute(&mut *tx).await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("rule {id}")));
                }
                sqlx::query("DELETE FROM rule_state WHERE rule_id = ?").bind(id.as_str()).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn load_rule_state(&self, id: &RuleId) -> Result<Option<RuleState>> {
                sqlx::query(&format!("SELECT {RULE_STATE_COLUMNS} FROM rule_state WHERE rule_id = ?"))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(Self::rule_state_from_row)
                    .transpose()
            }

            async fn save_rule_state(&self, id: &RuleId, st: &RuleState) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                Self::put_rule_state(&mut tx, id, st).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_decision(&self, d: &LoggedDecision) -> Result<()> {
                sqlx::query(&format!("INSERT INTO decisions ({DECISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
                    .bind(d.rule_id.as_str())
                    .bind(d.home_id.as_str())
                    .bind(d.target.as_str())
                    .bind(d.decision.action.as_str())
                    .bind(d.decision.at)
                    .bind(d.decision.value.filter(|v| v.is_finite()))
                    .bind(&d.decision.reason)
                    .bind(d.command_version as i64)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_decisions(&self, of: DecisionsOf<'_>, limit: u32) -> Result<Vec<LoggedDecision>> {
                let (column, id) = match of {
                    DecisionsOf::Home(h) => ("home_id", h.as_str()),
                    DecisionsOf::Rule(r) => ("rule_id", r.as_str()),
                };
                let rows = sqlx::query(&format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE {column} = ? ORDER BY id DESC LIMIT ?"))
                    .bind(id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::decision_from_row).collect()
            }

            async fn acquire_lease(&self, name: &str, holder: &str, now: UnixMs, until: UnixMs) -> Result<bool> {
                let taken = sqlx::query("UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at <= ?)")
                    .bind(holder)
                    .bind(until)
                    .bind(name)
                    .bind(holder)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                if taken.rows_affected() == 1 {
                    return Ok(true);
                }
                let created = sqlx::query(concat!($insert_ignore, " INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"))
                    .bind(name)
                    .bind(holder)
                    .bind(until)
                    .execute(&self.pool)
                    .await?;
                Ok(created.rows_affected() == 1)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
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

/// The two writes of a command's round trip: on SQLite a transaction of
/// several statements, which costs nothing extra in process.
impl SqliteStorage {
    async fn write_actuator_state(
        &self,
        id: &DeviceId,
        expected_version: u64,
        state: &ActuatorState,
        command: Option<&Command>,
    ) -> Result<()> {
        let d = state.desired.as_ref();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE devices SET mode = ?, desired_version = ?, desired_on = ?, desired_at = ?, desired_reason = ?, \
             override_until = ? WHERE id = ? AND desired_version = ?",
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
            return if self.get_device(id).await?.is_none() {
                Err(StorageError::NotFound(format!("device {id}")))
            } else {
                Err(StorageError::Stale(format!("device {id}")))
            };
        }
        if let Some(c) = command {
            sqlx::query("UPDATE commands SET state = 'superseded' WHERE device_id = ? AND version < ? AND state IN ('requested', 'published')")
                .bind(id.as_str())
                .bind(c.version as i64)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "INSERT INTO commands ({COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
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
        &self,
        id: &DeviceId,
        state: &ActuatorState,
        applied: Option<Applied>,
    ) -> Result<bool> {
        let r = state.reported.as_ref();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE devices SET reported_version = ?, reported_on = ?, reported_at = ? WHERE id = ?")
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
                 published_at = COALESCE(published_at, ?) WHERE device_id = ? AND version = ? AND state <> 'applied'",
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

sql_storage!(
    SqliteStorage,
    sqlx::Sqlite,
    insert_ignore = "INSERT OR IGNORE",
    int_div = " / ",
    delete_readings = "DELETE FROM readings WHERE (device_id, metric, seq) IN (SELECT device_id, metric, seq \
                       FROM readings WHERE device_id = ? AND metric = ? AND ts < ? LIMIT ?)",
    delete_rollups = "DELETE FROM rollups WHERE (device_id, metric, resolution, bucket) IN \
                      (SELECT device_id, metric, resolution, bucket FROM rollups WHERE resolution = ? AND bucket < ? LIMIT ?)"
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
        Ok(Self { pool })
    }
}

/// The two writes of a command's round trip: on MySQL one `CALL` each of
/// the procedures in migrations/mysql/0004, so each costs one round trip to
/// the server instead of five or four.
impl MySqlStorage {
    async fn write_actuator_state(
        &self,
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
        .fetch_all(&self.pool)
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
        &self,
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
            .fetch_all(&self.pool)
            .await?;
        let closed: i32 = rows
            .first()
            .ok_or_else(|| decode_err("hearth_save_reported answer"))?
            .try_get(0)?;
        Ok(closed == 1)
    }
}

sql_storage!(
    MySqlStorage,
    sqlx::MySql,
    insert_ignore = "INSERT IGNORE",
    int_div = " DIV ",
    delete_readings =
        "DELETE FROM readings WHERE device_id = ? AND metric = ? AND ts < ? ORDER BY ts LIMIT ?",
    delete_rollups = "DELETE FROM rollups WHERE resolution = ? AND bucket < ? LIMIT ?"
);

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
