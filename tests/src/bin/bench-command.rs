//! Benchmark: command round trip over MQTT on loopback — a `SetMode` call,
//! the simulated agent applying it, the acknowledgement stored — against a
//! release `hearth` on MariaDB + Mosquitto.
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-command [-- COMMANDS LOAD_PER_S]
//! ```
//!
//! Measures COMMANDS (default 500) round trips with no load, then again while
//! 1,000 simulated sensors publish LOAD_PER_S readings/s in total (default
//! 25,000, as batches of three: half the telemetry benchmark's target).
//! `HEARTH_TEST_MQTT_URL` picks the broker (default the one on :1883); give it
//! one with `set_tcp_nodelay true`, as `deploy/mosquitto.conf` has, or every
//! broker→client hop can wait 40 ms for a delayed ACK. Two figures per command:
//! the server's (stored with the command: requested → applied) and the
//! client's (SetMode sent → the acknowledgement seen on a WatchDevices
//! stream). Prints p50/p99 and writes `target/bench/command.json`.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{
        device_service_client::DeviceServiceClient, CreateHomeRequest, DeviceKind,
        ListCommandsRequest, Metric, Mode, Reading, ReadingBatch, RegisterDeviceRequest,
        SetModeRequest, WatchDevicesRequest,
    },
};
use hearth_tests::{
    external_mqtt_url, fresh_mysql_database, log_field, spawn_until_ready, unique, workspace_dir,
    TempDir,
};
use prost::Message as _;
use rumqttc::{AsyncClient, QoS};

const HOME: &str = "bench";
const FAN: &str = "bench-fan";
const SENSORS: usize = 1_000;
/// MQTT connections the load is spread over.
const LOAD_CONNECTIONS: usize = 10;

fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_dir().join("target"), PathBuf::from);
    target.join("release").join(name)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Debug)]
struct Run {
    server_ms: Vec<f64>,
    client_ms: Vec<f64>,
}

impl Run {
    fn summary(&mut self, name: &str) -> serde_json::Value {
        self.server_ms.sort_by(f64::total_cmp);
        self.client_ms.sort_by(f64::total_cmp);
        let (s50, s99) = (
            percentile(&self.server_ms, 0.5),
            percentile(&self.server_ms, 0.99),
        );
        let (c50, c99) = (
            percentile(&self.client_ms, 0.5),
            percentile(&self.client_ms, 0.99),
        );
        println!(
            "{name:>10}: {n} commands; server round trip p50 {s50:.3} ms, p99 {s99:.3} ms; \
             client (SetMode → ack on stream) p50 {c50:.3} ms, p99 {c99:.3} ms",
            n = self.server_ms.len()
        );
        serde_json::json!({
            "commands": self.server_ms.len(),
            "server_p50_ms": s50, "server_p99_ms": s99,
            "client_p50_ms": c50, "client_p99_ms": c99,
        })
    }
}

