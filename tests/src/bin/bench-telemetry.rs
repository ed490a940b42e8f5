//! Benchmark of issue 3: Hearth's telemetry path against this machine's own
//! limits, on running MariaDB + Mosquitto.
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-telemetry               # full run (≈ 6 min)
//! cargo run --release -p hearth-tests --bin bench-telemetry -- --quick    # smoke run (≈ 1 min)
//! cargo run --release -p hearth-tests --bin bench-telemetry -- --help     # every knob
//! ```
//!
//! In one run it measures, with progress lines on stderr:
//!
//! 1. raw limits, no Hearth in the path: Mosquitto QoS 1 publish → subscribe
//!    (one publisher, one subscriber, ReadingBatch-sized payloads) and
//!    MariaDB multi-row inserts into a copy of Hearth's `readings` table;
//! 2. Hearth end to end: the release `hearth` on MariaDB + Mosquitto, 1,000
//!    registered sensors publishing QoS 1 `ReadingBatch`es over a few MQTT
//!    connections at a fixed offered rate; rows committed per second, lost
//!    and duplicated readings (every PUBACKed key checked against the rows),
//!    publish → commit latency (seen on a `WatchReadings` stream, which fires
//!    after commit) and `hearth`'s peak RSS;
//! 3. the ratio of (2) to the smaller raw limit, and to the floor: the same
//!    pipeline with no Hearth in it (the fleet through the broker to a
//!    minimal consumer that commits as Hearth's writer does and acknowledges
//!    after the commit), run at the same offered rate on the same cores;
//! 4. 1,000 concurrent `WatchReadings` streams at 10 readings/s each;
//! 5. history among 10 million rows: `ListReadings` newest 100 and a 24-hour
//!    `GetSeries` chart.
//!
//! It prints the figures next to issue 3's targets and writes them as JSON
//! (`--json PATH`, or `HEARTH_BENCH_JSON`, default `target/bench-telemetry.json`).
//! MariaDB and Mosquitto come from `HEARTH_TEST_MYSQL_URL` and
//! `HEARTH_TEST_MQTT_URL` (defaults `mysql://root@127.0.0.1:3306`,
//! `mqtt://127.0.0.1:1883`); it makes its own database and drops it at the end.
//!
//! `--embedded` measures phase 2 on the embedded deployment instead: the
//! release `hearth` on SQLite and its own broker, so every packet passes
//! Hearth's guard (`backend/src/mqtt/guard.rs`), and each sensor has its own
//! MQTT connection under its agent client id, as a device connects. Issue 14,
//! the cost of authorization on ingest throughput:
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-telemetry -- --auth-compare
//! ```
//!
//! runs the same load on a fresh `hearth` in open mode (anonymous sensors)
//! and with logins required (a first admin; each sensor logs in with the
//! credential RegisterDevice returned for it), alternately, `--rounds` times
//! each, and prints both and the ratio. Why SQLite: it is the store the
//! embedded broker is deployed with, and it lives in the measured process,
//! where the shared MariaDB server of this machine would add other
//! engineers' load to one case and not the other.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    process::{Child, Command},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};
use hearth_proto::{
    topics::{agent_client_id, Channel, Topics},
    v1::{
        device_service_client::DeviceServiceClient,
        telemetry_service_client::TelemetryServiceClient, CreateHomeRequest, DeviceKind,
        DeviceStatus, GetSeriesRequest, IngestBatchRequest, ListReadingsRequest, Metric, Reading,
        ReadingBatch, RegisterDeviceRequest, WatchReadingsRequest,
    },
};
use hearth_runtime::mqtt::Credentials;
use hearth_tests::{
    build_release, external_mqtt_url, log_field, mysql_url, release_binary, spawn_until_ready,
    unique, workspace_dir, Bearer, TempDir,
};
use prost::Message as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{json, Value};
use sqlx::{Connection as _, MySqlConnection, QueryBuilder, SqliteConnection};
use tonic::{service::interceptor::InterceptedService, transport::Channel as GrpcChannel};

const HOME: &str = "bench";
/// The device whose history phase 5 reads.
const HISTORY_DEVICE: &str = "history";
/// Rows per multi-row INSERT, as Hearth's storage uses.
const INSERT_ROWS: usize = 1_000;
/// The metrics a batch carries, in order (a SenseHat's three).
const METRICS: [Metric; 3] = [
    Metric::TemperatureCelsius,
    Metric::HumidityPercent,
    Metric::PressureHpa,
];
/// Linux reports process CPU time in ticks of 1/100 s.
const CLOCK_TICKS: f64 = 100.0;

/// Every phase, in the order they run; all but the last by default.
const PHASES: [&str; 6] = ["raw", "pipeline", "e2e", "live", "history", "soak"];
const USAGE: &str = "\
bench-telemetry: issue 3's benchmark against running MariaDB + Mosquitto

options (defaults of a full run; --quick changes the ones marked *):
  --quick                  smoke run: 10 s end to end, 100,000 history rows
  --phases LIST            comma list of raw,pipeline,e2e,live,history,soak (default
                           all but soak)
  --soak                   soak mode: --phases raw,pipeline,soak
  --soak-rates LIST        soak: offered ReadingBatch messages/s, one fixed rate per step,
                           ascending; stops after the first step that loses readings or
                           stores less than 95% of the offered rate (10000,15000,20000,25000)
  --soak-secs N            soak: each step's length (300)
  --no-soak-floor          soak: no floor step after each of Hearth's (by default the
                           floor runs at the same rate for as long, into a table kept
                           across the steps as Hearth's readings are)
  --raw-secs N        *    each raw-limit measurement (10; quick 3)
  --secs N            *    end-to-end publishing (60; quick 10)
  --devices N              simulated sensors (1000)
  --connections N          MQTT connections the sensors share (10)
  --rate N            *    offered ReadingBatch messages/s in total (25000; quick 10000)
  --readings-per-batch N   1..3 metrics per ReadingBatch (3)
  --sample-devices N       devices watched for publish→commit latency (100)
  --live-streams N         concurrent WatchReadings streams (1000)
  --live-rate N            readings/s per live stream (10)
  --live-secs N       *    live phase (30; quick 10)
  --history-rows N    *    rows in the readings table for phase 5 (10000000; quick 100000)
  --queries N         *    timed calls per history query (1000; quick 200)
  --json PATH              summary (HEARTH_BENCH_JSON; target/bench-telemetry.json)
  --hearth PATH            the hearth binary (default: release build in the target dir)
  --no-build               do not run cargo build first
  --broker-config PATH     start a Mosquitto of its own with this configuration
                           (e.g. deploy/mosquitto.conf) instead of HEARTH_TEST_MQTT_URL
  --keep-db                keep the database afterwards (for EXPLAIN and profiling)

embedded broker (issue 14; phase e2e only, on SQLite; no MariaDB or Mosquitto needed):
  --embedded               hearth on SQLite and its own broker behind the guard, open mode;
                           each sensor its own connection (--connections is ignored)
  --auth                   as --embedded, with logins required: a first admin, and each
                           sensor logs in with its own MQTT credential
  --auth-compare           both, alternately (open, auth, open, auth, …), each on a fresh
                           hearth, and the ratio auth / open
  --rounds N               how many times each case runs (2)
  defaults with these: --devices 200, --rate 5000, --secs 30 (quick 10),
  JSON in target/bench-telemetry-embedded.json
";

/// Every knob of a run.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    phases: Vec<String>,
    raw_secs: u64,
    secs: u64,
    devices: usize,
    connections: usize,
    rate: u64,
    readings_per_batch: usize,
    sample_devices: usize,
    live_streams: usize,
    live_rate: u64,
    live_secs: u64,
    history_rows: u64,
    queries: usize,
    json: PathBuf,
    hearth: Option<PathBuf>,
    build: bool,
    broker_config: Option<PathBuf>,
    keep_db: bool,
    soak_rates: Vec<u64>,
    soak_secs: u64,
    /// Whether each soak step is followed by the floor's (`--no-soak-floor`).
    soak_floor: bool,
    /// `--embedded`, `--auth`, `--auth-compare`: phase 2 on the embedded broker.
    embedded: bool,
    /// Which authorization cases an embedded run measures.
    auth: AuthCases,
    /// How many times each case runs (`--rounds`).
    rounds: usize,
}

/// The cases of an embedded run (`--embedded`, `--auth`, `--auth-compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthCases {
    Open,
    Required,
    /// Open and required alternately: the figures of issue 14.
    Compare,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("HEARTH_BENCH_QUICK").is_ok_and(|v| v == "1");
        let embedded = args
            .iter()
            .any(|a| ["--embedded", "--auth", "--auth-compare"].contains(&a.as_str()));
        let mut o = Options {
            quick,
            phases: match embedded {
                true => vec!["e2e".into()],
                false => PHASES[..5].iter().map(|p| p.to_string()).collect(),
            },
            raw_secs: if quick { 3 } else { 10 },
            secs: match (embedded, quick) {
                (_, true) => 10,
                (true, false) => 30,
                (false, false) => 60,
            },
            // Why fewer with --embedded: one connection per sensor, and the
            // 2-core machine runs broker, guard, store and load together.
            devices: if embedded { 200 } else { 1_000 },
            connections: 10,
            rate: match (embedded, quick) {
                (true, _) => 5_000,
                (false, true) => 10_000,
                (false, false) => 25_000,
            },
            readings_per_batch: 3,
            sample_devices: 100,
            live_streams: 1_000,
            live_rate: 10,
            live_secs: if quick { 10 } else { 30 },
            history_rows: if quick { 100_000 } else { 10_000_000 },
            queries: if quick { 200 } else { 1_000 },
            json: std::env::var_os("HEARTH_BENCH_JSON").map_or_else(
                || {
                    workspace_dir().join(match embedded {
                        true => "target/bench-telemetry-embedded.json",
                        false => "target/bench-telemetry.json",
                    })
                },
                PathBuf::from,
            ),
            hearth: None,
            build: true,
            broker_config: None,
            keep_db: false,
            soak_rates: vec![10_000, 15_000, 20_000, 25_000],
            soak_secs: 300,
            soak_floor: true,
            embedded,
            auth: AuthCases::Open,
            rounds: 2,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            let mut value = || -> anyhow::Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .with_context(|| format!("{flag} needs a value"))
            };
            fn num<T: std::str::FromStr>(flag: &str, v: String) -> anyhow::Result<T> {
                v.parse()
                    .map_err(|_| anyhow::anyhow!("{flag} {v:?} is not a number"))
            }
            match flag {
                "--quick" | "--embedded" => {}
                "--auth" => o.auth = AuthCases::Required,
                "--auth-compare" => o.auth = AuthCases::Compare,
                "--rounds" => o.rounds = num(flag, value()?)?,
                "--no-build" => o.build = false,
                "--keep-db" => o.keep_db = true,
                "--soak" => o.phases = ["raw", "pipeline", "soak"].map(String::from).to_vec(),
                "--soak-rates" => {
                    o.soak_rates = value()?
                        .split(',')
                        .map(|v| num(flag, v.to_owned()))
                        .collect::<anyhow::Result<_>>()?
                }
                "--soak-secs" => o.soak_secs = num(flag, value()?)?,
                "--no-soak-floor" => o.soak_floor = false,
                "--broker-config" => o.broker_config = Some(value()?.into()),
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                "--phases" => o.phases = value()?.split(',').map(str::to_owned).collect(),
                "--raw-secs" => o.raw_secs = num(flag, value()?)?,
                "--secs" => o.secs = num(flag, value()?)?,
                "--devices" => o.devices = num(flag, value()?)?,
                "--connections" => o.connections = num(flag, value()?)?,
                "--rate" => o.rate = num(flag, value()?)?,
                "--readings-per-batch" => o.readings_per_batch = num(flag, value()?)?,
                "--sample-devices" => o.sample_devices = num(flag, value()?)?,
                "--live-streams" => o.live_streams = num(flag, value()?)?,
                "--live-rate" => o.live_rate = num(flag, value()?)?,
                "--live-secs" => o.live_secs = num(flag, value()?)?,
                "--history-rows" => o.history_rows = num(flag, value()?)?,
                "--queries" => o.queries = num(flag, value()?)?,
                "--json" => o.json = value()?.into(),
                "--hearth" => o.hearth = Some(value()?.into()),
                other => bail!("unknown option {other:?}\n\n{USAGE}"),
            }
        }
        ensure!(
            (1..=METRICS.len()).contains(&o.readings_per_batch),
            "--readings-per-batch must be 1..=3 (a batch holds each metric once)"
        );
        ensure!(
            o.devices >= 1 && o.connections >= 1,
            "--devices and --connections must be >= 1"
        );
        for p in &o.phases {
            ensure!(
                PHASES.contains(&p.as_str()),
                "--phases: unknown phase {p:?}"
            );
        }
        ensure!(
            !o.soak_rates.is_empty() && o.soak_rates.windows(2).all(|w| w[0] < w[1]),
            "--soak-rates must be ascending"
        );
        if o.embedded {
            ensure!(
                o.phases.iter().all(|p| p == "e2e"),
                "--embedded runs phase e2e only (the raw limits, history and soak are MariaDB's)"
            );
            ensure!(o.rounds >= 1, "--rounds must be >= 1");
            // Why: past HEARTH_DEVICE_MESSAGES_PER_SECOND (100 by default)
            // Hearth drops a device's messages, which would read as lost.
            ensure!(
                o.rate <= 100 * o.devices as u64,
                "--rate {} is over 100 batches/s per sensor (Hearth's default device rate)",
                o.rate
            );
            o.connections = o.devices;
        }
        o.connections = o.connections.min(o.devices);
        o.sample_devices = o.sample_devices.clamp(1, o.devices);
        Ok(o)
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }

    /// Whether each embedded case requires logins, in the order run.
    fn auth_cases(&self) -> Vec<bool> {
        let pattern: &[bool] = match self.auth {
            AuthCases::Open => &[false],
            AuthCases::Required => &[true],
            AuthCases::Compare => &[false, true],
        };
        pattern.repeat(self.rounds)
    }
}

