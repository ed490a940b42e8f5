//! The Hearth LAN gateway (the paper's Gateway): sensors on the LAN send
//! each reading batch as one UDP datagram (a protobuf `hearth.v1.ReadingBatch`
//! naming its home and device); the gateway checks it and forwards batches to
//! the backend's `TelemetryService.IngestBatch`, retrying while the backend
//! is unreachable.
//!
//! This first version queues in memory, bounded ([`QUEUE_CAPACITY`]); when
//! the queue is full new datagrams are dropped and counted. The durable
//! on-disk queue is the next step (see README).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hearth_proto::v1::{telemetry_service_client::TelemetryServiceClient, IngestBatchRequest, ReadingBatch};
use prost::Message as _;
use tokio::{net::UdpSocket, sync::mpsc};
use tonic::transport::Channel;
use tracing::{info, warn};

/// Batches held while the backend is slow or away.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Batches per IngestBatch call.
const BATCHES_PER_CALL: usize = 500;
/// Larger datagrams are not reading batches.
const MAX_DATAGRAM: usize = 8 * 1024;

/// What the gateway has done, for logs.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
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

/// Receives datagrams on `socket` and queues the valid ones.
pub async fn receive(socket: UdpSocket, queue: mpsc::Sender<ReadingBatch>, counters: Arc<Counters>) -> anyhow::Result<()> {
    // One byte more than allowed, so an oversize datagram is seen as such.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        counters.received.fetch_add(1, Ordering::Relaxed);
        match decode_datagram(&buf[..n]) {
            Ok(batch) => {
                if queue.try_send(batch).is_err() {
                    counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, "queue full; datagram dropped");
                }
            }
            Err(refusal) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                warn!(%from, %refusal, "datagram dropped");
            }
        }
    }
}

/// Forwards queued batches to the backend at `cloud`, in order, retrying a
/// call until the backend answers.
pub async fn forward(cloud: String, mut queue: mpsc::Receiver<ReadingBatch>, counters: Arc<Counters>) -> anyhow::Result<()> {
    let channel = Channel::from_shared(cloud.clone())?.connect_timeout(Duration::from_secs(5)).connect_lazy();
    let mut client = TelemetryServiceClient::new(channel);
    let mut batches = Vec::with_capacity(BATCHES_PER_CALL);
    while queue.recv_many(&mut batches, BATCHES_PER_CALL).await > 0 {
        let mut attempt = 0u32;
        loop {
            match client.ingest_batch(IngestBatchRequest { batches: batches.clone() }).await {
                Ok(response) => {
                    let response = response.into_inner();
                    counters.forwarded.fetch_add(u64::from(response.accepted), Ordering::Relaxed);
                    for rejected in &response.rejected {
                        counters.rejected_by_cloud.fetch_add(1, Ordering::Relaxed);
                        let device = batches.get(rejected.index as usize).map(|b| b.device_id.as_str()).unwrap_or_default();
                        warn!(device, reason = rejected.reason, "backend rejected a batch");
                    }
                    break;
                }
                Err(status) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        warn!(%cloud, error = %status, attempt, "backend unreachable; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
                }
            }
        }
        batches.clear();
    }
    Ok(())
}

/// Binds `udp` and runs the gateway until an I/O error; logs the bound address.
pub async fn run(udp: SocketAddr, cloud: String) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let socket = UdpSocket::bind(udp).await.with_context(|| format!("HEARTH_GATEWAY_UDP={udp}: cannot listen there"))?;
    let bound = socket.local_addr()?;
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    info!(udp = %bound, cloud, "gateway ready");
    tokio::select! {
        r = receive(socket, tx, counters.clone()) => r,
        r = forward(cloud, rx, counters) => r,
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::Reading;

    use super::*;

    #[test]
    fn decodes_a_named_batch_and_refuses_the_rest() {
        let batch = ReadingBatch { device_id: "s1".into(), seq: 4, readings: vec![Reading { metric: 1, value: 20.5 }], ..Default::default() };
        assert_eq!(decode_datagram(&batch.encode_to_vec()), Ok(batch));
        assert_eq!(decode_datagram(&ReadingBatch::default().encode_to_vec()), Err(Refusal::Unnamed));
        assert!(matches!(decode_datagram(&[0xff, 0xff, 0xff]), Err(Refusal::NotABatch(_))));
        assert_eq!(decode_datagram(&vec![0u8; MAX_DATAGRAM + 1]), Err(Refusal::Oversize(MAX_DATAGRAM + 1)));
    }
}
