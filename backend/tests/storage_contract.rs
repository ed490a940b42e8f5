//! One contract for every `Storage`: each behaviour below is an `async fn`
//! run twice, as `sqlite::<behaviour>` on a fresh SQLite file and as
//! `mariadb::<behaviour>` on a fresh MariaDB database (`HEARTH_TEST_MYSQL_URL`,
//! default mysql://root@127.0.0.1:3306), so one failure hides no other and
//! the tests run in parallel.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt as _;
use hearth_backend::{
    domain::{
        delivery::{Arrivals, MetricSet, RunAccount, Sent, StoredHour},
        Action, ActuatorState, Command, CommandState, Device, DeviceId, DeviceKind, DeviceScope,
        Grant, Home, HomeId, LoggedDecision, Mode, Pending, Reading, Resolution, Role,
        RuleDecision, RuleId, RuleState, SeriesPlan, SeriesPoint, StaleAction, ThresholdRule,
        TokenName, HOUR_MS, MINUTE_MS,
    },
    storage::{
        connect, ApiTokenInfo, Applied, DecisionsOf, Inserted, ReadingCursor, ReadingOrder,
        ReadingQuery, Storage, StorageError,
    },
};
use hearth_proto::v1::Metric;
use sqlx::Connection as _;

/// Generates `mod sqlite` and `mod mariadb`, each with one test per behaviour.
macro_rules! on_both_databases {
    ($($behaviour:ident,)*) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::on_sqlite(super::$behaviour).await;
                }
            )*
        }

        mod mariadb {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::on_mariadb(super::$behaviour).await;
                }
            )*
        }
    };
}

on_both_databases!(
    created_homes_are_listed,
    creating_a_home_twice_is_a_conflict,
    registering_a_device_in_an_unknown_home_is_not_found,
    registering_a_device_twice_is_a_conflict,
    devices_of_a_home_are_listed_by_id,
    a_second_writer_of_the_same_desired_version_is_stale,
    saving_the_state_of_an_unknown_device_is_not_found,
    an_unknown_device_is_none,
    a_report_without_an_applied_command_closes_none,
    a_saved_state_reads_back_with_its_command_and_presence,
    an_override_ends_at_its_time,
    a_command_is_applied_once_and_keeps_its_first_publish_time,
    newer_commands_supersede_open_ones_which_then_expire,
    a_publish_time_not_stored_yet_travels_with_the_acknowledgement,
    inserting_the_same_readings_again_is_ignored,
    readings_page_newest_first_by_cursor,
    readings_page_oldest_first_by_cursor,
    readings_filter_by_metric_and_time_range,
    readings_after_a_cursor_come_oldest_first_within_the_limit,
    stored_hours_count_each_metric_with_its_lowest_and_highest_number,
    the_highest_number_below_and_the_numbers_after_are_found_by_key,
    run_starts_are_recorded_once_and_listed_in_a_range,
    what_a_sensor_said_it_sent_keeps_its_highest_and_is_found_by_when,
    old_runs_are_deleted_but_each_devices_newest,
    late_and_duplicate_readings_are_counted_per_device_and_hour,
    a_backlog_of_many_devices_is_sorted_as_one_of_a_few,
    minute_series_come_from_rollups_refreshed_twice,
    raw_series_bucket_readings_from_the_start_of_the_plan,
    hour_series_come_from_minute_rollups,
    old_readings_are_deleted_in_batches,
    old_rollups_are_deleted,
    counts_of_hours_that_expired_are_deleted,
    created_rules_are_listed,
    creating_a_rule_twice_is_a_conflict,
    a_rule_starts_with_the_state_it_was_created_with,
    rule_state_survives_a_round_trip,
    an_edited_rule_starts_afresh,
    editing_an_unknown_rule_is_not_found,
    deleting_a_rule_twice_is_not_found,
    decisions_list_newest_first_by_home_or_by_rule,
    a_lease_has_one_holder_until_it_expires,
    only_its_holder_releases_a_lease,
    a_released_lease_is_free_at_once,
    a_device_credential_is_replaced_and_revoked,
    an_api_token_keeps_its_homes_and_devices_until_revoked,
);

/// Runs `behaviour` on a new SQLite file, removed afterwards even if it fails.
async fn on_sqlite<B, F>(behaviour: B)
where
    B: FnOnce(Arc<dyn Storage>) -> F,
    F: Future<Output = ()>,
{
    with_sqlite_url(|url| async move { behaviour(connect(&url).await.unwrap()).await }).await
}

/// Runs `behaviour` on a new MariaDB database, dropped afterwards even if it
/// fails.
async fn on_mariadb<B, F>(behaviour: B)
where
    B: FnOnce(Arc<dyn Storage>) -> F,
    F: Future<Output = ()>,
{
    with_mariadb_url(|url| async move { behaviour(connect(&url).await.unwrap()).await }).await
}

