//! The Hearth LAN gateway (the paper's Gateway): sensors on the LAN send
//! each reading batch as one UDP datagram (a protobuf `hearth.v1.ReadingBatch`
//! naming its home and device). The gateway checks it, limits the rate per
//! source, keeps it in a durable on-disk queue ([`queue`]), and forwards the
//! queue in order to the backend's `TelemetryService.IngestBatch`, deleting
//! only what the backend acknowledged. While the backend is away the queue
//! grows (up to its byte bound) and new datagrams keep being accepted; when it
//! is back the backlog is replayed as fast as the backend takes it.
//!
//! A sensor also sends its account of a run (what it sent, when its agent
//! stops and again at its next start): queued with the batches and forwarded
//! in the same calls ([`record`]), so the backend counts a run's lost end.
//!
//! Policy when the queue is full: new datagrams are refused, counted and
//! logged; what is already queued is kept (it is older and already accepted).
//!
//! With a keys file every datagram must be signed by its device and new
//! ([`admission`], [`replay`]): a host on the LAN can neither forge a
//! reading nor replay one. Without one the gateway starts only on a loopback
//! address. Refusals are counted by reason; their log lines are rate-limited
//! ([`LogBudget`]), so a flood cannot fill the log.
//!
//! What it does is counted ([`Counters`]), logged every `stats_every`, and,
//! with `metrics` set, served to Prometheus at `/metrics` ([`metrics`]).
//! It runs until its `shutdown` future resolves, then fsyncs what it has
//! appended and returns.

pub mod admission;
pub mod bridge;
pub mod metrics;
pub mod queue;
pub mod record;
pub mod replay;
pub mod settings;

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use admission::Admission;
use hearth_proto::{
    signing::DeviceKeys,
    v1::{telemetry_service_client::TelemetryServiceClient, IngestBatchRequest, ReadingBatch},
};
use hearth_runtime::{
    metrics::{Counter, Family},
    Backoff,
};
use queue::DiskQueue;
use record::Record;
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::{watch, Notify},
};
use tonic::metadata::{Ascii, MetadataValue};
use tracing::{info, warn};

/// Batches per IngestBatch call.
const BATCHES_PER_CALL: usize = 2_000;
/// Larger datagrams are not reading batches.
pub const MAX_DATAGRAM: usize = 8 * 1024;
/// Pauses between calls while the backend is unreachable.
const CLOUD_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// Sources the rate limit remembers. Why a bound: source addresses are
/// whatever a datagram claims, so an unbounded map is a memory leak on demand.
const MAX_SOURCES: usize = 4_096;
/// How often the replay marks are written when they changed (and on
/// shutdown). Why not with every fsync of the queue: one small file write a
/// second is cheap on an SD card; what a crash can lose is harmless (see
/// [`replay`]).
const SAVE_MARKS_EVERY: Duration = Duration::from_secs(1);
/// Refused datagrams logged: bursts of this many lines, then one a second
/// ([`LogBudget`]).
const LOG_BURST: u32 = 20;

/// What the gateway has done since it started; logged every
/// `Config::stats_every` and registered for `/metrics` ([`metrics`]).
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received, valid or not.
    pub received: Counter,
    /// Batches (datagrams) and their readings appended to the queue.
    pub accepted_batches: Counter,
    pub accepted_readings: Counter,
    /// Batches and readings the backend stored.
    pub forwarded_batches: Counter,
    pub forwarded_readings: Counter,
    /// Sensors' run accounts appended to the queue, and those the backend
    /// recorded.
    pub accepted_accounts: Counter,
    pub forwarded_accounts: Counter,
    /// Datagrams or batches dropped, by reason.
    pub dropped: Dropped,
}

/// The `reason` label of a dropped count.
pub type ReasonLabel = [(&'static str, &'static str); 1];

/// Dropped datagrams or batches, one counter per [`DropReason`].
#[derive(Debug, Clone, Default)]
pub struct Dropped(pub Family<ReasonLabel, Counter>);