async fn round_trips(
    devices: &mut DeviceServiceClient<tonic::transport::Channel>,
    commands: usize,
) -> anyhow::Result<Run> {
    let mut watch = devices
        .watch_devices(WatchDevicesRequest {
            home_id: HOME.into(),
        })
        .await?
        .into_inner();
    watch.next().await; // the snapshot
    let mut run = Run {
        server_ms: Vec::with_capacity(commands),
        client_ms: Vec::with_capacity(commands),
    };
    for i in 0..commands {
        let mode = if i % 2 == 0 { Mode::On } else { Mode::Off };
        let sent = Instant::now();
        let device = devices
            .set_mode(SetModeRequest {
                device_id: FAN.into(),
                mode: mode as i32,
                requested_by: "bench".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let version = device.desired.map_or(0, |d| d.version);
        loop {
            let update = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the device stream ended"))??;
            if update.devices.iter().any(|d| {
                d.id == FAN
                    && d.reported
                        .as_ref()
                        .is_some_and(|r| r.applied_version == version)
            }) {
                break;
            }
        }
        run.client_ms.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    let listed = devices
        .list_commands(ListCommandsRequest {
            device_id: FAN.into(),
            limit: 200,
        })
        .await?
        .into_inner()
        .commands;
    // The server's figure for the newest (up to 200) commands of this run.
    run.server_ms = listed
        .iter()
        .take(commands.min(200))
        .filter(|c| c.round_trip_us > 0)
        .map(|c| c.round_trip_us as f64 / 1e3)
        .collect();
    Ok(run)
}

/// Publishes `per_s` readings/s in total from `SENSORS` simulated sensors,
/// as SenseHat batches of three, until `stop`; returns how many readings
/// were handed to the client.
fn start_load(
    url: &str,
    topics: &Topics,
    per_s: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Arc<AtomicU64>> {
    let sent = Arc::new(AtomicU64::new(0));
    let per_connection = per_s / 3 / LOAD_CONNECTIONS as u64;
    for c in 0..LOAD_CONNECTIONS {
        let options = hearth_agent::mqtt::options(url, &unique("bench-load"))?;
        let (client, mut events) = AsyncClient::new(options, 10_000);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        let sensors: Vec<(String, String)> = (c..SENSORS)
            .step_by(LOAD_CONNECTIONS)
            .map(|s| {
                let id = format!("s{s}");
                let topic = topics
                    .device(HOME, &id, Channel::Readings)
                    .expect("valid topic");
                (id, topic)
            })
            .collect();
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut seq = hearth_agent::unix_ms_now() as u64;
            let tick = Duration::from_millis(10);
            let per_tick = (per_connection / 100).max(1);
            let mut next = tokio::time::Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..per_tick {
                    let (_, topic) = &sensors[i % sensors.len()];
                    i += 1;
                    seq += 1;
                    let batch = ReadingBatch {
                        seq,
                        time_unix_ms: hearth_agent::unix_ms_now(),
                        readings: vec![
                            Reading {
                                metric: Metric::TemperatureCelsius as i32,
                                value: 21.5,
                            },
                            Reading {
                                metric: Metric::HumidityPercent as i32,
                                value: 40.0,
                            },
                            Reading {
                                metric: Metric::PressureHpa as i32,
                                value: 1013.0,
                            },
                        ],
                        ..Default::default()
                    };
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, batch.encode_to_vec())
                        .await
                        .is_ok()
                    {
                        sent.fetch_add(3, Ordering::Relaxed);
                    }
                }
                next += tick;
                tokio::time::sleep_until(next).await;
            }
        });
    }
    Ok(sent)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let commands: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let load_per_s: u64 = args.next().map_or(Ok(25_000), |a| a.parse())?;
    eprintln!("building release binaries…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "hearth-backend",
            "--bins",
        ])
        .current_dir(workspace_dir())
        .status()?;
    anyhow::ensure!(status.success(), "cargo build failed");

    let (db_name, db_url) = fresh_mysql_database().await;
    let dir = TempDir::new();
    let prefix = unique("bench");
    let topics = Topics::new(&prefix)?;
    let mut hearth = Command::new(release_binary("hearth"));
    hearth
        .current_dir(&dir.0)
        .env("HEARTH_LISTEN", "127.0.0.1:0")
        .env("HEARTH_DATABASE_URL", &db_url)
        .env("HEARTH_MQTT_URL", external_mqtt_url())
        .env("HEARTH_TOPIC_PREFIX", &prefix)
        .env("HEARTH_DEMO", "false")
        .env("HEARTH_LOG", "warn,hearth_backend::app=info");
    let (mut hearth, _logs, ready) = spawn_until_ready(hearth, "hearth ready").await;
    let grpc = format!("http://{}", log_field(&ready, "http"));
    let mut devices = DeviceServiceClient::connect(grpc).await?;
    devices
        .create_home(CreateHomeRequest {
            id: HOME.into(),
            name: "Benchmark".into(),
        })
        .await?;
    let register = |id: String, kind: DeviceKind| RegisterDeviceRequest {
        home_id: HOME.into(),
        id,
        kind: kind as i32,
        name: String::new(),
    };
    devices
        .register_device(register(FAN.into(), DeviceKind::Fan))
        .await?;
    eprintln!("registering {SENSORS} sensors for the load…");
    for s in 0..SENSORS {
        devices
            .register_device(register(format!("s{s}"), DeviceKind::Sensor))
            .await?;
    }

    let output = hearth_agent::sim::SimulatedOutput::default();
    let link = hearth_agent::mqtt::DeviceLink {
        broker_url: external_mqtt_url(),
        topics: topics.clone(),
        home_id: HOME.into(),
        device_id: FAN.into(),
    };
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(hearth_agent::mqtt::run_actuator(link, output, async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fan = devices
            .get_device(hearth_proto::v1::GetDeviceRequest { id: FAN.into() })
            .await?
            .into_inner();
        if fan.online {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the simulated fan never came online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!("warming up…");
    round_trips(&mut devices, 20).await?;
    eprintln!("{commands} round trips with no load…");
    let mut idle = round_trips(&mut devices, commands).await?;
    let idle = idle.summary("idle");

    eprintln!("{commands} round trips while {SENSORS} sensors publish {load_per_s} readings/s…");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = start_load(&external_mqtt_url(), &topics, load_per_s, stop.clone())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let load_started = (Instant::now(), sent.load(Ordering::Relaxed));
    let mut loaded = round_trips(&mut devices, commands).await?;
    let load_rate = (sent.load(Ordering::Relaxed) - load_started.1) as f64
        / load_started.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!("load: {load_rate:.0} readings/s published during the loaded run");
    let loaded = loaded.summary("loaded");
    println!("targets: idle p50 ≤ 1 ms and p99 ≤ 5 ms; loaded p99 ≤ 20 ms");

    let out = workspace_dir().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let json = serde_json::json!({
        "idle": idle,
        "loaded": loaded,
        "load_readings_per_s": load_rate,
    });
    std::fs::write(
        out.join("command.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("wrote {}", out.join("command.json").display());

    let _ = stop_agent.send(());
    let _ = agent.await;
    let _ = hearth.kill();
    let _ = hearth.wait();
    let mut admin = {
        use sqlx::Connection as _;
        sqlx::MySqlConnection::connect(&hearth_tests::mysql_url()).await?
    };
    sqlx::query(&format!("DROP DATABASE {db_name}"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
