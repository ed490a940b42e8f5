//! The SQL that SQLite and MySQL share: [`SqlStorage`] implements [`Storage`]
//! once, generic over the sqlx database, and each statement exists once. Both
//! databases speak `?` placeholders and the same queries; what differs is
//! behind [`Dialect`], implemented beside each database's connect options in
//! `sqlite.rs` and `mysql.rs`: a few keywords, the two batched deletes, and the
//! two writes of a command's round trip, which MySQL runs as stored procedures
//! (one round trip each; migrations/mysql/0004) and SQLite as transactions.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;
use hearth_proto::v1::Metric;
use sqlx::{
    query::Query, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row,
    Transaction, Type,
};

use super::{
    kind_of, Applied, DecisionsOf, Inserted, ReadingOrder, ReadingQuery, Result, Storage,
    StorageError,
};
use crate::domain::{
    delivery::{arrivals, hour_of, Arrivals, Arrived, MetricSet, RunAccount, Sent, StoredHour},
    reading::MAX_SEQ,
    Action, ActuatorState, Command, CommandState, Desired, Device, DeviceId, Home, HomeId,
    LoggedDecision, Mode, Pending, Reading, Reported, Resolution, RuleDecision, RuleId, RuleState,
    SeriesPlan, SeriesPoint, StaleAction, ThresholdRule, UnixMs, HOUR_MS,
};

/// Rows per multi-row INSERT. Why: MySQL allows 65,535 placeholders per
/// statement (5 per reading), and few distinct batch shapes keep prepared
/// statements cached.
const INSERT_CHUNK: usize = 1_000;
/// Keys per statement when the ingest writer asks what is stored before a
/// commit. Why one statement for many: a round trip per key, or a statement
/// of many `UNION`ed, took longer than the commit itself.
const LOOKUP_CHUNK: usize = 5_000;

/// A device with the command behind its desired state.
const DEVICE_SELECT: &str = "SELECT d.id, d.home_id, d.kind, d.name, d.mode, d.desired_version, \
     d.desired_on, d.desired_at, d.desired_reason, d.reported_version, d.reported_on, \
     d.reported_at, d.online, d.last_seen, d.override_until, c.version, c.on_state, \
     c.requested_by, c.reason, c.state, c.requested_at, c.published_at, c.applied_at, \
     c.expires_at, c.round_trip_us \
     FROM devices d LEFT JOIN commands c ON c.device_id = d.id AND c.version = d.desired_version";
const COMMAND_COLUMNS: &str = "device_id, version, on_state, requested_by, reason, state, \
     requested_at, published_at, applied_at, expires_at, round_trip_us";
const RULE_COLUMNS: &str = "id, home_id, name, source_device_id, metric, target_device_id, \
     on_above, off_below, enabled, min_on_s, min_off_s, sustain_s, stale_after_s, stale_action";
const RULE_STATE_COLUMNS: &str = "rule_id, output, switched_at, pending_on, pending_since, \
     pending_value, last_reading_at, last_value, stale, started_at, cursor_ts, cursor_seq";
const DECISION_COLUMNS: &str =
    "rule_id, home_id, target_device_id, action, at, value, reason, command_version";