impl Dropped {
    pub fn add(&self, reason: DropReason) {
        self.0.get_or_create(&reason.as_label()).inc();
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get_or_create(&reason.as_label()).get()
    }
}

/// Why a datagram or a batch was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not a protobuf `ReadingBatch`.
    Malformed,
    /// Larger than a reading batch can be.
    Oversize,
    /// A batch naming no device.
    Unnamed,
    /// Over its source's rate.
    RateLimited,
    /// The queue was at its byte bound.
    QueueFull,
    /// The backend refused the batch (e.g. an unknown device); it is not retried.
    RejectedByBackend,
    /// A queued record that no longer decodes (it decoded when received).
    Corrupt,
    /// Not signed, while the gateway has keys.
    Unsigned,
    /// Signed for a device that has no key in the keys file.
    UnknownDevice,
    /// Its tag is not its device's key's tag of the batch: forged or altered.
    BadSignature,
    /// Genuine, but a number the gateway has taken (or one too far behind).
    Replay,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::Oversize,
        DropReason::Unnamed,
        DropReason::RateLimited,
        DropReason::QueueFull,
        DropReason::RejectedByBackend,
        DropReason::Corrupt,
        DropReason::Unsigned,
        DropReason::UnknownDevice,
        DropReason::BadSignature,
        DropReason::Replay,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Oversize => "oversize",
            DropReason::Unnamed => "unnamed",
            DropReason::RateLimited => "rate_limited",
            DropReason::QueueFull => "queue_full",
            DropReason::RejectedByBackend => "rejected_by_backend",
            DropReason::Corrupt => "corrupt",
            DropReason::Unsigned => "unsigned",
            DropReason::UnknownDevice => "unknown_device",
            DropReason::BadSignature => "bad_signature",
            DropReason::Replay => "replay",
        }
    }

    pub fn as_label(self) -> ReasonLabel {
        [("reason", self.label())]
    }
}

/// Why a datagram was refused. The device ids are what the datagram
/// claims, unverified: shown escaped (`{:?}`), so one cannot forge log lines.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Oversize(usize),
    NotABatch(String),
    NotAnAccount(String),
    Unnamed,
    Unsigned,
    UnknownDevice(String),
    BadSignature(String),
    Replay { device: String, seq: u64 },
}

impl Refusal {
    pub fn reason(&self) -> DropReason {
        match self {
            Refusal::Oversize(_) => DropReason::Oversize,
            Refusal::NotABatch(_) | Refusal::NotAnAccount(_) => DropReason::Malformed,
            Refusal::Unnamed => DropReason::Unnamed,
            Refusal::Unsigned => DropReason::Unsigned,
            Refusal::UnknownDevice(_) => DropReason::UnknownDevice,
            Refusal::BadSignature(_) => DropReason::BadSignature,
            Refusal::Replay { .. } => DropReason::Replay,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Oversize(n) => write!(f, "datagram of {n} bytes is over {MAX_DATAGRAM}"),
            Refusal::NotABatch(e) => write!(f, "not a hearth.v1.ReadingBatch: {e}"),
            Refusal::NotAnAccount(e) => write!(f, "not a hearth.v1.RunAccount: {e}"),
            Refusal::Unnamed => write!(f, "the batch or account names no device_id"),
            Refusal::Unsigned => write!(
                f,
                "not signed (a bare ReadingBatch); this gateway takes only signed datagrams"
            ),
            Refusal::UnknownDevice(device) => {
                write!(f, "device {device:?} has no key in the keys file")
            }
            Refusal::BadSignature(device) => {
                write!(f, "signature does not match the key of device {device:?}")
            }
            Refusal::Replay { device, seq } => write!(
                f,
                "device {device:?}'s seq {seq} was taken before (or is too far behind): a replay"
            ),
        }
    }
}

