//! Ingest: validated readings go through one bounded queue to a writer that
//! stores them in batches (one transaction for whatever has queued up, so
//! the batch grows with the load), then acknowledges each message and
//! publishes the new readings to live subscribers and the automation engine
//! (not the duplicates: a reading sent again is no news).
//!
//! Each commit also adds the readings that arrived late or again to their
//! device's counters (`Storage::insert_readings`) and counts them per home in
//! `/metrics`.
//!
//! Nothing is acknowledged before it is committed; while the database is
//! down the writer retries, the queue fills, and intake slows down instead of
//! dropping or buffering without bound.

use std::{collections::HashMap, sync::Arc, time::Duration};

use hearth_runtime::{unix_ms_now, Backoff};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, info, warn};

use crate::{
    delivery::RunStarts,
    domain::{DeviceId, HomeId, Reading},
    metrics::Metrics,
    mqtt::Ack,
    mqtt::Publisher,
    rollup::Rollups,
    storage::{Inserted, Storage, StorageError},
};

/// Batches waiting for the writer. Why this size: with a few readings per
/// batch it holds well under a megabyte, yet absorbs a commit's pause.
pub const QUEUE_CAPACITY: usize = 4_096;
/// Most readings stored in one transaction.
const MAX_ROWS_PER_COMMIT: usize = 5_000;
/// Between attempts to store a batch while the database is unavailable.
const DATABASE_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Who to tell when a batch is stored.
pub enum Done {
    Mqtt(Ack),
    Grpc(oneshot::Sender<Result<u64, String>>),
}

/// One device's validated readings on their way to storage.
pub struct IngestItem {
    pub home_id: HomeId,
    pub readings: Vec<Reading>,
    /// The first number of the sender's current run; 0 if it does not say.
    pub run_start: u64,
    pub done: Done,
}

/// Readings as they are stored, for live streams and automation.
#[derive(Debug)]
pub struct StoredBatch {
    pub home_id: HomeId,
    pub readings: Vec<Reading>,
}

/// Every batch of one commit, published to live streams and automation as
/// one message. Why not a message per batch: each subscriber wakes for every
/// message and most of them want none of it (a stream follows one home or
/// one device); with a thousand streams, waking them per batch took a core.
pub type StoredCommit = Vec<StoredBatch>;

/// The sending side of the ingest queue.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<IngestItem>,
}

impl Ingest {
    pub fn new() -> (Self, mpsc::Receiver<IngestItem>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (Self { tx }, rx)
    }

    /// Queues `item`, waiting while the queue is full. Fails only when the
    /// writer has stopped (shutdown).
    pub async fn submit(&self, item: IngestItem) -> Result<(), &'static str> {
        self.tx
            .send(item)
            .await
            .map_err(|_| "ingest is shutting down")
    }
}