/// Runs `behaviour` with the URL of a new SQLite file, removed afterwards
/// even if it fails.
async fn with_sqlite_url<B, F>(behaviour: B)
where
    B: FnOnce(String) -> F,
    F: Future<Output = ()>,
{
    let path =
        std::env::temp_dir().join(format!("hearth-contract-{:016x}.db", rand::random::<u64>()));
    let outcome = AssertUnwindSafe(behaviour(format!("sqlite://{}", path.display())))
        .catch_unwind()
        .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `behaviour` with the URL of a new MariaDB database, dropped
/// afterwards even if it fails.
async fn with_mariadb_url<B, F>(behaviour: B)
where
    B: FnOnce(String) -> F,
    F: Future<Output = ()>,
{
    let server = std::env::var("HEARTH_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let name = format!("hearth_contract_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("MariaDB is reachable at HEARTH_TEST_MYSQL_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let outcome = AssertUnwindSafe(behaviour(format!("{server}/{name}")))
        .catch_unwind()
        .await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Behaviours of two writers (two replicas) on one database.
mod two_writers {
    #[tokio::test]
    async fn sqlite() {
        super::with_sqlite_url(super::a_writer_counts_what_another_stored_since_it_looked).await;
    }

    #[tokio::test]
    async fn mariadb() {
        super::with_mariadb_url(super::a_writer_counts_what_another_stored_since_it_looked).await;
    }
}

fn home(id: &str) -> Home {
    Home {
        id: HomeId::parse(id, "id").unwrap(),
        name: format!("Home {id}"),
        created_at: 1,
    }
}

fn device(id: &str, home: &str, kind: DeviceKind) -> Device {
    Device {
        id: DeviceId::parse(id, "id").unwrap(),
        home_id: HomeId::parse(home, "home").unwrap(),
        kind,
        name: id.into(),
        state: ActuatorState::default(),
        online: false,
        last_seen: None,
        last_command: None,
    }
}

fn reading(device: &str, metric: Metric, seq: u64, time: i64) -> Reading {
    Reading {
        device_id: DeviceId::parse(device, "d").unwrap(),
        metric,
        seq,
        time,
        value: seq as f64,
    }
}

fn fan() -> DeviceId {
    DeviceId::parse("f1", "id").unwrap()
}

fn sensor() -> DeviceId {
    DeviceId::parse("s1", "d").unwrap()
}

/// Home `h1` with sensor `s1` and fan `f1`.
async fn seed(storage: &dyn Storage) {
    storage.create_home(&home("h1")).await.unwrap();
    storage
        .register_device(&device("s1", "h1", DeviceKind::Sensor))
        .await
        .unwrap();
    storage
        .register_device(&device("f1", "h1", DeviceKind::Fan))
        .await
        .unwrap();
}

/// The fan switched on by a user until 5,000: its state and command
/// (version 1), saved.
async fn fan_switched_on(storage: &dyn Storage) -> (ActuatorState, Command) {
    seed(storage).await;
    let t = ActuatorState::default().set_mode(Mode::On, Some(5_000), "user", 10);
    let command = Command::for_desired(&fan(), t.publish.as_ref().unwrap(), "user", 1_000);
    storage
        .save_actuator_state(&fan(), 0, &t.state, Some(&command))
        .await
        .unwrap();
    (t.state, command)
}

fn applied_first(at: i64, round_trip_us: u64) -> Option<Applied> {
    Some(Applied {
        version: 1,
        at,
        round_trip_us,
        published_at: Some(12_345),
    })
}

/// Command 1 published at 13, applied at 14 in 900 µs (and reported once
/// more); returns the fan's acknowledged state.
async fn first_command_applied(storage: &dyn Storage) -> ActuatorState {
    let (on, _) = fan_switched_on(storage).await;
    let acked = on.report(1, true, 11).unwrap();
    storage.command_published(&fan(), 1, 13).await.unwrap();
    assert!(storage
        .save_reported(&fan(), &acked, applied_first(14, 900))
        .await
        .unwrap());
    assert!(
        !storage
            .save_reported(&fan(), &acked, applied_first(15, 1))
            .await
            .unwrap(),
        "once"
    );
    storage.command_published(&fan(), 1, 16).await.unwrap();
    acked
}

/// After command 1 applied: commands 2 (published only after it was
/// superseded) and 3 (open, expiring at 1,020). Returns the fan's state.
async fn three_commands(storage: &dyn Storage) -> ActuatorState {
    let mut state = first_command_applied(storage).await;
    for version in [2u64, 3] {
        let t = state.set_mode(
            if version == 2 { Mode::Off } else { Mode::On },
            None,
            "user",
            20,
        );
        let c = Command::for_desired(&fan(), t.publish.as_ref().unwrap(), "user", 1_000);
        storage
            .save_actuator_state(&fan(), version - 1, &t.state, Some(&c))
            .await
            .unwrap();
        state = t.state;
    }
    // Published after it was closed (the report overtook it): the time is
    // kept, the outcome is not undone.
    storage.command_published(&fan(), 2, 21).await.unwrap();
    state
}

/// Temperature and humidity of `s1`, seq 1..=5 at seq × 100 ms.
fn climate_batch() -> Vec<Reading> {
    (1..=5)
        .flat_map(|seq| {
            [
                reading("s1", Metric::TemperatureCelsius, seq, seq as i64 * 100),
                reading("s1", Metric::HumidityPercent, seq, seq as i64 * 100),
            ]
        })
        .collect()
}

async fn climate_readings(storage: &dyn Storage) {
    seed(storage).await;
    assert_eq!(
        storage.insert_readings(&climate_batch()).await.unwrap().new,
        10
    );
}

fn query(metric: Option<Metric>, cursor: Option<ReadingCursor>, limit: u32) -> ReadingQuery {
    ReadingQuery {
        device_id: sensor(),
        metric,
        start: None,
        end: None,
        cursor,
        limit,
        order: ReadingOrder::NewestFirst,
    }
}

/// Pressure of `s1` at 120 s, 125 s and 185 s, rolled up into minutes and
/// hours twice (recomputing is idempotent).
async fn pressure_rollups(storage: &dyn Storage) {
    seed(storage).await;
    let pressure = |seq: u64, time: i64, value: f64| Reading {
        value,
        ..reading("s1", Metric::PressureHpa, seq, time)
    };
    storage
        .insert_readings(&[
            pressure(1, 120_000, 1.0),
            pressure(2, 125_000, 3.0),
            pressure(3, 185_000, 5.0),
        ])
        .await
        .unwrap();
    let devices = [sensor()];
    for _ in 0..2 {
        storage
            .refresh_rollups(Resolution::Minute, &devices, 120_000, 240_000)
            .await
            .unwrap();
        storage
            .refresh_rollups(Resolution::Hour, &devices, 0, HOUR_MS)
            .await
            .unwrap();
    }
}

fn series_plan(resolution: Resolution, start: i64, bucket_ms: i64) -> SeriesPlan {
    SeriesPlan {
        resolution,
        start,
        end: HOUR_MS,
        bucket_ms,
    }
}

fn point(start: i64, min: f64, max: f64, sum: f64, count: u64) -> SeriesPoint {
    SeriesPoint {
        start,
        min,
        max,
        sum,
        count,
    }
}

fn fan_rule() -> ThresholdRule {
    ThresholdRule {
        id: RuleId::parse("r1", "id").unwrap(),
        home_id: HomeId::parse("h1", "h").unwrap(),
        name: "fan".into(),
        source: sensor(),
        metric: Metric::TemperatureCelsius,
        target: fan(),
        on_above: 25.0,
        off_below: 24.5,
        enabled: true,
        min_on_s: 60,
        min_off_s: 30,
        sustain_s: 10,
        stale_after_s: 300,
        stale_action: StaleAction::Off,
    }
}

/// The seeded home with rule `r1`, created with `RuleState::new(1)`.
async fn with_rule(storage: &dyn Storage) -> ThresholdRule {
    seed(storage).await;
    let rule = fan_rule();
    storage
        .create_rule(&rule, &RuleState::new(1))
        .await
        .unwrap();
    rule
}

// Homes and devices.

async fn created_homes_are_listed(storage: Arc<dyn Storage>) {
    storage.create_home(&home("h1")).await.unwrap();
    assert_eq!(storage.list_homes().await.unwrap(), vec![home("h1")]);
}

async fn creating_a_home_twice_is_a_conflict(storage: Arc<dyn Storage>) {
    storage.create_home(&home("h1")).await.unwrap();
    assert!(matches!(
        storage.create_home(&home("h1")).await,
        Err(StorageError::Conflict(_))
    ));
}

async fn registering_a_device_in_an_unknown_home_is_not_found(storage: Arc<dyn Storage>) {
    assert!(matches!(
        storage
            .register_device(&device("x", "nohome", DeviceKind::Fan))
            .await,
        Err(StorageError::NotFound(_))
    ));
}

async fn registering_a_device_twice_is_a_conflict(storage: Arc<dyn Storage>) {
    seed(&*storage).await;
    assert!(matches!(
        storage
            .register_device(&device("f1", "h1", DeviceKind::Fan))
            .await,
        Err(StorageError::Conflict(_))
    ));
}

async fn devices_of_a_home_are_listed_by_id(storage: Arc<dyn Storage>) {
    seed(&*storage).await;
    let listed = storage
        .list_devices(Some(&HomeId::parse("h1", "h").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["f1", "s1"]
    );
}

// Actuator state: compare-and-set on the desired version.

async fn a_second_writer_of_the_same_desired_version_is_stale(storage: Arc<dyn Storage>) {
    let (on, command) = fan_switched_on(&*storage).await;
    assert!(
        matches!(
            storage
                .save_actuator_state(&fan(), 0, &on, Some(&command))
                .await,
            Err(StorageError::Stale(_))
        ),
        "a second writer loses"
    );
}

async fn saving_the_state_of_an_unknown_device_is_not_found(storage: Arc<dyn Storage>) {
    let (on, command) = fan_switched_on(&*storage).await;
    let unknown = DeviceId::parse("f404", "id").unwrap();
    assert!(matches!(
        storage
            .save_actuator_state(&unknown, 0, &on, Some(&command))
            .await,
        Err(StorageError::NotFound(_))
    ));
}

async fn an_unknown_device_is_none(storage: Arc<dyn Storage>) {
    seed(&*storage).await;
    assert!(storage
        .get_device(&DeviceId::parse("nope", "id").unwrap())
        .await
        .unwrap()
        .is_none());
}

async fn a_report_without_an_applied_command_closes_none(storage: Arc<dyn Storage>) {
    let (on, _) = fan_switched_on(&*storage).await;
    let acked = on.report(1, true, 11).unwrap();
    assert!(
        !storage.save_reported(&fan(), &acked, None).await.unwrap(),
        "no command closed without one applied"
    );
}

async fn a_saved_state_reads_back_with_its_command_and_presence(storage: Arc<dyn Storage>) {
    let (on, command) = fan_switched_on(&*storage).await;
    let acked = on.report(1, true, 11).unwrap();
    storage.save_reported(&fan(), &acked, None).await.unwrap();
    storage.save_presence(&fan(), Some(true), 12).await.unwrap();
    let stored = storage.get_device(&fan()).await.unwrap().unwrap();
    assert_eq!(stored.state, acked);
    assert_eq!(stored.state.override_until, Some(5_000));
    assert_eq!(stored.last_command, Some(command), "joined to its command");
    assert!(stored.online);
    assert_eq!(stored.last_seen, Some(12));
}

async fn an_override_ends_at_its_time(storage: Arc<dyn Storage>) {
    fan_switched_on(&*storage).await;
    assert!(storage.overrides_ended(4_999).await.unwrap().is_empty());
    assert_eq!(storage.overrides_ended(5_000).await.unwrap(), vec![fan()]);
}

// Commands: published, applied once, a newer one supersedes, expiry.

async fn a_command_is_applied_once_and_keeps_its_first_publish_time(storage: Arc<dyn Storage>) {
    first_command_applied(&*storage).await;
    let commands = storage.list_commands(&fan(), 10).await.unwrap();
    assert_eq!(
        commands
            .iter()
            .map(|c| (c.version, c.state, c.round_trip_us))
            .collect::<Vec<_>>(),
        [(1, CommandState::Applied, Some(900))]
    );
    assert_eq!(commands[0].published_at, Some(13), "the first time is kept");
    assert_eq!(commands[0].applied_at, Some(14));
}

async fn newer_commands_supersede_open_ones_which_then_expire(storage: Arc<dyn Storage>) {
    three_commands(&*storage).await;
    assert_eq!(
        storage.expire_commands(1_019).await.unwrap(),
        Vec::<DeviceId>::new()
    );
    assert_eq!(storage.expire_commands(1_020).await.unwrap(), vec![fan()]);
    let commands = storage.list_commands(&fan(), 10).await.unwrap();
    assert_eq!(
        commands
            .iter()
            .map(|c| (c.version, c.state, c.round_trip_us))
            .collect::<Vec<_>>(),
        [
            (3, CommandState::Expired, None),
            (2, CommandState::Superseded, None),
            (1, CommandState::Applied, Some(900)),
        ]
    );
    assert_eq!(commands[2].published_at, Some(13), "the first time is kept");
    assert_eq!(commands[1].published_at, Some(21));
    assert_eq!(commands[2].applied_at, Some(14));
    assert_eq!(storage.list_commands(&fan(), 1).await.unwrap().len(), 1);
}

async fn a_publish_time_not_stored_yet_travels_with_the_acknowledgement(storage: Arc<dyn Storage>) {
    let state = three_commands(&*storage).await;
    storage.expire_commands(1_020).await.unwrap();
    let t = state.set_mode(Mode::Off, None, "user", 30);
    let c = Command::for_desired(&fan(), t.publish.as_ref().unwrap(), "user", 1_000);
    storage
        .save_actuator_state(&fan(), 3, &t.state, Some(&c))
        .await
        .unwrap();
    let report = t.state.report(4, false, 32).unwrap();
    let applied = Applied {
        version: 4,
        at: 32,
        round_trip_us: 700,
        published_at: Some(31),
    };
    assert!(storage
        .save_reported(&fan(), &report, Some(applied))
        .await
        .unwrap());
    let newest = &storage.list_commands(&fan(), 1).await.unwrap()[0];
    assert_eq!(
        (
            newest.version,
            newest.state,
            newest.published_at,
            newest.applied_at,
            newest.round_trip_us
        ),
        (4, CommandState::Applied, Some(31), Some(32), Some(700))
    );
}

// Readings: idempotent inserts, newest first, cursor paging, ranges.

async fn inserting_the_same_readings_again_is_ignored(storage: Arc<dyn Storage>) {
    climate_readings(&*storage).await;
    let again = storage
        .insert_readings(&climate_batch()[..4])
        .await
        .unwrap();
    assert_eq!(again.new, 0, "replays are ignored");
    assert_eq!(again.duplicates(), 4, "and counted");
}

async fn readings_page_newest_first_by_cursor(storage: Arc<dyn Storage>) {
    climate_readings(&*storage).await;
    let first = storage.list_readings(&query(None, None, 3)).await.unwrap();
    assert_eq!(
        first.iter().map(|r| (r.seq, r.metric)).collect::<Vec<_>>(),
        [
            (5, Metric::HumidityPercent),
            (5, Metric::TemperatureCelsius),
            (4, Metric::HumidityPercent)
        ]
    );
    let rest = storage
        .list_readings(&query(None, Some(ReadingCursor::of(&first[2])), 100))
        .await
        .unwrap();
    assert_eq!(rest.len(), 7);
    assert_eq!(rest[0].seq, 4);
}

async fn readings_page_oldest_first_by_cursor(storage: Arc<dyn Storage>) {
    climate_readings(&*storage).await;
    let oldest_first = |cursor, limit| ReadingQuery {
        order: ReadingOrder::OldestFirst,
        start: Some(200),
        end: Some(500),
        ..query(None, cursor, limit)
    };
    let first = storage.list_readings(&oldest_first(None, 3)).await.unwrap();
    assert_eq!(
        first.iter().map(|r| (r.seq, r.metric)).collect::<Vec<_>>(),
        [
            (2, Metric::TemperatureCelsius),
            (2, Metric::HumidityPercent),
            (3, Metric::TemperatureCelsius),
        ],
        "from the inclusive start, oldest first"
    );
    let rest = storage
        .list_readings(&oldest_first(Some(ReadingCursor::of(&first[2])), 100))
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|r| (r.seq, r.metric)).collect::<Vec<_>>(),
        [
            (3, Metric::HumidityPercent),
            (4, Metric::TemperatureCelsius),
            (4, Metric::HumidityPercent),
        ],
        "past the cursor, up to the exclusive end"
    );
}

async fn readings_filter_by_metric_and_time_range(storage: Arc<dyn Storage>) {
    climate_readings(&*storage).await;
    let temps = storage
        .list_readings(&query(Some(Metric::TemperatureCelsius), None, 100))
        .await
        .unwrap();
    assert_eq!(
        temps.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1]
    );
    let ranged = storage
        .list_readings(&ReadingQuery {
            start: Some(200),
            end: Some(400),
            ..query(Some(Metric::TemperatureCelsius), None, 100)
        })
        .await
        .unwrap();
    assert_eq!(ranged.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 2]);
}

async fn readings_after_a_cursor_come_oldest_first_within_the_limit(storage: Arc<dyn Storage>) {
    climate_readings(&*storage).await;
    let after = storage
        .readings_after(
            &sensor(),
            Metric::TemperatureCelsius,
            (200, 2),
            Some(500),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|r| (r.time, r.seq)).collect::<Vec<_>>(),
        [(300, 3), (400, 4)],
        "oldest first, after the cursor, within the limit"
    );
}

