//! Benchmark: command round trip over MQTT on loopback — a `SetMode` call,
//! the simulated agent applying it, the acknowledgement stored — against a
//! release `hearth`, on MariaDB + Mosquitto or (`--embedded`) on SQLite and
//! the in-process broker.
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-command [-- [--embedded] [COMMANDS [LOAD_PER_S]]]
//! ```
//!
//! First measures the floors no Hearth is in: one durable single-row commit
//! on the database, and an MQTT QoS 1 round trip (publish → a peer that
//! answers → its answer back) on the broker. A command's round trip holds
//! two commits (the new desired state with its command; the report with the
//! command closed) and one such MQTT round trip, so their sum is what
//! Hearth's figure is compared with. Then COMMANDS (default 500) round trips
//! with no load, and again while 1,000 simulated sensors publish LOAD_PER_S
//! readings/s in total (default 25,000, as batches of three: half the
//! telemetry benchmark's target). `HEARTH_TEST_MQTT_URL` picks the broker
//! (default the one on :1883); give it one with `set_tcp_nodelay true`, as
//! `deploy/mosquitto.conf` has, or every broker→client hop can wait 40 ms for
//! a delayed ACK. Three figures per command, all from the `SetMode` call:
//! - stored: to the acknowledgement committed (the issue's definition and the
//!   figure of record; Hearth logs it as `stored_us`);
//! - received: to the report reaching Hearth (stored with the command);
//! - client: from `SetMode` sent to the acknowledgement seen on a
//!   `WatchDevices` stream, gRPC both ways included.
//!
//! Prints p50/p99 and writes `target/bench/command.json`.
//!
//! `--auth` measures the cost of authorization: Hearth starts open, the
//! floors are measured, then a first admin is made (so logins are on from
//! then on) and every call carries the admin's session token through the
//! gate, with the caller limits raised out of the way (they are still
//! counted). On the embedded broker the fan then logs in with its own
//! credential and the load with an ingest token, as a gateway does. Run it
//! alternately with and without to compare on a busy machine; JSON in
//! `command[-embedded]-auth.json`.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{
        auth_service_client::AuthServiceClient, device_service_client::DeviceServiceClient,
        CreateApiTokenRequest, CreateHomeRequest, CreateUserRequest, DeviceKind,
        ListCommandsRequest, Metric, Mode, Reading, ReadingBatch, RegisterDeviceRequest, Role,
        SetModeRequest, WatchDevicesRequest,
    },
};
use hearth_tests::{
    build_release, external_mqtt_url, fresh_mysql_database, log_field, release_binary,
    spawn_until_ready, unique, workspace_dir, Bearer, TempDir,
};
use prost::Message as _;
use rumqttc::{AsyncClient, QoS};
use tonic::service::interceptor::InterceptedService;

const HOME: &str = "bench";
const FAN: &str = "bench-fan";
const SENSORS: usize = 1_000;
/// MQTT connections the load is spread over.
const LOAD_CONNECTIONS: usize = 10;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Debug)]
struct Run {
    stored_ms: Vec<f64>,
    received_ms: Vec<f64>,
    client_ms: Vec<f64>,
}

impl Run {
    fn summary(&mut self, name: &str) -> serde_json::Value {
        let (s50, s99) = p50_p99(&mut self.stored_ms);
        let (r50, r99) = p50_p99(&mut self.received_ms);
        let (c50, c99) = p50_p99(&mut self.client_ms);
        println!(
            "{name:>10}: {n} commands; SetMode → ack stored p50 {s50:.3} ms, p99 {s99:.3} ms \
             (→ report received p50 {r50:.3}, p99 {r99:.3}; client, SetMode sent → ack on stream \
             p50 {c50:.3}, p99 {c99:.3})",
            n = self.stored_ms.len()
        );
        serde_json::json!({
            "commands": self.stored_ms.len(),
            "stored_p50_ms": s50, "stored_p99_ms": s99,
            "received_p50_ms": r50, "received_p99_ms": r99,
            "client_p50_ms": c50, "client_p99_ms": c99,
        })
    }
}

