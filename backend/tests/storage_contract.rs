//! One contract for every `Storage`: the same assertions against SQLite and
//! against MariaDB (`HEARTH_TEST_MYSQL_URL`, default mysql://root@127.0.0.1:3306).

use std::sync::Arc;

use hearth_backend::{
    domain::{
        Action, ActuatorState, Command, CommandState, Device, DeviceId, DeviceKind, Home, HomeId,
        LoggedDecision, Mode, Pending, Reading, Resolution, RuleDecision, RuleId, RuleState,
        SeriesPlan, SeriesPoint, StaleAction, ThresholdRule, HOUR_MS, MINUTE_MS,
    },
    storage::{connect, Applied, DecisionsOf, ReadingCursor, ReadingQuery, Storage, StorageError},
};
use hearth_proto::v1::Metric;
use sqlx::Connection as _;

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

async fn contract(storage: Arc<dyn Storage>) {
    // Homes and devices.
    storage.create_home(&home("h1")).await.unwrap();
    assert!(matches!(
        storage.create_home(&home("h1")).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(matches!(
        storage
            .register_device(&device("x", "nohome", DeviceKind::Fan))
            .await,
        Err(StorageError::NotFound(_))
    ));
    storage
        .register_device(&device("s1", "h1", DeviceKind::Sensor))
        .await
        .unwrap();
    storage
        .register_device(&device("f1", "h1", DeviceKind::Fan))
        .await
        .unwrap();
    assert!(matches!(
        storage
            .register_device(&device("f1", "h1", DeviceKind::Fan))
            .await,
        Err(StorageError::Conflict(_))
    ));
    let listed = storage
        .list_devices(Some(&HomeId::parse("h1", "h").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["f1", "s1"]
    );
    assert_eq!(storage.list_homes().await.unwrap(), vec![home("h1")]);

    // Actuator state: compare-and-set on the desired version.
    let fan = DeviceId::parse("f1", "id").unwrap();
    let t = ActuatorState::default().set_mode(Mode::On, Some(5_000), "user", 10);
    let on = t.state;
    let command = Command::for_desired(&fan, t.publish.as_ref().unwrap(), "user", 1_000);
    storage
        .save_actuator_state(&fan, 0, &on, Some(&command))
        .await
        .unwrap();
    assert!(
        matches!(
            storage
                .save_actuator_state(&fan, 0, &on, Some(&command))
                .await,
            Err(StorageError::Stale(_))
        ),
        "a second writer loses"
    );
    let acked = on.report(1, true, 11).unwrap();
    assert!(
        !storage.save_reported(&fan, &acked, None).await.unwrap(),
        "no command closed without one applied"
    );
    storage.save_presence(&fan, Some(true), 12).await.unwrap();
    let stored = storage.get_device(&fan).await.unwrap().unwrap();
    assert_eq!(stored.state, acked);
    assert_eq!(stored.state.override_until, Some(5_000));
    assert_eq!(
        stored.last_command,
        Some(command.clone()),
        "joined to its command"
    );
    assert!(stored.online);
    assert_eq!(stored.last_seen, Some(12));
    assert!(storage.overrides_ended(4_999).await.unwrap().is_empty());
    assert_eq!(
        storage.overrides_ended(5_000).await.unwrap(),
        vec![fan.clone()]
    );

    // Commands: published, applied once, a newer one supersedes, expiry.
    storage.command_published(&fan, 1, 13).await.unwrap();
    let applied = |at, round_trip_us| {
        Some(Applied {
            version: 1,
            at,
            round_trip_us,
            published_at: Some(12_345),
        })
    };
    assert!(storage
        .save_reported(&fan, &acked, applied(14, 900))
        .await
        .unwrap());
    assert!(
        !storage
            .save_reported(&fan, &acked, applied(15, 1))
            .await
            .unwrap(),
        "once"
    );
    storage.command_published(&fan, 1, 16).await.unwrap();
    let mut state = acked.clone();
    for version in [2u64, 3] {
        let t = state.set_mode(
            if version == 2 { Mode::Off } else { Mode::On },
            None,
            "user",
            20,
        );
        let c = Command::for_desired(&fan, t.publish.as_ref().unwrap(), "user", 1_000);
        storage
            .save_actuator_state(&fan, version - 1, &t.state, Some(&c))
            .await
            .unwrap();
        state = t.state;
    }
    // Published after it was closed (the report overtook it): the time is
    // kept, the outcome is not undone.
    storage.command_published(&fan, 2, 21).await.unwrap();
    assert_eq!(
        storage.expire_commands(1_019).await.unwrap(),
        Vec::<DeviceId>::new()
    );
    assert_eq!(
        storage.expire_commands(1_020).await.unwrap(),
        vec![fan.clone()]
    );
    let commands = storage.list_commands(&fan, 10).await.unwrap();
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
    assert_eq!(storage.list_commands(&fan, 1).await.unwrap().len(), 1);
    // A publish time not stored yet travels with the acknowledgement.
    let t = state.set_mode(Mode::Off, None, "user", 30);
    let c = Command::for_desired(&fan, t.publish.as_ref().unwrap(), "user", 1_000);
    storage
        .save_actuator_state(&fan, 3, &t.state, Some(&c))
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
        .save_reported(&fan, &report, Some(applied))
        .await
        .unwrap());
    let newest = &storage.list_commands(&fan, 1).await.unwrap()[0];
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
    let unknown = DeviceId::parse("f404", "id").unwrap();
    assert!(matches!(
        storage
            .save_actuator_state(&unknown, 0, &on, Some(&command))
            .await,
        Err(StorageError::NotFound(_))
    ));
    assert!(storage
        .get_device(&DeviceId::parse("nope", "id").unwrap())
        .await
        .unwrap()
        .is_none());

    // Readings: idempotent inserts, newest first, cursor paging, ranges.
    let batch: Vec<Reading> = (1..=5)
        .flat_map(|seq| {
            [
                reading("s1", Metric::TemperatureCelsius, seq, seq as i64 * 100),
                reading("s1", Metric::HumidityPercent, seq, seq as i64 * 100),
            ]
        })
        .collect();
    assert_eq!(storage.insert_readings(&batch).await.unwrap(), 10);
    assert_eq!(
        storage.insert_readings(&batch[..4]).await.unwrap(),
        0,
        "replays are ignored"
    );
    let query = |metric, before, limit| ReadingQuery {
        device_id: DeviceId::parse("s1", "d").unwrap(),
        metric,
        start: None,
        end: None,
        before,
        limit,
    };
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
    let s1 = DeviceId::parse("s1", "d").unwrap();
    let after = storage
        .readings_after(&s1, Metric::TemperatureCelsius, (200, 2), Some(500), 2)
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|r| (r.time, r.seq)).collect::<Vec<_>>(),
        [(300, 3), (400, 4)],
        "oldest first, after the cursor, within the limit"
    );

    // Rollups from raw readings, series from any level, retention.
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
    let devices = [s1.clone()];
    for _ in 0..2 {
        // Twice: recomputing is idempotent.
        storage
            .refresh_rollups(Resolution::Minute, &devices, 120_000, 240_000)
            .await
            .unwrap();
        storage
            .refresh_rollups(Resolution::Hour, &devices, 0, HOUR_MS)
            .await
            .unwrap();
    }
    let series = |resolution, start, bucket_ms| SeriesPlan {
        resolution,
        start,
        end: HOUR_MS,
        bucket_ms,
    };
    let point = |start, min, max, sum, count| SeriesPoint {
        start,
        min,
        max,
        sum,
        count,
    };
    let minutes = storage
        .series(
            &s1,
            Metric::PressureHpa,
            &series(Resolution::Minute, 0, MINUTE_MS),
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
    let raw = storage
        .series(
            &s1,
            Metric::PressureHpa,
            &series(Resolution::Raw, 100_000, 60_000),
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
    let hours = storage
        .series(
            &s1,
            Metric::PressureHpa,
            &series(Resolution::Hour, 0, HOUR_MS),
        )
        .await
        .unwrap();
    assert_eq!(hours, [point(0, 1.0, 5.0, 9.0, 3)]);
    assert_eq!(
        storage
            .delete_readings_before(&s1, Metric::PressureHpa, 180_000, 1)
            .await
            .unwrap(),
        1,
        "in batches"
    );
    assert_eq!(
        storage
            .delete_readings_before(&s1, Metric::PressureHpa, 180_000, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage
            .delete_rollups_before(Resolution::Minute, 180_000, 100)
            .await
            .unwrap(),
        1
    );

    // Rules.
    let rule = ThresholdRule {
        id: RuleId::parse("r1", "id").unwrap(),
        home_id: HomeId::parse("h1", "h").unwrap(),
        name: "fan".into(),
        source: DeviceId::parse("s1", "d").unwrap(),
        metric: Metric::TemperatureCelsius,
        target: fan.clone(),
        on_above: 25.0,
        off_below: 24.5,
        enabled: true,
        min_on_s: 60,
        min_off_s: 30,
        sustain_s: 10,
        stale_after_s: 300,
        stale_action: StaleAction::Off,
    };
    storage
        .create_rule(&rule, &RuleState::new(1))
        .await
        .unwrap();
    assert!(matches!(
        storage.create_rule(&rule, &RuleState::new(1)).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(storage.list_rules(None).await.unwrap(), vec![rule.clone()]);

    // Rule state survives a round trip, and an update forgets it.
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
    assert_eq!(
        storage.load_rule_state(&rule.id).await.unwrap(),
        Some(RuleState::new(1)),
        "created with its starting state"
    );
    storage.save_rule_state(&rule.id, &st).await.unwrap();
    storage.save_rule_state(&rule.id, &st).await.unwrap();
    assert_eq!(storage.load_rule_state(&rule.id).await.unwrap(), Some(st));
    let edited = ThresholdRule {
        enabled: false,
        sustain_s: 0,
        ..rule.clone()
    };
    storage
        .update_rule(&edited, &RuleState::new(2))
        .await
        .unwrap();
    assert_eq!(
        storage.list_rules(None).await.unwrap(),
        vec![edited.clone()]
    );
    assert_eq!(
        storage.load_rule_state(&rule.id).await.unwrap(),
        Some(RuleState::new(2)),
        "an edited rule starts afresh"
    );
    assert!(matches!(
        storage
            .update_rule(
                &ThresholdRule {
                    id: RuleId::parse("nope", "id").unwrap(),
                    ..rule.clone()
                },
                &RuleState::new(3)
            )
            .await,
        Err(StorageError::NotFound(_))
    ));

    // Decisions, newest first, by home or by rule.
    for (at, action) in [(1, Action::SustainStarted), (2, Action::SwitchOn)] {
        storage
            .record_decision(&LoggedDecision {
                rule_id: rule.id.clone(),
                home_id: rule.home_id.clone(),
                target: fan.clone(),
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

    // Leases: one holder until it expires.
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
    storage.release_lease("auto", "a").await.unwrap();
    assert!(
        !storage.acquire_lease("auto", "a", 170, 270).await.unwrap(),
        "only its holder releases a lease"
    );
    storage.release_lease("auto", "b").await.unwrap();
    assert!(
        storage.acquire_lease("auto", "a", 171, 271).await.unwrap(),
        "a released lease is free at once"
    );

    storage.delete_rule(&rule.id).await.unwrap();
    assert!(matches!(
        storage.delete_rule(&rule.id).await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn sqlite_meets_the_storage_contract() {
    let path =
        std::env::temp_dir().join(format!("hearth-contract-{:08x}.db", rand::random::<u32>()));
    let storage = connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    contract(storage).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test]
async fn mysql_meets_the_storage_contract() {
    let server = std::env::var("HEARTH_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let name = format!("hearth_contract_{:08x}", rand::random::<u32>());
    let mut admin = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("MariaDB is reachable at HEARTH_TEST_MYSQL_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let storage = connect(&format!("{server}/{name}")).await.unwrap();
    contract(storage).await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
}