/// A budget for log lines about refused datagrams: bursts of `burst` lines,
/// then one a second; what it holds back is counted and told with the next
/// line. Why: refusals are counted in full in `/metrics`, but one line per
/// datagram would let anyone on the LAN fill the disk with the log.
#[derive(Debug)]
pub struct LogBudget {
    burst: f64,
    tokens: f64,
    last: Instant,
    held_back: u64,
}

impl LogBudget {
    pub fn new(burst: u32, now: Instant) -> Self {
        Self {
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            held_back: 0,
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)`, where `n` lines
    /// were held back since the last one, or `None`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64()).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }
}

/// A token bucket per source address: `rate` datagrams per second, bursts
/// of twice that. It remembers at most `MAX_SOURCES` sources: when full it
/// forgets those whose bucket has refilled (idle ones), and refuses new
/// sources if none has.
pub struct RateLimit {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimit {
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether `from` may send one more datagram at `now`.
    pub fn allow(&mut self, from: IpAddr, now: Instant) -> bool {
        let burst = self.rate * 2.0;
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&from) {
            let rate = self.rate;
            self.buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(from).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub udp: SocketAddr,
    /// The backend's gRPC URL (`https://` with TLS), the CA its certificate
    /// is from, and the API token sent with every call.
    pub cloud: String,
    pub cloud_ca_file: Option<PathBuf>,
    pub cloud_token: Option<hearth_runtime::Secret>,
    pub data_dir: PathBuf,
    pub max_queue_bytes: u64,
    /// Datagrams per second per source.
    pub rate: u32,
    /// How often appended datagrams are fsynced (accepted).
    pub sync_every: Duration,
    /// How often the stats line is logged.
    pub stats_every: Duration,
    /// Where to serve `/metrics` (port 0: any free port), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The MQTT bridge between the LAN and cloud brokers, if both are set.
    pub bridge: Option<bridge::BridgeConfig>,
    /// The devices' keys (`DEVICE_ID HEX_KEY` lines); without it the
    /// gateway takes unsigned datagrams, and only on loopback.
    pub keys_file: Option<PathBuf>,
}

/// The queue, and how many readings its batches hold.
pub struct Backlog {
    pub queue: DiskQueue,
    /// Readings in the batches appended and not yet acknowledged.
    pub readings: u64,
}

impl Backlog {
    /// Wraps `queue`, counting the readings of the batches it holds.
    pub fn new(queue: DiskQueue) -> std::io::Result<Self> {
        let mut readings = 0u64;
        let mut at = None;
        loop {
            let (records, next) = queue.read(at, 10_000)?;
            if records.is_empty() {
                break;
            }
            readings += records
                .iter()
                .map(|r| Record::decode(r).map_or(0, |r| r.readings()))
                .sum::<u64>();
            at = Some(next);
        }
        Ok(Self { queue, readings })
    }

    /// The time (Unix ms) of the oldest batch (or account) not yet
    /// acknowledged, if one is accepted (fsynced).
    pub fn oldest_unix_ms(&self) -> std::io::Result<Option<i64>> {
        let (records, _) = self.queue.read(None, 1)?;
        Ok(records
            .first()
            .and_then(|r| Record::decode(r).ok())
            .map(|r| r.time_unix_ms()))
    }
}

type Queue = Arc<Mutex<Backlog>>;
type Gate = Arc<Mutex<Admission>>;

/// Receives datagrams on `socket` and appends those [`Admission`] takes to
/// the queue.
async fn receive(
    socket: UdpSocket,
    queue: Queue,
    gate: Gate,
    mut limit: RateLimit,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    // One byte more than allowed, so an oversize datagram is seen as such.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut log = LogBudget::new(LOG_BURST, Instant::now());
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        counters.received.inc();
        if !limit.allow(from.ip(), Instant::now()) {
            counters.dropped.add(DropReason::RateLimited);
            continue;
        }
        // Why one lock for check, append and record: nothing else takes
        // this gate but the marks' writer, once a second, so it is never
        // contended, and a number is recorded only once its batch is queued.
        let mut admission = gate.lock().expect("admission lock");
        let admitted = match admission.check(&buf[..n]) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                counters.dropped.add(refusal.reason());
                if let Some(held_back) = log.allow(Instant::now()) {
                    warn!(%from, reason = refusal.reason().label(), %refusal, held_back, "datagram dropped");
                }
                continue;
            }
        };
        let readings = admitted.record.readings();
        let appended = {
            let mut backlog = queue.lock().expect("queue lock");
            let appended = backlog.queue.append(&admitted.bytes)?;
            if appended.is_ok() {
                backlog.readings += readings;
            }
            appended
        };
        match appended {
            Ok(()) => {
                admission.record(&admitted.record);
                match admitted.record {
                    Record::Batch(_) => counters.accepted_batches.inc(),
                    Record::Account(_) => counters.accepted_accounts.inc(),
                };
                counters.accepted_readings.inc_by(readings);
            }
            Err(_) => {
                counters.dropped.add(DropReason::QueueFull);
                if let Some(held_back) = log.allow(Instant::now()) {
                    warn!(%from, device = ?admitted.record.device_id(), held_back, "queue full; datagram refused");
                }
            }
        }
    }
}