/// Stores queued readings until the queue is closed and drained.
pub async fn run_writer(
    mut rx: mpsc::Receiver<IngestItem>,
    storage: Arc<dyn Storage>,
    stored: broadcast::Sender<Arc<StoredCommit>>,
    metrics: Arc<Metrics>,
    rollups: Arc<Rollups>,
    news: Publisher,
) {
    let mut items = Vec::new();
    let run_starts = RunStarts::default();
    while let Some(first) = rx.recv().await {
        let mut rows = first.readings.len();
        items.push(first);
        while rows < MAX_ROWS_PER_COMMIT {
            match rx.try_recv() {
                Ok(item) => {
                    rows += item.readings.len();
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        metrics.ingest_queue_depth.set(rx.len() as i64);
        metrics.ingest_batch_readings.observe(rows as f64);
        let started = std::time::Instant::now();
        record_run_starts(&items, &run_starts, storage.as_ref(), &metrics).await;
        commit(&mut items, storage.as_ref(), &metrics).await;
        metrics
            .ingest_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        for item in &items {
            rollups.touched(&item.readings);
        }
        let mut committed = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            let IngestItem {
                home_id,
                readings,
                done,
                ..
            } = item;
            match done {
                Done::Mqtt(ack) => ack.send().await,
                Done::Grpc(tx) => {
                    let _ = tx.send(Ok(readings.len() as u64));
                }
            }
            // A batch that was all duplicates is no news.
            if !readings.is_empty() {
                committed.push(StoredBatch { home_id, readings });
            }
        }
        news.stored(&committed);
        // No receivers is fine: nobody is watching.
        let _ = stored.send(Arc::new(committed));
    }
    info!("ingest writer drained and stopped");
}

/// Records the agent runs `items` begin that this replica has not recorded,
/// before their readings, so delivery figures never see a restart's jump
/// without its run (which would count it as missing). Retried like a commit
/// while the database is unavailable; another failure is logged, and the run
/// is tried again with the device's next batch.
async fn record_run_starts(
    items: &[IngestItem],
    run_starts: &RunStarts,
    storage: &dyn Storage,
    metrics: &Metrics,
) {
    let runs = run_starts.unrecorded(
        items
            .iter()
            .filter_map(|i| Some((&i.readings.first()?.device_id, i.run_start))),
        unix_ms_now(),
    );
    if runs.is_empty() {
        return;
    }
    let mut attempt = 0u32;
    loop {
        match storage.record_run_starts(&runs).await {
            Ok(()) => return run_starts.recorded(&runs),
            Err(StorageError::Unavailable(e)) => {
                metrics.ingest_commit_failures.inc();
                if attempt == 0 || attempt.is_multiple_of(20) {
                    error!(error = %e, attempt, "database unavailable; holding the batch and retrying");
                }
                DATABASE_RETRY.wait(attempt).await;
                attempt += 1;
            }
            Err(e) => {
                warn!(error = %e, runs = runs.len(), "could not record agent restarts; retrying with their next batches");
                return;
            }
        }
    }
}

/// Stores every reading of `items`, retrying while the database is
/// unavailable. A batch the database refuses for another reason is retried
/// item by item, so one bad item cannot hold back the others; a refused item
/// is logged, answered with an error and removed.
async fn commit(items: &mut Vec<IngestItem>, storage: &dyn Storage, metrics: &Metrics) {
    let all: Vec<Reading> = items
        .iter()
        .flat_map(|i| i.readings.iter().cloned())
        .collect();
    let mut attempt = 0u32;
    loop {
        match storage.insert_readings(&all).await {
            Ok(inserted) => {
                metrics.ingest_commits.inc();
                count(&inserted, items, metrics);
                drop_repeats(items.iter_mut().map(|i| &mut i.readings), &inserted.repeats);
                return;
            }
            Err(StorageError::Unavailable(e)) => {
                metrics.ingest_commit_failures.inc();
                if attempt == 0 || attempt.is_multiple_of(20) {
                    error!(error = %e, readings = all.len(), attempt, "database unavailable; holding the batch and retrying");
                }
                DATABASE_RETRY.wait(attempt).await;
                attempt += 1;
            }
            Err(e) => {
                metrics.ingest_commit_failures.inc();
                warn!(error = %e, "batch refused by the database; storing its items one by one");
                break;
            }
        }
    }
    let mut kept = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        match storage.insert_readings(&item.readings).await {
            Ok(inserted) => {
                count(&inserted, std::slice::from_ref(&item), metrics);
                let mut item = item;
                drop_repeats([&mut item.readings], &inserted.repeats);
                kept.push(item);
            }
            Err(e) => {
                metrics.batches_rejected.inc();
                error!(error = %e, home = %item.home_id, "readings refused by the database; dropped");
                match item.done {
                    Done::Mqtt(ack) => ack.send().await,
                    Done::Grpc(tx) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            }
        }
    }
    *items = kept;
}

/// Takes the duplicates out of `batches` once they are committed, so live
/// streams and automation see each reading once however often it was sent.
/// `repeats`: their positions among all the batches' readings, in order.
fn drop_repeats<'a>(batches: impl IntoIterator<Item = &'a mut Vec<Reading>>, repeats: &[usize]) {
    if repeats.is_empty() {
        return;
    }
    let mut repeats = repeats.iter().copied().peekable();
    let mut at = 0;
    for readings in batches {
        readings.retain(|_| {
            let repeat = repeats.next_if_eq(&at).is_some();
            at += 1;
            !repeat
        });
    }
}

/// Counts what one insert of `items`' readings stored: late and duplicate
/// readings per home (each item is one device's, of one home).
fn count(inserted: &Inserted, items: &[IngestItem], metrics: &Metrics) {
    metrics.readings_stored.inc_by(inserted.new);
    let mut homes: HashMap<&DeviceId, &HomeId> = HashMap::new();
    for item in items {
        if let Some(r) = item.readings.first() {
            homes.insert(&r.device_id, &item.home_id);
        }
    }
    for (device, arrived) in &inserted.arrivals {
        let Some(home) = homes.get(device) else {
            continue;
        };
        let home = [("home", home.to_string())];
        if arrived.late > 0 {
            metrics
                .readings_late
                .get_or_create(&home)
                .inc_by(arrived.late);
        }
        if arrived.duplicates > 0 {
            metrics
                .readings_duplicate
                .get_or_create(&home)
                .inc_by(arrived.duplicates);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::v1::Metric;

    fn batch(seqs: &[u64]) -> Vec<Reading> {
        seqs.iter()
            .map(|&seq| Reading {
                device_id: DeviceId::parse("s", "device_id").unwrap(),
                metric: Metric::TemperatureCelsius,
                seq,
                time: 0,
                value: 20.0,
            })
            .collect()
    }

    fn seqs(readings: &[Reading]) -> Vec<u64> {
        readings.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn duplicates_are_taken_out_by_their_place_across_batches() {
        let mut batches = [batch(&[1, 2]), batch(&[3]), batch(&[4, 5])];
        drop_repeats(batches.iter_mut(), &[1, 2, 4]);
        assert_eq!(seqs(&batches[0]), [1]);
        assert!(batches[1].is_empty(), "a batch of duplicates only");
        assert_eq!(seqs(&batches[2]), [4]);
        drop_repeats(batches.iter_mut(), &[]);
        assert_eq!(seqs(&batches[2]), [4], "no duplicates, nothing taken");
    }
}
