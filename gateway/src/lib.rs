//! The Hearth LAN gateway (the paper's Gateway): sensors on the LAN send
//! each reading batch as one UDP datagram (a protobuf `hearth.v1.ReadingBatch`
//! naming its home and device). The gateway checks it, limits the rate per
//! source, keeps it in a durable on-disk queue ([`queue`]), and forwards the
//! queue in order to the backend's `TelemetryService.IngestBatch`, deleting
//! only what the backend acknowledged. While the backend is away the queue
//! grows (up to its byte bound) and new datagrams keep being accepted; when it
//! is back the backlog is replayed as fast as the backend takes it.
//!
//! Policy when the queue is full: new datagrams are refused, counted and
//! logged; what is already queued is kept (it is older and already accepted).

pub mod bridge;
pub mod queue;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use hearth_proto::v1::{
    telemetry_service_client::TelemetryServiceClient, IngestBatchRequest, ReadingBatch,
};
use prost::Message as _;
use queue::DiskQueue;
use tokio::{net::UdpSocket, sync::Notify};
use tonic::transport::Channel;
use tracing::{info, warn};

/// Batches per IngestBatch call.
const BATCHES_PER_CALL: usize = 2_000;
/// Larger datagrams are not reading batches.
const MAX_DATAGRAM: usize = 8 * 1024;

/// What the gateway has done; logged every `Config::stats_every`.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub dropped_rate: AtomicU64,
    pub dropped_full: AtomicU64,
    pub forwarded: AtomicU64,
    pub rejected_by_cloud: AtomicU64,
}

/// Why a datagram was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Oversize(usize),
    NotABatch(String),
    Unnamed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Oversize(n) => write!(f, "datagram of {n} bytes is over {MAX_DATAGRAM}"),
            Refusal::NotABatch(e) => write!(f, "not a hearth.v1.ReadingBatch: {e}"),
            Refusal::Unnamed => write!(f, "batch names no device_id"),
        }
    }
}

/// Decodes one datagram.
pub fn decode_datagram(bytes: &[u8]) -> Result<ReadingBatch, Refusal> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(Refusal::Oversize(bytes.len()));
    }
    let batch = ReadingBatch::decode(bytes).map_err(|e| Refusal::NotABatch(e.to_string()))?;
    if batch.device_id.is_empty() {
        return Err(Refusal::Unnamed);
    }
    Ok(batch)
}

/// A token bucket per source address: `rate` datagrams per second, bursts
/// of twice that.
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
    pub cloud: String,
    pub data_dir: PathBuf,
    pub max_queue_bytes: u64,
    /// Datagrams per second per source.
    pub rate: u32,
    /// How often appended datagrams are fsynced (accepted).
    pub sync_every: Duration,
    /// How often the stats line is logged.
    pub stats_every: Duration,
    /// The MQTT bridge between the LAN and cloud brokers, if both are set.
    pub bridge: Option<bridge::BridgeConfig>,
}

type Queue = Arc<Mutex<DiskQueue>>;

/// Receives datagrams on `socket` and appends the valid ones to the queue.
async fn receive(
    socket: UdpSocket,
    queue: Queue,
    mut limit: RateLimit,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    // One byte more than allowed, so an oversize datagram is seen as such.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        counters.received.fetch_add(1, Ordering::Relaxed);
        if !limit.allow(from.ip(), Instant::now()) {
            counters.dropped_rate.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Err(refusal) = decode_datagram(&buf[..n]) {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(%from, %refusal, "datagram dropped");
            continue;
        }
        // Why the raw bytes: they decoded, and forwarding re-decodes anyway.
        let appended = queue.lock().expect("queue lock").append(&buf[..n])?;
        if appended.is_err() {
            counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            warn!(%from, "queue full; datagram refused");
        }
    }
}

/// Fsyncs appended datagrams every `every` and wakes the forwarder.
async fn sync(queue: Queue, every: Duration, wake: Arc<Notify>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let queue = queue.clone();
        let synced =
            tokio::task::spawn_blocking(move || queue.lock().expect("queue lock").sync()).await??;
        if synced {
            wake.notify_one();
        }
    }
}