/// Hearth's log line for each acknowledged command.
const APPLIED_LINE: &str = "device applied the command";

/// The API as the benchmark calls it: with a session token when `--auth`.
type Devices = DeviceServiceClient<InterceptedService<tonic::transport::Channel, Bearer>>;

/// The password of the benchmark's first admin (`--auth`).
const ADMIN_PASSWORD: &str = "bench-password-not-secret";

/// The device API on `grpc`, and the auth API for making tokens; logged in
/// as the first admin when `auth`.
async fn clients(
    grpc: &str,
    auth: bool,
) -> anyhow::Result<(
    Devices,
    AuthServiceClient<InterceptedService<tonic::transport::Channel, Bearer>>,
)> {
    let channel = tonic::transport::Endpoint::from_shared(grpc.to_owned())?
        .connect()
        .await?;
    let bearer = if auth {
        Bearer::login(channel.clone(), "bench", ADMIN_PASSWORD).await?
    } else {
        Bearer::default()
    };
    Ok((
        DeviceServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        AuthServiceClient::with_interceptor(channel, bearer),
    ))
}

/// `url` (`mqtt://host:port`) logging in as `username` with `password`
/// (Hearth's credentials are URL-safe).
fn with_login(url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{url} is not a URL"))?;
    Ok(format!("{scheme}://{username}:{password}@{rest}"))
}

