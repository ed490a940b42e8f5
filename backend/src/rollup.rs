//! Keeps the minute, hour and day rollups up to date, and enforces retention.
//!
//! The ingest writer notes which (minute, device) each committed batch
//! touched; every few seconds this recomputes those minutes from raw rows,
//! then the hours and days above them from the level below. A minute still
//! open is recomputed whole each time, so under load (where one round of
//! them takes long) open minutes wait: the refresher spends at most about
//! a tenth of its time on them, and a minute is recomputed once more when
//! it closes. Idle, every round takes them, and charts trail by seconds. Recomputing
//! (instead of adding) makes it idempotent: replays, duplicates and late
//! readings from a gateway's backlog all end up counted once. After a crash
//! the last hour is recomputed at start.
//!
//! Retention deletes raw readings older than their metric's limit, and
//! minute rollups older than theirs, in small batches so no lock is held for
//! long; hour and day rollups are kept.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use hearth_proto::v1::Metric;
use hearth_runtime::Clock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{DeviceId, DeviceKind, Reading, Resolution, UnixMs, DAY_MS, HOUR_MS},
    settings::Retention,
    storage::{Storage, StorageError},
};

/// How often touched minutes are recomputed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// After a round that recomputed open minutes, how many times its length
/// to wait before the next such round. Why: at 90,000 readings/s a round
/// of a thousand sensors' open minute took 2.4 s of database time every
/// 5 s, each reading read again some twelve times a minute, and ingest
/// slowed with it.
const OPEN_MINUTES_BACKOFF: u32 = 10;
/// How long after its end a minute counts as closed: commits in flight
/// when it ended land in it.
const CLOSED_AFTER_MS: i64 = 2_000;
/// How often retention runs (and first, how long after start).
const RETENTION_EVERY: Duration = Duration::from_secs(3_600);
const RETENTION_FIRST: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
const DELETE_BATCH: u32 = 5_000;
/// Devices per refresh statement (bind parameters stay far below limits).
const DEVICES_PER_STATEMENT: usize = 500;

/// Minutes touched since the last refresh, with the devices that touched them.
#[derive(Default)]
pub struct Rollups {
    dirty: Mutex<BTreeMap<UnixMs, BTreeSet<DeviceId>>>,
    /// When open minutes may be recomputed next (see
    /// [`OPEN_MINUTES_BACKOFF`]); `None`: at the next round.
    open_due: Mutex<Option<tokio::time::Instant>>,
}

/// Touched minutes, by start, with the devices that touched them.
type Dirty = BTreeMap<UnixMs, BTreeSet<DeviceId>>;

/// The start of the first minute still open at `now`.
fn first_open(now: UnixMs) -> UnixMs {
    now - Resolution::Minute.ms() - CLOSED_AFTER_MS + 1
}

/// Splits `dirty` into the minutes closed at `now` and those still open.
fn split_open(mut dirty: Dirty, now: UnixMs) -> (Dirty, Dirty) {
    let open = dirty.split_off(&first_open(now));
    (dirty, open)
}

impl Rollups {
    /// Notes the minutes `readings` fall in (called after they are stored).
    pub fn touched(&self, readings: &[Reading]) {
        let mut dirty = self.dirty.lock().expect("rollups lock");
        for r in readings {
            let minute = Resolution::Minute.floor(r.time);
            let devices = dirty.entry(minute).or_default();
            if !devices.contains(&r.device_id) {
                devices.insert(r.device_id.clone());
            }
        }
    }

    /// Marks every sensor's minutes in `[from, to)` for recomputation.
    fn touch_range(&self, devices: &[DeviceId], from: UnixMs, to: UnixMs) {
        let mut dirty = self.dirty.lock().expect("rollups lock");
        let mut minute = Resolution::Minute.floor(from);
        while minute < to {
            dirty
                .entry(minute)
                .or_default()
                .extend(devices.iter().cloned());
            minute += Resolution::Minute.ms();
        }
    }