/// Writes the replay marks to `dir` every [`SAVE_MARKS_EVERY`] if they changed.
async fn save_marks(gate: Gate, dir: PathBuf) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(SAVE_MARKS_EVERY);
    loop {
        tick.tick().await;
        write_marks(&gate, &dir).await?;
    }
}

/// Writes the replay marks to `dir` if they changed since the last write.
async fn write_marks(gate: &Gate, dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let Some(text) = gate.lock().expect("admission lock").take_marks() else {
        return Ok(());
    };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        queue::write_atomically(&dir, replay::MARKS_FILE, text.as_bytes())
            .with_context(|| format!("writing {}", dir.join(replay::MARKS_FILE).display()))
    })
    .await?
}

/// How datagrams are checked, from `config`: with its keys file, signed and
/// new (the marks of the last run read from the queue's directory); without
/// one, unchecked, which is refused unless the gateway listens on loopback.
pub fn admission(config: &Config) -> anyhow::Result<Admission> {
    use anyhow::Context as _;
    let Some(path) = &config.keys_file else {
        if config.udp.ip().is_loopback() {
            warn!(udp = %config.udp, "HEARTH_GATEWAY_KEYS_FILE is not set: taking unsigned datagrams, which only processes on this host can send (loopback)");
            return Ok(Admission::Open);
        }
        anyhow::bail!(
            "HEARTH_GATEWAY_KEYS_FILE is not set, and HEARTH_GATEWAY_UDP={} is not a loopback \
             address: anyone on the LAN could send readings as any device. Name a keys file \
             (a line `DEVICE_ID KEY` per sensor, the key 64 hex digits from `openssl rand -hex 32`; \
             see README.md, \"The gateway\"), or listen on 127.0.0.1 for a test on this host",
            config.udp
        );
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "HEARTH_GATEWAY_KEYS_FILE={}: cannot read the keys file",
            path.display()
        )
    })?;
    let keys = DeviceKeys::parse(&text)
        .with_context(|| format!("HEARTH_GATEWAY_KEYS_FILE={}", path.display()))?;
    let marks_file = config.data_dir.join(replay::MARKS_FILE);
    let marks = match std::fs::read_to_string(&marks_file) {
        Ok(text) => replay::parse_marks(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}. It holds each device's highest sequence number, so that replays \
                 are refused after a restart; delete it to start afresh (a datagram captured \
                 before could then be taken once more)",
                marks_file.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", marks_file.display()));
        }
    };
    // Why only listed devices: a device whose key was removed has no use
    // for its mark, and the marks stay bounded by the keys file.
    let marks = marks
        .into_iter()
        .filter(|(device, _)| keys.get(device).is_some());
    info!(devices = keys.len(), keys = %path.display(), "taking datagrams signed by these devices only");
    Ok(Admission::Signed {
        replay: replay::ReplayGuard::from_marks(marks),
        keys,
    })
}