// Rollups from raw readings, series from any level, retention.

async fn minute_series_come_from_rollups_refreshed_twice(storage: Arc<dyn Storage>) {
    pressure_rollups(&*storage).await;
    let minutes = storage
        .series(
            &sensor(),
            Metric::PressureHpa,
            &series_plan(Resolution::Minute, 0, MINUTE_MS),
        )
        .await
        .unwrap();
    assert_eq!(
        minutes,
        [
            point(120_000, 1.0, 3.0, 4.0, 2),
            point(180_000, 5.0, 5.0, 5.0, 1)
        ]
    );
}

async fn raw_series_bucket_readings_from_the_start_of_the_plan(storage: Arc<dyn Storage>) {
    pressure_rollups(&*storage).await;
    let raw = storage
        .series(
            &sensor(),
            Metric::PressureHpa,
            &series_plan(Resolution::Raw, 100_000, 60_000),
        )
        .await
        .unwrap();
    assert_eq!(
        raw,
        [
            point(100_000, 1.0, 3.0, 4.0, 2),
            point(160_000, 5.0, 5.0, 5.0, 1)
        ]
    );
}

async fn hour_series_come_from_minute_rollups(storage: Arc<dyn Storage>) {
    pressure_rollups(&*storage).await;
    let hours = storage
        .series(
            &sensor(),
            Metric::PressureHpa,
            &series_plan(Resolution::Hour, 0, HOUR_MS),
        )
        .await
        .unwrap();
    assert_eq!(hours, [point(0, 1.0, 5.0, 9.0, 3)]);
}

