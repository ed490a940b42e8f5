//! Benchmark of issue 15's "Failover, measured": the paper's cluster (three
//! replicas of each role: ingest, control, automation, web) as processes of
//! the release `hearth` on MariaDB and a Mosquitto of its own with Hearth's
//! broker configuration, under a steady load, while replicas are killed,
//! rolled and scaled as Kubernetes would.
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-failover            # ≈ 3 min
//! cargo run --release -p hearth-tests --bin bench-failover -- --help  # every knob
//! ```
//!
//! While it runs:
//! - simulated sensors publish QoS 1 `ReadingBatch`es (three readings, a
//!   per-device seq) at a fixed rate; one more sensor (`thermo`) swings its
//!   temperature across a fan rule's thresholds, so automation switches a
//!   simulated fan (the device crate's actuator loop, which acknowledges);
//! - a browser-like client watches `WatchReadings` and `WatchDevices` through
//!   a web replica and, when its replica goes, reconnects to another, as a
//!   browser behind a Service would;
//! - a control probe calls `SetMode` (on a simulated light) and `GetDevice`
//!   round-robin over the control replicas that are ready, as a Service
//!   would route them.
//!
//! The phases: steady; kill -9 one replica of each role and restart it under
//! the same name and port (a container restart in its pod); roll every role
//! (start a replacement, then take the old one out of the Service, wait the
//! preStop pause and SIGTERM it: `maxSurge: 1, maxUnavailable: 0` as in
//! `k8s/`); scale ingest 3 → 1 → 3; steady. Then it stops the load, waits for
//! everything to be stored and prints: readings lost and stored twice (every
//! acknowledged seq against the database), the rule's crossings against the
//! commands it made, the longest gap of the control probe and of each stream,
//! and what the watching client missed. JSON in `target/bench/failover.json`.
//!
//! Why processes and not containers: the image is tested on its own (the
//! `image` system test); twelve containers under podman and runc on two
//! cores would measure runc, and a process takes SIGKILL and SIGTERM, keeps
//! its broker session under its name and serves on its port as a container
//! does.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command},
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use futures::TryStreamExt as _;
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{
        automation_service_client::AutomationServiceClient,
        device_service_client::DeviceServiceClient,
        telemetry_service_client::TelemetryServiceClient, CreateHomeRequest, CreateRuleRequest,
        DeviceKind, GetDeviceRequest, Metric, Mode, Reading, ReadingBatch, RegisterDeviceRequest,
        Rule, SetModeRequest, WatchDevicesRequest, WatchReadingsRequest,
    },
};
use hearth_tests::{
    build_release, mysql_url, release_binary, spawn_until_ready, unique, workspace_dir,
    PrivateBroker, TempDir,
};
use prost::Message as _;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{json, Value};
use sqlx::{Connection as _, MySqlConnection};
use tonic::transport::Channel as GrpcChannel;

const HOME: &str = "failover";
/// The sensor whose temperature the fan rule watches.
const THERMO: &str = "thermo";
/// Switched by the rule.
const FAN: &str = "fan";
/// Switched by the control probe.
const LIGHT: &str = "light";
/// The fan rule's thresholds (on above, off below), and the thermo's swing
/// around them.
const ON_ABOVE: f64 = 25.0;
const OFF_BELOW: f64 = 24.0;
const SWING: (f64, f64) = (22.5, 26.5);
const ROLES: [&str; 4] = ["ingest", "control", "automation", "web"];
/// A stream silent this long is taken for dead (a browser's keep-alive).
const STREAM_SILENCE: Duration = Duration::from_secs(5);
/// How far before the newest reading seen a reconnect resumes (the app's
/// margin too).
const RESUME_MARGIN_MS: i64 = 10_000;
/// How long a gRPC call of the probe may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

const USAGE: &str = "\
bench-failover: issue 15's cluster failover benchmark (MariaDB + own Mosquitto)

options:
  --devices N          simulated sensors besides the thermo (100)
  --rate N             ReadingBatch messages/s they publish in total, 3 readings each (500)
  --connections N      MQTT connections the sensors share (5)
  --swing-secs N       the thermo's period: two crossings per period (8)
  --replicas N         replicas of each role (3)
  --steady-secs N      steady load before, between and after the phases (15)
  --restart-secs N     a SIGKILLed replica's restart delay (2)
  --notice-ms N        how long a dead replica stays in its Service (1000)
  --prestop-secs N     pause between leaving the Service and SIGTERM (5, as k8s/)
  --broker-config PATH Mosquitto configuration (deploy/mosquitto.conf)
  --hearth PATH        the hearth binary (default: release build in the target dir)
  --no-build           do not run cargo build first
  --keep-db            keep the database afterwards
  --json PATH          summary (target/bench/failover.json)
";

#[derive(Debug, Clone)]
struct Options {
    devices: usize,
    rate: u64,
    connections: usize,
    swing_secs: u64,
    replicas: usize,
    steady_secs: u64,
    restart_secs: u64,
    notice_ms: u64,
    prestop_secs: u64,
    broker_config: PathBuf,
    hearth: Option<PathBuf>,
    build: bool,
    keep_db: bool,
    json: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            devices: 100,
            rate: 500,
            connections: 5,
            swing_secs: 8,
            replicas: 3,
            steady_secs: 15,
            restart_secs: 2,
            notice_ms: 1_000,
            prestop_secs: 5,
            broker_config: workspace_dir().join("deploy/mosquitto.conf"),
            hearth: None,
            build: true,
            keep_db: false,
            json: workspace_dir().join("target/bench/failover.json"),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            fn num<T: std::str::FromStr>(flag: &str, v: &str) -> anyhow::Result<T> {
                v.parse()
                    .map_err(|_| anyhow::anyhow!("{flag} {v:?} is not a number"))
            }
            match flag.as_str() {
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                "--devices" => o.devices = num(flag, value()?)?,
                "--rate" => o.rate = num(flag, value()?)?,
                "--connections" => o.connections = num(flag, value()?)?,
                "--swing-secs" => o.swing_secs = num(flag, value()?)?,
                "--replicas" => o.replicas = num(flag, value()?)?,
                "--steady-secs" => o.steady_secs = num(flag, value()?)?,
                "--restart-secs" => o.restart_secs = num(flag, value()?)?,
                "--notice-ms" => o.notice_ms = num(flag, value()?)?,
                "--prestop-secs" => o.prestop_secs = num(flag, value()?)?,
                "--broker-config" => o.broker_config = value()?.into(),
                "--hearth" => o.hearth = Some(value()?.into()),
                "--no-build" => o.build = false,
                "--keep-db" => o.keep_db = true,
                "--json" => o.json = value()?.into(),
                other => bail!("unknown option {other:?}\n\n{USAGE}"),
            }
        }
        ensure!(
            o.devices >= 1 && o.connections >= 1,
            "--devices and --connections must be >= 1"
        );
        ensure!(
            o.replicas >= 2,
            "--replicas must be >= 2: failover needs another replica"
        );
        ensure!(o.swing_secs >= 2, "--swing-secs must be >= 2");
        o.connections = o.connections.min(o.devices);
        Ok(o)
    }
}

