//! Benchmark: a 1,000,000-reading backlog in the gateway's on-disk queue,
//! replayed to a running `hearth` on MariaDB + Mosquitto.
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-gateway-replay [-- READINGS]
//! ```
//!
//! Prints progress, then readings/s, lost and duplicated readings, and the
//! gateway's peak RSS; writes the same as JSON to
//! `target/bench/gateway-replay.json`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use hearth_gateway::queue::DiskQueue;
use hearth_proto::v1::{
    device_service_client::DeviceServiceClient, CreateHomeRequest, DeviceKind, Metric, Reading,
    ReadingBatch, RegisterDeviceRequest,
};
use hearth_tests::{
    build_release, external_mqtt_url, fresh_mysql_database, log_field, release_binary,
    spawn_until_ready, workspace_dir, TempDir,
};
use prost::Message as _;
use sqlx::Connection as _;

const SENSORS: u64 = 100;

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |a| a.parse())?;
    build_release(&["-p", "hearth-backend", "-p", "hearth-gateway", "--bins"])?;

    let (db_name, db_url) = fresh_mysql_database().await;
    let dir = TempDir::new();
    let mut hearth = Command::new(release_binary("hearth"));
    hearth
        .current_dir(&dir.0)
        .env("HEARTH_LISTEN", "127.0.0.1:0")
        .env("HEARTH_DATABASE_URL", &db_url)
        .env("HEARTH_MQTT_URL", external_mqtt_url())
        .env("HEARTH_TOPIC_PREFIX", hearth_tests::unique("bench"))
        .env("HEARTH_DEMO", "false")
        .env("HEARTH_LOG", "warn,hearth_backend::app=info");
    let (mut hearth, _logs, ready) = spawn_until_ready(hearth, "hearth ready").await;
    let grpc = format!("http://{}", log_field(&ready, "http"));

    let mut devices = DeviceServiceClient::connect(grpc.clone()).await?;
    devices
        .create_home(CreateHomeRequest {
            id: "bench".into(),
            name: "Benchmark".into(),
        })
        .await?;
    for s in 0..SENSORS {
        devices
            .register_device(RegisterDeviceRequest {
                home_id: "bench".into(),
                id: format!("s{s}"),
                kind: DeviceKind::Sensor as i32,
                name: String::new(),
            })
            .await?;
    }

    eprintln!("writing a backlog of {total} readings into the gateway's queue…");
    let data = TempDir::new();
    let base = hearth_runtime::unix_ms_now() - 3_600_000;
    {
        let mut queue = DiskQueue::open(&data.0, u64::MAX)?;
        for i in 0..total {
            let batch = ReadingBatch {
                home_id: "bench".into(),
                device_id: format!("s{}", i % SENSORS),
                seq: i / SENSORS + 1,
                time_unix_ms: base + (i / SENSORS) as i64,
                readings: vec![Reading {
                    metric: Metric::TemperatureCelsius as i32,
                    value: 20.0 + (i % 100) as f64 / 10.0,
                }],
                ..Default::default()
            };
            queue
                .append(&batch.encode_to_vec())?
                .map_err(|_| anyhow::anyhow!("queue full"))?;
        }
        queue.sync()?;
    }

    let mut gateway = Command::new(release_binary("hearth-gateway"));
    gateway
        .env("HEARTH_GATEWAY_UDP", "127.0.0.1:0")
        .env("HEARTH_GATEWAY_CLOUD", &grpc)
        .env("HEARTH_GATEWAY_DATA", &data.0)
        .env("HEARTH_LOG", "warn,hearth_gateway=info");
    let started = Instant::now();
    let (mut gateway, _glogs, _) = spawn_until_ready(gateway, "gateway ready").await;
    let gateway_pid = gateway.id();

    let mut db = sqlx::MySqlConnection::connect(&db_url).await?;
    let mut stored: i64 = 0;
    let mut peak_gateway_kb = 0;
    while (stored as u64) < total && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stored = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&mut db)
            .await?;
        peak_gateway_kb = peak_gateway_kb.max(peak_rss_kb(gateway_pid));
        eprintln!(
            "  {:>6.1} s  {stored:>9} stored  ({:.0}/s)",
            started.elapsed().as_secs_f64(),
            stored as f64 / started.elapsed().as_secs_f64()
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let distinct: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT DISTINCT device_id, seq FROM readings) d")
            .fetch_one(&mut db)
            .await?;
    let hearth_kb = peak_rss_kb(hearth.id());
    let _ = gateway.kill();
    let _ = hearth.kill();
    sqlx::query(&format!("DROP DATABASE {db_name}"))
        .execute(&mut db)
        .await?;

    let rate = stored as f64 / elapsed;
    let lost = total as i64 - distinct;
    let duplicated = stored - distinct;
    println!("gateway backlog replay to hearth on MariaDB");
    println!("  readings          {total}");
    println!("  elapsed           {elapsed:.1} s");
    println!("  readings/s        {rate:.0}   (target >= 20000)");
    println!("  lost              {lost}   (target 0)");
    println!("  duplicated        {duplicated}   (target 0)");
    println!(
        "  gateway peak RSS  {:.1} MB   (target <= 20 MB)",
        peak_gateway_kb as f64 / 1024.0
    );
    println!("  hearth peak RSS   {:.1} MB", hearth_kb as f64 / 1024.0);
    let out = workspace_dir().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("gateway-replay.json"),
        format!(
            "{{\"readings\":{total},\"elapsed_s\":{elapsed:.3},\"readings_per_s\":{rate:.0},\"lost\":{lost},\"duplicated\":{duplicated},\"gateway_peak_rss_kb\":{peak_gateway_kb},\"hearth_peak_rss_kb\":{hearth_kb}}}\n"
        ),
    )?;
    Ok(())
}