async fn old_readings_are_deleted_in_batches(storage: Arc<dyn Storage>) {
    pressure_rollups(&*storage).await;
    assert_eq!(
        storage
            .delete_readings_before(&sensor(), Metric::PressureHpa, 180_000, 1)
            .await
            .unwrap(),
        1,
        "in batches"
    );
    assert_eq!(
        storage
            .delete_readings_before(&sensor(), Metric::PressureHpa, 180_000, 100)
            .await
            .unwrap(),
        1
    );
}

async fn old_rollups_are_deleted(storage: Arc<dyn Storage>) {
    pressure_rollups(&*storage).await;
    assert_eq!(
        storage
            .delete_rollups_before(Resolution::Minute, 180_000, 100)
            .await
            .unwrap(),
        1
    );
}

async fn counts_of_hours_that_expired_are_deleted(storage: Arc<dyn Storage>) {
    seed(storage.as_ref()).await;
    let t = Metric::TemperatureCelsius;
    let h = Metric::HumidityPercent;
    // Sensor 1's 2 comes again in hour 0 and in hour 1, of both metrics.
    let twice = |metric, time| [1, 2, 2].map(|seq| reading("s1", metric, seq, time));
    for (metric, time) in [(t, 0), (h, 0), (t, HOUR_MS), (h, HOUR_MS)] {
        storage.insert_readings(&twice(metric, time)).await.unwrap();
    }
    assert_eq!(
        storage
            .delete_arrivals_before(t, 2 * HOUR_MS - 1)
            .await
            .unwrap(),
        1,
        "hour 0 ended before; hour 1 had not"
    );
    let left: Vec<_> = storage
        .arrivals(&sensor(), 0, 2 * HOUR_MS)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.metric, a.hour))
        .collect();
    assert_eq!(left, [(h, 0), (t, HOUR_MS), (h, HOUR_MS)]);
}

