//! What one ingest commit costs `Storage::insert_readings`, the writer's
//! whole database work per commit, against the floor: the same rows written
//! with nothing of Hearth's in the way (one transaction of multi-row
//! `INSERT IGNORE`s of 1,000 rows, the statement shape the writer uses) into
//! a second fresh database of the same schema. Commits of 5,000 readings
//! (1,000 sensors, three metrics, numbers in order) into a fresh database,
//! then the same commits sent again (every reading a duplicate, the path a
//! replay takes). The two sides alternate commit by commit, so a busy
//! machine slows both alike. Prints the median and 90th percentile per
//! commit, readings/s, and Hearth's median over the floor's.
//!
//! ```sh
//! cargo run --release -p hearth-backend --example ingest-cost [-- COMMITS]
//! ```
//!
//! On MariaDB at `HEARTH_TEST_MYSQL_URL` (default mysql://root@127.0.0.1:3306,
//! databases of its own, dropped after) and on temporary SQLite files.

use std::time::{Duration, Instant};

use hearth_backend::{
    domain::{DeviceId, Reading},
    storage::{connect, Storage},
};
use hearth_proto::v1::Metric;
use sqlx::{ConnectOptions as _, Connection as _};

const SENSORS: u64 = 1_000;
const METRICS: [Metric; 3] = [
    Metric::TemperatureCelsius,
    Metric::HumidityPercent,
    Metric::PressureHpa,
];
const PER_COMMIT: usize = 5_000;

/// Commit `n`: the next 5,000 readings, each sensor's numbers in order.
fn commit(n: usize, sensors: &[DeviceId]) -> Vec<Reading> {
    let first = n * PER_COMMIT;
    (first..first + PER_COMMIT)
        .map(|i| {
            let batch = (i / METRICS.len()) as u64;
            let sensor = (batch % SENSORS) as usize;
            let seq = 1 + batch / SENSORS;
            Reading {
                device_id: sensors[sensor].clone(),
                metric: METRICS[i % METRICS.len()],
                seq,
                time: 1_796_000_000_000 + seq as i64 * 1_000,
                value: 20.0,
            }
        })
        .collect()
}

/// The floor's side: a connection of its own to a second database of
/// Hearth's schema.
enum Floor {
    MariaDb(sqlx::MySqlConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// `batch` as Hearth's writer inserts it, and nothing else: one
/// transaction of multi-row `INSERT IGNORE`s of 1,000 rows.
macro_rules! plain_insert {
    ($db:ty, $conn:expr, $insert_ignore:literal, $batch:expr) => {{
        let mut tx = $conn.begin().await?;
        for chunk in $batch.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                $insert_ignore,
                " INTO readings (device_id, metric, seq, ts, value) "
            ));
            q.push_values(chunk, |mut row, r| {
                row.push_bind(r.device_id.as_str())
                    .push_bind(r.metric as i16)
                    .push_bind(r.seq as i64)
                    .push_bind(r.time)
                    .push_bind(r.value);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }};
}

impl Floor {
    async fn insert(&mut self, batch: &[Reading]) -> anyhow::Result<()> {
        match self {
            Floor::MariaDb(conn) => plain_insert!(sqlx::MySql, conn, "INSERT IGNORE", batch),
            Floor::Sqlite(conn) => plain_insert!(sqlx::Sqlite, conn, "INSERT OR IGNORE", batch),
        }
        Ok(())
    }
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

/// Times `commits` commits on `storage` and on the floor, alternating,
/// then the same commits again.
async fn measure(
    what: &str,
    storage: &dyn Storage,
    floor: &mut Floor,
    commits: usize,
) -> anyhow::Result<()> {
    let sensors: Vec<DeviceId> = (0..SENSORS)
        .map(|i| DeviceId::parse(&format!("sensor-{i}"), "id").expect("a valid id"))
        .collect();
    let batches: Vec<Vec<Reading>> = (0..commits).map(|n| commit(n, &sensors)).collect();
    for pass in ["new", "again"] {
        let mut times = Vec::with_capacity(commits);
        let mut floor_times = Vec::with_capacity(commits);
        for batch in &batches {
            let started = Instant::now();
            floor.insert(batch).await?;
            floor_times.push(started.elapsed());
            let started = Instant::now();
            let _ = storage.insert_readings(batch).await?;
            times.push(started.elapsed());
        }
        let total: Duration = times.iter().sum();
        let (hearth, bare) = (median_ms(&mut times), median_ms(&mut floor_times));
        println!(
            "{what} {pass:>5}: {commits} commits of {PER_COMMIT}: median {hearth:.1} ms \
             (floor {bare:.1} ms, ratio {:.2}), p90 {:.1} ms, {:.0} readings/s",
            hearth / bare,
            times[commits * 9 / 10].as_secs_f64() * 1e3,
            (commits * PER_COMMIT) as f64 / total.as_secs_f64()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let commits: usize = std::env::args()
        .nth(1)
        .map_or(Ok(40), |n| n.parse())
        .map_err(|_| anyhow::anyhow!("COMMITS must be a number"))?;

    let server = std::env::var("HEARTH_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let name = format!("hearth_ingest_cost_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::MySqlConnection::connect(&server).await?;
    for db in [&name, &format!("{name}_floor")] {
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await?;
    }
    let mariadb = connect(&format!("{server}/{name}")).await?;
    // The floor's schema is Hearth's: made by connecting once.
    drop(connect(&format!("{server}/{name}_floor")).await?);
    let mut floor =
        Floor::MariaDb(sqlx::MySqlConnection::connect(&format!("{server}/{name}_floor")).await?);
    let measured = measure("MariaDB", mariadb.as_ref(), &mut floor, commits).await;
    for db in [&name, &format!("{name}_floor")] {
        sqlx::query(&format!("DROP DATABASE {db}"))
            .execute(&mut admin)
            .await?;
    }
    measured?;

    let dir = tempfile::tempdir()?;
    let sqlite = connect(&format!(
        "sqlite://{}",
        dir.path().join("cost.db").display()
    ))
    .await?;
    let floor_file = dir.path().join("floor.db");
    drop(connect(&format!("sqlite://{}", floor_file.display())).await?);
    // As Hearth opens it: WAL, synced at checkpoints.
    let mut floor = Floor::Sqlite(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&floor_file)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .connect()
            .await?,
    );
    measure("SQLite ", sqlite.as_ref(), &mut floor, commits).await
}
