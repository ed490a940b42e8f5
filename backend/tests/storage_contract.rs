//! One contract for every `Storage`: the same assertions against SQLite and
//! against MariaDB (`HEARTH_TEST_MYSQL_URL`, default mysql://root@127.0.0.1:3306).

use std::sync::Arc;

use hearth_backend::{
    domain::{
        ActuatorState, Device, DeviceId, DeviceKind, Home, HomeId, Mode, Reading, RuleId,
        ThresholdRule,
    },
    storage::{connect, ReadingCursor, ReadingQuery, Storage, StorageError},
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
    let on = ActuatorState::default()
        .set_mode(Mode::On, "user", 10)
        .state;
    storage.save_actuator_state(&fan, 0, &on).await.unwrap();
    assert!(
        matches!(
            storage.save_actuator_state(&fan, 0, &on).await,
            Err(StorageError::Stale(_))
        ),
        "a second writer loses"
    );
    let acked = on.report(1, true, 11).unwrap();
    storage.save_reported(&fan, &acked).await.unwrap();
    storage.save_presence(&fan, Some(true), 12).await.unwrap();
    let stored = storage.get_device(&fan).await.unwrap().unwrap();
    assert_eq!(stored.state, acked);
    assert!(stored.online);
    assert_eq!(stored.last_seen, Some(12));
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
    };
    storage.create_rule(&rule).await.unwrap();
    assert!(matches!(
        storage.create_rule(&rule).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(storage.list_rules(None).await.unwrap(), vec![rule.clone()]);
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