// Rules, and their state: it survives a round trip, and an update forgets it.

async fn created_rules_are_listed(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    assert_eq!(storage.list_rules(None).await.unwrap(), vec![rule]);
}

async fn creating_a_rule_twice_is_a_conflict(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    assert!(matches!(
        storage.create_rule(&rule, &RuleState::new(1)).await,
        Err(StorageError::Conflict(_))
    ));
}

async fn a_rule_starts_with_the_state_it_was_created_with(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    assert_eq!(
        storage.load_rule_state(&rule.id).await.unwrap(),
        Some(RuleState::new(1)),
        "created with its starting state"
    );
}

async fn rule_state_survives_a_round_trip(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    let mut st = RuleState::new(100);
    st.output = Some(true);
    st.switched_at = Some(150);
    st.pending = Some(Pending {
        on: false,
        since: 160,
        value: 24.1,
        held: false,
    });
    st.last_reading_at = Some(170);
    st.last_value = Some(24.2);
    st.cursor = (170, 7);
    storage.save_rule_state(&rule.id, &st).await.unwrap();
    storage.save_rule_state(&rule.id, &st).await.unwrap();
    assert_eq!(storage.load_rule_state(&rule.id).await.unwrap(), Some(st));
}

async fn an_edited_rule_starts_afresh(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    let edited = ThresholdRule {
        enabled: false,
        sustain_s: 0,
        ..rule.clone()
    };
    storage
        .update_rule(&edited, &RuleState::new(2))
        .await
        .unwrap();
    assert_eq!(storage.list_rules(None).await.unwrap(), vec![edited]);
    assert_eq!(
        storage.load_rule_state(&rule.id).await.unwrap(),
        Some(RuleState::new(2)),
        "an edited rule starts afresh"
    );
}

async fn editing_an_unknown_rule_is_not_found(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    assert!(matches!(
        storage
            .update_rule(
                &ThresholdRule {
                    id: RuleId::parse("nope", "id").unwrap(),
                    ..rule
                },
                &RuleState::new(3)
            )
            .await,
        Err(StorageError::NotFound(_))
    ));
}