// ---------------------------------------------------------------- helpers

fn now_ms_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// p50/p99/max of a set of latencies in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    samples: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Latency {
                samples: 0,
                p50: f64::NAN,
                p99: f64::NAN,
                max: f64::NAN,
            };
        }
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Latency {
            samples: values.len(),
            p50: at(50.0),
            p99: at(99.0),
            max: values[values.len() - 1],
        }
    }

    fn json(&self) -> Value {
        json!({"samples": self.samples, "p50_ms": round3(self.p50), "p99_ms": round3(self.p99), "max_ms": round3(self.max)})
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A value of `/proc/<pid>/status` in kB (`VmHWM`: peak RSS).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU ticks of a process.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Why after ')': the command name may contain spaces.
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Pids of every process whose command name is `name`.
fn pids_named(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim() == name).then_some(pid)
            })
            .collect()
        })
        .unwrap_or_default()
}

/// (busy, total) jiffies of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU used by Hearth, the broker, the database and this program over a
/// phase, in cores (1.0 = one core busy all the time).
struct CpuMeter {
    started: Instant,
    hearth: (u32, u64),
    mosquitto: Vec<(u32, u64)>,
    mariadb: Vec<(u32, u64)>,
    me: u64,
    machine: (u64, u64),
}

impl CpuMeter {
    fn start(hearth_pid: u32, broker_pid: Option<u32>) -> Self {
        let snap = |name| {
            pids_named(name)
                .into_iter()
                .map(|p| (p, cpu_ticks(p)))
                .collect()
        };
        CpuMeter {
            started: Instant::now(),
            hearth: (hearth_pid, cpu_ticks(hearth_pid)),
            mosquitto: match broker_pid {
                Some(p) => vec![(p, cpu_ticks(p))],
                None => snap("mosquitto"),
            },
            mariadb: snap("mariadbd"),
            me: cpu_ticks(std::process::id()),
            machine: machine_ticks(),
        }
    }

    fn stop(&self) -> Value {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = |ticks: u64| round3(ticks as f64 / CLOCK_TICKS / wall);
        let sum = |v: &[(u32, u64)]| -> u64 {
            v.iter().map(|&(p, t)| cpu_ticks(p).saturating_sub(t)).sum()
        };
        let (busy, total) = machine_ticks();
        let machine_busy = (busy - self.machine.0) as f64 / (total - self.machine.1).max(1) as f64;
        let hearth_ticks = cpu_ticks(self.hearth.0).saturating_sub(self.hearth.1);
        json!({
            "hearth_cores": cores(hearth_ticks),
            "hearth_cpu_s": round3(hearth_ticks as f64 / CLOCK_TICKS),
            "mosquitto_cores": cores(sum(&self.mosquitto)),
            "mariadbd_cores": cores(sum(&self.mariadb)),
            "bench_cores": cores(cpu_ticks(std::process::id()).saturating_sub(self.me)),
            "machine_busy_fraction": round3(machine_busy),
        })
    }
}

fn cpu_line(cpu: &Value) -> String {
    format!(
        "cpu (cores): hearth {} · mosquitto {} · mariadbd {} · this bench {} · machine {:.0}% busy",
        cpu["hearth_cores"],
        cpu["mosquitto_cores"],
        cpu["mariadbd_cores"],
        cpu["bench_cores"],
        cpu["machine_busy_fraction"].as_f64().unwrap_or(0.0) * 100.0
    )
}

/// A ReadingBatch as a SenseHat would send it (ids come from the topic).
fn reading_batch(seq: u64, time_unix_ms: i64, metrics: usize) -> ReadingBatch {
    ReadingBatch {
        home_id: String::new(),
        device_id: String::new(),
        seq,
        time_unix_ms,
        readings: METRICS[..metrics]
            .iter()
            .map(|&m| Reading {
                metric: m as i32,
                value: match m {
                    Metric::TemperatureCelsius => 20.0 + (seq % 100) as f64 / 10.0,
                    Metric::HumidityPercent => 40.0 + (seq % 20) as f64,
                    _ => 1013.25,
                },
            })
            .collect(),
        // Every device's numbers start at 1, in one run.
        run_start: 1,
    }
}

fn mqtt_options(
    url: &str,
    client_id: &str,
    login: Option<&Credentials>,
    inflight: u16,
) -> anyhow::Result<MqttOptions> {
    let mut options = hearth_runtime::mqtt::options(url, client_id, login)?;
    options.set_inflight(inflight);
    options.set_request_channel_capacity(4_096);
    Ok(options)
}

/// Polls `events` until the broker's CONNACK (and SUBACK, if `subscribed`).
async fn wait_connected(events: &mut EventLoop, subscribed: bool) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut connected = false;
        loop {
            match events.poll().await.context("connecting to the broker")? {
                Event::Incoming(Packet::ConnAck(_)) if !subscribed => return Ok(()),
                Event::Incoming(Packet::ConnAck(_)) => connected = true,
                Event::Incoming(Packet::SubAck(_)) if connected => return Ok(()),
                _ => {}
            }
        }
    })
    .await
    .context("the broker did not answer within 10 s")?
}