async fn round_trips(
    devices: &mut Devices,
    logs: &Mutex<Vec<String>>,
    commands: usize,
) -> anyhow::Result<Run> {
    let logged_before = logs.lock().expect("logs").len();
    let mut watch = devices
        .watch_devices(WatchDevicesRequest {
            home_id: HOME.into(),
        })
        .await?
        .into_inner();
    watch.next().await; // the snapshot
    let mut run = Run {
        stored_ms: Vec::with_capacity(commands),
        received_ms: Vec::with_capacity(commands),
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
    // As stored with the newest (up to 200) commands of this run.
    run.received_ms = listed
        .iter()
        .take(commands.min(200))
        .filter(|c| c.round_trip_us > 0)
        .map(|c| c.round_trip_us as f64 / 1e3)
        .collect();
    // The log line is written before the stream hears of the commit, but
    // read from the pipe by another thread: give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.stored_ms = logs.lock().expect("logs")[logged_before..]
        .iter()
        .filter(|l| l.contains(APPLIED_LINE) && l.contains(&format!("device={FAN}")))
        .filter(|l| l.contains("stored_us="))
        .map(|l| log_field(l, "stored_us").parse::<f64>().map(|us| us / 1e3))
        .collect::<Result<_, _>>()?;
    // An older build (HEARTH_BENCH_BINARY) logs none: its figure is NaN.
    anyhow::ensure!(
        run.stored_ms.is_empty() || run.stored_ms.len() == commands,
        "{} of {commands} acknowledgements logged",
        run.stored_ms.len()
    );
    Ok(run)
}

/// Publishes `per_s` readings/s in total from `SENSORS` simulated sensors,
/// as SenseHat batches of three, until `stop`; returns how many readings
/// were handed to the client.
fn start_load(
    url: &str,
    login: Option<&hearth_runtime::mqtt::Credentials>,
    topics: &Topics,
    per_s: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Arc<AtomicU64>> {
    let sent = Arc::new(AtomicU64::new(0));
    let per_connection = per_s / 3 / LOAD_CONNECTIONS as u64;
    for c in 0..LOAD_CONNECTIONS {
        let options = hearth_runtime::mqtt::options(url, &unique("bench-load"), login)?;
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
            let mut seq = hearth_runtime::unix_ms_now() as u64;
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
                        time_unix_ms: hearth_runtime::unix_ms_now(),
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

/// p50 and p99 of `samples` (milliseconds), sorted in place.
fn p50_p99(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (percentile(samples, 0.5), percentile(samples, 0.99))
}

/// Timed rounds of each floor probe.
const FLOOR_ROUNDS: usize = 300;

/// One durable commit on MariaDB: an autocommit single-row UPDATE, as the
/// command path's writes are (p50, p99 in ms).
async fn commit_floor(db_url: &str) -> anyhow::Result<(f64, f64)> {
    use sqlx::Connection as _;
    let mut db = sqlx::MySqlConnection::connect(db_url).await?;
    sqlx::query("CREATE TABLE bench_floor (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        .execute(&mut db)
        .await?;
    sqlx::query("INSERT INTO bench_floor VALUES (1, 0)")
        .execute(&mut db)
        .await?;
    let mut ms = Vec::with_capacity(FLOOR_ROUNDS);
    for i in 0..FLOOR_ROUNDS as i64 {
        let started = Instant::now();
        sqlx::query("UPDATE bench_floor SET v = ? WHERE id = 1")
            .bind(i)
            .execute(&mut db)
            .await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    sqlx::query("DROP TABLE bench_floor")
        .execute(&mut db)
        .await?;
    Ok(p50_p99(&mut ms))
}

/// MariaDB's count of statements clients have sent it (`Questions`: one
/// per round trip; what a stored procedure runs is not counted).
async fn questions(db_url: &str) -> anyhow::Result<u64> {
    use sqlx::{Connection as _, Row as _};
    let mut db = sqlx::MySqlConnection::connect(db_url).await?;
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Questions'")
        .fetch_one(&mut db)
        .await?;
    Ok(row.try_get::<String, _>(1)?.parse()?)
}

/// An MQTT QoS 1 round trip on the broker at `url`: a publish to a peer
/// that answers on another topic, as a device answers a desired state with
/// its report (p50, p99 in ms).
async fn mqtt_floor(url: &str, prefix: &str) -> anyhow::Result<(f64, f64)> {
    use rumqttc::{Event, Packet};
    let (ping, pong) = (
        format!("{prefix}/floor/ping"),
        format!("{prefix}/floor/pong"),
    );
    let connect = |name: &str| -> anyhow::Result<_> {
        let options = hearth_runtime::mqtt::options(url, &unique(name), None)?;
        Ok(hearth_runtime::mqtt::client(options, 64))
    };
    let (peer, mut peer_events) = connect("bench-floor-peer")?;
    let (me, mut my_events) = connect("bench-floor")?;
    peer.subscribe(&ping, QoS::AtLeastOnce).await?;
    me.subscribe(&pong, QoS::AtLeastOnce).await?;
    let answer = pong.clone();
    let peer_task = tokio::spawn(async move {
        while let Ok(event) = peer_events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = peer
                    .publish(&answer, QoS::AtLeastOnce, false, p.payload.to_vec())
                    .await;
            }
        }
    });
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let my_task = tokio::spawn(async move {
        while let Ok(event) = my_events.poll().await {
            match event {
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = answers_tx.send(p.payload);
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = answers_tx.send(Default::default());
                }
                _ => {}
            }
        }
    });
    answers.recv().await; // subscribed
    tokio::time::sleep(Duration::from_millis(200)).await; // the peer too
    let mut ms = Vec::with_capacity(FLOOR_ROUNDS);
    for i in 0..FLOOR_ROUNDS + 20 {
        let started = Instant::now();
        me.publish(&ping, QoS::AtLeastOnce, false, i.to_string().into_bytes())
            .await?;
        loop {
            let payload = tokio::time::timeout(Duration::from_secs(5), answers.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the MQTT probe lost its connection"))?;
            if payload.as_ref() == i.to_string().as_bytes() {
                break;
            }
        }
        if i >= 20 {
            ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    peer_task.abort();
    my_task.abort();
    Ok(p50_p99(&mut ms))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let embedded = args.iter().any(|a| a == "--embedded");
    let auth = args.iter().any(|a| a == "--auth");
    let mut numbers = args.iter().filter(|a| !a.starts_with("--"));
    let commands: usize = numbers.next().map_or(Ok(500), |a| a.parse())?;
    let load_per_s: u64 = numbers.next().map_or(Ok(25_000), |a| a.parse())?;
    // HEARTH_BENCH_BINARY: another build of `hearth` to measure, e.g. an
    // older commit's, for a comparison on the same machine in the same hour.
    let binary = match std::env::var_os("HEARTH_BENCH_BINARY") {
        Some(path) => PathBuf::from(path),
        None => {
            build_release(&["-p", "hearth-backend", "--bins"])?;
            release_binary("hearth")
        }
    };

    let dir = TempDir::new();
    let prefix = unique("bench");
    let topics = Topics::new(&prefix)?;
    let mut hearth = Command::new(binary);
    hearth
        .current_dir(&dir.0)
        .env("HEARTH_LISTEN", "127.0.0.1:0")
        .env("HEARTH_TOPIC_PREFIX", &prefix)
        .env("HEARTH_DEMO", "false")
        .env(
            "HEARTH_LOG",
            "warn,hearth_backend::app=info,hearth_backend::control=info",
        );
    if auth {
        hearth
            .env("HEARTH_REQUESTS_PER_SECOND", "1000000")
            .env("HEARTH_REQUEST_BURST", "1000000");
    }
    let mysql = if embedded {
        hearth
            .env("HEARTH_DATABASE_URL", "sqlite://bench.db")
            .env("HEARTH_MQTT_LISTEN", "127.0.0.1:0");
        None
    } else {
        let (db_name, db_url) = fresh_mysql_database().await;
        hearth
            .env("HEARTH_DATABASE_URL", &db_url)
            .env("HEARTH_MQTT_URL", external_mqtt_url());
        Some((db_name, db_url))
    };
    let (mut hearth, logs, ready) = spawn_until_ready(hearth, "hearth ready").await;
    let grpc = format!("http://{}", log_field(&ready, "http"));
    let broker = if embedded {
        log_field(&ready, "mqtt")
    } else {
        external_mqtt_url()
    };

    println!(
        "authorization: {}",
        if auth {
            "on (a session token on every call, checked by the gate)"
        } else {
            "off (open mode)"
        }
    );
    eprintln!("measuring the floors (no Hearth in the path)…");
    let commit = match &mysql {
        Some((_, db_url)) => Some(commit_floor(db_url).await?),
        None => None,
    };
    let mqtt = mqtt_floor(&broker, &prefix).await?;
    if let Some((p50, p99)) = commit {
        println!("     floor: one durable commit on MariaDB p50 {p50:.3} ms, p99 {p99:.3} ms");
    }
    println!(
        "     floor: MQTT QoS 1 round trip on the broker p50 {:.3} ms, p99 {:.3} ms",
        mqtt.0, mqtt.1
    );
    let floor_p50 = commit.map_or(0.0, |c| 2.0 * c.0) + mqtt.0;
    if commit.is_some() {
        println!(
            "     floor: a command's round trip (2 commits + 1 MQTT round trip) p50 {floor_p50:.3} ms"
        );
    }
    // Hearth is open until its first user: the home, then (`--auth`) its
    // admin, after whom every call and MQTT login is checked.
    let (mut devices, _) = clients(&grpc, false).await?;
    devices
        .create_home(CreateHomeRequest {
            id: HOME.into(),
            name: "Benchmark".into(),
        })
        .await?;
    if auth {
        let (_, mut open) = clients(&grpc, false).await?;
        open.create_user(CreateUserRequest {
            username: "bench".into(),
            password: ADMIN_PASSWORD.into(),
            home_id: HOME.into(),
            role: Role::Admin as i32,
        })
        .await?;
    }
    let (mut devices, mut auth_api) = clients(&grpc, auth).await?;
    // The embedded broker checks every login once there are users: the fan
    // logs in with its credential, the load as a gateway with an ingest
    // token. Mosquitto here stays anonymous.
    let logins = auth && embedded;
    let load_login = match logins {
        true => Some(hearth_runtime::mqtt::Credentials::new(
            hearth_proto::topics::TOKEN_USERNAME,
            auth_api
                .create_api_token(CreateApiTokenRequest {
                    name: "bench-load".into(),
                    home_ids: vec![HOME.into()],
                    role: Role::Ingest as i32,
                    device_ids: vec![],
                })
                .await?
                .into_inner()
                .token,
        )),
        false => None,
    };
    let register = |id: String, kind: DeviceKind| RegisterDeviceRequest {
        home_id: HOME.into(),
        id,
        kind: kind as i32,
        name: String::new(),
    };
    let fan_login = devices
        .register_device(register(FAN.into(), DeviceKind::Fan))
        .await?
        .into_inner()
        .mqtt_credential;
    eprintln!("registering {SENSORS} sensors for the load…");
    for s in 0..SENSORS {
        devices
            .register_device(register(format!("s{s}"), DeviceKind::Sensor))
            .await?;
    }

    let output = hearth_device::sim::SimulatedOutput::default();
    let link = hearth_device::mqtt::DeviceLink {
        broker_url: match (&fan_login, logins) {
            (Some(c), true) => with_login(&broker, &c.username, &c.password)?,
            _ => broker.clone(),
        },
        topics: topics.clone(),
        home_id: HOME.into(),
        device_id: FAN.into(),
    };
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(hearth_device::mqtt::run_actuator(link, output, async {
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
    round_trips(&mut devices, &logs, 20).await?;
    eprintln!("{commands} round trips with no load…");
    let questions_before = match &mysql {
        Some((_, db_url)) => Some(questions(db_url).await?),
        None => None,
    };
    let mut idle = round_trips(&mut devices, &logs, commands).await?;
    let idle = idle.summary("idle");
    // Round trips to MariaDB per command: unlike the timings, a count that
    // the machine's noise does not move (background ticks add a few).
    let statements_per_command = match (&mysql, questions_before) {
        (Some((_, db_url)), Some(before)) => {
            let per = (questions(db_url).await? - before - 1) as f64 / commands as f64;
            println!("      idle: {per:.2} statements sent to MariaDB per command");
            Some(per)
        }
        _ => None,
    };

    eprintln!("{commands} round trips while {SENSORS} sensors publish {load_per_s} readings/s…");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = start_load(
        &broker,
        load_login.as_ref(),
        &topics,
        load_per_s,
        stop.clone(),
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let load_started = (Instant::now(), sent.load(Ordering::Relaxed));
    let mut loaded = round_trips(&mut devices, &logs, commands).await?;
    let load_rate = (sent.load(Ordering::Relaxed) - load_started.1) as f64
        / load_started.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!("load: {load_rate:.0} readings/s published during the loaded run");
    let loaded = loaded.summary("loaded");
    println!("targets: idle p50 ≤ 1 ms and p99 ≤ 5 ms; loaded p99 ≤ 20 ms");

    let out = workspace_dir().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let file = format!(
        "command{}{}.json",
        if embedded { "-embedded" } else { "" },
        if auth { "-auth" } else { "" }
    );
    let json = serde_json::json!({
        "backend": if embedded { "sqlite + embedded broker" } else { "mariadb + mosquitto" },
        "authorization": auth,
        "floor": {
            "commit_p50_ms": commit.map(|c| c.0), "commit_p99_ms": commit.map(|c| c.1),
            "mqtt_round_trip_p50_ms": mqtt.0, "mqtt_round_trip_p99_ms": mqtt.1,
            "command_p50_ms": floor_p50,
        },
        "idle": idle,
        "mariadb_statements_per_command": statements_per_command,
        "loaded": loaded,
        "load_readings_per_s": load_rate,
    });
    std::fs::write(out.join(&file), serde_json::to_string_pretty(&json)?)?;
    println!("wrote {}", out.join(&file).display());

    let _ = stop_agent.send(());
    let _ = agent.await;
    let _ = hearth.kill();
    let _ = hearth.wait();
    if let Some((db_name, _)) = mysql {
        let mut admin = {
            use sqlx::Connection as _;
            sqlx::MySqlConnection::connect(&hearth_tests::mysql_url()).await?
        };
        sqlx::query(&format!("DROP DATABASE {db_name}"))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}