// ---------------------------------------------------------------- timeline

/// Seconds since the run started, for progress lines and windows.
#[derive(Clone)]
struct Timeline {
    start: Instant,
}

impl Timeline {
    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn say(&self, what: impl std::fmt::Display) {
        eprintln!("[{:>6.1} s] {what}", self.secs());
    }
}

// ---------------------------------------------------------------- the cluster

/// One running `hearth` process: a pod's container.
struct Replica {
    role: &'static str,
    name: String,
    addr: SocketAddr,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ready replicas of each role, as a Service's endpoints: the probe and
/// the watcher pick from here, round-robin.
#[derive(Clone, Default)]
struct Endpoints(Arc<Mutex<HashMap<&'static str, Vec<SocketAddr>>>>);

impl Endpoints {
    fn add(&self, role: &'static str, addr: SocketAddr) {
        self.0
            .lock()
            .expect("endpoints")
            .entry(role)
            .or_default()
            .push(addr);
    }

    fn remove(&self, addr: SocketAddr) {
        for list in self.0.lock().expect("endpoints").values_mut() {
            list.retain(|a| *a != addr);
        }
    }

    /// The `turn`-th ready endpoint of `role`, round-robin.
    fn pick(&self, role: &str, turn: usize) -> Option<SocketAddr> {
        let map = self.0.lock().expect("endpoints");
        let list = map.get(role)?;
        (!list.is_empty()).then(|| list[turn % list.len()])
    }
}

/// Every replica of the four roles on one database and broker.
struct Cluster {
    binary: PathBuf,
    env: Vec<(String, String)>,
    running: Vec<Replica>,
    endpoints: Endpoints,
    /// Pods made per role, for new names (as a ReplicaSet makes pod names).
    made: HashMap<&'static str, usize>,
    /// Every process's output, by replica name (a restarted one twice).
    logs: Vec<(String, Arc<Mutex<Vec<String>>>)>,
    dir: TempDir,
    timeline: Timeline,
}

impl Cluster {
    fn free_addr() -> anyhow::Result<SocketAddr> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
    }

    /// Starts a new pod of `role` (a new name and port) and adds it to the
    /// Service once ready.
    async fn scale_up(&mut self, role: &'static str) -> anyhow::Result<String> {
        let n = self.made.entry(role).or_default();
        *n += 1;
        let name = format!("hearth-{role}-{n}");
        self.start(role, &name, Self::free_addr()?).await?;
        Ok(name)
    }

    async fn start(
        &mut self,
        role: &'static str,
        name: &str,
        addr: SocketAddr,
    ) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.dir.0)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HEARTH_ROLES", role)
            .env("HEARTH_REPLICA", name)
            .env("HEARTH_LISTEN", addr.to_string());
        let (child, logs, _) = spawn_until_ready(command, "hearth ready").await;
        self.logs.push((name.to_owned(), logs.clone()));
        self.running.push(Replica {
            role,
            name: name.to_owned(),
            addr,
            child,
        });
        self.endpoints.add(role, addr);
        Ok(())
    }

    fn of_role(&self, role: &str) -> Vec<String> {
        self.running
            .iter()
            .filter(|r| r.role == role)
            .map(|r| r.name.clone())
            .collect()
    }

    fn take(&mut self, name: &str) -> anyhow::Result<Replica> {
        let i = self
            .running
            .iter()
            .position(|r| r.name == name)
            .with_context(|| format!("no replica {name}"))?;
        Ok(self.running.remove(i))
    }

    /// kill -9, the endpoint left in the Service until the kubelet notices,
    /// then the container restarted in the same pod (same name, same port).
    async fn kill_and_restart(&mut self, name: &str, o: &Options) -> anyhow::Result<()> {
        let mut replica = self.take(name)?;
        let killed = Instant::now();
        let _ = replica.child.kill();
        let _ = replica.child.wait();
        self.timeline
            .say(format!("kill -9 {name} ({})", replica.addr));
        tokio::time::sleep(Duration::from_millis(o.notice_ms)).await;
        self.endpoints.remove(replica.addr);
        let restart_at = killed + Duration::from_secs(o.restart_secs);
        tokio::time::sleep_until(restart_at.into()).await;
        let (role, addr) = (replica.role, replica.addr);
        drop(replica);
        self.start(role, name, addr).await?;
        self.timeline.say(format!(
            "{name} restarted and ready ({:.1} s after the kill)",
            killed.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Out of the Service, the preStop pause, SIGTERM, and the wait for it
    /// to drain and exit (killed after the 45 s grace, as the kubelet would).
    async fn terminate(&mut self, name: &str, o: &Options) -> anyhow::Result<Duration> {
        let mut replica = self.take(name)?;
        self.endpoints.remove(replica.addr);
        tokio::time::sleep(Duration::from_secs(o.prestop_secs)).await;
        let signalled = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &replica.child.id().to_string()])
            .status();
        loop {
            if let Some(status) = replica.child.try_wait()? {
                let took = signalled.elapsed();
                self.timeline.say(format!(
                    "{name} stopped after SIGTERM in {:.2} s ({status})",
                    took.as_secs_f64()
                ));
                return Ok(took);
            }
            if signalled.elapsed() > Duration::from_secs(45) {
                self.timeline
                    .say(format!("{name} still running 45 s after SIGTERM: killed"));
                return Ok(signalled.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes every process's output to `dir` (one file per process, a
    /// restarted one's numbered) and returns the warnings and errors logged.
    fn write_logs(&self, dir: &std::path::Path) -> anyhow::Result<u64> {
        std::fs::create_dir_all(dir)?;
        let mut problems = 0u64;
        for (i, (name, logs)) in self.logs.iter().enumerate() {
            let logs = logs.lock().expect("logs");
            problems += logs
                .iter()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .count() as u64;
            std::fs::write(
                dir.join(format!("{i:02}-{name}.log")),
                logs.join("\n") + "\n",
            )?;
        }
        Ok(problems)
    }

    /// The automation replica holding the lease (`hearth_automation_leader`).
    async fn automation_leader(&self) -> Option<String> {
        for r in self.running.iter().filter(|r| r.role == "automation") {
            let body = tokio::spawn(hearth_tests::http_get(r.addr, "/metrics"))
                .await
                .ok()?;
            if hearth_tests::metric_value(&body, "hearth_automation_leader") == Some(1.0) {
                return Some(r.name.clone());
            }
        }
        None
    }
}

// ---------------------------------------------------------------- the load

/// What the devices published: per device, the number of batches (seqs
/// 1..=n) and readings per batch; the thermo's values by seq.
#[derive(Default)]
struct Ledger {
    batches: BTreeMap<String, (u64, usize)>,
    thermo: Vec<(u64, i64, f64)>,
}

/// The simulated sensors and the thermo, publishing until stopped.
struct Load {
    ledger: Arc<Mutex<Ledger>>,
    /// Publishes handed to the clients and not yet acknowledged.
    in_flight: Arc<AtomicI64>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn sensor_id(i: usize) -> String {
    format!("s{i}")
}

/// A connection that counts PUBACKs against `in_flight`.
async fn publisher(
    url: &str,
    in_flight: Arc<AtomicI64>,
    errors: Arc<AtomicU64>,
) -> anyhow::Result<AsyncClient> {
    let mut options = hearth_runtime::mqtt::options(url, &unique("bench-failover"), None)?;
    options.set_inflight(1_000);
    let (client, mut events) = hearth_runtime::mqtt::client(options, 4_096);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(client)
}

/// The thermo's temperature at `t` seconds: a triangle across both thresholds.
fn thermo_value(t: f64, period: f64) -> f64 {
    let phase = (t / period).fract();
    let tri = if phase < 0.5 {
        phase * 2.0
    } else {
        2.0 - phase * 2.0
    };
    SWING.0 + (SWING.1 - SWING.0) * tri
}

impl Load {
    async fn start(o: &Options, url: &str, topics: &Topics) -> anyhow::Result<Self> {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let in_flight = Arc::new(AtomicI64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = Vec::new();
        for c in 0..o.connections {
            let client = publisher(url, in_flight.clone(), errors.clone()).await?;
            let devices: Vec<(String, String)> = (c..o.devices)
                .step_by(o.connections)
                .map(|d| {
                    let id = sensor_id(d);
                    let topic = topics.device(HOME, &id, Channel::Readings)?;
                    anyhow::Ok((id, topic))
                })
                .collect::<Result<_, _>>()?;
            let share = o.rate as f64 * devices.len() as f64 / o.devices as f64;
            let (ledger, in_flight, stop) = (ledger.clone(), in_flight.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let (mut sent, mut next) = (0u64, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let due = (started.elapsed().as_secs_f64() * share) as u64;
                    while sent < due {
                        let (id, topic) = &devices[next];
                        next = (next + 1) % devices.len();
                        let seq = {
                            let mut l = ledger.lock().expect("ledger");
                            let entry = l.batches.entry(id.clone()).or_insert((0, 3));
                            entry.0 += 1;
                            entry.0
                        };
                        let batch = ReadingBatch {
                            seq,
                            time_unix_ms: hearth_runtime::unix_ms_now(),
                            readings: [
                                (Metric::TemperatureCelsius, 21.5),
                                (Metric::HumidityPercent, 40.0),
                                (Metric::PressureHpa, 1013.0),
                            ]
                            .map(|(metric, value)| Reading {
                                metric: metric as i32,
                                value,
                            })
                            .to_vec(),
                            ..Default::default()
                        };
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        client
                            .publish(topic, QoS::AtLeastOnce, false, batch.encode_to_vec())
                            .await?;
                        sent += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(())
            }));
        }
        tasks.push(Self::thermo(o, url, topics, &ledger, &in_flight, &errors, &stop).await?);
        Ok(Load {
            ledger,
            in_flight,
            errors,
            stop,
            tasks,
        })
    }

    /// The thermo: a temperature every 100 ms swinging across the rule's
    /// thresholds, every value kept for counting crossings.
    async fn thermo(
        o: &Options,
        url: &str,
        topics: &Topics,
        ledger: &Arc<Mutex<Ledger>>,
        in_flight: &Arc<AtomicI64>,
        errors: &Arc<AtomicU64>,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let client = publisher(url, in_flight.clone(), errors.clone()).await?;
        let topic = topics.device(HOME, THERMO, Channel::Readings)?;
        let period = o.swing_secs as f64;
        let (ledger, in_flight, stop) = (ledger.clone(), in_flight.clone(), stop.clone());
        Ok(tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                seq += 1;
                let value = thermo_value(started.elapsed().as_secs_f64(), period);
                let time = hearth_runtime::unix_ms_now();
                {
                    let mut l = ledger.lock().expect("ledger");
                    l.batches.insert(THERMO.into(), (seq, 1));
                    l.thermo.push((seq, time, value));
                }
                let batch = ReadingBatch {
                    seq,
                    time_unix_ms: time,
                    readings: vec![Reading {
                        metric: Metric::TemperatureCelsius as i32,
                        value,
                    }],
                    ..Default::default()
                };
                in_flight.fetch_add(1, Ordering::Relaxed);
                client
                    .publish(&topic, QoS::AtLeastOnce, false, batch.encode_to_vec())
                    .await?;
            }
            Ok(())
        }))
    }

    /// Stops publishing and waits (up to 30 s) for every PUBACK.
    async fn stop(self) -> anyhow::Result<Ledger> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await??;
        }
        let until = Instant::now() + Duration::from_secs(30);
        while self.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let unacked = self.in_flight.load(Ordering::Relaxed);
        ensure!(
            unacked == 0,
            "{unacked} publishes never acknowledged by the broker"
        );
        let ledger = std::mem::take(&mut *self.ledger.lock().expect("ledger"));
        Ok(ledger)
    }
}

// ---------------------------------------------------------------- the watcher

/// What the browser-like client saw on one stream, across reconnects.
#[derive(Default)]
struct StreamLog {
    /// The web replica this stream is open on.
    on: Option<SocketAddr>,
    /// Unix ms windows with no open stream: (the last message before, the
    /// next stream open).
    down: Vec<(i64, i64)>,
    reconnects: u64,
    /// Longest time between two messages, whichever stream carried them.
    longest_silence: Duration,
    /// Longest time without an open stream.
    longest_down: Duration,
    last_message: Option<Instant>,
}

impl StreamLog {
    fn message(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_message {
            self.longest_silence = self.longest_silence.max(now - last);
        }
        self.last_message = Some(now);
    }

    fn json(&self) -> Value {
        json!({
            "reconnects": self.reconnects,
            "longest_silence_s": secs3(self.longest_silence),
            "longest_without_stream_s": secs3(self.longest_down),
        })
    }
}

/// Readings seen on `WatchReadings` (device, metric, seq), and seen twice.
#[derive(Default)]
struct SeenReadings {
    keys: HashSet<(String, i32, u64)>,
    /// Live readings seen twice (a replay repeats some by design; the
    /// watcher keys them away, as the app does).
    twice: u64,
    /// The newest reading time seen: where a reconnect resumes from.
    newest_ms: i64,
    /// Messages the server said this client fell behind on (`skipped`).
    skipped: u64,
    log: StreamLog,
}

/// Device states seen on `WatchDevices`: desired versions and acknowledged
/// (applied) versions, per device.
#[derive(Default)]
struct SeenDevices {
    desired: HashSet<(String, u64)>,
    applied: HashSet<(String, u64)>,
    log: StreamLog,
}

/// A stream's state that the watcher keeps across reconnects.
trait Watched {
    fn log(&mut self) -> &mut StreamLog;
}

impl Watched for SeenReadings {
    fn log(&mut self) -> &mut StreamLog {
        &mut self.log
    }
}

impl Watched for SeenDevices {
    fn log(&mut self) -> &mut StreamLog {
        &mut self.log
    }
}

/// Follows a stream through the web Service until `stop`: on an error, an
/// end or `STREAM_SILENCE`, reconnects to the next ready web replica.
/// `open` makes the stream on a channel; `seen` takes each message.
async fn watch<M, S: Watched, Open, Fut>(
    endpoints: Endpoints,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<S>>,
    open: Open,
    seen: impl Fn(&mut S, M),
) where
    Open: Fn(GrpcChannel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Streaming<M>, tonic::Status>>,
{
    let mut turn = 0usize;
    // When the stream was lost: the last message (as an instant and in Unix
    // ms), or the start.
    let mut down_since: Option<(Instant, i64)> = None;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let Some(addr) = endpoints.pick("web", turn) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let stream = async {
            let channel = channel(addr).await?;
            anyhow::Ok(tokio::time::timeout(CALL_TIMEOUT, open(channel)).await??)
        }
        .await;
        let Ok(mut stream) = stream else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        state.lock().expect("watch state").log().on = Some(addr);
        if let Some((since, since_ms)) = down_since.take() {
            let mut s = state.lock().expect("watch state");
            let l = s.log();
            l.longest_down = l.longest_down.max(since.elapsed());
            l.down.push((since_ms, hearth_runtime::unix_ms_now()));
            l.reconnects += 1;
        }
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(STREAM_SILENCE, stream.message()).await {
                Ok(Ok(Some(message))) => {
                    let mut s = state.lock().expect("watch state");
                    s.log().message();
                    seen(&mut s, message);
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
            }
        }
        let last = state.lock().expect("watch state").log().last_message;
        let now = (Instant::now(), hearth_runtime::unix_ms_now());
        down_since = Some(last.map_or(now, |last| {
            (last, now.1 - last.elapsed().as_millis() as i64)
        }));
    }
}

/// The browser: both streams of the home, through the web Service.
struct Watcher {
    readings: Arc<Mutex<SeenReadings>>,
    devices: Arc<Mutex<SeenDevices>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watcher {
    fn start(endpoints: &Endpoints, stop: &Arc<AtomicBool>) -> Self {
        let readings = Arc::new(Mutex::new(SeenReadings::default()));
        let devices = Arc::new(Mutex::new(SeenDevices::default()));
        let tasks = vec![
            tokio::spawn(watch(
                endpoints.clone(),
                stop.clone(),
                readings.clone(),
                {
                    let readings = readings.clone();
                    move |channel| {
                        // As the app does: resume from the newest time seen,
                        // less a margin for commits out of time order.
                        let newest = readings.lock().expect("watch state").newest_ms;
                        let since = if newest == 0 {
                            0
                        } else {
                            newest - RESUME_MARGIN_MS
                        };
                        async move {
                            TelemetryServiceClient::new(channel)
                                .watch_readings(WatchReadingsRequest {
                                    home_id: HOME.into(),
                                    since_unix_ms: since,
                                    ..Default::default()
                                })
                                .await
                                .map(tonic::Response::into_inner)
                        }
                    }
                },
                |s: &mut SeenReadings, m: hearth_proto::v1::WatchReadingsResponse| {
                    s.skipped += m.skipped;
                    for r in m.readings {
                        s.newest_ms = s.newest_ms.max(r.time_unix_ms);
                        if !s.keys.insert((r.device_id, r.metric, r.seq)) && !m.replayed {
                            s.twice += 1;
                        }
                    }
                },
            )),
            tokio::spawn(watch(
                endpoints.clone(),
                stop.clone(),
                devices.clone(),
                |channel| async move {
                    DeviceServiceClient::new(channel)
                        .watch_devices(WatchDevicesRequest {
                            home_id: HOME.into(),
                        })
                        .await
                        .map(tonic::Response::into_inner)
                },
                |s: &mut SeenDevices, m: hearth_proto::v1::WatchDevicesResponse| {
                    for d in m.devices {
                        if let Some(desired) = &d.desired {
                            s.desired.insert((d.id.clone(), desired.version));
                        }
                        if let Some(reported) = &d.reported {
                            s.applied.insert((d.id.clone(), reported.applied_version));
                        }
                    }
                },
            )),
        ];
        Watcher {
            readings,
            devices,
            tasks,
        }
    }
}

// ---------------------------------------------------------------- the probe

/// The control API as a script sees it through the control Service:
/// `SetMode` on the light, then `GetDevice` on the next replica, which must
/// show that version or a newer one.
#[derive(Default)]
struct Probe {
    ok: u64,
    failed: u64,
    stale_reads: u64,
    longest_gap: Duration,
    slowest_call: Duration,
}

async fn call<T>(
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(CALL_TIMEOUT, fut).await??.into_inner())
}

async fn channel(addr: SocketAddr) -> anyhow::Result<GrpcChannel> {
    Ok(GrpcChannel::from_shared(format!("http://{addr}"))?
        .connect_timeout(CALL_TIMEOUT)
        .connect()
        .await?)
}

async fn devices_client(addr: SocketAddr) -> anyhow::Result<DeviceServiceClient<GrpcChannel>> {
    Ok(DeviceServiceClient::new(channel(addr).await?))
}

async fn probe(endpoints: Endpoints, stop: Arc<AtomicBool>, result: Arc<Mutex<Probe>>) {
    let mut turn = 0usize;
    let mut last_ok = Instant::now();
    let mut on = false;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let round = async {
            turn += 1;
            let addr = endpoints
                .pick("control", turn)
                .context("no control replica ready")?;
            on = !on;
            let set = call(devices_client(addr).await?.set_mode(SetModeRequest {
                device_id: LIGHT.into(),
                mode: if on { Mode::On } else { Mode::Off } as i32,
                requested_by: "probe".into(),
                ..Default::default()
            }))
            .await?;
            let version = set.desired.map_or(0, |d| d.version);
            turn += 1;
            let addr = endpoints
                .pick("control", turn)
                .context("no control replica ready")?;
            let got = call(
                devices_client(addr)
                    .await?
                    .get_device(GetDeviceRequest { id: LIGHT.into() }),
            )
            .await?;
            anyhow::Ok(got.desired.map_or(0, |d| d.version) >= version)
        }
        .await;
        {
            let mut p = result.lock().expect("probe");
            p.slowest_call = p.slowest_call.max(started.elapsed());
            match round {
                Ok(fresh) => {
                    p.ok += 1;
                    p.stale_reads += u64::from(!fresh);
                    p.longest_gap = p.longest_gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                }
                Err(_) => p.failed += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- phases

/// The home: the sensors, the thermo, the fan in AUTO under its rule, the
/// light; the two actuators run the device crate's loop (they acknowledge).
async fn provision(
    o: &Options,
    grpc: SocketAddr,
    broker_url: &str,
    topics: &Topics,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let mut api = devices_client(grpc).await?;
    api.create_home(CreateHomeRequest {
        id: HOME.into(),
        name: "Failover".into(),
    })
    .await?;
    let devices = (0..o.devices)
        .map(|i| (sensor_id(i), DeviceKind::Sensor))
        .chain([
            (THERMO.to_owned(), DeviceKind::Sensor),
            (FAN.to_owned(), DeviceKind::Fan),
            (LIGHT.to_owned(), DeviceKind::Light),
        ]);
    for (id, kind) in devices {
        api.register_device(RegisterDeviceRequest {
            home_id: HOME.into(),
            id,
            kind: kind as i32,
            name: String::new(),
        })
        .await?;
    }
    AutomationServiceClient::new(channel(grpc).await?)
        .create_rule(CreateRuleRequest {
            rule: Some(Rule {
                home_id: HOME.into(),
                name: "fan above 25 °C".into(),
                source_device_id: THERMO.into(),
                metric: Metric::TemperatureCelsius as i32,
                target_device_id: FAN.into(),
                on_above: ON_ABOVE,
                off_below: OFF_BELOW,
                enabled: true,
                ..Default::default()
            }),
        })
        .await?;
    api.set_mode(SetModeRequest {
        device_id: FAN.into(),
        mode: Mode::Auto as i32,
        requested_by: "bench".into(),
        ..Default::default()
    })
    .await?;
    let mut agents = Vec::new();
    for device in [FAN, LIGHT] {
        let link = hearth_device::mqtt::DeviceLink {
            broker_url: broker_url.to_owned(),
            topics: topics.clone(),
            home_id: HOME.into(),
            device_id: device.into(),
        };
        let stop = stop.clone();
        agents.push(tokio::spawn(hearth_device::mqtt::run_actuator(
            link,
            hearth_device::sim::SimulatedOutput::default(),
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        )));
    }
    for device in [FAN, LIGHT] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !call(api.get_device(GetDeviceRequest { id: device.into() }))
            .await?
            .online
        {
            ensure!(
                Instant::now() < deadline,
                "simulated {device} never came online"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(agents)
}

/// Kubernetes restarting a container killed with SIGKILL, one role at a
/// time; for automation, the replica holding the lease, for web the one the
/// watcher's readings stream is on.
async fn kill_one_of_each(
    cluster: &mut Cluster,
    watcher: &Watcher,
    o: &Options,
) -> anyhow::Result<()> {
    for role in ROLES {
        let victim = match role {
            "automation" => cluster.automation_leader().await,
            "web" => {
                let on = watcher.readings.lock().expect("watch").log.on;
                cluster
                    .running
                    .iter()
                    .find(|r| Some(r.addr) == on)
                    .map(|r| r.name.clone())
            }
            _ => None,
        }
        .or_else(|| cluster.of_role(role).into_iter().next())
        .context("no replica to kill")?;
        cluster.kill_and_restart(&victim, o).await?;
        tokio::time::sleep(Duration::from_secs(o.steady_secs / 3)).await;
    }
    Ok(())
}

/// A Deployment rollout of every role: a new pod, ready, then an old one
/// out of the Service, preStop, SIGTERM; one at a time.
async fn roll_every_role(cluster: &mut Cluster, o: &Options) -> anyhow::Result<Vec<f64>> {
    let mut drains = Vec::new();
    for role in ROLES {
        cluster.timeline.say(format!("rolling {role}"));
        for old in cluster.of_role(role) {
            let new = cluster.scale_up(role).await?;
            cluster
                .timeline
                .say(format!("{new} ready; replacing {old}"));
            drains.push(cluster.terminate(&old, o).await?.as_secs_f64());
        }
    }
    Ok(drains)
}

/// The HPA scaling ingest in to one replica and out again.
async fn scale_ingest(cluster: &mut Cluster, o: &Options) -> anyhow::Result<()> {
    let ingest = cluster.of_role("ingest");
    for name in ingest.iter().skip(1) {
        cluster.terminate(name, o).await?;
    }
    cluster.timeline.say("ingest at 1 replica");
    tokio::time::sleep(Duration::from_secs(o.steady_secs)).await;
    for _ in 1..o.replicas {
        cluster.scale_up("ingest").await?;
    }
    cluster
        .timeline
        .say(format!("ingest back at {} replicas", o.replicas));
    Ok(())
}

// ---------------------------------------------------------------- checks

/// Every acknowledged reading against the rows: (lost, stored twice,
/// unexpected rows, stored rows).
async fn check_readings(db: &mut MySqlConnection, ledger: &Ledger) -> anyhow::Result<Value> {
    let mut counts: HashMap<(String, i16, i64), u32> = HashMap::new();
    let mut rows =
        sqlx::query_as::<_, (String, i16, i64)>("SELECT device_id, metric, seq FROM readings")
            .fetch(&mut *db);
    while let Some(key) = rows.try_next().await? {
        *counts.entry(key).or_default() += 1;
    }
    drop(rows);
    let (mut lost, mut expected) = (0u64, 0u64);
    for (device, &(batches, per_batch)) in &ledger.batches {
        for seq in 1..=batches as i64 {
            for metric in 1..=per_batch as i16 {
                expected += 1;
                if !counts.contains_key(&(device.clone(), metric, seq)) {
                    lost += 1;
                }
            }
        }
    }
    let twice: u64 = counts.values().map(|&n| u64::from(n - 1)).sum();
    let stored: u64 = counts.values().map(|&n| u64::from(n)).sum();
    Ok(json!({
        "published": expected,
        "stored_rows": stored,
        "lost": lost,
        "stored_twice": twice,
        "unexpected_rows": stored - twice - (expected - lost),
    }))
}

/// The switches the rule should make: the thermo's values through the
/// rule's hysteresis, from the first value on (unix ms of each reading,
/// and on/off).
fn expected_switches(thermo: &[(u64, i64, f64)]) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    let mut state = None;
    for &(_, time, value) in thermo {
        let want = if value > ON_ABOVE {
            Some(true)
        } else if value < OFF_BELOW {
            Some(false)
        } else {
            None
        };
        if let Some(on) = want.filter(|_| want != state) {
            state = want;
            out.push((time, on));
        }
    }
    out
}

/// The rule's commands against the crossings: each crossing acted on once,
/// in order, and how long after the reading the command was made.
async fn check_crossings(db: &mut MySqlConnection, ledger: &Ledger) -> anyhow::Result<Value> {
    let expected = expected_switches(&ledger.thermo);
    let made: Vec<(i64, bool, i64, String)> = sqlx::query_as(
        "SELECT version, on_state, requested_at, state FROM commands \
         WHERE device_id = ? AND requested_by LIKE 'rule:%' ORDER BY version",
    )
    .bind(FAN)
    .fetch_all(&mut *db)
    .await?;
    // Why the first expected switch may have no command: the fan starts
    // off, so the rule's first "off" asks for nothing new.
    let skip_first = usize::from(
        expected.first().is_some_and(|&(_, on)| !on)
            && made.first().is_none_or(|&(_, on, _, _)| on),
    );
    let expected = &expected[skip_first..];
    let paired = expected.len().min(made.len());
    let out_of_order = (0..paired).filter(|&i| expected[i].1 != made[i].1).count();
    let lags: Vec<f64> = (0..paired)
        .map(|i| (made[i].2 - expected[i].0) as f64 / 1e3)
        .collect();
    let applied = made.iter().filter(|m| m.3 == "applied").count();
    Ok(json!({
        "crossings": expected.len(),
        "commands_by_rule": made.len(),
        "acted_on_twice": made.len().saturating_sub(expected.len()),
        "not_acted_on": expected.len().saturating_sub(made.len()),
        "out_of_order": out_of_order,
        "commands_applied_by_fan": applied,
        "longest_reading_to_command_s": lags.iter().copied().fold(0.0, f64::max),
    }))
}

/// InnoDB's size of the readings table (data and indexes) per row, after
/// `ANALYZE TABLE`: what a day of readings costs on disk.
async fn readings_bytes_per_row(db: &mut MySqlConnection) -> anyhow::Result<f64> {
    sqlx::query("ANALYZE TABLE readings")
        .execute(&mut *db)
        .await?;
    let (bytes, rows): (u64, i64) = sqlx::query_as(
        "SELECT CAST(data_length + index_length AS UNSIGNED), \
         (SELECT COUNT(*) FROM readings) FROM information_schema.TABLES \
         WHERE table_schema = DATABASE() AND table_name = 'readings'",
    )
    .fetch_one(&mut *db)
    .await?;
    Ok((bytes as f64 / rows.max(1) as f64).round())
}

/// Whether unix ms `t` falls in one of the watcher's reconnect windows
/// (from a second before its last message: what was in flight then).
fn in_window(t: i64, windows: &[(i64, i64)]) -> bool {
    windows
        .iter()
        .any(|&(down, up)| t >= down - 1_000 && t <= up)
}

/// What the browser missed: stored readings never on its stream, and
/// command versions (desired, then acknowledged) it never saw; each split by
/// whether it happened while it was reconnecting.
async fn check_watcher(db: &mut MySqlConnection, watcher: &Watcher) -> anyhow::Result<Value> {
    let readings = watcher.readings.lock().expect("watch").log.down.clone();
    let (mut missed, mut missed_reconnecting) = (0u64, 0u64);
    {
        // Why a copy: the lock is not held across the query's awaits.
        let seen = watcher.readings.lock().expect("watch").keys.clone();
        let mut rows = sqlx::query_as::<_, (String, i16, i64, i64)>(
            "SELECT device_id, metric, seq, ts FROM readings",
        )
        .fetch(&mut *db);
        while let Some((device, metric, seq, ts)) = rows.try_next().await? {
            if !seen.contains(&(device, i32::from(metric), seq as u64)) {
                missed += 1;
                missed_reconnecting += u64::from(in_window(ts, &readings));
            }
        }
    }
    let commands: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT device_id, version, requested_at, applied_at FROM commands \
         WHERE device_id IN (?, ?)",
    )
    .bind(FAN)
    .bind(LIGHT)
    .fetch_all(&mut *db)
    .await?;
    let seen = watcher.devices.lock().expect("watch");
    let windows = &seen.log.down;
    let (mut desired, mut desired_reconnecting, mut desired_coalesced) = (0u64, 0u64, 0u64);
    let requested_at: HashMap<(String, u64), i64> = commands
        .iter()
        .map(|(d, v, at, _)| ((d.clone(), *v as u64), *at))
        .collect();
    let (mut acks, mut acks_reconnecting, mut acks_coalesced) = (0u64, 0u64, 0u64);
    let applied_at: HashMap<(String, u64), i64> = commands
        .iter()
        .filter_map(|(d, v, _, at)| Some(((d.clone(), *v as u64), (*at)?)))
        .collect();
    // A state never seen is lost for good only if no newer state of its
    // device was seen after it: a live view shows each device's state, and
    // one superseded before the stream could show it (a probe switching a
    // light ten times a second) is history, in ListCommands.
    let newest_seen = |states: &HashSet<(String, u64)>| {
        let mut newest: HashMap<String, u64> = HashMap::new();
        for (d, v) in states {
            let n = newest.entry(d.clone()).or_default();
            *n = (*n).max(*v);
        }
        newest
    };
    let (newest_desired, newest_applied) = (newest_seen(&seen.desired), newest_seen(&seen.applied));
    let (mut desired_lost, mut acks_lost) = (0u64, 0u64);
    for (device, version, requested_at_ms, applied_at_ms) in &commands {
        let key = (device.clone(), *version as u64);
        // Why "the next within 1 s": news names the device, and a web
        // replica reads its state when the news arrives; a change followed
        // within the second by the next one can show as the newer.
        let next = (device.clone(), *version as u64 + 1);
        if !seen.desired.contains(&key) {
            desired += 1;
            desired_lost += u64::from(newest_desired.get(device).is_none_or(|n| n < &key.1));
            desired_reconnecting += u64::from(in_window(*requested_at_ms, windows));
            desired_coalesced += u64::from(
                seen.desired.contains(&next)
                    && requested_at
                        .get(&next)
                        .is_some_and(|n| n - requested_at_ms < 1_000),
            );
        }
        if let Some(at) = applied_at_ms {
            if !seen.applied.contains(&key) {
                acks += 1;
                acks_lost += u64::from(newest_applied.get(device).is_none_or(|n| n < &key.1));
                acks_reconnecting += u64::from(in_window(*at, windows));
                let coalesced = seen.applied.contains(&next)
                    && applied_at.get(&next).is_some_and(|n| n - at < 1_000);
                acks_coalesced += u64::from(coalesced);
            }
        }
    }
    let (readings_log, readings_seen, readings_twice, skipped) = {
        let r = watcher.readings.lock().expect("watch");
        (r.log.json(), r.keys.len(), r.twice, r.skipped)
    };
    Ok(json!({
        "readings_stream": readings_log,
        "devices_stream": seen.log.json(),
        "readings_seen": readings_seen,
        "readings_seen_twice": readings_twice,
        "messages_skipped_by_server": skipped,
        "readings_missed": missed,
        "readings_missed_while_reconnecting": missed_reconnecting,
        "commands": commands.len(),
        "desired_missed": desired,
        "desired_missed_while_reconnecting": desired_reconnecting,
        "desired_missed_shown_as_the_next_within_1s": desired_coalesced,
        "desired_never_seen_nor_a_newer": desired_lost,
        "acks_missed": acks,
        "acks_missed_while_reconnecting": acks_reconnecting,
        "acks_missed_shown_as_the_next_within_1s": acks_coalesced,
        "acks_never_seen_nor_a_newer": acks_lost,
    }))
}

/// Waits until the readings table holds every published reading, or
/// nothing has been stored for 15 s.
async fn wait_stored(
    db: &mut MySqlConnection,
    ledger: &Ledger,
    t: &Timeline,
) -> anyhow::Result<()> {
    let want: u64 = ledger
        .batches
        .values()
        .map(|&(b, per)| b * per as u64)
        .sum();
    let mut last = (0u64, Instant::now());
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM readings")
            .fetch_one(&mut *db)
            .await?;
        let n = n as u64;
        if n >= want {
            return Ok(());
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(15) {
            t.say(format!(
                "{n} of {want} readings stored, and no more for 15 s"
            ));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn secs3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

// ---------------------------------------------------------------- main

/// The broker: `--broker-config` on a port and data directory of its own,
/// logging to a file.
async fn broker(o: &Options, dir: &TempDir) -> anyhow::Result<PrivateBroker> {
    // Why open to all: Mosquitto started as root runs as user `mosquitto`,
    // which must write its persistence file and log here.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777))?;
    let text = std::fs::read_to_string(&o.broker_config)
        .with_context(|| format!("reading {}", o.broker_config.display()))?;
    let config: String = text
        .lines()
        .filter(|l| !l.starts_with("listener ") && !l.starts_with("allow_anonymous "))
        .map(|l| {
            if l.starts_with("persistence_location ") {
                format!("persistence_location {}/\n", dir.0.display())
            } else if l.starts_with("log_dest ") {
                format!("log_dest file {}/mosquitto.log\n", dir.0.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    Ok(PrivateBroker::start_with_config(&config).await)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = Options::parse(&args)?;
    let binary = o.hearth.clone().unwrap_or_else(|| release_binary("hearth"));
    if o.build && o.hearth.is_none() {
        build_release(&["-p", "hearth-backend", "--bin", "hearth"])?;
    }
    ensure!(binary.exists(), "no hearth binary at {}", binary.display());

    let broker_dir = TempDir::new();
    let broker = broker(&o, &broker_dir).await?;
    let db_name = format!("hearth_failover_{}", std::process::id());
    let db_url = format!("{}/{db_name}", mysql_url());
    let mut admin = MySqlConnection::connect(&mysql_url())
        .await
        .context("MariaDB at HEARTH_TEST_MYSQL_URL")?;
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin)
        .await?;
    let result = run(&o, binary, &db_url, &broker.url()).await;
    drop(broker);
    if o.keep_db {
        eprintln!("kept database {db_name} (--keep-db)");
    } else {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name}"))
            .execute(&mut admin)
            .await?;
    }
    let summary = result?;
    report(&summary);
    if let Some(dir) = o.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.json, serde_json::to_string_pretty(&summary)? + "\n")?;
    println!("\nsummary written to {}", o.json.display());
    Ok(())
}

async fn run(o: &Options, binary: PathBuf, db_url: &str, mqtt_url: &str) -> anyhow::Result<Value> {
    let timeline = Timeline {
        start: Instant::now(),
    };
    let prefix = format!("{}/hearth", unique("failover"));
    let topics = Topics::new(&prefix)?;
    timeline.say(format!(
        "broker {mqtt_url} ({}), topic prefix {prefix}, load average {}",
        o.broker_config.display(),
        loadavg()
    ));
    let mut cluster = Cluster {
        binary,
        env: [
            ("HEARTH_DATABASE_URL", db_url),
            ("HEARTH_MQTT_URL", mqtt_url),
            ("HEARTH_TOPIC_PREFIX", &prefix),
            ("HEARTH_DEMO", "false"),
            (
                "HEARTH_LOG",
                "warn,hearth_backend::app=info,hearth_backend::automation=info,\
                 hearth_backend::mqtt=info",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec(),
        running: Vec::new(),
        endpoints: Endpoints::default(),
        made: HashMap::new(),
        logs: Vec::new(),
        dir: TempDir::new(),
        timeline: timeline.clone(),
    };
    for role in ROLES {
        for _ in 0..o.replicas {
            cluster.scale_up(role).await?;
        }
    }
    timeline.say(format!("{} replicas ready", cluster.running.len()));

    let stop = Arc::new(AtomicBool::new(false));
    let control = cluster
        .endpoints
        .pick("control", 0)
        .context("a control replica")?;
    let agents = provision(o, control, mqtt_url, &topics, &stop).await?;
    let probe_result = Arc::new(Mutex::new(Probe::default()));
    let probe_task = tokio::spawn(probe(
        cluster.endpoints.clone(),
        stop.clone(),
        probe_result.clone(),
    ));
    let watcher = Watcher::start(&cluster.endpoints, &stop);
    let load = Load::start(o, mqtt_url, &topics).await?;
    timeline.say(format!(
        "load: {} sensors, {} batches/s × 3 readings, and the thermo at 10/s; steady {} s",
        o.devices, o.rate, o.steady_secs
    ));
    tokio::time::sleep(Duration::from_secs(o.steady_secs)).await;

    timeline.say("phase 1: kill -9 one replica of each role");
    kill_one_of_each(&mut cluster, &watcher, o).await?;
    timeline.say("phase 2: roll every role");
    let drains = roll_every_role(&mut cluster, o).await?;
    tokio::time::sleep(Duration::from_secs(o.steady_secs / 3)).await;
    timeline.say("phase 3: scale ingest in and out");
    scale_ingest(&mut cluster, o).await?;
    tokio::time::sleep(Duration::from_secs(o.steady_secs)).await;

    timeline.say("stopping the load; waiting for every reading to be stored");
    let load_errors = load.errors.load(Ordering::Relaxed);
    let ledger = load.stop().await?;
    let mut db = MySqlConnection::connect(db_url).await?;
    wait_stored(&mut db, &ledger, &timeline).await?;
    // Why wait: the last commits' news and the last acknowledgement must
    // reach the watcher.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = probe_task.await;
    for task in &watcher.tasks {
        task.abort();
    }
    for agent in agents {
        let _ = agent.await;
    }
    timeline.say("checking the database against what was sent and seen");
    let readings = check_readings(&mut db, &ledger).await?;
    let crossings = check_crossings(&mut db, &ledger).await?;
    let watched = check_watcher(&mut db, &watcher).await?;
    let bytes_per_reading = readings_bytes_per_row(&mut db).await?;
    let logs_dir = o.json.with_file_name("failover-logs");
    let _ = std::fs::remove_dir_all(&logs_dir);
    let log_problems = cluster.write_logs(&logs_dir)?;
    let probe = probe_result.lock().expect("probe");
    Ok(json!({
        "options": format!("{o:?}"),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "loadavg_end": loadavg(),
        "run_s": secs3(timeline.start.elapsed()),
        "mqtt_publisher_errors": load_errors,
        "replica_warnings_and_errors": log_problems,
        "replica_logs": logs_dir.display().to_string(),
        "readings": readings,
        "crossings": crossings,
        "control_probe": {
            "ok": probe.ok,
            "failed": probe.failed,
            "stale_reads": probe.stale_reads,
            "longest_gap_s": secs3(probe.longest_gap),
            "slowest_round_s": secs3(probe.slowest_call),
        },
        "watcher": watched,
        "readings_table_bytes_per_row": bytes_per_reading,
        "sigterm_to_exit_s": {
            "max": drains.iter().copied().fold(0.0, f64::max),
            "all": drains,
        },
    }))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn report(s: &Value) {
    let r = &s["readings"];
    let c = &s["crossings"];
    let p = &s["control_probe"];
    let w = &s["watcher"];
    println!(
        "\nfailover, measured ({} cores, load average at the end {}):",
        s["cores"], s["loadavg_end"]
    );
    println!(
        "  readings: {} published, lost {}, stored twice {} (expect 0 and 0)",
        r["published"], r["lost"], r["stored_twice"]
    );
    println!(
        "  crossings: {} crossings, {} commands by the rule ({} twice, {} not acted on, {} out of order); \
         {} applied by the fan; longest reading → command {} s",
        c["crossings"],
        c["commands_by_rule"],
        c["acted_on_twice"],
        c["not_acted_on"],
        c["out_of_order"],
        c["commands_applied_by_fan"],
        c["longest_reading_to_command_s"]
    );
    println!(
        "  control API (SetMode + GetDevice via the Service): {} ok, {} failed, {} stale reads; \
         longest gap {} s, slowest round {} s",
        p["ok"], p["failed"], p["stale_reads"], p["longest_gap_s"], p["slowest_round_s"]
    );
    for stream in ["readings_stream", "devices_stream"] {
        let l = &w[stream];
        println!(
            "  {stream}: {} reconnects, longest without a stream {} s, longest silence {} s",
            l["reconnects"], l["longest_without_stream_s"], l["longest_silence_s"]
        );
    }
    println!(
        "  watcher missed: {} readings ({} while reconnecting), live readings seen again after a resume {}; \
         {} desired states ({} while reconnecting, {} shown as the next one within 1 s, {} with no newer state seen after), \
         {} acknowledgements ({} while reconnecting, {} shown as the next one within 1 s, {} with no newer one seen after) of {} commands; \
         {} messages skipped by the server (client behind)",
        w["readings_missed"],
        w["readings_missed_while_reconnecting"],
        w["readings_seen_twice"],
        w["desired_missed"],
        w["desired_missed_while_reconnecting"],
        w["desired_missed_shown_as_the_next_within_1s"],
        w["desired_never_seen_nor_a_newer"],
        w["acks_missed"],
        w["acks_missed_while_reconnecting"],
        w["acks_missed_shown_as_the_next_within_1s"],
        w["acks_never_seen_nor_a_newer"],
        w["commands"],
        w["messages_skipped_by_server"]
    );
    println!(
        "  readings table: {} bytes per row on disk (InnoDB data + indexes)",
        s["readings_table_bytes_per_row"]
    );
    println!(
        "  SIGTERM → exit: longest {} s; {} warnings or errors in the replicas' logs ({})",
        s["sigterm_to_exit_s"]["max"], s["replica_warnings_and_errors"], s["replica_logs"]
    );
}
