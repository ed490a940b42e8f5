//! What one ingest commit costs `Storage::insert_readings`, the writer's
//! whole database work per commit: commits of 5,000 readings (1,000 sensors,
//! three metrics, numbers in order) into a fresh database, then the same
//! commits sent again (every reading a duplicate, the path a replay takes).
//! Prints the median and 90th percentile per commit and readings/s.
//!
//! ```sh
//! cargo run --release -p hearth-backend --example ingest-cost [-- COMMITS]
//! ```
//!
//! On MariaDB at `HEARTH_TEST_MYSQL_URL` (default mysql://root@127.0.0.1:3306,
//! a database of its own, dropped after) and on a temporary SQLite file.

use std::time::{Duration, Instant};

use hearth_backend::{
    domain::{DeviceId, Reading},
    storage::{connect, Storage},
};
use hearth_proto::v1::Metric;
use sqlx::Connection as _;

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

async fn measure(what: &str, storage: &dyn Storage, commits: usize) {
    let sensors: Vec<DeviceId> = (0..SENSORS)
        .map(|i| DeviceId::parse(&format!("sensor-{i}"), "id").expect("a valid id"))
        .collect();
    let batches: Vec<Vec<Reading>> = (0..commits).map(|n| commit(n, &sensors)).collect();
    for pass in ["new", "again"] {
        let mut times = Vec::with_capacity(commits);
        for batch in &batches {
            let started = Instant::now();
            let _ = storage.insert_readings(batch).await.expect("stored");
            times.push(started.elapsed());
        }
        times.sort();
        let total: Duration = times.iter().sum();
        println!(
            "{what} {pass:>5}: {commits} commits of {PER_COMMIT}: median {:.1} ms, p90 {:.1} ms, \
             {:.0} readings/s",
            times[commits / 2].as_secs_f64() * 1e3,
            times[commits * 9 / 10].as_secs_f64() * 1e3,
            (commits * PER_COMMIT) as f64 / total.as_secs_f64()
        );
    }
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
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let mariadb = connect(&format!("{server}/{name}")).await?;
    measure("MariaDB", mariadb.as_ref(), commits).await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut admin)
        .await?;

    let dir = tempfile::tempdir()?;
    let sqlite = connect(&format!(
        "sqlite://{}",
        dir.path().join("cost.db").display()
    ))
    .await?;
    measure("SQLite ", sqlite.as_ref(), commits).await;
    Ok(())
}