/// Watches Mosquitto's broker-wide `$SYS/broker/publish/messages/dropped`
/// (messages it discarded because a session's queue was full); updated by
/// the broker every `sys_interval` (10 s by default).
struct BrokerDropped {
    latest: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokerDropped {
    async fn start(url: &str) -> anyhow::Result<Self> {
        let (client, mut events) =
            AsyncClient::new(mqtt_options(url, &unique("bench-sys"), None, 10)?, 16);
        client
            .subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
            .await?;
        wait_connected(&mut events, true).await?;
        let latest = Arc::new(AtomicU64::new(u64::MAX));
        let seen = latest.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    if let Some(n) = std::str::from_utf8(&p.payload)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        seen.store(n, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self { latest, task })
    }

    /// Waits up to `limit` for the broker's first report.
    async fn ready(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while self.get().is_none() && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.get().is_some()
    }

    fn get(&self) -> Option<u64> {
        Some(self.latest.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }
}

impl Drop for BrokerDropped {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- phase 1

/// Mosquitto QoS 1, one publisher → one subscriber, no Hearth. The
/// publisher keeps at most `WINDOW` messages between itself and the
/// subscriber, so the figure is what the broker relays without dropping
/// (stock Mosquitto drops past 1,000 queued per session).
async fn raw_mqtt(url: &str, secs: u64, payload: Vec<u8>) -> anyhow::Result<Value> {
    const WINDOW: u64 = 500;
    let topics = Topics::new(&unique("bench-raw"))?;
    let topic = topics.device("raw", "raw", Channel::Readings)?;

    let (sub, mut sub_events) =
        AsyncClient::new(mqtt_options(url, &unique("bench-sub"), None, 100)?, 16);
    sub.subscribe(&topic, QoS::AtLeastOnce).await?;
    wait_connected(&mut sub_events, true).await?;
    let received = Arc::new(AtomicU64::new(0));
    let space = Arc::new(tokio::sync::Notify::new());
    let sub_task = {
        let (received, space) = (received.clone(), space.clone());
        tokio::spawn(async move {
            let _sub = sub;
            while let Ok(event) = sub_events.poll().await {
                if let Event::Incoming(Packet::Publish(_)) = event {
                    received.fetch_add(1, Ordering::Relaxed);
                    space.notify_one();
                }
            }
        })
    };

    let (publisher, mut pub_events) =
        AsyncClient::new(mqtt_options(url, &unique("bench-pub"), None, 1_000)?, 4_096);
    wait_connected(&mut pub_events, false).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let pub_task = {
        let acked = acked.clone();
        tokio::spawn(async move {
            while let Ok(event) = pub_events.poll().await {
                if let Event::Incoming(Packet::PubAck(_)) = event {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let started = Instant::now();
    let warmup = Duration::from_secs(1);
    let end = started + warmup + Duration::from_secs(secs);
    let mut published = 0u64;
    let mut window_start = None;
    let mut last_progress = Instant::now();
    while Instant::now() < end {
        if window_start.is_none() && started.elapsed() >= warmup {
            window_start = Some((Instant::now(), received.load(Ordering::Relaxed)));
        }
        if published - received.load(Ordering::Relaxed) >= WINDOW {
            let _ = tokio::time::timeout(Duration::from_millis(50), space.notified()).await;
            continue;
        }
        publisher
            .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
            .await?;
        published += 1;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "  mqtt {:>5.1} s  published {published:>9}  received {:>9}",
                started.elapsed().as_secs_f64(),
                received.load(Ordering::Relaxed)
            );
        }
    }
    let (t0, r0) = window_start.context("the raw MQTT run was shorter than its warm-up")?;
    let rate = (received.load(Ordering::Relaxed) - r0) as f64 / t0.elapsed().as_secs_f64();
    let drain = Instant::now();
    while (received.load(Ordering::Relaxed) < published
        || acked.load(Ordering::Relaxed) < published)
        && drain.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (received, acked) = (
        received.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed),
    );
    let _ = publisher.disconnect().await;
    pub_task.abort();
    sub_task.abort();
    Ok(json!({
        "msgs_per_s": rate.round(),
        "payload_bytes": payload.len(),
        "published": published,
        "acked": acked,
        "received": received,
        "lost": acked.saturating_sub(received),
    }))
}

/// Multi-row inserts into a copy of Hearth's `readings` table from one
/// connection (Hearth's single writer): `INSERT_ROWS` rows per statement,
/// five statements per transaction, as Hearth commits up to 5,000 rows.
async fn raw_db(db_url: &str, secs: u64, devices: usize) -> anyhow::Result<Value> {
    let mut db = MySqlConnection::connect(db_url).await?;
    sqlx::query("CREATE TABLE bench_raw_readings LIKE readings")
        .execute(&mut db)
        .await
        .context("copying the shape of Hearth's readings table")?;
    let ids: Vec<String> = (0..devices).map(|d| format!("d{d}")).collect();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut rows = 0u64;
    let mut last_progress = Instant::now();
    let mut next = 0u64;
    while Instant::now() < end {
        let mut tx = sqlx::Connection::begin(&mut db).await?;
        for _ in 0..5 {
            let mut q = QueryBuilder::<sqlx::MySql>::new(
                "INSERT IGNORE INTO bench_raw_readings (device_id, metric, seq, ts, value) ",
            );
            let base = next;
            q.push_values(0..INSERT_ROWS as u64, |mut row, i| {
                let k = base + i;
                let d = (k % devices as u64) as usize;
                let j = k / devices as u64;
                row.push_bind(ids[d].as_str())
                    .push_bind((1 + j % 3) as i16)
                    .push_bind((j / 3 + 1) as i64)
                    .push_bind(1_800_000_000_000 + j as i64)
                    .push_bind(21.5f64);
            });
            next += INSERT_ROWS as u64;
            rows += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "  db   {:>5.1} s  {rows:>9} rows  ({:.0}/s)",
                started.elapsed().as_secs_f64(),
                rows as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_raw_readings")
        .execute(&mut db)
        .await?;
    Ok(
        json!({"rows_per_s": rate.round(), "rows": rows, "rows_per_statement": INSERT_ROWS, "rows_per_commit": 5 * INSERT_ROWS}),
    )
}

// ---------------------------------------------------------------- the fleet

/// What was published per device: for seq `s`, entry `s - 1` holds the
/// number of readings in that batch, with `ACKED` set once the broker
/// acknowledged it.
#[derive(Default)]
struct Ledger {
    batches: Vec<Vec<u8>>,
}

const ACKED: u8 = 0x80;

/// How the fleet's sensors share MQTT connections.
enum Layout {
    /// This many connections, each publishing for every n-th sensor, under
    /// client ids of the benchmark's own.
    Shared(usize),
    /// One connection per sensor under its agent client id, as a device
    /// connects; logged in with each sensor's credential when given (in
    /// sensor order), anonymous otherwise.
    PerSensor(Option<Vec<Credentials>>),
}

/// Simulated sensors spread over MQTT connections ([`Layout`]); each
/// connection records which (device, seq) the broker acknowledged.
struct Fleet {
    conns: Vec<FleetConn>,
    ledger: Arc<Mutex<Ledger>>,
    topics: Vec<String>,
    /// Each sensor's `status` topic.
    status_topics: Vec<String>,
    errors: Arc<AtomicU64>,
}

/// In a connection's publish order, a status rather than a batch.
const STATUS: (u32, u64) = (u32::MAX, 0);

struct FleetConn {
    client: AsyncClient,
    /// (device, seq) in the order publishes were handed to the event loop,
    /// waiting for their packet id.
    order: Arc<Mutex<VecDeque<(u32, u64)>>>,
    devices: Vec<u32>,
    in_flight: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Fleet {
    async fn connect(
        url: &str,
        topics: &Topics,
        devices: usize,
        layout: &Layout,
    ) -> anyhow::Result<Self> {
        let connections = match layout {
            Layout::Shared(n) => *n,
            Layout::PerSensor(_) => devices,
        };
        let ledger = Arc::new(Mutex::new(Ledger {
            batches: vec![Vec::new(); devices],
        }));
        let errors = Arc::new(AtomicU64::new(0));
        let mut conns = Vec::new();
        for c in 0..connections {
            let options = match layout {
                Layout::Shared(_) => mqtt_options(url, &unique("bench-fleet"), None, 1_000)?,
                Layout::PerSensor(logins) => mqtt_options(
                    url,
                    &agent_client_id(&device_id(c)),
                    logins.as_ref().and_then(|l| l.get(c)),
                    1_000,
                )?,
            };
            let (client, mut events) = AsyncClient::new(options, 4_096);
            wait_connected(&mut events, false)
                .await
                .with_context(|| format!("connecting fleet connection {c}"))?;
            let order = Arc::new(Mutex::new(VecDeque::<(u32, u64)>::new()));
            let in_flight = Arc::new(AtomicU64::new(0));
            let task = {
                let (order, ledger, errors, in_flight) = (
                    order.clone(),
                    ledger.clone(),
                    errors.clone(),
                    in_flight.clone(),
                );
                tokio::spawn(async move {
                    let mut by_pkid: HashMap<u16, (u32, u64)> = HashMap::new();
                    loop {
                        match events.poll().await {
                            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                                if let Some(key) = order.lock().expect("order").pop_front() {
                                    by_pkid.insert(pkid, key);
                                }
                            }
                            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                                if let Some((d, s)) =
                                    by_pkid.remove(&ack.pkid).filter(|&key| key != STATUS)
                                {
                                    let mut l = ledger.lock().expect("ledger");
                                    l.batches[d as usize][s as usize - 1] |= ACKED;
                                    in_flight.fetch_sub(1, Ordering::Relaxed);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                    eprintln!("  ! fleet connection error: {e}");
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                })
            };
            conns.push(FleetConn {
                client,
                order,
                devices: (c..devices)
                    .step_by(connections)
                    .map(|d| d as u32)
                    .collect(),
                in_flight,
                task,
            });
        }
        let status_topics = (0..devices)
            .map(|d| topics.device(HOME, &device_id(d), Channel::Status))
            .collect::<Result<_, _>>()?;
        let topics = (0..devices)
            .map(|d| topics.device(HOME, &device_id(d), Channel::Readings))
            .collect::<Result<_, _>>()?;
        Ok(Fleet {
            conns,
            ledger,
            topics,
            status_topics,
            errors,
        })
    }

    /// Each sensor says, as an agent's status does, the last number it
    /// sent: so Hearth counts readings lost at the very end of a load (no
    /// later batch shows their gap) as missing too.
    async fn say_sent(&self) -> anyhow::Result<()> {
        for conn in &self.conns {
            for &d in &conn.devices {
                let last_seq = self.ledger.lock().expect("ledger").batches[d as usize].len() as u64;
                if last_seq == 0 {
                    continue;
                }
                let status = DeviceStatus {
                    online: true,
                    run_start: 1,
                    last_seq,
                    ..Default::default()
                };
                conn.order.lock().expect("order").push_back(STATUS);
                conn.client
                    .publish(
                        &self.status_topics[d as usize],
                        QoS::AtLeastOnce,
                        false,
                        status.encode_to_vec(),
                    )
                    .await
                    .context("queueing a status")?;
            }
        }
        Ok(())
    }

    /// Publishes `rate` batches/s in total, round-robin over `devices` (each
    /// connection its share), for `secs`; returns the batches published.
    /// Progress lines come from `progress`, called every second.
    async fn publish(
        &self,
        rate: u64,
        metrics: usize,
        only: Option<usize>,
        secs: u64,
        published: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(secs);
        let conns = self.conns.len();
        let mut tasks = Vec::new();
        for conn in &self.conns {
            let devices: Vec<u32> = conn
                .devices
                .iter()
                .copied()
                .filter(|&d| only.is_none_or(|n| (d as usize) < n))
                .collect();
            if devices.is_empty() {
                continue;
            }
            let share = match only {
                Some(n) => rate as f64 * devices.len() as f64 / n as f64,
                None => rate as f64 / conns as f64,
            };
            let client = conn.client.clone();
            let order = conn.order.clone();
            let in_flight = conn.in_flight.clone();
            let ledger = self.ledger.clone();
            let topics: Vec<String> = devices
                .iter()
                .map(|&d| self.topics[d as usize].clone())
                .collect();
            let published = published.clone();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let mut sent = 0u64;
                let mut next = 0usize;
                while Instant::now() < end {
                    let due = (started.elapsed().as_secs_f64() * share) as u64;
                    if sent >= due {
                        // Why not a fixed tick: with a connection per sensor,
                        // hundreds of tasks waking each millisecond would
                        // cost more than the publishing.
                        let next_due = started + Duration::from_secs_f64((sent + 1) as f64 / share);
                        tokio::time::sleep_until(
                            next_due
                                .max(Instant::now() + Duration::from_millis(1))
                                .into(),
                        )
                        .await;
                        continue;
                    }
                    while sent < due && Instant::now() < end {
                        let d = devices[next];
                        let topic = &topics[next];
                        next = (next + 1) % devices.len();
                        let seq = {
                            let mut l = ledger.lock().expect("ledger");
                            let b = &mut l.batches[d as usize];
                            b.push(metrics as u8);
                            b.len() as u64
                        };
                        let payload = reading_batch(seq, hearth_runtime::unix_ms_now(), metrics)
                            .encode_to_vec();
                        order.lock().expect("order").push_back((d, seq));
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        client
                            .publish(topic, QoS::AtLeastOnce, false, payload)
                            .await
                            .context("queueing a publish")?;
                        sent += 1;
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    fn in_flight(&self) -> u64 {
        self.conns
            .iter()
            .map(|c| c.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits up to `limit` for the broker to acknowledge everything.
    async fn wait_acked(&self, limit: Duration) {
        let start = Instant::now();
        while self.in_flight() > 0 && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (batches, readings) published and acknowledged so far.
    fn totals(&self) -> (u64, u64, u64, u64) {
        let l = self.ledger.lock().expect("ledger");
        let (mut pb, mut pr, mut ab, mut ar) = (0, 0, 0, 0);
        for b in l.batches.iter().flatten() {
            let n = u64::from(b & !ACKED);
            pb += 1;
            pr += n;
            if b & ACKED != 0 {
                ab += 1;
                ar += n;
            }
        }
        (pb, pr, ab, ar)
    }

    async fn close(self) {
        // Why no DISCONNECT: the event loops are stopped first so that the
        // closing sockets are not reported as connection errors.
        for c in self.conns {
            c.task.abort();
        }
    }
}

fn device_id(d: usize) -> String {
    format!("d{d}")
}

// ---------------------------------------------------------------- hearth

/// What the benchmarked `hearth` stores to and which broker it uses.
enum Stack<'a> {
    /// MariaDB and a running Mosquitto (issue 3's figures).
    External { db_url: &'a str, mqtt_url: &'a str },
    /// SQLite and the embedded broker behind Hearth's guard; `auth`: with a
    /// first admin, so logins are required on the API and the broker.
    Embedded { auth: bool },
}

/// The SQLite file of an embedded `hearth`, in its working directory.
const SQLITE_FILE: &str = "bench.db";
/// The first admin of an embedded `hearth` with logins (`bench@bench`).
const ADMIN: &str = "bench";
const ADMIN_PASSWORD: &str = "bench-password-not-secret";

/// A `hearth` on the bench database, stopped (SIGTERM) by [`Hearth::stop`].
struct Hearth {
    child: Child,
    grpc: String,
    http: String,
    /// The broker devices use: the external one, or `hearth`'s own.
    mqtt: String,
    /// The first admin's session when logins are required.
    bearer: Bearer,
    /// The SQLite file of an embedded `hearth`.
    sqlite: Option<PathBuf>,
    _logs: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Hearth {
    async fn start(binary: &PathBuf, stack: &Stack<'_>, prefix: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new();
        let mut command = Command::new(binary);
        command
            .current_dir(&dir.0)
            .env("HEARTH_LISTEN", "127.0.0.1:0")
            .env("HEARTH_TOPIC_PREFIX", prefix)
            .env("HEARTH_DEMO", "false")
            .env(
                "HEARTH_LOG",
                std::env::var("HEARTH_BENCH_LOG")
                    .unwrap_or_else(|_| "warn,hearth_backend::app=info".into()),
            );
        match stack {
            Stack::External { db_url, mqtt_url } => {
                command
                    .env("HEARTH_DATABASE_URL", db_url)
                    .env("HEARTH_MQTT_URL", mqtt_url);
            }
            Stack::Embedded { auth } => {
                command
                    .env("HEARTH_DATABASE_URL", format!("sqlite://{SQLITE_FILE}"))
                    .env("HEARTH_MQTT_LISTEN", "127.0.0.1:0");
                if *auth {
                    // Why the raised limits: registering the sensors is
                    // setup, not what is measured.
                    command
                        .env("HEARTH_ADMIN", format!("{ADMIN}@{HOME}"))
                        .env("HEARTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
                        .env("HEARTH_REQUESTS_PER_SECOND", "1000000")
                        .env("HEARTH_REQUEST_BURST", "1000000");
                }
            }
        }
        let (child, logs, ready) = spawn_until_ready(command, "hearth ready").await;
        let http = log_field(&ready, "http");
        let grpc = format!("http://{http}");
        let (mqtt, sqlite, bearer) = match stack {
            Stack::External { mqtt_url, .. } => ((*mqtt_url).to_owned(), None, Bearer::default()),
            Stack::Embedded { auth } => (
                log_field(&ready, "mqtt"),
                Some(dir.0.join(SQLITE_FILE)),
                match auth {
                    true => Bearer::login(grpc_channel(&grpc).await?, ADMIN, ADMIN_PASSWORD)
                        .await
                        .context("logging in as the first admin")?,
                    false => Bearer::default(),
                },
            ),
        };
        Ok(Hearth {
            child,
            grpc,
            http,
            mqtt,
            bearer,
            sqlite,
            _logs: logs,
            _dir: dir,
        })
    }

    /// A gRPC channel to `hearth`, with the admin's session if any.
    async fn channel(&self) -> anyhow::Result<InterceptedService<GrpcChannel, Bearer>> {
        Ok(InterceptedService::new(
            grpc_channel(&self.grpc).await?,
            self.bearer.clone(),
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Readings stored so far, from `/metrics`.
    async fn stored(&self) -> Option<u64> {
        let body = self.metrics_text().await?;
        metric_value(&body, "hearth_readings_stored_total")
    }

    /// Every `hearth_*` sample of `/metrics` but histogram buckets.
    async fn metric_values(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        let Some(body) = self.metrics_text().await else {
            return out;
        };
        for line in body
            .lines()
            .filter(|l| l.starts_with("hearth_") && !l.contains("_bucket"))
        {
            if let Some((name, v)) = line.rsplit_once(' ') {
                if let Ok(v) = v.trim().parse::<f64>() {
                    out.insert(name.to_owned(), json!(v));
                }
            }
        }
        out
    }

    /// The text of `/metrics`; `None` if `hearth` does not answer.
    async fn metrics_text(&self) -> Option<String> {
        let addr = self.http.parse().ok()?;
        // Why a task: `http_get` panics when the connection fails.
        tokio::spawn(hearth_tests::http_get(addr, "/metrics"))
            .await
            .ok()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `after - before` of every sample that changed.
fn delta(
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.as_f64()? - before.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), json!(round3(d))))
        })
        .collect()
}

fn metric_value(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn grpc_channel(url: &str) -> anyhow::Result<GrpcChannel> {
    // Why a timeout: a stuck `hearth` should fail the run, not hang it
    // (it bounds the wait for a response's headers, not a stream's length).
    Ok(GrpcChannel::from_shared(url.to_owned())?
        .timeout(Duration::from_secs(30))
        .connect()
        .await?)
}

/// Creates the bench home (unless the first admin's is there) with
/// `devices` sensors and the history device; returns the sensors' MQTT
/// credentials, in sensor order.
async fn register(hearth: &Hearth, devices: usize) -> anyhow::Result<Vec<Credentials>> {
    let mut api = DeviceServiceClient::new(hearth.channel().await?);
    if hearth.bearer.0.is_none() {
        api.create_home(CreateHomeRequest {
            id: HOME.into(),
            name: "Benchmark".into(),
        })
        .await?;
    }
    let ids: Vec<String> = (0..devices)
        .map(device_id)
        .chain([HISTORY_DEVICE.to_owned()])
        .collect();
    let registered = futures::stream::iter(ids)
        .map(|id| {
            let mut api = api.clone();
            async move {
                api.register_device(RegisterDeviceRequest {
                    home_id: HOME.into(),
                    id,
                    kind: DeviceKind::Sensor as i32,
                    name: String::new(),
                })
                .await
            }
        })
        .buffered(16)
        .try_collect::<Vec<_>>()
        .await?;
    registered
        .into_iter()
        .take(devices)
        .map(|r| {
            let device = r.into_inner();
            let login = device
                .mqtt_credential
                .with_context(|| format!("RegisterDevice {}: no MQTT credential", device.id))?;
            Ok(Credentials::new(login.username, login.password))
        })
        .collect()
}

// ---------------------------------------------------------------- phase 2

/// Publish → commit latency: a WatchReadings stream on the sampled devices
/// (it fires after commit); one sample per batch (its first metric).
struct CommitWatch {
    latencies: Arc<Mutex<Vec<f64>>>,
    redelivered: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl CommitWatch {
    async fn start(hearth: &Hearth, devices: usize) -> anyhow::Result<Self> {
        let mut api = TelemetryServiceClient::new(hearth.channel().await?);
        let mut stream = api
            .watch_readings(WatchReadingsRequest {
                home_id: HOME.into(),
                device_ids: (0..devices).map(device_id).collect(),
                metrics: vec![],
                ..Default::default()
            })
            .await?
            .into_inner();
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let redelivered = Arc::new(AtomicU64::new(0));
        let skipped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (latencies, redelivered, skipped, stop) = (
                latencies.clone(),
                redelivered.clone(),
                skipped.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut seen = HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(message) =
                        tokio::time::timeout(Duration::from_millis(200), stream.message()).await
                    else {
                        continue;
                    };
                    let Some(message) = message? else { break };
                    let now = now_ms_f64();
                    skipped.fetch_add(message.skipped, Ordering::Relaxed);
                    let mut l = latencies.lock().expect("latencies");
                    for r in message
                        .readings
                        .iter()
                        .filter(|r| r.metric == METRICS[0] as i32)
                    {
                        if seen.insert((r.device_id.clone(), r.seq)) {
                            l.push(now - r.time_unix_ms as f64);
                        } else {
                            redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            })
        };
        Ok(Self {
            latencies,
            redelivered,
            skipped,
            stop,
            task,
        })
    }

    async fn finish(self) -> anyhow::Result<(Latency, u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await??;
        let l = std::mem::take(&mut *self.latencies.lock().expect("latencies"));
        Ok((
            Latency::of(l),
            self.redelivered.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
        ))
    }
}

/// Where the check reads back what `hearth` stored.
enum Store {
    Mysql(MySqlConnection),
    /// An embedded `hearth`'s file, opened read-only beside it.
    Sqlite(SqliteConnection),
}

impl Store {
    async fn sqlite(path: &std::path::Path) -> anyhow::Result<Self> {
        use sqlx::ConnectOptions as _;
        let db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .connect()
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Store::Sqlite(db))
    }

    /// Every stored reading's key: (device, metric, seq).
    fn keys(&mut self) -> futures::stream::BoxStream<'_, sqlx::Result<(String, i16, i64)>> {
        const KEYS: &str = "SELECT device_id, metric, seq FROM readings";
        match self {
            Store::Mysql(db) => sqlx::query_as(KEYS).fetch(db),
            Store::Sqlite(db) => sqlx::query_as(KEYS).fetch(db),
        }
    }
}

/// Compares every stored reading with the ledger: (lost, duplicated,
/// unexpected, unacked-but-stored, unacked-and-missing).
async fn check_rows(db: &mut Store, fleet: &Fleet) -> anyhow::Result<Value> {
    let ledger = fleet.ledger.lock().expect("ledger").batches.clone();
    let mut seen: Vec<Vec<u8>> = ledger.iter().map(|b| vec![0u8; b.len() * 3]).collect();
    let mut unexpected = 0u64;
    let mut rows = 0u64;
    let mut stream = db.keys();
    while let Some((device, metric, seq)) = stream.try_next().await? {
        rows += 1;
        let slot = device
            .strip_prefix('d')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&d| d < ledger.len())
            .and_then(|d| {
                let s = usize::try_from(seq).ok()?.checked_sub(1)?;
                let n = usize::from(*ledger[d].get(s)? & !ACKED);
                let m = usize::try_from(metric).ok()?.checked_sub(1)?;
                (m < n).then_some((d, s * 3 + m))
            });
        match slot {
            Some((d, i)) => seen[d][i] = seen[d][i].saturating_add(1),
            None => unexpected += 1,
        }
    }
    let (mut lost, mut duplicated, mut unacked_stored, mut unacked_missing) =
        (0u64, 0u64, 0u64, 0u64);
    for (d, batches) in ledger.iter().enumerate() {
        for (s, &b) in batches.iter().enumerate() {
            for m in 0..usize::from(b & !ACKED) {
                let count = seen[d][s * 3 + m];
                duplicated += u64::from(count.saturating_sub(1));
                match (b & ACKED != 0, count) {
                    (true, 0) => lost += 1,
                    (false, 0) => unacked_missing += 1,
                    (false, _) => unacked_stored += 1,
                    _ => {}
                }
            }
        }
    }
    Ok(json!({
        "rows": rows,
        "lost": lost,
        "duplicated": duplicated,
        "unexpected_rows": unexpected,
        "unacked_but_stored": unacked_stored,
        "unacked_and_missing": unacked_missing,
    }))
}

async fn end_to_end(
    o: &Options,
    hearth: &Hearth,
    fleet: &Fleet,
    db: &mut Store,
    broker: Option<&BrokerDropped>,
    broker_pid: Option<u32>,
) -> anyhow::Result<Value> {
    let watch = CommitWatch::start(hearth, o.sample_devices).await?;
    let dropped_before = broker.and_then(BrokerDropped::get);
    let stored_before = hearth.stored().await.unwrap_or(0);
    let cpu = CpuMeter::start(hearth.pid(), broker_pid);
    let metrics_before = hearth.metric_values().await;
    let published = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load = {
        let published = published.clone();
        fleet.publish(o.rate, o.readings_per_batch, None, o.secs, published)
    };
    let progress = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stored = hearth
                .stored()
                .await
                .unwrap_or(0)
                .saturating_sub(stored_before);
            let t = started.elapsed().as_secs_f64();
            eprintln!(
                "  e2e  {t:>5.1} s  published {:>8} batches ({:.0}/s)  in flight {:>5}  stored {stored:>9} readings ({:.0}/s)  hearth RSS {} MB",
                published.load(Ordering::Relaxed),
                published.load(Ordering::Relaxed) as f64 / t,
                fleet.in_flight(),
                stored as f64 / t,
                proc_status_kb(hearth.pid(), "VmRSS:") / 1024
            );
        }
    };
    tokio::select! {
        r = load => r?,
        _ = progress => unreachable!(),
    }
    let window = started.elapsed().as_secs_f64();
    let stored_in_window = hearth
        .stored()
        .await
        .unwrap_or(0)
        .saturating_sub(stored_before);
    fleet.wait_acked(Duration::from_secs(30)).await;
    let (pub_batches, pub_readings, acked_batches, acked_readings) = fleet.totals();

    eprintln!("  e2e  publishing stopped; waiting for hearth to store the rest…");
    let mut last = (stored_in_window, Instant::now());
    for tick in 1u64.. {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stored = hearth
            .stored()
            .await
            .unwrap_or(0)
            .saturating_sub(stored_before);
        if stored != last.0 {
            last = (stored, Instant::now());
        }
        if stored >= acked_readings || last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        if tick % 4 == 0 {
            eprintln!("  e2e  draining: {stored} of {acked_readings} readings stored");
        }
    }
    let busy = (last.1 - started).as_secs_f64().max(window);
    let cpu = cpu.stop();
    let metrics_delta = delta(&metrics_before, &hearth.metric_values().await);
    let peak_rss_kb = proc_status_kb(hearth.pid(), "VmHWM:");
    let (latency, redelivered, skipped) = watch.finish().await?;
    // Why wait: Mosquitto refreshes $SYS counters every sys_interval (10 s).
    let dropped_after = match broker {
        Some(b) => {
            tokio::time::sleep(Duration::from_secs(11)).await;
            b.get()
        }
        None => None,
    };
    eprintln!("  e2e  checking every stored row against what was acknowledged…");
    let rows = check_rows(db, fleet).await?;
    let committed = rows["rows"].as_u64().unwrap_or(0);
    Ok(json!({
        "devices": o.devices,
        "connections": o.connections,
        "readings_per_batch": o.readings_per_batch,
        "secs": o.secs,
        "offered_batches_per_s": o.rate,
        "published_batches": pub_batches,
        "published_batches_per_s": (pub_batches as f64 / window).round(),
        "acked_batches": acked_batches,
        "published_readings": pub_readings,
        "acked_readings": acked_readings,
        "readings_per_s": (committed as f64 / busy).round(),
        "readings_per_s_while_publishing": (stored_in_window as f64 / window).round(),
        "store_finished_after_s": round3(busy),
        "check": rows,
        "publish_to_commit": latency.json(),
        "live_redelivered": redelivered,
        "live_skipped": skipped,
        "hearth_peak_rss_mb": round3(peak_rss_kb as f64 / 1024.0),
        "broker_dropped_during_run": match (dropped_before, dropped_after) {
            (Some(a), Some(b)) => json!(b.saturating_sub(a)),
            _ => Value::Null,
        },
        "mqtt_connection_errors": fleet.errors.load(Ordering::Relaxed),
        "cpu": cpu,
        "hearth_metrics_delta": metrics_delta,
    }))
}

// ---------------------------------------------------------------- the floor

/// The floor's copy of Hearth's `readings` table.
const FLOOR_TABLE: &str = "bench_pipe_readings";

/// The same work as Hearth's ingest with no Hearth in it, run on the same
/// cores at the same time as a real run's broker, database and load, which
/// the separate raw limits are not: the fleet's batches through the broker
/// to one consumer that decodes them and commits their readings as Hearth's
/// writer does (multi-row `INSERT IGNORE`s of `INSERT_ROWS`, up to 5,000
/// readings a transaction, whatever has queued), acknowledging each message
/// only after its commit. Its stored rate is the floor Hearth's end-to-end
/// figure is compared with.
///
/// It lives from [`Floor::start`], which creates `FLOOR_TABLE`, to
/// [`Floor::stop`], which drops it, and loads it with [`Floor::run`] as
/// often as asked: the short floor once into an empty table, the soak once
/// a step, so that its table grows as Hearth's readings table does and its
/// sensors' numbers go on (a sensor starting again at 1 would only repeat
/// keys the table holds).
struct Floor {
    db: MySqlConnection,
    fleet: Fleet,
    readings_per_batch: usize,
    intake: tokio::task::JoinHandle<()>,
    /// `None` once it was seen to have finished.
    writer: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Readings the writer committed, since the start.
    stored: Arc<AtomicU64>,
    /// Rows in the table and readings acknowledged by the broker at the end
    /// of the previous run.
    rows_before: u64,
    acked_before: u64,
}

impl Floor {
    async fn start(o: &Options, url: &str, db_url: &str) -> anyhow::Result<Self> {
        let mut db = MySqlConnection::connect(db_url).await?;
        sqlx::query(&format!("CREATE TABLE {FLOOR_TABLE} LIKE readings"))
            .execute(&mut db)
            .await
            .context("copying the shape of Hearth's readings table")?;
        let topics = Topics::new(&format!("{}/pipe", unique("bench")))?;
        let mut options = mqtt_options(url, &unique("bench-pipe"), None, 100)?;
        options.set_manual_acks(true);
        let (consumer, mut events) = AsyncClient::new(options, 4_096);
        consumer
            .subscribe(topics.all_devices(Channel::Readings), QoS::AtLeastOnce)
            .await?;
        wait_connected(&mut events, true).await?;

        type Row = (String, i16, i64, i64, f64);
        // Why unbounded: the intake polls the consumer's connection, which
        // also carries the writer's acknowledgements and the keep-alive. A
        // full queue stopped the intake, so the writer's acknowledgements
        // waited for a connection no one polled, and Mosquitto dropped the
        // consumer ("exceeded timeout") once a step fell behind. What is
        // queued is bounded by what the broker sends unacknowledged.
        let (queue, mut queued) =
            tokio::sync::mpsc::unbounded_channel::<(Vec<Row>, rumqttc::Publish)>();
        let decode_topics = topics.clone();
        let resubscribe = (consumer.clone(), topics.all_devices(Channel::Readings));
        let intake = tokio::spawn(async move {
            loop {
                // Why go on after an error: the floor lives across a soak's
                // steps, minutes apart; a connection lost in between must
                // not leave the next step without a consumer (rumqttc
                // reconnects at the next poll, with a clean session).
                let event = match events.poll().await {
                    Ok(event) => event,
                    Err(e) => {
                        eprintln!("  pipe: the consumer's connection failed ({e}); reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if let Event::Incoming(Packet::ConnAck(_)) = event {
                    let (consumer, filter) = &resubscribe;
                    let _ = consumer.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                    continue;
                }
                let Event::Incoming(Packet::Publish(message)) = event else {
                    continue;
                };
                let (Ok(topic), Ok(batch)) = (
                    decode_topics.parse(&message.topic),
                    ReadingBatch::decode(message.payload.as_ref()),
                ) else {
                    continue;
                };
                let device = topic.device_id.to_owned();
                let rows = batch
                    .readings
                    .iter()
                    .map(|r| {
                        let seq = batch.seq as i64;
                        (
                            device.clone(),
                            r.metric as i16,
                            seq,
                            batch.time_unix_ms,
                            r.value,
                        )
                    })
                    .collect();
                if queue.send((rows, message)).is_err() {
                    break;
                }
            }
        });
        let stored = Arc::new(AtomicU64::new(0));
        let writer = {
            let (consumer, stored, db_url) = (consumer.clone(), stored.clone(), db_url.to_owned());
            tokio::spawn(async move {
                let mut db = MySqlConnection::connect(&db_url).await?;
                while let Some(first) = queued.recv().await {
                    let mut rows = first.0;
                    let mut messages = vec![first.1];
                    while rows.len() < 5_000 {
                        let Ok((more, message)) = queued.try_recv() else {
                            break;
                        };
                        rows.extend(more);
                        messages.push(message);
                    }
                    let mut tx = sqlx::Connection::begin(&mut db).await?;
                    for chunk in rows.chunks(INSERT_ROWS) {
                        let mut q = QueryBuilder::<sqlx::MySql>::new(format!(
                            "INSERT IGNORE INTO {FLOOR_TABLE} (device_id, metric, seq, ts, value) "
                        ));
                        q.push_values(chunk, |mut row, r| {
                            row.push_bind(r.0.as_str())
                                .push_bind(r.1)
                                .push_bind(r.2)
                                .push_bind(r.3)
                                .push_bind(r.4);
                        });
                        q.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    stored.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    for message in &messages {
                        consumer.ack(message).await?;
                    }
                }
                anyhow::Ok(())
            })
        };

        let fleet = Fleet::connect(url, &topics, o.devices, &Layout::Shared(o.connections)).await?;
        Ok(Floor {
            db,
            fleet,
            readings_per_batch: o.readings_per_batch,
            intake,
            writer: Some(writer),
            stored,
            rows_before: 0,
            acked_before: 0,
        })
    }

    /// Offers `rate` batches/s for `secs`, waits for the consumer to store
    /// what the broker acknowledged, and returns this run's figures.
    async fn run(&mut self, rate: u64, secs: u64) -> anyhow::Result<Value> {
        let stored_before = self.stored.load(Ordering::Relaxed);
        let stored = || self.stored.load(Ordering::Relaxed) - stored_before;
        let published = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let progress = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let t = started.elapsed().as_secs_f64();
                let n = stored();
                eprintln!(
                    "  pipe {t:>5.1} s  published {:>8} batches  stored {n:>9} readings ({:.0}/s)",
                    published.load(Ordering::Relaxed),
                    n as f64 / t
                );
            }
        };
        tokio::select! {
            r = self.fleet.publish(rate, self.readings_per_batch, None, secs, published.clone()) => r?,
            _ = progress => unreachable!(),
        }
        let window = started.elapsed().as_secs_f64();
        let stored_in_window = stored();
        self.fleet.wait_acked(Duration::from_secs(30)).await;
        let (_, _, _, acked_total) = self.fleet.totals();
        let acked_readings = acked_total - self.acked_before;
        let mut last = (stored_in_window, Instant::now());
        while stored() < acked_readings && last.1.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n = stored();
            if n != last.0 {
                last = (n, Instant::now());
            }
        }
        let busy = (last.1 - started).as_secs_f64().max(window);
        if let Some(writer) = self.writer.take_if(|w| w.is_finished()) {
            if let Ok(Err(e)) = writer.await {
                bail!("the floor's writer failed: {e:#}");
            }
        }
        let (rows_total,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {FLOOR_TABLE}"))
            .fetch_one(&mut self.db)
            .await?;
        let rows = (rows_total as u64).saturating_sub(self.rows_before);
        (self.rows_before, self.acked_before) = (rows_total as u64, acked_total);
        Ok(json!({
            "offered_batches_per_s": rate,
            "secs": secs,
            "readings_per_s": (rows as f64 / busy).round(),
            "readings_per_s_while_publishing": (stored_in_window as f64 / window).round(),
            "acked_readings": acked_readings,
            "stored": rows,
            "lost": acked_readings.saturating_sub(rows),
        }))
    }

    /// Disconnects the floor's fleet and consumer and drops its table.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.fleet.close().await;
        self.intake.abort();
        if let Some(writer) = self.writer {
            writer.abort();
        }
        sqlx::query(&format!("DROP TABLE {FLOOR_TABLE}"))
            .execute(&mut self.db)
            .await?;
        Ok(())
    }
}

/// Phase `pipeline`, the short floor: one run of `raw_secs` (at least 10 s)
/// at `rate` into an empty table.
async fn pipeline(o: &Options, url: &str, db_url: &str, rate: u64) -> anyhow::Result<Value> {
    let mut floor = Floor::start(o, url, db_url).await?;
    let run = floor.run(rate, o.raw_secs.max(10)).await?;
    floor.stop().await?;
    Ok(run)
}

// ---------------------------------------------------------------- soak

/// The share of the offered rate a soak step must store while publishing.
const KEPT_UP: f64 = 0.95;

/// Whether a soak step that stored `stored` readings/s while publishing
/// kept up with `offered`.
fn keeps_up(stored: f64, offered: f64) -> bool {
    stored >= KEPT_UP * offered
}

const MB: f64 = 1024.0 * 1024.0;

/// InnoDB's buffer pool, MB; `None`, with a warning, if the server does not
/// say. Once a table's indexes outgrow it, each insert may wait for a read.
async fn buffer_pool_mb(db: &mut MySqlConnection) -> Option<f64> {
    sqlx::query_scalar::<_, i64>("SELECT CAST(@@innodb_buffer_pool_size AS SIGNED)")
        .fetch_one(db)
        .await
        .map(|bytes| round3(bytes as f64 / MB))
        .inspect_err(|e| eprintln!("  ! cannot read @@innodb_buffer_pool_size: {e}"))
        .ok()
}

/// `table`'s rows and indexes, MB, as the database counts them; `None`, with
/// a warning, if it cannot say.
async fn table_mb(db: &mut MySqlConnection, table: &str) -> Option<f64> {
    let bytes = async {
        // Why ANALYZE first: information_schema reports InnoDB's statistics,
        // which it recomputes only after a tenth of a table changed (and
        // MySQL 8 caches for a day); the size at the end of a step it is not.
        sqlx::raw_sql(&format!("ANALYZE TABLE {table}"))
            .execute(&mut *db)
            .await?;
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(data_length + index_length AS SIGNED) FROM information_schema.TABLES \
             WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(table)
        .fetch_one(&mut *db)
        .await
    };
    bytes
        .await
        .map(|bytes| round3(bytes as f64 / MB))
        .inspect_err(|e| eprintln!("  ! cannot read the size of table {table}: {e}"))
        .ok()
}

/// Soak mode (issue 16): each of `--soak-rates` offered for `--soak-secs`,
/// ascending, until a step fails; the highest rate that passed, beside the
/// raw limits measured in the same run (phase 1). A step passes when nothing
/// is lost and storing kept up (at least `KEPT_UP` of the offered rate while
/// publishing). Why both: a short step above capacity loses nothing, its
/// backlog drains after the load stops; held for minutes, the broker drops it.
///
/// After each of Hearth's steps, unless `--no-soak-floor`, the floor runs
/// the same step (Hearth idle then) into a table that grows across the
/// steps as Hearth's does. Why: the short floor's seconds into an empty
/// table are not the work of minutes into a table whose indexes outgrow the
/// buffer pool, and a speed target is a ratio to the same work with no
/// Hearth in it. Hearth's steps alone decide where the soak stops.
async fn soak(
    o: &Options,
    hearth: &Hearth,
    fleet: &Fleet,
    mqtt_url: &str,
    db_url: &str,
    broker_pid: Option<u32>,
    smallest_limit: Option<f64>,
) -> anyhow::Result<Value> {
    let mut db = Store::Mysql(MySqlConnection::connect(db_url).await?);
    let mut sizes = MySqlConnection::connect(db_url).await?;
    let buffer_pool = buffer_pool_mb(&mut sizes).await;
    let mut floor = match o.soak_floor {
        true => Some(Floor::start(o, mqtt_url, db_url).await?),
        false => None,
    };
    let mut steps = Vec::new();
    let mut lost_before = 0u64;
    let mut highest_lossless = None;
    let mut highest_lossless_floor = None;
    for &rate in &o.soak_rates {
        eprintln!(
            "soak: {rate} batches/s × {} readings for {} s…",
            o.readings_per_batch, o.soak_secs
        );
        let step_options = Options {
            rate,
            secs: o.soak_secs,
            ..o.clone()
        };
        let missing_before = readings_missing(hearth).await;
        let step = end_to_end(&step_options, hearth, fleet, &mut db, None, broker_pid).await?;
        // Why a difference: the check compares every row with everything
        // published since the start, earlier steps included.
        let lost_total = step["check"]["lost"].as_u64().unwrap_or(0);
        let lost = lost_total.saturating_sub(lost_before);
        lost_before = lost_total;
        // What Hearth itself counted missing: its audit counts what the
        // sensors said they sent once it settled (10 s), every 15 s.
        fleet.say_sent().await?;
        let counted_since = Instant::now();
        let mut counted = 0.0;
        while counted_since.elapsed() < Duration::from_secs(40) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            counted = readings_missing(hearth).await - missing_before;
            if counted >= lost as f64 && counted_since.elapsed() > Duration::from_secs(27) {
                break;
            }
        }
        let offered = (rate * o.readings_per_batch as u64) as f64;
        let stored = step["readings_per_s_while_publishing"]
            .as_f64()
            .unwrap_or(0.0);
        let kept_up = keeps_up(stored, offered);
        let readings_mb = table_mb(&mut sizes, "readings").await;
        eprintln!(
            "soak: {offered} readings/s offered, {stored} stored/s while publishing, {lost} lost, \
             {counted} counted missing by Hearth; readings table {}",
            mb(readings_mb)
        );
        let mut figures = json!({
            "offered_batches_per_s": rate,
            "offered_readings_per_s": offered,
            "stored_readings_per_s_while_publishing": stored,
            "lost": lost,
            "counted_missing_by_hearth": counted,
            "kept_up": kept_up,
            "publish_to_commit": step["publish_to_commit"],
            "hearth_peak_rss_mb": step["hearth_peak_rss_mb"],
            "cpu": step["cpu"],
            "readings_table_mb": readings_mb,
        });
        if let Some(floor) = &mut floor {
            eprintln!(
                "soak: the floor, {rate} batches/s for {} s into its table of the earlier steps…",
                o.soak_secs
            );
            let run = floor.run(rate, o.soak_secs).await?;
            let floor_stored = run["readings_per_s_while_publishing"]
                .as_f64()
                .unwrap_or(0.0);
            let floor_lost = run["lost"].as_u64().unwrap_or(0);
            let floor_kept_up = keeps_up(floor_stored, offered);
            let floor_passed = floor_lost == 0 && floor_kept_up;
            if floor_passed {
                highest_lossless_floor = Some(offered);
            }
            let floor_mb = table_mb(&mut sizes, FLOOR_TABLE).await;
            eprintln!(
                "soak: the floor stored {floor_stored}/s while publishing, {floor_lost} lost; \
                 its table {}",
                mb(floor_mb)
            );
            figures["floor_stored_readings_per_s_while_publishing"] = json!(floor_stored);
            figures["floor_lost"] = json!(floor_lost);
            figures["floor_kept_up"] = json!(floor_kept_up);
            figures["floor_passed"] = json!(floor_passed);
            figures["floor_table_mb"] = json!(floor_mb);
            figures["ratio_to_floor"] =
                json!((floor_stored > 0.0).then(|| round3(stored / floor_stored)));
        }
        steps.push(figures);
        if lost > 0 || !kept_up {
            break;
        }
        highest_lossless = Some(offered);
    }
    if let Some(floor) = floor {
        floor.stop().await?;
    }
    Ok(json!({
        "secs_per_step": o.soak_secs,
        "innodb_buffer_pool_mb": buffer_pool,
        "steps": steps,
        "highest_lossless_readings_per_s": highest_lossless,
        "smaller_raw_limit_readings_per_s": smallest_limit.map(f64::round),
        "ratio_to_smaller_raw_limit": match (highest_lossless, smallest_limit) {
            (Some(h), Some(l)) if l > 0.0 => json!(round3(h / l)),
            _ => Value::Null,
        },
        "highest_lossless_floor_readings_per_s": highest_lossless_floor,
        "ratio_of_highest_lossless_to_sustained_floor":
            match (highest_lossless, highest_lossless_floor) {
                (Some(h), Some(f)) if f > 0.0 => json!(round3(h / f)),
                _ => Value::Null,
            },
    }))
}

/// `hearth_readings_missing_total`, summed over homes.
async fn readings_missing(hearth: &Hearth) -> f64 {
    hearth
        .metric_values()
        .await
        .iter()
        .filter(|(name, _)| name.starts_with("hearth_readings_missing_total"))
        .filter_map(|(_, v)| v.as_f64())
        .sum()
}

// ---------------------------------------------------------------- phase 4

async fn live(
    o: &Options,
    hearth: &Hearth,
    fleet: &Fleet,
    broker_pid: Option<u32>,
) -> anyhow::Result<Value> {
    const STREAMS_PER_CONNECTION: usize = 100;
    let mut channels = Vec::new();
    for _ in 0..o.live_streams.div_ceil(STREAMS_PER_CONNECTION) {
        channels.push(grpc_channel(&hearth.grpc).await?);
    }
    let watched = o.live_streams.min(o.devices);
    eprintln!(
        "  live opening {} WatchReadings streams over {} connections…",
        o.live_streams,
        channels.len()
    );
    let end = Arc::new(Mutex::new(None::<tokio::time::Instant>));
    let mut streams = Vec::new();
    for i in 0..o.live_streams {
        let mut api = TelemetryServiceClient::new(channels[i / STREAMS_PER_CONNECTION].clone());
        let stream = api
            .watch_readings(WatchReadingsRequest {
                home_id: HOME.into(),
                device_ids: vec![device_id(i % watched)],
                metrics: vec![],
                ..Default::default()
            })
            .await
            .with_context(|| format!("opening live stream {i}"))?
            .into_inner();
        streams.push(stream);
    }
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let end = end.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut skipped = 0u64;
                loop {
                    let deadline = *end.lock().expect("end");
                    let next = match deadline {
                        Some(d) => match tokio::time::timeout_at(d, stream.message()).await {
                            Ok(m) => m,
                            Err(_) => break,
                        },
                        None => {
                            match tokio::time::timeout(Duration::from_millis(200), stream.message())
                                .await
                            {
                                Ok(m) => m,
                                Err(_) => continue,
                            }
                        }
                    };
                    let Some(message) = next? else { break };
                    let now = now_ms_f64();
                    skipped += message.skipped;
                    latencies.extend(message.readings.iter().map(|r| now - r.time_unix_ms as f64));
                }
                anyhow::Ok((latencies, skipped))
            })
        })
        .collect();
    let cpu = CpuMeter::start(hearth.pid(), broker_pid);
    let metrics_before = hearth.metric_values().await;
    let published = Arc::new(AtomicU64::new(0));
    let (pb0, _, ab0, _) = fleet.totals();
    let rate = o.live_rate * watched as u64;
    eprintln!(
        "  live {watched} devices publishing {} readings/s each ({rate}/s in total) for {} s…",
        o.live_rate, o.live_secs
    );
    fleet
        .publish(rate, 1, Some(watched), o.live_secs, published)
        .await?;
    fleet.wait_acked(Duration::from_secs(10)).await;
    *end.lock().expect("end") = Some(tokio::time::Instant::now() + Duration::from_secs(3));
    let cpu = cpu.stop();
    let metrics_delta = delta(&metrics_before, &hearth.metric_values().await);
    let mut all = Vec::new();
    let mut skipped = 0;
    for t in tasks {
        let (l, s) = t.await??;
        all.extend(l);
        skipped += s;
    }
    let (pb1, _, ab1, _) = fleet.totals();
    // Each acknowledged reading of a watched device goes to every stream on it.
    let expected = (ab1 - ab0) * (o.live_streams as u64) / watched as u64;
    let delivered = all.len() as u64;
    let latency = Latency::of(all);
    Ok(json!({
        "streams": o.live_streams,
        "readings_per_s_per_stream": o.live_rate,
        "secs": o.live_secs,
        "published": pb1 - pb0,
        "acked": ab1 - ab0,
        "stored": metrics_delta.get("hearth_readings_stored_total"),
        "expected_deliveries": expected,
        "delivered": delivered,
        "skipped_batches": skipped,
        "delivery": latency.json(),
        "cpu": cpu,
        "hearth_metrics_delta": metrics_delta,
    }))
}

// ---------------------------------------------------------------- phase 5

/// Loads the readings table up to `rows` rows: the history device's last 24
/// hours through `IngestBatch` (so whatever Hearth keeps beside raw rows,
/// such as rollups, is kept), then filler rows of the other devices straight
/// into MariaDB; then times ListReadings newest-100 and a 24-hour GetSeries.
async fn history(o: &Options, hearth: &Hearth, db_url: &str) -> anyhow::Result<Value> {
    const INTERVAL_MS: i64 = 2_000;
    const BATCHES_PER_CALL: usize = 1_000;
    let mut api = TelemetryServiceClient::new(grpc_channel(&hearth.grpc).await?);
    let now = hearth_runtime::unix_ms_now();
    let day = 24 * 3_600_000;
    let count = (day / INTERVAL_MS) as u64;
    eprintln!("  hist ingesting 24 h of {HISTORY_DEVICE} ({count} batches × 3 readings) through IngestBatch…");
    let started = Instant::now();
    let mut accepted = 0u64;
    let mut first_rejection = None;
    let mut seq = 1u64;
    while seq <= count {
        let batches: Vec<ReadingBatch> = (seq..(seq + BATCHES_PER_CALL as u64).min(count + 1))
            .map(|s| {
                let mut b = reading_batch(s, now - day + s as i64 * INTERVAL_MS - 1_000, 3);
                b.home_id = HOME.into();
                b.device_id = HISTORY_DEVICE.into();
                b
            })
            .collect();
        seq += batches.len() as u64;
        let r = api
            .ingest_batch(IngestBatchRequest {
                batches,
                ..Default::default()
            })
            .await?
            .into_inner();
        accepted += u64::from(r.accepted);
        if first_rejection.is_none() {
            first_rejection = r.rejected.first().map(|r| r.reason.clone());
        }
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  hist {accepted} batches accepted in {ingest_secs:.1} s ({:.0} readings/s){}",
        accepted as f64 * 3.0 / ingest_secs,
        first_rejection
            .as_deref()
            .map(|r| format!("; first rejection: {r}"))
            .unwrap_or_default()
    );

    let mut db = MySqlConnection::connect(db_url).await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(&mut db)
        .await?;
    let filler = o.history_rows.saturating_sub(existing as u64);
    eprintln!(
        "  hist bulk-loading {filler} filler rows straight into MariaDB (table has {existing})…"
    );
    let load_started = Instant::now();
    let loaded = Arc::new(AtomicU64::new(0));
    let loaders = 2u64;
    let mut tasks = Vec::new();
    for w in 0..loaders {
        let (db_url, loaded, devices) = (db_url.to_owned(), loaded.clone(), o.devices as u64);
        let (from, to) = (filler * w / loaders, filler * (w + 1) / loaders);
        tasks.push(tokio::spawn(async move {
            let mut db = MySqlConnection::connect(&db_url).await?;
            let ids: Vec<String> = (0..devices as usize).map(device_id).collect();
            let week = 7 * day;
            let mut k = from;
            while k < to {
                let mut tx = sqlx::Connection::begin(&mut db).await?;
                for _ in 0..20 {
                    if k >= to {
                        break;
                    }
                    let n = (to - k).min(INSERT_ROWS as u64);
                    let mut q = QueryBuilder::<sqlx::MySql>::new(
                        "INSERT IGNORE INTO readings (device_id, metric, seq, ts, value) ",
                    );
                    q.push_values(k..k + n, |mut row, k| {
                        let d = (k % devices) as usize;
                        let j = k / devices;
                        // Why such seqs: far above anything the fleet published.
                        row.push_bind(ids[d].as_str())
                            .push_bind((1 + j % 3) as i16)
                            .push_bind(1_000_000_000_000 + (j / 3) as i64)
                            .push_bind(now - week + (k as i64 * 7 % week))
                            .push_bind(20.0 + (k % 100) as f64 / 10.0);
                    });
                    q.build().execute(&mut *tx).await?;
                    k += n;
                    loaded.fetch_add(n, Ordering::Relaxed);
                }
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    let progress = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let n = loaded.load(Ordering::Relaxed);
            eprintln!(
                "  hist {n:>9} of {filler} rows loaded ({:.0} rows/s)",
                n as f64 / load_started.elapsed().as_secs_f64()
            );
        }
    };
    let load = async {
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = load => r?,
        _ = progress => unreachable!(),
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(&mut db)
        .await?;
    eprintln!(
        "  hist readings table has {total} rows; timing {} calls of each query…",
        o.queries
    );

    let newest = ListReadingsRequest {
        device_id: HISTORY_DEVICE.into(),
        page_size: 100,
        ..Default::default()
    };
    let mut list_times = Vec::new();
    let mut list_rows = 0;
    for i in 0..o.queries + 20 {
        let t = Instant::now();
        let r = api.list_readings(newest.clone()).await?.into_inner();
        if i >= 20 {
            list_times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        list_rows = r.readings.len();
    }
    let newest_100 = Latency::of(list_times);

    let series_request = GetSeriesRequest {
        device_id: HISTORY_DEVICE.into(),
        metric: Metric::TemperatureCelsius as i32,
        start_unix_ms: hearth_runtime::unix_ms_now() - day,
        end_unix_ms: 0,
        max_points: 0,
    };
    let series = match api.get_series(series_request.clone()).await {
        Err(status) => {
            json!({"unavailable": format!("{:?}: {}", status.code(), status.message())})
        }
        Ok(first) => {
            let first = first.into_inner();
            let mut times = Vec::new();
            for i in 0..o.queries + 20 {
                let t = Instant::now();
                api.get_series(series_request.clone()).await?;
                if i >= 20 {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            let mut v = Latency::of(times).json();
            v["points"] = json!(first.points.len());
            v["resolution"] = json!(first.resolution);
            v["bucket_ms"] = json!(first.bucket_ms);
            v
        }
    };
    Ok(json!({
        "table_rows": total,
        "history_device_readings": accepted * 3,
        "ingest_batch_readings_per_s": (accepted as f64 * 3.0 / ingest_secs).round(),
        "ingest_first_rejection": first_rejection,
        "filler_rows": filler,
        "filler_rows_per_s": (filler as f64 / load_secs).round(),
        "newest_100": { "rows": list_rows, "latency": newest_100.json() },
        "series_24h": series,
    }))
}

// ---------------------------------------------------------------- report

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |x| format!("{x:.1} ms"))
}

fn mb(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{x:.1} MB"))
}

fn ratio_figure(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
}

/// One report line: figure, target, verdict.
fn line(label: &str, figure: String, target: &str, ok: Option<bool>) {
    let verdict = match ok {
        Some(true) => "ok",
        Some(false) => "MISSED",
        None => "",
    };
    println!("  {label:<34} {figure:>22}   {target:<14} {verdict}");
}

fn report(summary: &Value) {
    let raw = &summary["raw"];
    let e2e = &summary["e2e"];
    let live = &summary["live"];
    let hist = &summary["history"];
    println!();
    println!(
        "Hearth telemetry benchmark{} — load average {} at start, {} at end",
        if summary["quick"] == json!(true) {
            " (QUICK smoke run: not the figures of record)"
        } else {
            ""
        },
        summary["loadavg_start"].as_str().unwrap_or(""),
        summary["loadavg_end"].as_str().unwrap_or("")
    );
    println!("  {:<34} {:>22}   {:<14}", "", "measured", "target");
    if !raw.is_null() {
        println!("1. raw limits (no Hearth)");
        let m = &raw["mqtt"];
        line(
            "Mosquitto QoS 1 pub→sub",
            format!("{} msg/s", m["msgs_per_s"]),
            "",
            None,
        );
        line(
            "  = readings/s at this batch size",
            format!("{}", raw["mqtt_readings_per_s"]),
            "",
            None,
        );
        line("  lost by the broker", format!("{}", m["lost"]), "", None);
        line(
            "MariaDB multi-row INSERT",
            format!("{} rows/s", raw["db"]["rows_per_s"]),
            "",
            None,
        );
    }
    if !e2e.is_null() {
        println!("2. Hearth end to end (MQTT QoS 1 → MariaDB)");
        let rate = e2e["readings_per_s"].as_f64().unwrap_or(0.0);
        line(
            "readings/s committed",
            format!("{rate:.0}"),
            ">= 50000",
            Some(rate >= 50_000.0),
        );
        line(
            "  while publishing",
            format!("{}", e2e["readings_per_s_while_publishing"]),
            "",
            None,
        );
        line(
            "  offered / published batches/s",
            format!(
                "{} / {}",
                e2e["offered_batches_per_s"], e2e["published_batches_per_s"]
            ),
            "",
            None,
        );
        let check = &e2e["check"];
        line(
            "lost (PUBACKed, not stored)",
            format!("{}", check["lost"]),
            "0",
            Some(check["lost"] == json!(0)),
        );
        line(
            "duplicated",
            format!("{}", check["duplicated"]),
            "0",
            Some(check["duplicated"] == json!(0)),
        );
        let p = &e2e["publish_to_commit"];
        line("publish→commit p50", ms(&p["p50_ms"]), "", None);
        line(
            "publish→commit p99",
            ms(&p["p99_ms"]),
            "<= 1000 ms",
            p["p99_ms"].as_f64().map(|x| x <= 1000.0),
        );
        let rss = e2e["hearth_peak_rss_mb"].as_f64().unwrap_or(0.0);
        line(
            "hearth peak RSS",
            format!("{rss:.1} MB"),
            "<= 150 MB",
            Some(rss <= 150.0),
        );
        line(
            "broker dropped (all clients)",
            format!("{}", e2e["broker_dropped_during_run"]),
            "",
            None,
        );
        let d = &e2e["hearth_metrics_delta"];
        if let Some(commits) = d["hearth_ingest_commits_total"].as_f64() {
            let rows = check["rows"].as_f64().unwrap_or(0.0);
            line(
                "ingest commits",
                format!("{commits} × {:.0} rows", rows / commits.max(1.0)),
                "",
                None,
            );
        }
        if let (Some(sum), Some(n)) = (
            d["hearth_ingest_commit_seconds_sum"].as_f64(),
            d["hearth_ingest_commit_seconds_count"].as_f64(),
        ) {
            line(
                "mean commit",
                format!("{:.1} ms", sum / n * 1000.0),
                "",
                None,
            );
        }
        println!("     {}", cpu_line(&e2e["cpu"]));
        let dropped = e2e["broker_dropped_during_run"].as_u64().unwrap_or(0);
        if check["lost"].as_u64().unwrap_or(0) > 0 && dropped > 0 {
            println!(
                "     ! the broker dropped {dropped} messages during the run: a subscriber session's queue \
                 overflowed (stock Mosquitto keeps 1,000); see README \"Brokers\", or rerun with \
                 --broker-config deploy/mosquitto.conf"
            );
        }
    }
    let floor = &summary["pipeline"];
    if !floor.is_null() {
        println!("   the floor: the same pipeline with no Hearth, on the same cores");
        line(
            &format!("  {} batches/s offered", floor["offered_batches_per_s"]),
            format!(
                "{} readings/s, {} lost",
                floor["readings_per_s"], floor["lost"]
            ),
            "",
            None,
        );
    }
    if let Some(ratio) = summary["ratio"].as_f64() {
        println!("3. ratio to the smaller raw limit");
        line(
            "end to end / min(raw)",
            format!("{ratio:.2}"),
            ">= 0.5",
            Some(ratio >= 0.5),
        );
    }
    if let Some(ratio) = summary["ratio_to_pipeline"].as_f64() {
        line(
            "end to end / the floor",
            format!("{ratio:.2}"),
            ">= 0.8",
            Some(ratio >= 0.8),
        );
    }
    if !live.is_null() {
        println!("4. live streams");
        line(
            "streams × readings/s",
            format!(
                "{} × {}",
                live["streams"], live["readings_per_s_per_stream"]
            ),
            "",
            None,
        );
        line(
            "readings acked / stored",
            format!("{} / {}", live["acked"], live["stored"]),
            "",
            None,
        );
        line(
            "delivered / expected",
            format!("{} / {}", live["delivered"], live["expected_deliveries"]),
            "",
            None,
        );
        line("delivery p50", ms(&live["delivery"]["p50_ms"]), "", None);
        line(
            "delivery p99",
            ms(&live["delivery"]["p99_ms"]),
            "<= 100 ms",
            live["delivery"]["p99_ms"].as_f64().map(|x| x <= 100.0),
        );
        println!("     {}", cpu_line(&live["cpu"]));
    }
    if !hist.is_null() {
        println!("5. history ({} rows in readings)", hist["table_rows"]);
        let l = &hist["newest_100"]["latency"];
        line("ListReadings newest 100 p50", ms(&l["p50_ms"]), "", None);
        line(
            "ListReadings newest 100 p99",
            ms(&l["p99_ms"]),
            "<= 5 ms",
            l["p99_ms"].as_f64().map(|x| x <= 5.0),
        );
        let s = &hist["series_24h"];
        if let Some(why) = s["unavailable"].as_str() {
            println!(
                "  {:<34} unavailable: {why}   (target <= 20 ms p99)",
                "GetSeries 24 h"
            );
        } else {
            line("GetSeries 24 h p50", ms(&s["p50_ms"]), "", None);
            line(
                "GetSeries 24 h p99",
                ms(&s["p99_ms"]),
                "<= 20 ms",
                s["p99_ms"].as_f64().map(|x| x <= 20.0),
            );
        }
    }
    let soak = &summary["soak"];
    if !soak.is_null() {
        println!(
            "soak: fixed offered rates, {} s each",
            soak["secs_per_step"]
        );
        line(
            "InnoDB buffer pool",
            mb(soak["innodb_buffer_pool_mb"].as_f64()),
            "",
            None,
        );
        let outcome = |stored: &Value, lost: &Value, kept_up: &Value| {
            format!(
                "{stored} stored/s, {lost} lost{}",
                if *kept_up == json!(true) {
                    ""
                } else {
                    ", behind"
                }
            )
        };
        let steps = soak["steps"].as_array().map_or(&[][..], Vec::as_slice);
        for step in steps {
            line(
                &format!("  {} readings/s offered", step["offered_readings_per_s"]),
                outcome(
                    &step["stored_readings_per_s_while_publishing"],
                    &step["lost"],
                    &step["kept_up"],
                ),
                "",
                None,
            );
            line(
                "    readings table after",
                mb(step["readings_table_mb"].as_f64()),
                "",
                None,
            );
            if step["floor_lost"].is_null() {
                continue;
            }
            line(
                "    the floor, same rate and length",
                outcome(
                    &step["floor_stored_readings_per_s_while_publishing"],
                    &step["floor_lost"],
                    &step["floor_kept_up"],
                ),
                "",
                None,
            );
            line(
                "    floor table after",
                mb(step["floor_table_mb"].as_f64()),
                "",
                None,
            );
            line(
                "    stored/s, Hearth / the floor",
                ratio_figure(step["ratio_to_floor"].as_f64()),
                "",
                None,
            );
        }
        line(
            "highest rate, nothing lost, kept up",
            format!("{} readings/s", soak["highest_lossless_readings_per_s"]),
            "",
            None,
        );
        line(
            "  smaller raw limit (same run)",
            format!("{} readings/s", soak["smaller_raw_limit_readings_per_s"]),
            "",
            None,
        );
        let ratio = soak["ratio_to_smaller_raw_limit"].as_f64();
        line(
            "  ratio",
            ratio_figure(ratio),
            ">= 0.8",
            ratio.map(|r| r >= 0.8),
        );
        let floor_ran = steps.iter().any(|s| !s["floor_lost"].is_null());
        if floor_ran {
            line(
                "  the floor's highest, same steps",
                format!(
                    "{} readings/s",
                    soak["highest_lossless_floor_readings_per_s"]
                ),
                "",
                None,
            );
            let ratio = soak["ratio_of_highest_lossless_to_sustained_floor"].as_f64();
            line(
                "  ratio to the floor's highest",
                ratio_figure(ratio),
                ">= 0.8",
                ratio.map(|r| r >= 0.8),
            );
        }
        // Why a verdict only when the floor did not run with the steps: its
        // seconds into an empty table are not the soak's work (they flatter
        // the floor).
        let ratio = soak["ratio_to_pipeline"].as_f64();
        line(
            "  ratio to the short floor",
            ratio_figure(ratio),
            if floor_ran { "" } else { ">= 0.8" },
            ratio.filter(|_| !floor_ran).map(|r| r >= 0.8),
        );
    }
}

// ---------------------------------------------------------------- embedded

/// `--embedded`, `--auth`, `--auth-compare` (issue 14): phase 2 on a fresh
/// embedded `hearth` per case, each sensor on its own connection; the cases
/// alternate so that the machine's drift falls on both.
async fn embedded(o: &Options, binary: &PathBuf) -> anyhow::Result<Value> {
    let mut summary = json!({
        "embedded": true,
        "quick": o.quick,
        "loadavg_start": loadavg(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "options": format!("{o:?}"),
    });
    let cases = o.auth_cases();
    let mut runs = Vec::new();
    for (i, auth) in cases.iter().copied().enumerate() {
        eprintln!(
            "case {}/{}: {}, {} sensors on a connection each, {} batches/s × {} readings offered, {} s, load average {}…",
            i + 1,
            cases.len(),
            case_name(auth),
            o.devices,
            o.rate,
            o.readings_per_batch,
            o.secs,
            loadavg()
        );
        let prefix = format!("{}/hearth", unique("bench"));
        let hearth = Hearth::start(binary, &Stack::Embedded { auth }, &prefix).await?;
        let result = embedded_case(o, &hearth, auth, &prefix).await;
        hearth.stop();
        let mut run = result?;
        let cpu_s = run["cpu"]["hearth_cpu_s"].as_f64().unwrap_or(0.0);
        let rows = run["check"]["rows"].as_f64().unwrap_or(0.0);
        run["authorization"] = json!(auth);
        run["hearth_cpu_us_per_reading"] = json!(round3(cpu_s / rows.max(1.0) * 1e6));
        run["loadavg_end"] = json!(loadavg());
        runs.push(run);
    }
    let median_of = |auth: bool, field: &str| {
        median(
            runs.iter()
                .filter(|r| r["authorization"] == json!(auth))
                .filter_map(|r| r[field].as_f64())
                .collect(),
        )
    };
    let ratio = |field: &str| match (median_of(true, field), median_of(false, field)) {
        (Some(auth), Some(open)) if open > 0.0 => json!(round3(auth / open)),
        _ => Value::Null,
    };
    summary["ratio_auth_to_open"] = json!({
        "readings_per_s": ratio("readings_per_s"),
        "readings_per_s_while_publishing": ratio("readings_per_s_while_publishing"),
        "hearth_cpu_us_per_reading": ratio("hearth_cpu_us_per_reading"),
    });
    summary["cases"] = Value::Array(runs);
    summary["loadavg_end"] = json!(loadavg());
    Ok(summary)
}

/// One case of an embedded run: sensors registered (with logins, each with
/// the credential RegisterDevice returned for it), connected, then phase 2.
async fn embedded_case(
    o: &Options,
    hearth: &Hearth,
    auth: bool,
    prefix: &str,
) -> anyhow::Result<Value> {
    eprintln!("  registering {} sensors…", o.devices);
    let logins = register(hearth, o.devices).await?;
    let topics = Topics::new(prefix)?;
    let layout = Layout::PerSensor(auth.then_some(logins));
    let fleet = Fleet::connect(&hearth.mqtt, &topics, o.devices, &layout).await?;
    let sqlite = hearth
        .sqlite
        .as_ref()
        .context("an embedded hearth's file")?;
    let mut db = Store::sqlite(sqlite).await?;
    let e2e = end_to_end(o, hearth, &fleet, &mut db, None, None).await;
    fleet.close().await;
    e2e
}

fn case_name(auth: bool) -> &'static str {
    match auth {
        true => "logins required",
        false => "open mode",
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn report_embedded(summary: &Value) {
    println!();
    println!(
        "Hearth ingest on the embedded broker (SQLite, every packet through the guard){} — load average {} at start, {} at end",
        if summary["quick"] == json!(true) {
            " (QUICK smoke run)"
        } else {
            ""
        },
        summary["loadavg_start"].as_str().unwrap_or(""),
        summary["loadavg_end"].as_str().unwrap_or("")
    );
    println!(
        "  {:<18} {:>11} {:>11} {:>6} {:>6} {:>8} {:>8} {:>7} {:>10}   load average",
        "case", "stored/s", "while pub.", "lost", "dup.", "p50 ms", "p99 ms", "cores", "µs/reading"
    );
    let mut counts = HashMap::new();
    for case in summary["cases"].as_array().into_iter().flatten() {
        let auth = case["authorization"] == json!(true);
        let n = counts.entry(auth).or_insert(0);
        *n += 1;
        let p = &case["publish_to_commit"];
        println!(
            "  {:<18} {:>11} {:>11} {:>6} {:>6} {:>8.1} {:>8.1} {:>7} {:>10}   {}",
            format!("{} #{n}", case_name(auth)),
            case["readings_per_s"].to_string(),
            case["readings_per_s_while_publishing"].to_string(),
            case["check"]["lost"].to_string(),
            case["check"]["duplicated"].to_string(),
            p["p50_ms"].as_f64().unwrap_or(f64::NAN),
            p["p99_ms"].as_f64().unwrap_or(f64::NAN),
            case["cpu"]["hearth_cores"].to_string(),
            case["hearth_cpu_us_per_reading"].to_string(),
            case["loadavg_end"].as_str().unwrap_or("")
        );
    }
    let ratio = &summary["ratio_auth_to_open"];
    if let Some(r) = ratio["readings_per_s"].as_f64() {
        println!("logins required / open mode (medians of the cases)");
        line(
            "readings/s stored",
            format!("{r:.3}"),
            ">= 0.95",
            Some(r >= 0.95),
        );
        line(
            "  while publishing",
            format!("{}", ratio["readings_per_s_while_publishing"]),
            "",
            None,
        );
        line(
            "hearth CPU per reading",
            format!("{}", ratio["hearth_cpu_us_per_reading"]),
            "",
            None,
        );
    }
}

/// Writes `summary` as JSON to `--json`.
fn write_summary(o: &Options, summary: &Value) -> anyhow::Result<()> {
    if let Some(dir) = o.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.json, serde_json::to_string_pretty(summary)? + "\n")?;
    println!("\nsummary written to {}", o.json.display());
    Ok(())
}

// ---------------------------------------------------------------- main

/// A Mosquitto of the benchmark's own, started from a configuration file
/// (`--broker-config`) with its listener moved to a free port and its
/// persistence to a temporary directory. Killed on drop.
struct OwnBroker {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl OwnBroker {
    async fn start(config: &std::path::Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = TempDir::new();
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading {}", config.display()))?;
        let conf: String = text
            .lines()
            .map(|l| {
                if l.starts_with("listener ") {
                    format!("listener {port} 127.0.0.1")
                } else if l.starts_with("persistence_location ") {
                    format!("persistence_location {}/", dir.0.display())
                } else {
                    l.to_owned()
                }
            })
            .map(|l| l + "\n")
            .collect();
        let path = dir.0.join("mosquitto.conf");
        std::fs::write(&path, conf)?;
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            // Its warnings (e.g. "Outgoing messages are being dropped")
            // belong in the run's output: they say where readings went.
            .stdout(std::process::Stdio::inherit())
            .spawn()
            .context("starting mosquitto")?;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self {
                    child,
                    url: format!("mqtt://127.0.0.1:{port}"),
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("mosquitto -c {} did not listen on {port}", path.display())
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    if o.embedded {
        let summary = embedded(&o, &binary).await?;
        report_embedded(&summary);
        return write_summary(&o, &summary);
    }

    let broker = match &o.broker_config {
        Some(config) => Some(OwnBroker::start(config).await?),
        None => None,
    };
    let mqtt_url = broker
        .as_ref()
        .map_or_else(external_mqtt_url, |b| b.url.clone());
    let broker_pid = broker.as_ref().map(|b| b.child.id());

    let db_name = format!("hearth_bench_{}", std::process::id());
    let db_url = format!("{}/{db_name}", mysql_url());
    let mut admin = MySqlConnection::connect(&mysql_url())
        .await
        .context("MariaDB at HEARTH_TEST_MYSQL_URL")?;
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin)
        .await?;
    let prefix = format!("{}/hearth", unique("bench"));
    eprintln!(
        "database {db_name}, broker {mqtt_url}, topic prefix {prefix}, load average {}",
        loadavg()
    );
    let stack = Stack::External {
        db_url: &db_url,
        mqtt_url: &mqtt_url,
    };
    let hearth = Hearth::start(&binary, &stack, &prefix).await?;
    let result = run(&o, &hearth, &db_url, &mqtt_url, broker_pid, &prefix).await;
    hearth.stop();
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
    write_summary(&o, &summary)
}

async fn run(
    o: &Options,
    hearth: &Hearth,
    db_url: &str,
    mqtt_url: &str,
    broker_pid: Option<u32>,
    prefix: &str,
) -> anyhow::Result<Value> {
    let mut summary = json!({
        "quick": o.quick,
        "loadavg_start": loadavg(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "mqtt_url": mqtt_url,
        "broker_config": o.broker_config.as_ref().map(|p| p.display().to_string()),
        "options": format!("{o:?}"),
    });
    let payload =
        reading_batch(1, hearth_runtime::unix_ms_now(), o.readings_per_batch).encode_to_vec();
    // Why this early: Mosquitto reports $SYS counters only every sys_interval (10 s).
    let dropped = match BrokerDropped::start(mqtt_url).await {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("  ! cannot watch the broker's dropped-message counter: {e:#}");
            None
        }
    };
    let mut smallest_limit = None;
    if o.runs("raw") {
        eprintln!(
            "1/5 raw limits: Mosquitto QoS 1 publish→subscribe, {} s…",
            o.raw_secs
        );
        let mqtt = raw_mqtt(mqtt_url, o.raw_secs, payload).await?;
        eprintln!(
            "1/5 raw limits: MariaDB multi-row INSERT, {} s…",
            o.raw_secs
        );
        let db = raw_db(db_url, o.raw_secs, o.devices).await?;
        let mqtt_readings =
            mqtt["msgs_per_s"].as_f64().unwrap_or(0.0) * o.readings_per_batch as f64;
        let db_rows = db["rows_per_s"].as_f64().unwrap_or(0.0);
        smallest_limit = Some(mqtt_readings.min(db_rows));
        summary["raw"] = json!({
            "mqtt": mqtt,
            "mqtt_readings_per_s": mqtt_readings.round(),
            "db": db,
            "smaller_limit_readings_per_s": mqtt_readings.min(db_rows).round(),
        });
    }

    let mut floor = None;
    if o.runs("pipeline") {
        // The rate Hearth is offered: the e2e rate, or the soak's highest.
        let rate = if o.runs("soak") {
            o.soak_rates.iter().copied().max().unwrap_or(o.rate)
        } else {
            o.rate
        };
        eprintln!(
            "1/5 floor: the same pipeline with no Hearth, {rate} batches/s × {} readings…",
            o.readings_per_batch
        );
        let p = pipeline(o, mqtt_url, db_url, rate).await?;
        floor = p["readings_per_s"].as_f64();
        summary["pipeline"] = p;
    }

    let needs_fleet = o.runs("e2e") || o.runs("live") || o.runs("soak");
    let needs_devices = needs_fleet || o.runs("history");
    if needs_devices {
        eprintln!("registering {} sensors…", o.devices);
        register(hearth, o.devices).await?;
    }
    if needs_fleet {
        let topics = Topics::new(prefix)?;
        let fleet =
            Fleet::connect(mqtt_url, &topics, o.devices, &Layout::Shared(o.connections)).await?;
        if o.runs("e2e") {
            eprintln!(
                "2/5 end to end: {} devices on {} connections, {} batches/s × {} readings offered, {} s…",
                o.devices, o.connections, o.rate, o.readings_per_batch, o.secs
            );
            let dropped = match &dropped {
                Some(d) if d.ready(Duration::from_secs(12)).await => Some(d),
                _ => {
                    eprintln!("  ! no $SYS/broker/publish/messages/dropped from the broker");
                    None
                }
            };
            let mut db = Store::Mysql(MySqlConnection::connect(db_url).await?);
            let e2e = end_to_end(o, hearth, &fleet, &mut db, dropped, broker_pid).await?;
            let rate = e2e["readings_per_s"].as_f64().unwrap_or(0.0);
            if let Some(limit) = smallest_limit {
                summary["ratio"] = json!(round3(rate / limit));
            }
            if let Some(floor) = floor.filter(|&f| f > 0.0) {
                summary["ratio_to_pipeline"] = json!(round3(rate / floor));
            }
            summary["e2e"] = e2e;
        }
        if o.runs("soak") {
            let mut soaked = soak(
                o,
                hearth,
                &fleet,
                mqtt_url,
                db_url,
                broker_pid,
                smallest_limit,
            )
            .await?;
            if let (Some(h), Some(f)) = (
                soaked["highest_lossless_readings_per_s"].as_f64(),
                floor.filter(|&f| f > 0.0),
            ) {
                soaked["ratio_to_pipeline"] = json!(round3(h / f));
            }
            summary["soak"] = soaked;
        }
        if o.runs("live") {
            eprintln!(
                "4/5 live: {} WatchReadings streams at {} readings/s each…",
                o.live_streams, o.live_rate
            );
            summary["live"] = live(o, hearth, &fleet, broker_pid).await?;
        }
        fleet.close().await;
    }
    if o.runs("history") {
        eprintln!("5/5 history among {} rows…", o.history_rows);
        summary["history"] = history(o, hearth, db_url).await?;
    }
    summary["hearth_metrics"] = Value::Object(hearth.metric_values().await);
    summary["hearth_peak_rss_mb_whole_run"] = json!(round3(
        proc_status_kb(hearth.pid(), "VmHWM:") as f64 / 1024.0
    ));
    summary["loadavg_end"] = json!(loadavg());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn every_mode_runs_phases_it_knows() {
        for args in [&[][..], &["--soak"], &["--quick"], &["--auth-compare"]] {
            let o = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(!o.phases.is_empty(), "{args:?}");
        }
        assert!(parse(&[]).unwrap().runs("pipeline"));
        assert!(parse(&["--soak"]).unwrap().runs("soak"));
        assert!(parse(&["--phases", "raw,nonsense"]).is_err());
    }
}