/// Forwards accepted batches to the backend in order, retrying a call until
/// the backend answers, and acknowledges them in the queue after it stored them.
async fn forward(
    cloud: String,
    queue: Queue,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let channel = Channel::from_shared(cloud.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut client = TelemetryServiceClient::new(channel);
    loop {
        let (records, upto) = {
            let queue = queue.clone();
            tokio::task::spawn_blocking(move || {
                queue
                    .lock()
                    .expect("queue lock")
                    .read(None, BATCHES_PER_CALL)
            })
            .await??
        };
        if records.is_empty() {
            wake.notified().await;
            continue;
        }
        // Each record decoded when it was received.
        let batches: Vec<ReadingBatch> = records
            .iter()
            .filter_map(|r| ReadingBatch::decode(r.as_slice()).ok())
            .collect();
        let mut attempt = 0u32;
        loop {
            match client
                .ingest_batch(IngestBatchRequest {
                    batches: batches.clone(),
                })
                .await
            {
                Ok(response) => {
                    let response = response.into_inner();
                    counters
                        .forwarded
                        .fetch_add(u64::from(response.accepted), Ordering::Relaxed);
                    for rejected in &response.rejected {
                        counters.rejected_by_cloud.fetch_add(1, Ordering::Relaxed);
                        let device = batches
                            .get(rejected.index as usize)
                            .map(|b| b.device_id.as_str())
                            .unwrap_or_default();
                        warn!(device, reason = rejected.reason, "backend rejected a batch");
                    }
                    if attempt > 0 {
                        info!(%cloud, "backend reachable again; replaying the backlog");
                    }
                    break;
                }
                Err(status) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        warn!(%cloud, error = %status, attempt, "backend unreachable; keeping the backlog and retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(20))))
                        .await;
                }
            }
        }
        let count = records.len() as u64;
        queue.lock().expect("queue lock").acknowledge(upto, count)?;
    }
}

/// Logs the counters and the queue depth every `every`.
async fn report(queue: Queue, counters: Arc<Counters>, every: Duration) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (records, bytes) = queue.lock().expect("queue lock").depth();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        info!(
            queued = records,
            queued_bytes = bytes,
            received = c(&counters.received),
            forwarded = c(&counters.forwarded),
            malformed = c(&counters.malformed),
            dropped_rate = c(&counters.dropped_rate),
            dropped_full = c(&counters.dropped_full),
            rejected_by_cloud = c(&counters.rejected_by_cloud),
            "gateway stats"
        );
    }
}

/// Opens the queue, binds the UDP socket and runs until an I/O error; logs
/// the bound address.
pub async fn run(config: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let queue = DiskQueue::open(&config.data_dir, config.max_queue_bytes).with_context(|| {
        format!(
            "HEARTH_GATEWAY_DATA={}: cannot open the queue there",
            config.data_dir.display()
        )
    })?;
    let (backlog, _) = queue.depth();
    let queue = Arc::new(Mutex::new(queue));
    let socket = UdpSocket::bind(config.udp)
        .await
        .with_context(|| format!("HEARTH_GATEWAY_UDP={}: cannot listen there", config.udp))?;
    let bound = socket.local_addr()?;
    let counters = Arc::new(Counters::default());
    let wake = Arc::new(Notify::new());
    wake.notify_one();
    let bridge = async {
        match config.bridge.clone() {
            Some(bridge) => bridge::run(bridge).await,
            None => std::future::pending().await,
        }
    };
    info!(udp = %bound, cloud = config.cloud, backlog, data = %config.data_dir.display(), "gateway ready");
    tokio::select! {
        r = bridge => r,
        r = receive(socket, queue.clone(), RateLimit::new(config.rate), counters.clone()) => r,
        r = sync(queue.clone(), config.sync_every, wake.clone()) => r,
        r = forward(config.cloud, queue.clone(), wake, counters.clone()) => r,
        r = report(queue, counters, config.stats_every) => r,
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::Reading;

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
    fn decodes_a_named_batch_and_refuses_the_rest() {
        let batch = ReadingBatch {
            device_id: "s1".into(),
            seq: 4,
            readings: vec![Reading {
                metric: 1,
                value: 20.5,
            }],
            ..Default::default()
        };
        assert_eq!(decode_datagram(&batch.encode_to_vec()), Ok(batch));
        assert_eq!(
            decode_datagram(&ReadingBatch::default().encode_to_vec()),
            Err(Refusal::Unnamed)
        );
        assert!(matches!(
            decode_datagram(&[0xff, 0xff, 0xff]),
            Err(Refusal::NotABatch(_))
        ));
        assert_eq!(
            decode_datagram(&vec![0u8; MAX_DATAGRAM + 1]),
            Err(Refusal::Oversize(MAX_DATAGRAM + 1))
        );
    }
}