    /// Recomputes what was touched (open minutes only when due, or with
    /// `all`): minutes, then their hours, then days.
    pub async fn refresh(
        &self,
        storage: &dyn Storage,
        now: UnixMs,
        all: bool,
    ) -> Result<(), StorageError> {
        let dirty = std::mem::take(&mut *self.dirty.lock().expect("rollups lock"));
        let started = tokio::time::Instant::now();
        let open_due = all
            || self
                .open_due
                .lock()
                .expect("rollups lock")
                .is_none_or(|due| due <= started);
        let dirty = match open_due {
            true => dirty,
            false => {
                let (closed, open) = split_open(dirty, now);
                self.keep(open);
                closed
            }
        };
        let took_open = dirty.keys().next_back() >= Some(&first_open(now));
        let mut coarser: BTreeMap<(Resolution, UnixMs), BTreeSet<DeviceId>> = BTreeMap::new();
        let result = async {
            for (minute, devices) in &dirty {
                let devices: Vec<_> = devices.iter().cloned().collect();
                for chunk in devices.chunks(DEVICES_PER_STATEMENT) {
                    storage
                        .refresh_rollups(Resolution::Minute, chunk, *minute, minute + 60_000)
                        .await?;
                }
                for res in [Resolution::Hour, Resolution::Day] {
                    coarser
                        .entry((res, res.floor(*minute)))
                        .or_default()
                        .extend(devices.iter().cloned());
                }
            }
            // Hours before days: a day is built from its hours.
            for ((res, start), devices) in &coarser {
                let devices: Vec<_> = devices.iter().cloned().collect();
                for chunk in devices.chunks(DEVICES_PER_STATEMENT) {
                    storage
                        .refresh_rollups(*res, chunk, *start, start + res.ms())
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            // Keep the work for the next round.
            self.keep(dirty);
        } else if took_open {
            let wait = started.elapsed() * OPEN_MINUTES_BACKOFF;
            *self.open_due.lock().expect("rollups lock") =
                (wait > REFRESH_EVERY).then(|| tokio::time::Instant::now() + wait);
        }
        result
    }

    /// Puts minutes back to be recomputed by a later round.
    fn keep(&self, minutes: Dirty) {
        let mut dirty = self.dirty.lock().expect("rollups lock");
        for (minute, devices) in minutes {
            dirty.entry(minute).or_default().extend(devices);
        }
    }

    /// Refreshes every few seconds and enforces retention hourly, until
    /// shutdown (with a last refresh).
    pub async fn run(
        self: Arc<Self>,
        storage: Arc<dyn Storage>,
        retention: Retention,
        clock: Clock,
        shutdown: CancellationToken,
    ) {
        match sensors(storage.as_ref()).await {
            Ok(devices) => {
                let now = clock.now();
                self.touch_range(&devices, now - HOUR_MS, now + 1);
            }
            Err(e) => warn!(error = %e, "could not list sensors to catch up rollups"),
        }
        let mut next_retention = tokio::time::Instant::now() + RETENTION_FIRST;
        loop {
            let stop = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(REFRESH_EVERY) => false,
            };
            if let Err(e) = self.refresh(storage.as_ref(), clock.now(), stop).await {
                warn!(error = %e, "rollup refresh failed; retrying");
            }
            if stop {
                break;
            }
            if tokio::time::Instant::now() >= next_retention {
                next_retention = tokio::time::Instant::now() + RETENTION_EVERY;
                if let Err(e) = enforce(storage.as_ref(), &retention, clock.now(), &shutdown).await
                {
                    warn!(error = %e, "retention failed; trying again later");
                }
            }
        }
    }
}

async fn sensors(storage: &dyn Storage) -> Result<Vec<DeviceId>, StorageError> {
    Ok(storage
        .list_devices(None)
        .await?
        .into_iter()
        .filter(|d| d.kind == DeviceKind::Sensor)
        .map(|d| d.id)
        .collect())
}

/// Deletes what retention says has expired at `now`.
pub async fn enforce(
    storage: &dyn Storage,
    retention: &Retention,
    now: UnixMs,
    shutdown: &CancellationToken,
) -> Result<(), StorageError> {
    let metrics = Metric::MEASURED;
    let expired_before = |metric| now - i64::from(retention.raw_days(metric)) * DAY_MS;
    let mut arrivals = 0;
    for metric in metrics {
        arrivals += storage
            .delete_arrivals_before(metric, expired_before(metric))
            .await?;
    }
    // A run is a device's, not a metric's: kept while any metric's
    // readings of its time may be.
    let longest = metrics.map(expired_before).into_iter().min().unwrap_or(now);
    let runs = storage.delete_runs_before(longest).await?;
    let mut deleted = 0;
    for device in sensors(storage).await? {
        for metric in metrics {
            let before = expired_before(metric);
            loop {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let n = storage
                    .delete_readings_before(&device, metric, before, DELETE_BATCH)
                    .await?;
                deleted += n;
                if n < u64::from(DELETE_BATCH) {
                    break;
                }
                // Let ingest's transactions in between batches.
                tokio::task::yield_now().await;
            }
        }
    }
    let before = now - i64::from(retention.minute_days) * DAY_MS;
    let mut rollups = 0;
    loop {
        let n = storage
            .delete_rollups_before(Resolution::Minute, before, DELETE_BATCH)
            .await?;
        rollups += n;
        if n < u64::from(DELETE_BATCH) || shutdown.is_cancelled() {
            break;
        }
    }
    if deleted + rollups + arrivals + runs > 0 {
        info!(
            readings = deleted,
            minute_rollups = rollups,
            late_and_duplicate_counts = arrivals,
            agent_runs = runs,
            "retention deleted expired data"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(minutes: &[UnixMs]) -> Dirty {
        let device = DeviceId::parse("s", "device_id").unwrap();
        minutes
            .iter()
            .map(|&m| (m, BTreeSet::from([device.clone()])))
            .collect()
    }

    #[test]
    fn a_minute_is_open_until_shortly_after_its_end() {
        let minute = Resolution::Minute.ms();
        let now = 10 * minute + CLOSED_AFTER_MS + 30_000;
        // Minute 9 ended 32 s ago, minute 10 is going on.
        let (closed, open) = split_open(dirty(&[8 * minute, 9 * minute, 10 * minute]), now);
        assert_eq!(
            closed.keys().collect::<Vec<_>>(),
            [&(8 * minute), &(9 * minute)]
        );
        assert_eq!(open.keys().collect::<Vec<_>>(), [&(10 * minute)]);
        // Just after minute 10's end it is still open, for commits in flight.
        let (_, open) = split_open(dirty(&[10 * minute]), 11 * minute + CLOSED_AFTER_MS - 1);
        assert_eq!(open.len(), 1);
        let (closed, _) = split_open(dirty(&[10 * minute]), 11 * minute + CLOSED_AFTER_MS);
        assert_eq!(closed.len(), 1);
    }
}