/// Stores a new command (SQLite's half of `save_actuator_state`; MySQL's
/// procedure has its own).
pub(super) fn insert_command() -> String {
    format!("INSERT INTO commands ({COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
}

/// A statement put together piece by piece, with its arguments in order.
// Why not sqlx's `QueryBuilder`: code generic over the database cannot run
// what it builds (the arguments' lifetime, invariant behind
// `Database::Arguments<'q>`, must outlive the builder), so this keeps the
// text and the arguments apart and binds them once the text is complete.
struct Statement<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

#[derive(Clone, Copy)]
enum Arg<'a> {
    Text(&'a str),
    Small(i16),
    Int(i64),
    Real(f64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl From<i16> for Arg<'_> {
    fn from(v: i16) -> Self {
        Arg::Small(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl<'a> Statement<'a> {
    fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// A `?` placeholder for `arg`.
    fn push_bind(&mut self, arg: impl Into<Arg<'a>>) -> &mut Self {
        self.sql.push('?');
        self.args.push(arg.into());
        self
    }

    fn query<DB>(&self) -> Query<'_, DB, DB::Arguments<'_>>
    where
        DB: Database,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> i16: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> f64: Encode<'q, DB> + Type<DB>,
    {
        self.args
            .iter()
            .fold(sqlx::query(&self.sql), |q, arg| match *arg {
                Arg::Text(v) => q.bind(v),
                Arg::Small(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Real(v) => q.bind(v),
            })
    }
}

/// What differs between the two databases; everything else is shared.
#[async_trait]
pub trait Dialect: Database {
    /// An INSERT that skips rows whose key is stored already.
    const INSERT_IGNORE: &'static str;
    /// A table `j` of readings' keys from one JSON parameter, an array of
    /// `[i, device_id, metric, seq]`: columns `i`, `d`, `m`, `s`.
    const KEYS_FROM_JSON: &'static str;
    /// What ends `INSERT INTO delivery_arrivals … VALUES …` so that a row
    /// already there is added to.
    const ADD_TO_ARRIVALS: &'static str;
    /// Integer division, as an infix operator with spaces around it.
    const INT_DIV: &'static str;
    /// Deletes up to `limit` readings: binds device, metric, time, limit.
    const DELETE_READINGS_BEFORE: &'static str;
    /// Deletes up to `limit` rollup rows: binds resolution, bucket, limit.
    const DELETE_ROLLUPS_BEFORE: &'static str;
    /// Run before a rollup refresh's transaction, if the database needs it
    /// so that reading `readings` locks none of them.
    const READ_WITHOUT_LOCKS: Option<&'static str>;

    /// How many rows a statement inserted, changed or deleted.
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// [`Storage::save_actuator_state`].
    async fn write_actuator_state(
        storage: &SqlStorage<Self>,
        id: &DeviceId,
        expected_version: u64,
        state: &ActuatorState,
        command: Option<&Command>,
    ) -> Result<()>;

    /// [`Storage::save_reported`].
    async fn write_reported(
        storage: &SqlStorage<Self>,
        id: &DeviceId,
        state: &ActuatorState,
        applied: Option<Applied>,
    ) -> Result<bool>;
}

/// [`Storage`] over one sqlx database: `SqliteStorage` or `MySqlStorage`.
pub struct SqlStorage<DB: Database> {
    pub(super) pool: Pool<DB>,
    /// The highest number this writer has seen stored of each sensor's
    /// metric. Why: a sensor sending in order then costs its commit no
    /// look-up (see [`SqlStorage::insert_readings`]). A stream is a few
    /// dozen bytes, so a home's worth of sensors is a few kilobytes.
    known_highest: Mutex<HashMap<DeviceId, HashMap<Metric, u64>>>,
}

impl<DB: Database> SqlStorage<DB> {
    pub(super) fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            known_highest: Mutex::default(),
        }
    }
}

/// What the ingest writer works out before a commit.
struct Sorted<'a> {
    /// Late and duplicate readings per device, metric and hour, and where
    /// the duplicates are.
    arrived: Arrived,
    /// How many rows the insert should add: readings neither stored nor
    /// earlier in the commit.
    new: u64,
    /// Whether the sorting guessed (see [`SqlStorage::sort_arrivals`]).
    guessed: bool,
    /// Each stream's highest number once the commit is stored. Why
    /// borrowed: the writer's memory then takes an id only for a stream it
    /// meets for the first time, not for every stream of every commit.
    highest_after: Vec<(&'a DeviceId, Metric, u64)>,
}

/// Each stream's highest number once a commit is stored (`after`, by the
/// streams' order), for those that have one.
fn highest_after<'a>(
    streams: &[(&'a DeviceId, Metric)],
    after: Vec<Option<u64>>,
) -> Vec<(&'a DeviceId, Metric, u64)> {
    streams
        .iter()
        .zip(after)
        .filter_map(|(&(device, metric), seq)| Some((device, metric, seq?)))
        .collect()
}

pub(super) fn decode_err(what: &str) -> StorageError {
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

fn device_id(s: &str, what: &'static str) -> Result<DeviceId> {
    DeviceId::parse(s, what).map_err(|_| decode_err("device id"))
}

fn home_id(s: &str, what: &'static str) -> Result<HomeId> {
    HomeId::parse(s, what).map_err(|_| decode_err("home id"))
}

fn rule_id(s: &str, what: &'static str) -> Result<RuleId> {
    RuleId::parse(s, what).map_err(|_| decode_err("rule id"))
}

/// A unique violation named for what was taken.
fn conflict_as(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |e| match StorageError::from(e) {
        StorageError::Conflict(_) => StorageError::Conflict(what()),
        other => other,
    }
}

// Why the bounds are written twice (here and on the `Storage` impl): Rust does
// not carry a trait's `where` clauses to its users, so no alias can hold them.
impl<DB> SqlStorage<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'a> bool: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> i16: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> f64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
    for<'a> Option<bool>: Encode<'a, DB>,
    for<'a> Option<i64>: Encode<'a, DB>,
    for<'a> Option<f64>: Encode<'a, DB>,
{
    fn device_from_row(row: &DB::Row) -> Result<Device> {
        let id: String = row.try_get("id")?;
        let home: String = row.try_get("home_id")?;
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
                issued_at: row
                    .try_get::<Option<i64>, _>("desired_at")?
                    .unwrap_or_default(),
                reason: row
                    .try_get::<Option<String>, _>("desired_reason")?
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        let reported = match (reported_version, reported_on) {
            (Some(v), Some(on)) => Some(Reported {
                applied_version: v as u64,
                on,
                recorded_at: row
                    .try_get::<Option<i64>, _>("reported_at")?
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        let id = device_id(&id, "devices.id")?;
        let last_command = match row.try_get::<Option<i64>, _>("version")? {
            Some(_) => Some(Self::command_from_row(row, Some(&id))?),
            None => None,
        };
        Ok(Device {
            id,
            home_id: home_id(&home, "devices.home_id")?,
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
    fn command_from_row(row: &DB::Row, device: Option<&DeviceId>) -> Result<Command> {
        let device_id = match device {
            Some(d) => d.clone(),
            None => device_id(
                &row.try_get::<String, _>("device_id")?,
                "commands.device_id",
            )?,
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
            round_trip_us: row
                .try_get::<Option<i64>, _>("round_trip_us")?
                .map(|v| v as u64),
        })
    }

    fn rule_state_from_row(row: &DB::Row) -> Result<RuleState> {
        let pending = match (
            row.try_get::<Option<bool>, _>("pending_on")?,
            row.try_get::<Option<i64>, _>("pending_since")?,
        ) {
            (Some(on), Some(since)) => Some(Pending {
                on,
                since,
                value: row
                    .try_get::<Option<f64>, _>("pending_value")?
                    .unwrap_or(f64::NAN),
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
            cursor: (
                row.try_get("cursor_ts")?,
                row.try_get::<i64, _>("cursor_seq")? as u64,
            ),
        })
    }

    fn decision_from_row(row: &DB::Row) -> Result<LoggedDecision> {
        let action: String = row.try_get("action")?;
        let action = Action::parse(&action).ok_or_else(|| decode_err("decision action"))?;
        Ok(LoggedDecision {
            rule_id: rule_id(&row.try_get::<String, _>("rule_id")?, "rule_id")?,
            home_id: home_id(&row.try_get::<String, _>("home_id")?, "home_id")?,
            target: device_id(&row.try_get::<String, _>("target_device_id")?, "target")?,
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

    fn rule_from_row(row: &DB::Row) -> Result<ThresholdRule> {
        let text = |col: &'static str| -> Result<String> { Ok(row.try_get::<String, _>(col)?) };
        Ok(ThresholdRule {
            id: rule_id(&text("id")?, "rules.id")?,
            home_id: home_id(&text("home_id")?, "rules.home_id")?,
            name: row.try_get("name")?,
            source: device_id(&text("source_device_id")?, "source")?,
            metric: metric_of(row.try_get("metric")?)?,
            target: device_id(&text("target_device_id")?, "target")?,
            on_above: row.try_get("on_above")?,
            off_below: row.try_get("off_below")?,
            enabled: row.try_get("enabled")?,
            min_on_s: row.try_get::<i64, _>("min_on_s")? as u32,
            min_off_s: row.try_get::<i64, _>("min_off_s")? as u32,
            sustain_s: row.try_get::<i64, _>("sustain_s")? as u32,
            stale_after_s: row.try_get::<i64, _>("stale_after_s")? as u32,
            stale_action: StaleAction::parse(&text("stale_action")?)
                .ok_or_else(|| decode_err("stale action"))?,
        })
    }

    /// Replaces a rule's state inside `tx`.
    async fn put_rule_state(
        tx: &mut Transaction<'_, DB>,
        id: &RuleId,
        st: &RuleState,
    ) -> Result<()> {
        // Why delete + insert: one statement shape for both databases.
        sqlx::query("DELETE FROM rule_state WHERE rule_id = ?")
            .bind(id.as_str())
            .execute(&mut **tx)
            .await?;
        let p = st.pending.as_ref();
        let insert = format!(
            "INSERT INTO rule_state ({RULE_STATE_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(&insert)
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

    /// The highest number stored of each of `streams` (device, metric), in
    /// their order: one step back along the primary key each, all in one
    /// statement per 5,000.
    async fn highest_stored(&self, streams: &[(&DeviceId, Metric)]) -> Result<Vec<Option<u64>>> {
        let sql = format!(
            "SELECT j.i, (SELECT seq FROM readings r WHERE r.device_id = j.d \
             AND r.metric = j.m ORDER BY seq DESC LIMIT 1) AS highest FROM {}",
            DB::KEYS_FROM_JSON
        );
        let mut highest = vec![None; streams.len()];
        for (c, chunk) in streams.chunks(LOOKUP_CHUNK).enumerate() {
            let keys: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, (device, metric))| {
                    serde_json::json!([c * LOOKUP_CHUNK + i, device.as_str(), *metric as i16, 0])
                })
                .collect();
            let keys = serde_json::Value::from(keys).to_string();
            for row in sqlx::query(&sql)
                .bind(keys.as_str())
                .fetch_all(&self.pool)
                .await?
            {
                let i = row.try_get::<i64, _>("i")? as usize;
                let seq = row.try_get::<Option<i64>, _>("highest")?;
                if let Some(slot) = highest.get_mut(i) {
                    *slot = seq.map(|s| s as u64);
                }
            }
        }
        Ok(highest)
    }

    /// Which of `wanted` (the index of a stream in `streams`, a number) are
    /// stored: a key lookup each, all in one statement per 5,000.
    async fn stored_among(
        &self,
        streams: &[(&DeviceId, Metric)],
        wanted: &[(usize, u64)],
    ) -> Result<HashSet<(usize, u64)>> {
        let sql = format!(
            "SELECT j.i, r.seq FROM {} JOIN readings r ON r.device_id = j.d \
             AND r.metric = j.m AND r.seq = j.s",
            DB::KEYS_FROM_JSON
        );
        let mut stored = HashSet::new();
        for chunk in wanted.chunks(LOOKUP_CHUNK) {
            let keys: Vec<_> = chunk
                .iter()
                .map(|&(i, seq)| {
                    let (device, metric) = streams[i];
                    let seq = seq.min(MAX_SEQ) as i64;
                    serde_json::json!([i, device.as_str(), metric as i16, seq])
                })
                .collect();
            let keys = serde_json::Value::from(keys).to_string();
            for row in sqlx::query(&sql)
                .bind(keys.as_str())
                .fetch_all(&self.pool)
                .await?
            {
                let i = row.try_get::<i64, _>("i")? as usize;
                stored.insert((i, row.try_get::<i64, _>("seq")? as u64));
            }
        }
        Ok(stored)
    }

    /// How `readings` arrive, by what is stored before they are: the
    /// highest number of each metric, and which of theirs at or below it
    /// are stored. Read before the insert's transaction. Why: in SQLite a
    /// transaction that reads first cannot always start writing after
    /// another connection wrote. A replica committing the same device's
    /// readings at the same moment may make one late reading on time.
    ///
    /// `optimistic` takes two guesses that [`Self::commit_readings`] checks
    /// by the rows its insert adds: a stream whose highest number this
    /// writer knows is not looked up (what it knows is a floor: another
    /// replica may have stored more since), and a commit whose every
    /// reading is at or below the highest is taken as all stored.
    async fn sort_arrivals<'a>(
        &self,
        readings: &'a [Reading],
        optimistic: bool,
    ) -> Result<Sorted<'a>> {
        let mut streams: Vec<(&DeviceId, Metric)> = Vec::new();
        let mut index: HashMap<(&DeviceId, Metric), usize> = HashMap::new();
        for r in readings {
            index.entry((&r.device_id, r.metric)).or_insert_with(|| {
                streams.push((&r.device_id, r.metric));
                streams.len() - 1
            });
        }
        let mut highest: Vec<Option<u64>> = vec![None; streams.len()];
        let mut unknown: Vec<usize> = Vec::new();
        {
            let known = self.known_highest.lock().expect("not poisoned");
            for (i, (device, metric)) in streams.iter().enumerate() {
                match known.get(*device).and_then(|m| m.get(metric)) {
                    Some(&seq) if optimistic => highest[i] = Some(seq),
                    _ => unknown.push(i),
                }
            }
        }
        let looked_up: Vec<_> = unknown.iter().map(|&i| streams[i]).collect();
        for (i, seq) in unknown.iter().zip(self.highest_stored(&looked_up).await?) {
            highest[*i] = seq;
        }
        let highest_of = |device: &DeviceId, metric: Metric| {
            index.get(&(device, metric)).and_then(|&i| highest[i])
        };
        // Only the numbers at or below the highest stored may be stored:
        // none of a sensor sending in order.
        let mut wanted: Vec<(usize, u64)> = Vec::new();
        let mut after = highest.clone();
        // Whether each stream's numbers only rise, from above its highest
        // stored: then nothing is late or again, and sorting them one by
        // one (a hash of every reading's key) is skipped.
        let mut rising = true;
        for r in readings {
            let i = index[&(&r.device_id, r.metric)];
            if highest[i].is_some_and(|h| r.seq <= h) {
                wanted.push((i, r.seq));
            }
            rising &= after[i].is_none_or(|h| r.seq > h);
            after[i] = Some(after[i].map_or(r.seq, |h| h.max(r.seq)));
        }
        if rising {
            return Ok(Sorted {
                new: readings.len() as u64,
                arrived: Arrived::default(),
                guessed: unknown.len() < streams.len(),
                highest_after: highest_after(&streams, after),
            });
        }
        // A commit sent again whole (a replay of what is stored) is taken
        // to be all duplicates, unlooked: an insert adding no row proves it.
        let all_again = optimistic && wanted.len() == readings.len();
        let stored = if all_again {
            HashSet::new()
        } else {
            self.stored_among(&streams, &wanted).await?
        };
        let arrived = arrivals(readings, highest_of, |device, metric, seq| {
            all_again
                || index
                    .get(&(device, metric))
                    .is_some_and(|&i| stored.contains(&(i, seq)))
        });
        Ok(Sorted {
            new: (readings.len() - arrived.repeats.len()) as u64,
            arrived,
            guessed: unknown.len() < streams.len() || all_again,
            highest_after: highest_after(&streams, after),
        })
    }

    /// Stores `readings` and their arrivals in one transaction. `None`,
    /// with nothing stored, when the insert added other than `sorted.new`
    /// rows although `sorted` guessed: the caller sorts them again with
    /// everything looked up.
    async fn commit_readings(
        &self,
        readings: &[Reading],
        sorted: Sorted<'_>,
    ) -> Result<Option<Inserted>> {
        let insert = format!(
            "{} INTO readings (device_id, metric, seq, ts, value) VALUES ",
            DB::INSERT_IGNORE
        );
        let mut inserted = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in readings.chunks(INSERT_CHUNK) {
            let mut q = Statement::new(&insert);
            for (i, r) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.push_bind(r.device_id.as_str()).push(", ");
                q.push_bind(r.metric as i16).push(", ");
                q.push_bind(r.seq as i64).push(", ");
                q.push_bind(r.time).push(", ");
                q.push_bind(r.value).push(")");
            }
            inserted += DB::rows_affected(&q.query().execute(&mut *tx).await?);
        }
        if sorted.guessed && inserted != sorted.new {
            tx.rollback().await?;
            return Ok(None);
        }
        // Sorted (by device, metric and hour): replicas adding to the same
        // rows take their locks in one order.
        for chunk in sorted.arrived.counts.chunks(INSERT_CHUNK) {
            let mut q = Statement::new(
                "INSERT INTO delivery_arrivals (device_id, hour_start, metric, late, duplicates) \
                 VALUES ",
            );
            for (i, (device, a)) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.push_bind(device.as_str()).push(", ");
                q.push_bind(a.hour).push(", ");
                q.push_bind(a.metric as i16).push(", ");
                q.push_bind(a.late as i64).push(", ");
                q.push_bind(a.duplicates as i64).push(")");
            }
            q.push(DB::ADD_TO_ARRIVALS);
            q.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let mut known = self.known_highest.lock().expect("not poisoned");
        for (device, metric, seq) in sorted.highest_after {
            let of_device = match known.get_mut(device) {
                Some(of_device) => of_device,
                None => known.entry(device.clone()).or_default(),
            };
            let high = of_device.entry(metric).or_insert(seq);
            *high = (*high).max(seq);
        }
        Ok(Some(Inserted {
            new: inserted,
            arrivals: sorted.arrived.counts,
            repeats: sorted.arrived.repeats,
        }))
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
impl<DB> Storage for SqlStorage<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'a> bool: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> i16: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> f64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
    for<'a> Option<bool>: Encode<'a, DB>,
    for<'a> Option<i64>: Encode<'a, DB>,
    for<'a> Option<f64>: Encode<'a, DB>,
{
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_home(&self, home: &Home) -> Result<()> {
        sqlx::query("INSERT INTO homes (id, name, created_at) VALUES (?, ?, ?)")
            .bind(home.id.as_str())
            .bind(home.name.as_str())
            .bind(home.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_as(|| format!("home {}", home.id)))?;
        Ok(())
    }

    async fn list_homes(&self) -> Result<Vec<Home>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM homes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Home {
                    id: home_id(&row.try_get::<String, _>("id")?, "homes.id")?,
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
            .bind(d.name.as_str())
            .bind(d.state.mode.as_str())
            .execute(&self.pool)
            .await
            .map_err(conflict_as(|| format!("device {}", d.id)))?;
        Ok(())
    }

    async fn list_devices(&self, home: Option<&HomeId>) -> Result<Vec<Device>> {
        let rows = match home {
            Some(h) => {
                sqlx::query(&format!(
                    "{DEVICE_SELECT} WHERE d.home_id = ? ORDER BY d.id"
                ))
                .bind(h.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{DEVICE_SELECT} ORDER BY d.id"))
                    .fetch_all(&self.pool)
                    .await?
            }
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
        DB::write_actuator_state(self, id, expected_version, state, command).await
    }

    async fn command_published(&self, id: &DeviceId, version: u64, at: UnixMs) -> Result<()> {
        // Why also when already closed: on loopback the device's
        // report can be stored before this, and the lifecycle should
        // still show when the command went out.
        sqlx::query(
            "UPDATE commands SET published_at = COALESCE(published_at, ?), \
             state = CASE WHEN state = 'requested' THEN 'published' ELSE state END \
             WHERE device_id = ? AND version = ?",
        )
        .bind(at)
        .bind(id.as_str())
        .bind(version as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn expire_commands(&self, now: UnixMs) -> Result<Vec<DeviceId>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT device_id FROM commands \
             WHERE state IN ('requested', 'published') AND expires_at <= ?",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(
            "UPDATE commands SET state = 'expired' \
             WHERE state IN ('requested', 'published') AND expires_at <= ?",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| device_id(&r.try_get::<String, _>("device_id")?, "device_id"))
            .collect()
    }

    async fn list_commands(&self, id: &DeviceId, limit: u32) -> Result<Vec<Command>> {
        let select = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = ? \
             ORDER BY version DESC LIMIT ?"
        );
        let rows = sqlx::query(&select)
            .bind(id.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Self::command_from_row(r, None))
            .collect()
    }

    async fn overrides_ended(&self, now: UnixMs) -> Result<Vec<DeviceId>> {
        let rows = sqlx::query(
            "SELECT id FROM devices WHERE override_until IS NOT NULL AND override_until <= ?",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| device_id(&r.try_get::<String, _>("id")?, "id"))
            .collect()
    }

    async fn save_reported(
        &self,
        id: &DeviceId,
        state: &ActuatorState,
        applied: Option<Applied>,
    ) -> Result<bool> {
        DB::write_reported(self, id, state, applied).await
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

    /// A sensor sending in order costs no look-up: the writer knows the
    /// highest number it stored of each of its metrics, and the insert's
    /// count of new rows confirms that no other writer stored any of them
    /// since. A commit resent whole costs none either. Otherwise the commit
    /// is rolled back and sorted again with everything looked up. What the writer's floor cannot see: a reading
    /// below what another replica stored after this one last looked, but
    /// not stored itself, counts as on time rather than late.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<Inserted> {
        let sorted = self.sort_arrivals(readings, true).await?;
        if let Some(inserted) = self.commit_readings(readings, sorted).await? {
            return Ok(inserted);
        }
        let sorted = self.sort_arrivals(readings, false).await?;
        Ok(self
            .commit_readings(readings, sorted)
            .await?
            .expect("a commit that looked everything up is not refused"))
    }

    async fn record_run_starts(&self, runs: &[(DeviceId, u64, UnixMs)]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut q = Statement::new(format!(
            "{} INTO delivery_runs (device_id, run_start, seen_at) VALUES ",
            DB::INSERT_IGNORE
        ));
        for (i, (device, start, seen)) in runs.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_bind(device.as_str()).push(", ");
            q.push_bind(*start as i64).push(", ");
            q.push_bind(*seen).push(")");
        }
        q.query().execute(&self.pool).await?;
        Ok(())
    }

    async fn stored_hours(
        &self,
        device: &DeviceId,
        from: UnixMs,
        to: UnixMs,
    ) -> Result<Vec<StoredHour>> {
        // Answered from the (device_id, ts, metric) index, which holds seq
        // as part of the key: no table rows are read.
        let mut q = Statement::new("SELECT metric, ts");
        q.push(DB::INT_DIV).push_bind(HOUR_MS);
        q.push(" AS h, COUNT(*) AS n, MIN(seq) AS lowest, MAX(seq) AS highest");
        q.push(" FROM readings WHERE device_id = ")
            .push_bind(device.as_str());
        q.push(" AND ts >= ").push_bind(from);
        q.push(" AND ts < ").push_bind(to);
        q.push(" GROUP BY metric, h ORDER BY h, metric");
        let rows = q.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredHour {
                    metric: metric_of(row.try_get("metric")?)?,
                    hour: row.try_get::<i64, _>("h")? * HOUR_MS,
                    stored: row.try_get::<i64, _>("n")? as u64,
                    lowest_seq: row.try_get::<i64, _>("lowest")? as u64,
                    highest_seq: row.try_get::<i64, _>("highest")? as u64,
                })
            })
            .collect()
    }

    async fn stored_after(
        &self,
        device: &DeviceId,
        metric: Metric,
        after: u64,
        taken_before: UnixMs,
    ) -> Result<Option<StoredHour>> {
        // A range of the primary key: the work is the new readings'.
        let mut q = Statement::new(
            "SELECT COUNT(*) AS n, MIN(seq) AS lowest, MAX(seq) AS highest \
             FROM readings WHERE device_id = ",
        );
        q.push_bind(device.as_str());
        q.push(" AND metric = ").push_bind(metric as i16);
        q.push(" AND seq > ").push_bind(after.min(MAX_SEQ) as i64);
        q.push(" AND ts < ").push_bind(taken_before);
        let row = q.query().fetch_one(&self.pool).await?;
        let stored = row.try_get::<i64, _>("n")? as u64;
        if stored == 0 {
            return Ok(None);
        }
        Ok(Some(StoredHour {
            metric,
            hour: taken_before.div_euclid(HOUR_MS) * HOUR_MS,
            stored,
            lowest_seq: row.try_get::<i64, _>("lowest")? as u64,
            highest_seq: row.try_get::<i64, _>("highest")? as u64,
        }))
    }

    async fn highest_seq_below(
        &self,
        device: &DeviceId,
        metric: Metric,
        seq: u64,
    ) -> Result<Option<u64>> {
        // ORDER BY ... LIMIT 1 rather than MAX: one step back along the
        // primary key in both databases.
        let mut q = Statement::new("SELECT seq FROM readings WHERE device_id = ");
        q.push_bind(device.as_str());
        q.push(" AND metric = ").push_bind(metric as i16);
        q.push(" AND seq < ").push_bind(seq.min(MAX_SEQ) as i64);
        q.push(" ORDER BY seq DESC LIMIT 1");
        let row = q.query().fetch_optional(&self.pool).await?;
        row.map(|row| Ok(row.try_get::<i64, _>("seq")? as u64))
            .transpose()
    }

    async fn arrivals(&self, device: &DeviceId, from: UnixMs, to: UnixMs) -> Result<Vec<Arrivals>> {
        let mut q = Statement::new(
            "SELECT hour_start, metric, late, duplicates FROM delivery_arrivals \
             WHERE device_id = ",
        );
        q.push_bind(device.as_str());
        q.push(" AND hour_start >= ").push_bind(hour_of(from));
        q.push(" AND hour_start < ").push_bind(to);
        q.push(" ORDER BY hour_start, metric");
        let rows = q.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Arrivals {
                    metric: metric_of(row.try_get("metric")?)?,
                    hour: row.try_get("hour_start")?,
                    late: row.try_get::<i64, _>("late")? as u64,
                    duplicates: row.try_get::<i64, _>("duplicates")? as u64,
                })
            })
            .collect()
    }

    async fn run_starts(&self, device: &DeviceId, after: u64, up_to: u64) -> Result<Vec<u64>> {
        let mut q = Statement::new("SELECT run_start FROM delivery_runs WHERE device_id = ");
        q.push_bind(device.as_str());
        q.push(" AND run_start > ")
            .push_bind(after.min(MAX_SEQ) as i64);
        q.push(" AND run_start <= ")
            .push_bind(up_to.min(MAX_SEQ) as i64);
        q.push(" ORDER BY run_start");
        let rows = q.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<i64, _>("run_start")? as u64))
            .collect()
    }

    async fn record_sent(
        &self,
        device: &DeviceId,
        account: &RunAccount,
        said_at: UnixMs,
    ) -> Result<()> {
        let run_start = account.run_start as i64;
        // Why two statements rather than an upsert: the dialects spell an
        // upsert differently, and a status comes once per connection.
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "{} INTO delivery_runs (device_id, run_start, seen_at) VALUES (?, ?, ?)",
            DB::INSERT_IGNORE
        ))
        .bind(device.as_str())
        .bind(run_start)
        .bind(said_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE delivery_runs SET sent_through = ?, sent_metrics = ?, said_at = ? \
             WHERE device_id = ? AND run_start = ? \
               AND (sent_through IS NULL OR sent_through < ?)",
        )
        .bind(account.last_seq as i64)
        .bind(account.metrics.bits())
        .bind(said_at)
        .bind(device.as_str())
        .bind(run_start)
        .bind(account.last_seq as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sent(&self, device: Option<&DeviceId>, from: UnixMs, to: UnixMs) -> Result<Vec<Sent>> {
        let mut q = Statement::new(
            "SELECT device_id, run_start, sent_through, sent_metrics, said_at FROM delivery_runs \
             WHERE said_at >= ",
        );
        q.push_bind(from).push(" AND said_at < ").push_bind(to);
        if let Some(device) = device {
            q.push(" AND device_id = ").push_bind(device.as_str());
        }
        q.push(" ORDER BY said_at");
        let rows = q.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Sent {
                    device: device_id(&row.try_get::<String, _>("device_id")?, "device id")?,
                    run_start: row.try_get::<i64, _>("run_start")? as u64,
                    sent_through: row.try_get::<i64, _>("sent_through")? as u64,
                    metrics: MetricSet::from_bits(
                        row.try_get::<Option<i64>, _>("sent_metrics")?.unwrap_or(0),
                    ),
                    said_at: row.try_get("said_at")?,
                })
            })
            .collect()
    }

    async fn list_readings(&self, query: &ReadingQuery) -> Result<Vec<Reading>> {
        let mut q =
            Statement::new("SELECT metric, seq, ts, value FROM readings WHERE device_id = ");
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
        let (past, direction) = match query.order {
            ReadingOrder::NewestFirst => ("<", "DESC"),
            ReadingOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(c) = query.cursor {
            // Why expanded: MySQL does not use an index for row-value comparisons.
            q.push(&format!(" AND (ts {past} ")).push_bind(c.time);
            q.push(" OR (ts = ").push_bind(c.time);
            q.push(&format!(" AND (metric {past} "))
                .push_bind(c.metric as i16);
            q.push(" OR (metric = ").push_bind(c.metric as i16);
            q.push(&format!(" AND seq {past} "))
                .push_bind(c.seq as i64)
                .push("))))");
        }
        q.push(&format!(
            " ORDER BY ts {direction}, metric {direction}, seq {direction} LIMIT "
        ))
        .push_bind(i64::from(query.limit));
        let rows = q.query().fetch_all(&self.pool).await?;
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
        let mut q = Statement::new("SELECT seq, ts, value FROM readings WHERE device_id = ");
        q.push_bind(device.as_str());
        q.push(" AND metric = ").push_bind(metric as i16);
        q.push(" AND (ts > ").push_bind(after.0);
        q.push(" OR (ts = ").push_bind(after.0);
        q.push(" AND seq > ").push_bind(after.1 as i64).push("))");
        if let Some(until) = until {
            q.push(" AND ts < ").push_bind(until);
        }
        q.push(" ORDER BY ts, seq LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.query().fetch_all(&self.pool).await?;
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

    async fn refresh_rollups(
        &self,
        resolution: Resolution,
        devices: &[DeviceId],
        from: UnixMs,
        to: UnixMs,
    ) -> Result<()> {
        if devices.is_empty() || from >= to {
            return Ok(());
        }
        let width = resolution.ms();
        let mut q = Statement::new(
            "REPLACE INTO rollups (device_id, metric, resolution, bucket, vmin, vmax, vsum, n) ",
        );
        match resolution {
            Resolution::Raw => return Ok(()),
            Resolution::Minute => {
                q.push("SELECT device_id, metric, ").push_bind(width);
                q.push(", ").push_bind(from);
                q.push(" + ((ts - ").push_bind(from).push(")");
                q.push(DB::INT_DIV)
                    .push_bind(width)
                    .push(") * ")
                    .push_bind(width);
                q.push(", MIN(value), MAX(value), SUM(value), COUNT(*) FROM readings");
                q.push(" WHERE ts >= ").push_bind(from);
                q.push(" AND ts < ").push_bind(to);
            }
            Resolution::Hour | Resolution::Day => {
                let finer = if resolution == Resolution::Hour {
                    Resolution::Minute
                } else {
                    Resolution::Hour
                };
                q.push("SELECT device_id, metric, ").push_bind(width);
                q.push(", ").push_bind(from);
                q.push(" + ((bucket - ").push_bind(from).push(")");
                q.push(DB::INT_DIV)
                    .push_bind(width)
                    .push(") * ")
                    .push_bind(width);
                q.push(", MIN(vmin), MAX(vmax), SUM(vsum), SUM(n) FROM rollups");
                q.push(" WHERE resolution = ").push_bind(finer.ms());
                q.push(" AND bucket >= ").push_bind(from);
                q.push(" AND bucket < ").push_bind(to);
            }
        }
        q.push(" AND device_id IN (");
        for (i, d) in devices.iter().enumerate() {
            q.push(if i == 0 { "" } else { ", " }).push_bind(d.as_str());
        }
        q.push(") GROUP BY 1, 2, 3, 4");
        // Why: under MySQL's default REPEATABLE READ, `REPLACE … SELECT`
        // takes shared next-key locks on every reading it reads, and the
        // ingest writer's inserts into those ranges (each sensor's newest
        // numbers) wait for the whole statement.
        let mut conn = self.pool.acquire().await?;
        if let Some(set) = DB::READ_WITHOUT_LOCKS {
            sqlx::query(set).execute(&mut *conn).await?;
        }
        q.query().execute(&mut *conn).await?;
        Ok(())
    }

    async fn series(
        &self,
        device: &DeviceId,
        metric: Metric,
        plan: &SeriesPlan,
    ) -> Result<Vec<SeriesPoint>> {
        let mut q = Statement::new("SELECT ");
        // `+ 0e0`: a floating-point sum in both databases (MySQL's SUM of integers is DECIMAL).
        if plan.resolution == Resolution::Raw {
            q.push("(ts - ").push_bind(plan.start).push(")");
            q.push(DB::INT_DIV).push_bind(plan.bucket_ms);
            q.push(" AS b, MIN(value) AS vmin, MAX(value) AS vmax, SUM(value) AS vsum,");
            q.push(" COUNT(*) + 0e0 AS n FROM readings WHERE device_id = ");
            q.push_bind(device.as_str());
            q.push(" AND metric = ").push_bind(metric as i16);
            q.push(" AND ts >= ").push_bind(plan.start);
            q.push(" AND ts < ").push_bind(plan.end);
        } else {
            q.push("(bucket - ").push_bind(plan.start).push(")");
            q.push(DB::INT_DIV).push_bind(plan.bucket_ms);
            q.push(" AS b, MIN(vmin) AS vmin, MAX(vmax) AS vmax, SUM(vsum) AS vsum,");
            q.push(" SUM(n) + 0e0 AS n FROM rollups WHERE device_id = ");
            q.push_bind(device.as_str());
            q.push(" AND metric = ").push_bind(metric as i16);
            q.push(" AND resolution = ").push_bind(plan.resolution.ms());
            q.push(" AND bucket >= ").push_bind(plan.start);
            q.push(" AND bucket < ").push_bind(plan.end);
        }
        q.push(" GROUP BY b ORDER BY b");
        let rows = q.query().fetch_all(&self.pool).await?;
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

    async fn delete_readings_before(
        &self,
        device: &DeviceId,
        metric: Metric,
        before: UnixMs,
        limit: u32,
    ) -> Result<u64> {
        let done = sqlx::query(DB::DELETE_READINGS_BEFORE)
            .bind(device.as_str())
            .bind(metric as i16)
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn delete_arrivals_before(&self, metric: Metric, before: UnixMs) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM delivery_arrivals WHERE metric = ? AND hour_start <= ?")
                .bind(metric as i16)
                .bind(before - HOUR_MS)
                .execute(&self.pool)
                .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn delete_runs_before(&self, before: UnixMs) -> Result<u64> {
        // Why the newest through a grouped derived table: MySQL refuses a
        // subquery on the table a DELETE deletes from, unless it is
        // materialised first (which GROUP BY forces).
        let done = sqlx::query(
            "DELETE FROM delivery_runs WHERE seen_at < ? AND run_start < (\
               SELECT newest.run_start FROM (\
                 SELECT device_id, MAX(run_start) AS run_start FROM delivery_runs \
                 GROUP BY device_id\
               ) AS newest WHERE newest.device_id = delivery_runs.device_id)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn delete_rollups_before(
        &self,
        resolution: Resolution,
        before: UnixMs,
        limit: u32,
    ) -> Result<u64> {
        let done = sqlx::query(DB::DELETE_ROLLUPS_BEFORE)
            .bind(resolution.ms())
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn create_rule(&self, r: &ThresholdRule, state: &RuleState) -> Result<()> {
        let insert = format!(
            "INSERT INTO rules ({RULE_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let mut tx = self.pool.begin().await?;
        sqlx::query(&insert)
            .bind(r.id.as_str())
            .bind(r.home_id.as_str())
            .bind(r.name.as_str())
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
            .map_err(conflict_as(|| format!("rule {}", r.id)))?;
        Self::put_rule_state(&mut tx, &r.id, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_rules(&self, home: Option<&HomeId>) -> Result<Vec<ThresholdRule>> {
        let rows = match home {
            Some(h) => {
                sqlx::query(&format!(
                    "SELECT {RULE_COLUMNS} FROM rules WHERE home_id = ? ORDER BY id"
                ))
                .bind(h.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {RULE_COLUMNS} FROM rules ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(Self::rule_from_row).collect()
    }

    async fn update_rule(&self, r: &ThresholdRule, state: &RuleState) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE rules SET name = ?, source_device_id = ?, metric = ?, target_device_id = ?, \
             on_above = ?, off_below = ?, enabled = ?, min_on_s = ?, min_off_s = ?, \
             sustain_s = ?, stale_after_s = ?, stale_action = ? WHERE id = ? AND home_id = ?",
        )
        .bind(r.name.as_str())
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
        if DB::rows_affected(&done) == 0 {
            return Err(StorageError::NotFound(format!(
                "rule {} in home {}",
                r.id, r.home_id
            )));
        }
        Self::put_rule_state(&mut tx, &r.id, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_rule(&self, id: &RuleId) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM rules WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(StorageError::NotFound(format!("rule {id}")));
        }
        sqlx::query("DELETE FROM rule_state WHERE rule_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_rule_state(&self, id: &RuleId) -> Result<Option<RuleState>> {
        sqlx::query(&format!(
            "SELECT {RULE_STATE_COLUMNS} FROM rule_state WHERE rule_id = ?"
        ))
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
        sqlx::query(&format!(
            "INSERT INTO decisions ({DECISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(d.rule_id.as_str())
        .bind(d.home_id.as_str())
        .bind(d.target.as_str())
        .bind(d.decision.action.as_str())
        .bind(d.decision.at)
        .bind(d.decision.value.filter(|v| v.is_finite()))
        .bind(d.decision.reason.as_str())
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
        let select = format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE {column} = ? \
             ORDER BY id DESC LIMIT ?"
        );
        let rows = sqlx::query(&select)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::decision_from_row).collect()
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        until: UnixMs,
    ) -> Result<bool> {
        let taken = sqlx::query(
            "UPDATE leases SET holder = ?, expires_at = ? \
             WHERE name = ? AND (holder = ? OR expires_at <= ?)",
        )
        .bind(holder)
        .bind(until)
        .bind(name)
        .bind(holder)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if DB::rows_affected(&taken) == 1 {
            return Ok(true);
        }
        let insert = format!(
            "{} INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
            DB::INSERT_IGNORE
        );
        let created = sqlx::query(&insert)
            .bind(name)
            .bind(holder)
            .bind(until)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&created) == 1)
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