async fn deleting_a_rule_twice_is_not_found(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    storage.delete_rule(&rule.id).await.unwrap();
    assert!(matches!(
        storage.delete_rule(&rule.id).await,
        Err(StorageError::NotFound(_))
    ));
}

// Decisions, newest first, by home or by rule.

async fn decisions_list_newest_first_by_home_or_by_rule(storage: Arc<dyn Storage>) {
    let rule = with_rule(&*storage).await;
    for (at, action) in [(1, Action::SustainStarted), (2, Action::SwitchOn)] {
        storage
            .record_decision(&LoggedDecision {
                rule_id: rule.id.clone(),
                home_id: rule.home_id.clone(),
                target: fan(),
                decision: RuleDecision {
                    action,
                    at,
                    value: Some(25.5),
                    reason: format!("because {at}"),
                    switch: (action == Action::SwitchOn).then_some(true),
                },
                command_version: at as u64 - 1,
            })
            .await
            .unwrap();
    }
    let by_home = storage
        .list_decisions(DecisionsOf::Home(&rule.home_id), 10)
        .await
        .unwrap();
    assert_eq!(
        by_home
            .iter()
            .map(|d| (
                d.decision.at,
                d.decision.action,
                d.decision.switch,
                d.command_version
            ))
            .collect::<Vec<_>>(),
        [
            (2, Action::SwitchOn, Some(true), 1),
            (1, Action::SustainStarted, None, 0)
        ]
    );
    assert_eq!(
        storage
            .list_decisions(DecisionsOf::Rule(&rule.id), 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

// Leases: one holder until it expires.

async fn a_lease_has_one_holder_until_it_expires(storage: Arc<dyn Storage>) {
    assert!(storage.acquire_lease("auto", "a", 0, 100).await.unwrap());
    assert!(!storage.acquire_lease("auto", "b", 50, 150).await.unwrap());
    assert!(
        storage.acquire_lease("auto", "a", 60, 160).await.unwrap(),
        "renewal"
    );
    assert!(!storage.acquire_lease("auto", "b", 159, 259).await.unwrap());
    assert!(
        storage.acquire_lease("auto", "b", 160, 260).await.unwrap(),
        "takeover"
    );
}

async fn only_its_holder_releases_a_lease(storage: Arc<dyn Storage>) {
    assert!(storage.acquire_lease("auto", "b", 160, 260).await.unwrap());
    storage.release_lease("auto", "a").await.unwrap();
    assert!(
        !storage.acquire_lease("auto", "a", 170, 270).await.unwrap(),
        "only its holder releases a lease"
    );
}

async fn a_released_lease_is_free_at_once(storage: Arc<dyn Storage>) {
    assert!(storage.acquire_lease("auto", "b", 160, 260).await.unwrap());
    storage.release_lease("auto", "b").await.unwrap();
    assert!(
        storage.acquire_lease("auto", "a", 171, 271).await.unwrap(),
        "a released lease is free at once"
    );
}

/// Temperature of `s1` numbered `seq`, taken at `time`.
fn temperature(seq: u64, time: i64) -> Reading {
    Reading {
        device_id: sensor(),
        metric: Metric::TemperatureCelsius,
        seq,
        time,
        value: 21.0,
    }
}

async fn stored_hours_count_each_metric_with_its_lowest_and_highest_number(
    storage: Arc<dyn Storage>,
) {
    seed(storage.as_ref()).await;
    let mut readings = vec![
        temperature(1, HOUR_MS - 1),
        temperature(2, HOUR_MS),
        temperature(4, HOUR_MS + 10),
        temperature(9, 3 * HOUR_MS),
    ];
    readings.push(Reading {
        metric: Metric::HumidityPercent,
        ..temperature(3, HOUR_MS + 5)
    });
    storage.insert_readings(&readings).await.unwrap();
    let hour = |metric, hour, stored, lowest_seq, highest_seq| StoredHour {
        metric,
        hour,
        stored,
        lowest_seq,
        highest_seq,
    };
    assert_eq!(
        storage
            .stored_hours(&sensor(), HOUR_MS - 1, 3 * HOUR_MS)
            .await
            .unwrap(),
        [
            hour(Metric::TemperatureCelsius, 0, 1, 1, 1),
            hour(Metric::TemperatureCelsius, HOUR_MS, 2, 2, 4),
            hour(Metric::HumidityPercent, HOUR_MS, 1, 3, 3),
        ],
        "by hour then metric; the end is exclusive"
    );
}

async fn late_and_duplicate_readings_are_counted_per_device_and_hour(storage: Arc<dyn Storage>) {
    seed(storage.as_ref()).await;
    storage
        .register_device(&device("s2", "h1", DeviceKind::Sensor))
        .await
        .unwrap();
    let t = Metric::TemperatureCelsius;
    let s2 = DeviceId::parse("s2", "d").unwrap();
    let of_s2 = |seq: u64| reading("s2", t, seq, seq as i64 * 1_000);
    let of_s1 = |seq: u64| temperature(seq, seq as i64 * 1_000);
    let arrived = |late, duplicates| Arrivals {
        metric: t,
        hour: 0,
        late,
        duplicates,
    };
    // s1: 1, 2, 5 and 10; s2: 1..=3.
    let first = [1, 2, 5, 10]
        .map(of_s1)
        .into_iter()
        .chain([1, 2, 3].map(of_s2));
    assert_eq!(
        storage
            .insert_readings(&first.collect::<Vec<_>>())
            .await
            .unwrap(),
        Inserted {
            new: 7,
            arrivals: vec![],
            repeats: vec![],
        },
        "in order: nothing late, nothing again"
    );
    // s1's 3 and 4 fill its gap, its 5 and s2's 3 come again; 11 is on time.
    let second = [of_s1(3), of_s1(5), of_s1(4), of_s2(3), of_s1(11)];
    assert_eq!(
        storage.insert_readings(&second).await.unwrap(),
        Inserted {
            new: 3,
            arrivals: vec![(sensor(), arrived(2, 1)), (s2.clone(), arrived(0, 1))],
            repeats: vec![1, 3],
        }
    );
    // Added to what was counted: 4 again, 6 late.
    storage
        .insert_readings(&[of_s1(4), of_s1(6)])
        .await
        .unwrap();
    assert_eq!(
        storage.arrivals(&sensor(), 0, 2 * HOUR_MS).await.unwrap(),
        [arrived(3, 2)]
    );
    assert_eq!(
        storage
            .arrivals(&sensor(), HOUR_MS - 1, HOUR_MS)
            .await
            .unwrap(),
        [arrived(3, 2)],
        "the hours that overlap the range"
    );
    assert!(storage
        .arrivals(&sensor(), HOUR_MS, 2 * HOUR_MS)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        storage.arrivals(&s2, 0, HOUR_MS).await.unwrap(),
        [arrived(0, 1)]
    );
}

/// The writer remembers the highest number it stored of each stream and
/// guesses from it; another replica's writes make the guess wrong, and the
/// commit is sorted again rather than miscounted.
async fn a_writer_counts_what_another_stored_since_it_looked(url: String) {
    let a = connect(&url).await.unwrap();
    let b = connect(&url).await.unwrap();
    let t = Metric::TemperatureCelsius;
    let of_s1 = |seq: u64| temperature(seq, seq as i64 * 1_000);
    let counted = |new, late, duplicates, repeats: &[usize]| Inserted {
        new,
        repeats: repeats.to_vec(),
        arrivals: if late + duplicates == 0 {
            vec![]
        } else {
            vec![(
                sensor(),
                Arrivals {
                    metric: t,
                    hour: 0,
                    late,
                    duplicates,
                },
            )]
        },
    };
    let insert = |writer: &Arc<dyn Storage>, seqs: &[u64]| {
        let readings: Vec<Reading> = seqs.iter().map(|&s| of_s1(s)).collect();
        let writer = writer.clone();
        async move { writer.insert_readings(&readings).await.unwrap() }
    };
    assert_eq!(insert(&a, &[1, 2, 3, 5]).await, counted(4, 0, 0, &[]));
    assert_eq!(insert(&b, &[6, 7]).await, counted(2, 0, 0, &[]));
    assert_eq!(
        insert(&a, &[6, 8]).await,
        counted(1, 0, 1, &[0]),
        "a's memory says 5, but b stored 6"
    );
    assert_eq!(
        insert(&a, &[7, 4]).await,
        counted(1, 1, 1, &[0]),
        "all at or below what a knows, yet 4 was never stored"
    );
    assert_eq!(
        insert(&a, &[2, 3]).await,
        counted(0, 0, 2, &[0, 1]),
        "sent again whole"
    );
    assert_eq!(
        a.arrivals(&sensor(), 0, HOUR_MS).await.unwrap(),
        [Arrivals {
            metric: t,
            hour: 0,
            late: 1,
            duplicates: 4
        }],
        "what was rolled back was not counted"
    );
}

async fn a_backlog_of_many_devices_is_sorted_as_one_of_a_few(storage: Arc<dyn Storage>) {
    // More devices than the writer's look-ups join into one statement.
    let devices: Vec<String> = (0..450).map(|i| format!("s{i}")).collect();
    let t = Metric::TemperatureCelsius;
    let numbered = |seq: u64| -> Vec<Reading> {
        devices
            .iter()
            .map(|d| reading(d, t, seq, seq as i64 * 1_000))
            .collect()
    };
    storage.insert_readings(&numbered(2)).await.unwrap();
    // Every device's 1 comes late and its 2 again.
    let backlog: Vec<Reading> = numbered(1).into_iter().chain(numbered(2)).collect();
    let inserted = storage.insert_readings(&backlog).await.unwrap();
    assert_eq!(inserted.new, 450);
    assert_eq!(inserted.arrivals.len(), 450);
    assert!(inserted
        .arrivals
        .iter()
        .all(|(_, a)| (a.late, a.duplicates) == (1, 1)));
}

async fn the_highest_number_below_and_the_numbers_after_are_found_by_key(
    storage: Arc<dyn Storage>,
) {
    seed(storage.as_ref()).await;
    let readings = [
        temperature(5, 1_000),
        temperature(7, 2_000),
        temperature(8, 9_000),
    ];
    storage.insert_readings(&readings).await.unwrap();
    let t = Metric::TemperatureCelsius;
    let below = |seq| {
        let storage = storage.clone();
        async move { storage.highest_seq_below(&sensor(), t, seq).await.unwrap() }
    };
    assert_eq!(below(5).await, None);
    assert_eq!(below(7).await, Some(5));
    assert_eq!(below(u64::MAX).await, Some(8), "clamped to what is stored");
    assert_eq!(
        storage
            .highest_seq_below(&sensor(), Metric::PressureHpa, 100)
            .await
            .unwrap(),
        None
    );
    let after = storage
        .stored_after(&sensor(), t, 5, 5_000)
        .await
        .unwrap()
        .expect("7 is after 5 and taken before 5,000");
    assert_eq!(
        (after.stored, after.lowest_seq, after.highest_seq),
        (1, 7, 7)
    );
    assert_eq!(
        storage.stored_after(&sensor(), t, 8, 10_000).await.unwrap(),
        None
    );
}

async fn run_starts_are_recorded_once_and_listed_in_a_range(storage: Arc<dyn Storage>) {
    seed(storage.as_ref()).await;
    let runs = [(sensor(), 100, 1), (sensor(), 5_000, 2)];
    storage.record_run_starts(&runs).await.unwrap();
    storage.record_run_starts(&runs[..1]).await.unwrap();
    assert_eq!(
        storage.run_starts(&sensor(), 0, u64::MAX).await.unwrap(),
        [100, 5_000]
    );
    assert_eq!(
        storage.run_starts(&sensor(), 100, 5_000).await.unwrap(),
        [5_000],
        "after is exclusive, up_to inclusive"
    );
    storage.record_run_starts(&[]).await.unwrap();
}

async fn what_a_sensor_said_it_sent_keeps_its_highest_and_is_found_by_when(
    storage: Arc<dyn Storage>,
) {
    seed(storage.as_ref()).await;
    // A run the writer recorded already, and one only a status names.
    storage
        .record_run_starts(&[(sensor(), 100, 1)])
        .await
        .unwrap();
    let both = MetricSet::parse(&[1, 3]).unwrap();
    let record = |run_start, last_seq, metrics, said_at| {
        let storage = storage.clone();
        async move {
            let account = RunAccount {
                run_start,
                last_seq,
                metrics,
            };
            storage
                .record_sent(&sensor(), &account, said_at)
                .await
                .unwrap()
        }
    };
    record(100, 150, both, 10).await;
    record(100, 140, MetricSet::default(), 20).await;
    record(100, 150, MetricSet::default(), 30).await;
    record(900, 905, MetricSet::default(), 40).await;
    let said = |run_start, sent_through, metrics, said_at| Sent {
        device: sensor(),
        run_start,
        sent_through,
        metrics,
        said_at,
    };
    assert_eq!(
        storage.sent(Some(&sensor()), 0, 100).await.unwrap(),
        [
            said(100, 150, both, 10),
            said(900, 905, MetricSet::default(), 40)
        ],
        "a lower or equal number, delivered late or again, changes nothing"
    );
    assert_eq!(
        storage.sent(None, 11, 40).await.unwrap(),
        [],
        "from inclusive, to exclusive"
    );
    assert_eq!(storage.sent(Some(&fan()), 0, 100).await.unwrap(), []);
    assert_eq!(
        storage.run_starts(&sensor(), 0, u64::MAX).await.unwrap(),
        [100, 900],
        "a status's run is a run"
    );
}

async fn old_runs_are_deleted_but_each_devices_newest(storage: Arc<dyn Storage>) {
    seed(storage.as_ref()).await;
    // The sensor restarted twice long ago and once lately; the fan once,
    // long ago, and is still in that run.
    let runs = [
        (sensor(), 100, 1_000),
        (sensor(), 200, 2_000),
        (sensor(), 300, 9_000),
        (fan(), 50, 1_000),
    ];
    storage.record_run_starts(&runs).await.unwrap();
    assert_eq!(storage.delete_runs_before(5_000).await.unwrap(), 2);
    assert_eq!(
        storage.run_starts(&sensor(), 0, u64::MAX).await.unwrap(),
        [300]
    );
    assert_eq!(
        storage.run_starts(&fan(), 0, u64::MAX).await.unwrap(),
        [50],
        "a device's newest run is kept, however old"
    );
    assert_eq!(storage.delete_runs_before(5_000).await.unwrap(), 0);
}

async fn a_device_credential_is_replaced_and_revoked(storage: Arc<dyn Storage>) {
    seed(storage.as_ref()).await;
    assert_eq!(storage.device_credential(&fan()).await.unwrap(), None);
    storage
        .set_device_credential(&fan(), "first-hash", 1)
        .await
        .unwrap();
    storage
        .set_device_credential(&fan(), "second-hash", 2)
        .await
        .unwrap();
    assert_eq!(
        storage.device_credential(&fan()).await.unwrap().as_deref(),
        Some("second-hash")
    );
    assert_eq!(storage.devices_with_credentials().await.unwrap(), [fan()]);
    assert!(storage.delete_device_credential(&fan()).await.unwrap());
    assert!(!storage.delete_device_credential(&fan()).await.unwrap());
    assert_eq!(storage.device_credential(&fan()).await.unwrap(), None);
    assert!(storage.devices_with_credentials().await.unwrap().is_empty());
}

async fn an_api_token_keeps_its_homes_and_devices_until_revoked(storage: Arc<dyn Storage>) {
    seed(storage.as_ref()).await;
    let token = |name: &str, devices| ApiTokenInfo {
        name: TokenName::parse(name, "name").unwrap(),
        grants: vec![Grant {
            home: home("h1").id,
            role: Role::Ingest,
        }],
        devices,
        created_at: 5,
        created_by: "root".into(),
    };
    let gateway = token("gateway", DeviceScope::Only(vec![sensor(), fan()]));
    let script = token("script", DeviceScope::All);
    storage.create_api_token("hash-1", &gateway).await.unwrap();
    storage.create_api_token("hash-2", &script).await.unwrap();
    let mut expected = gateway.clone();
    // Listed by id.
    expected.devices = DeviceScope::Only(vec![fan(), sensor()]);
    assert_eq!(storage.api_token("hash-1").await.unwrap(), Some(expected));
    assert_eq!(storage.api_token("hash-2").await.unwrap(), Some(script));
    storage.delete_api_token(&gateway.name).await.unwrap();
    assert_eq!(storage.api_token("hash-1").await.unwrap(), None);
    // A token of the same name starts with no device of the old one's.
    storage
        .create_api_token("hash-3", &token("gateway", DeviceScope::All))
        .await
        .unwrap();
    assert_eq!(
        storage
            .get_api_token(&gateway.name)
            .await
            .unwrap()
            .unwrap()
            .devices,
        DeviceScope::All
    );
}