/// Fsyncs appended datagrams every `every` and wakes the forwarder.
async fn sync(queue: Queue, every: Duration, wake: Arc<Notify>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let queue = queue.clone();
        let synced =
            tokio::task::spawn_blocking(move || queue.lock().expect("queue lock").queue.sync())
                .await??;
        if synced {
            wake.notify_one();
        }
    }
}

/// Forwards accepted batches to the backend in order, retrying a call until
/// the backend answers, and acknowledges them in the queue after it stored them.
async fn forward(
    config: &Config,
    queue: Queue,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let cloud = &config.cloud;
    let channel = hearth_runtime::tls::grpc_channel(cloud, config.cloud_ca_file.as_deref())
        .context("HEARTH_GATEWAY_CLOUD")?;
    let bearer: Option<MetadataValue<Ascii>> = match &config.cloud_token {
        Some(token) => Some(
            format!("Bearer {}", token.expose())
                .parse()
                .map_err(|_| anyhow::anyhow!("HEARTH_GATEWAY_CLOUD_TOKEN: not a token"))?,
        ),
        None => None,
    };
    let mut client =
        TelemetryServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(bearer) = &bearer {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
            }
            Ok(request)
        });
    loop {
        let (records, upto) = {
            let queue = queue.clone();
            tokio::task::spawn_blocking(move || {
                queue
                    .lock()
                    .expect("queue lock")
                    .queue
                    .read(None, BATCHES_PER_CALL)
            })
            .await??
        };
        if records.is_empty() {
            wake.notified().await;
            continue;
        }
        // Each record decoded when it was received and passed its checksum
        // since; one that no longer decodes is counted and skipped. Why the
        // accounts in the same call: the backend records them after storing
        // the call's batches, so each comes after the batches before it.
        let mut batches = Vec::with_capacity(records.len());
        let mut accounts = Vec::new();
        for record in &records {
            match Record::decode(record) {
                Ok(Record::Batch(batch)) => batches.push(batch),
                Ok(Record::Account(account)) => accounts.push(account),
                Err(e) => {
                    counters.dropped.add(DropReason::Corrupt);
                    warn!(error = %e, "a queued record no longer decodes; skipped");
                }
            }
        }
        let readings = |b: &ReadingBatch| b.readings.len() as u64;
        let queued_readings: u64 = batches.iter().map(readings).sum();
        let mut attempt = 0u32;
        let (forwarded_batches, forwarded_readings, forwarded_accounts) = loop {
            match client
                .ingest_batch(IngestBatchRequest {
                    batches: batches.clone(),
                    accounts: accounts.clone(),
                })
                .await
            {
                Ok(response) => {
                    let response = response.into_inner();
                    let mut rejected_readings = 0;
                    for rejected in &response.rejected {
                        counters.dropped.add(DropReason::RejectedByBackend);
                        let batch = batches.get(rejected.index as usize);
                        rejected_readings += batch.map_or(0, readings);
                        let device = batch.map(|b| b.device_id.as_str()).unwrap_or_default();
                        warn!(device, reason = rejected.reason, "backend rejected a batch");
                    }
                    for rejected in &response.rejected_accounts {
                        counters.dropped.add(DropReason::RejectedByBackend);
                        let account = accounts.get(rejected.index as usize);
                        let device = account.map(|a| a.device_id.as_str()).unwrap_or_default();
                        warn!(
                            device,
                            reason = rejected.reason,
                            "backend rejected a run account"
                        );
                    }
                    if attempt > 0 {
                        info!(%cloud, "backend reachable again; replaying the backlog");
                    }
                    break (
                        u64::from(response.accepted),
                        queued_readings.saturating_sub(rejected_readings),
                        u64::from(response.accounts_accepted),
                    );
                }
                Err(status) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        match status.code() {
                            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => warn!(
                                %cloud, error = status.message(), attempt,
                                "the backend refuses the gateway's login (HEARTH_GATEWAY_CLOUD_TOKEN); keeping the backlog and retrying"
                            ),
                            _ => {
                                warn!(%cloud, error = %status, attempt, "backend unreachable; keeping the backlog and retrying")
                            }
                        }
                    }
                    CLOUD_RETRY.wait(attempt - 1).await;
                }
            }
        };
        let count = records.len() as u64;
        {
            let mut backlog = queue.lock().expect("queue lock");
            backlog.queue.acknowledge(upto, count)?;
            backlog.readings = backlog.readings.saturating_sub(queued_readings);
        }
        // Why after the acknowledgement: the counters and the queue's depth
        // then never both count a batch.
        counters.forwarded_batches.inc_by(forwarded_batches);
        counters.forwarded_readings.inc_by(forwarded_readings);
        counters.forwarded_accounts.inc_by(forwarded_accounts);
    }
}

/// Logs the counters and the queue depth every `every`.
async fn report(queue: Queue, counters: Arc<Counters>, every: Duration) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (records, bytes) = queue.lock().expect("queue lock").queue.depth();
        let d = |reason| counters.dropped.get(reason);
        info!(
            queued = records,
            queued_bytes = bytes,
            received = counters.received.get(),
            accepted = counters.accepted_batches.get(),
            forwarded = counters.forwarded_batches.get(),
            malformed = d(DropReason::Malformed) + d(DropReason::Oversize) + d(DropReason::Unnamed),
            refused_unsigned_or_forged = d(DropReason::Unsigned)
                + d(DropReason::UnknownDevice)
                + d(DropReason::BadSignature),
            refused_replay = d(DropReason::Replay),
            dropped_rate = d(DropReason::RateLimited),
            dropped_full = d(DropReason::QueueFull),
            rejected_by_cloud = d(DropReason::RejectedByBackend),
            "gateway stats"
        );
    }
}

/// Opens the queue, binds the UDP socket (and the metrics listener) and
/// runs until `shutdown` resolves or an I/O error; logs the bound addresses.
/// On shutdown it fsyncs what was appended, so a stop loses nothing.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let queue = DiskQueue::open(&config.data_dir, config.max_queue_bytes)
        .and_then(Backlog::new)
        .with_context(|| {
            format!(
                "HEARTH_GATEWAY_DATA={}: cannot open the queue there",
                config.data_dir.display()
            )
        })?;
    let (backlog, _) = queue.queue.depth();
    let queue = Arc::new(Mutex::new(queue));
    let gate: Gate = Arc::new(Mutex::new(admission(&config)?));
    let socket = UdpSocket::bind(config.udp)
        .await
        .with_context(|| format!("HEARTH_GATEWAY_UDP={}: cannot listen there", config.udp))?;
    let bound = socket.local_addr()?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("HEARTH_GATEWAY_METRICS_LISTEN={addr}: cannot listen there")
        })?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(listener) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    let counters = Arc::new(Counters::default());
    let wake = Arc::new(Notify::new());
    wake.notify_one();
    let bridge = async {
        match config.bridge.clone() {
            Some(bridge) => bridge::run(bridge).await,
            None => std::future::pending().await,
        }
    };
    let exporter = Arc::new(metrics::Exporter::new(metrics::Sources {
        queue: queue.clone(),
        counters: counters.clone(),
        max_queue_bytes: config.max_queue_bytes,
    }));
    let (stop_metrics, metrics_stopped) = watch::channel(false);
    let serve_metrics = async move {
        let mut stopped = metrics_stopped;
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        match metrics_listener {
            Some(listener) => Ok(metrics::serve(listener, exporter, stop).await?),
            None => {
                stop.await;
                Ok(())
            }
        }
    };
    tokio::pin!(serve_metrics);
    info!(udp = %bound, metrics = %metrics_addr, cloud = config.cloud, backlog, data = %config.data_dir.display(), "gateway ready");
    let mut metrics_done = false;
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        r = bridge => r,
        r = &mut serve_metrics => {
            metrics_done = true;
            r
        }
        r = receive(socket, queue.clone(), gate.clone(), RateLimit::new(config.rate), counters.clone()) => r,
        r = save_marks(gate.clone(), config.data_dir.clone()) => r,
        r = sync(queue.clone(), config.sync_every, wake.clone()) => r,
        r = forward(&config, queue.clone(), wake, counters.clone()) => r,
        r = report(queue.clone(), counters, config.stats_every) => r,
    };
    // Why wait: a scrape under way gets its answer, and the port is free on return.
    let _ = stop_metrics.send(true);
    if !metrics_done
        && tokio::time::timeout(Duration::from_secs(2), &mut serve_metrics)
            .await
            .is_err()
    {
        warn!("a /metrics connection outlived the gateway's shutdown");
    }
    // Why after the receiver stopped: no number is recorded after this write.
    if let Err(e) = write_marks(&gate, &config.data_dir).await {
        warn!(
            error = format!("{e:#}"),
            "the replay marks were not saved on the way out"
        );
    }
    let queued = tokio::task::spawn_blocking(move || {
        let mut backlog = queue.lock().expect("queue lock");
        backlog.queue.sync().map(|_| backlog.queue.depth().0)
    })
    .await?
    .context("fsyncing the queue on the way out")?;
    info!(queued, "gateway stopped; its queue is on disk");
    outcome
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn rate_limit_allows_bursts_then_the_rate_per_source() {
        let mut limit = RateLimit::new(10);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(
            (0..25).filter(|_| limit.allow(a, t0)).count(),
            20,
            "a burst of twice the rate"
        );
        assert!(limit.allow(b, t0), "other sources have their own bucket");
        assert!(!limit.allow(a, t0));
        assert!(
            limit.allow(a, t0 + Duration::from_millis(100)),
            "refills at the rate"
        );
    }

    #[test]
    fn rate_limit_remembers_a_bounded_number_of_sources() {
        let mut limit = RateLimit::new(10);
        let t0 = Instant::now();
        let source = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..MAX_SOURCES {
            assert!(limit.allow(source(i), t0));
        }
        assert!(
            !limit.allow(source(MAX_SOURCES), t0),
            "a new source is refused while every bucket is in use"
        );
        assert_eq!(limit.buckets.len(), MAX_SOURCES);
        // Two seconds on, every bucket has refilled: idle sources are forgotten.
        assert!(limit.allow(source(MAX_SOURCES), t0 + Duration::from_secs(2)));
        assert_eq!(limit.buckets.len(), 1);
    }

    #[test]
    fn refusals_name_their_drop_reason() {
        assert_eq!(Refusal::Oversize(9000).reason(), DropReason::Oversize);
        assert_eq!(
            Refusal::NotABatch(String::new()).reason(),
            DropReason::Malformed
        );
        assert_eq!(Refusal::Unnamed.reason(), DropReason::Unnamed);
        assert_eq!(Refusal::Unsigned.reason(), DropReason::Unsigned);
        assert_eq!(
            Refusal::UnknownDevice(String::new()).reason(),
            DropReason::UnknownDevice
        );
        assert_eq!(
            Refusal::BadSignature(String::new()).reason(),
            DropReason::BadSignature
        );
        assert_eq!(
            Refusal::Replay {
                device: String::new(),
                seq: 1
            }
            .reason(),
            DropReason::Replay
        );
    }

    fn config(udp: &str, keys_file: Option<PathBuf>, data_dir: PathBuf) -> Config {
        Config {
            udp: udp.parse().unwrap(),
            cloud: "http://127.0.0.1:1".into(),
            cloud_ca_file: None,
            cloud_token: None,
            data_dir,
            max_queue_bytes: 1 << 20,
            rate: 10,
            sync_every: Duration::from_millis(20),
            stats_every: Duration::from_secs(10),
            metrics: None,
            bridge: None,
            keys_file,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hearth-gateway-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn without_keys_the_gateway_listens_on_loopback_only() {
        let dir = temp_dir("open");
        for udp in ["127.0.0.1:7878", "[::1]:0"] {
            assert!(matches!(
                admission(&config(udp, None, dir.clone())),
                Ok(Admission::Open)
            ));
        }
        for udp in ["0.0.0.0:7878", "192.168.1.10:7878", "[::]:7878"] {
            let e = format!(
                "{:#}",
                admission(&config(udp, None, dir.clone())).unwrap_err()
            );
            assert!(
                e.starts_with("HEARTH_GATEWAY_KEYS_FILE is not set, and HEARTH_GATEWAY_UDP="),
                "{e}"
            );
            assert!(e.contains("openssl rand -hex 32"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn with_keys_the_marks_of_the_last_run_refuse_replays() {
        use hearth_proto::signing::DeviceKey;
        let dir = temp_dir("keys");
        let keys = dir.join("keys");
        let hex_key = "11".repeat(32);
        std::fs::write(&keys, format!("s1 {hex_key}\ns2 {hex_key}\n")).unwrap();
        std::fs::write(dir.join(replay::MARKS_FILE), "s1 10\ngone 5\n").unwrap();
        let config = config("0.0.0.0:0", Some(keys.clone()), dir.clone());
        let mut admission = admission(&config).unwrap();
        let key = DeviceKey::from_bytes([0x11; 32]);
        let sealed = |device: &str, seq| {
            key.seal(
                ReadingBatch {
                    device_id: device.into(),
                    seq,
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        };
        assert_eq!(
            admission.check(&sealed("s1", 10)).unwrap_err().reason(),
            DropReason::Replay
        );
        assert!(admission.check(&sealed("s1", 11)).is_ok());
        assert!(admission.check(&sealed("s2", 1)).is_ok());
        assert_eq!(
            admission.check(&sealed("gone", 6)).unwrap_err().reason(),
            DropReason::UnknownDevice
        );
        let record = admission.check(&sealed("s1", 11)).unwrap().record;
        admission.record(&record);
        assert_eq!(
            admission.take_marks().as_deref(),
            Some("s1 11\n"),
            "the marks of removed devices are dropped"
        );

        std::fs::write(dir.join(replay::MARKS_FILE), "s1 ten\n").unwrap();
        let e = format!("{:#}", crate::admission(&config).unwrap_err());
        assert!(e.contains("replay-marks: line 1"), "{e}");
        std::fs::write(&keys, format!("s1 {}\n", &hex_key[..10])).unwrap();
        let e = format!("{:#}", crate::admission(&config).unwrap_err());
        assert!(e.contains("HEARTH_GATEWAY_KEYS_FILE="), "{e}");
        assert!(e.contains("line 1: the key is not 64 hex digits"), "{e}");
        assert!(!e.contains(&hex_key[..10]), "no key in errors: {e}");
        std::fs::remove_file(&keys).unwrap();
        let e = format!("{:#}", crate::admission(&config).unwrap_err());
        assert!(e.contains("cannot read the keys file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_log_budget_allows_bursts_then_a_line_a_second_and_tells_what_it_held_back() {
        let t0 = Instant::now();
        let mut log = LogBudget::new(3, t0);
        assert_eq!(
            (0..10).map(|_| log.allow(t0)).collect::<Vec<_>>(),
            [
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ]
        );
        assert_eq!(log.allow(t0 + Duration::from_millis(500)), None);
        assert_eq!(
            log.allow(t0 + Duration::from_millis(1_000)),
            Some(8),
            "the next line says how many were held back"
        );
        assert_eq!(log.allow(t0 + Duration::from_millis(1_000)), None);
        // A flood of a million datagrams over 100 s logs about 100 lines.
        let mut logged = 0;
        for i in 0..1_000_000u64 {
            if log
                .allow(t0 + Duration::from_micros(1_000 + i * 100))
                .is_some()
            {
                logged += 1;
            }
        }
        assert!((99..=101).contains(&logged), "{logged}");
    }
}
