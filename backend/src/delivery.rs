//! Delivery: a device's figures over a range read from storage (the
//! arithmetic is `domain::delivery`), the audit that counts losses into
//! `/metrics` and the log as they happen, and the ingest writer's record of
//! where each run of a sensor's agent began.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use hearth_proto::v1::Metric;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{
    core::Core,
    domain::{
        delivery::{
            device_delivery, metric_figures, tail_missing, Delivery, RunStart, Sent, StoredHour,
            Surroundings,
        },
        reading::MAX_SEQ,
        DeviceId, DeviceKind, HomeId, UnixMs,
    },
    lease::Lease,
    storage::{Result, Storage},
};

/// `device`'s delivery for readings taken in `[from, to)`, with the late
/// and duplicate readings of the hours that overlap it. The work is a
/// grouped scan of the range on an index plus a few key lookups per metric
/// (one more per agent restart in the range), whatever the readings' count.
pub async fn delivery(
    storage: &dyn Storage,
    device: &DeviceId,
    from: UnixMs,
    to: UnixMs,
) -> Result<Delivery> {
    let mut by_metric: BTreeMap<i32, Vec<StoredHour>> = BTreeMap::new();
    for hour in storage.stored_hours(device, from, to).await? {
        by_metric.entry(hour.metric as i32).or_default().push(hour);
    }
    let arrived = storage.arrivals(device, from, to).await?;
    let mut per_metric = Vec::with_capacity(by_metric.len());
    for hours in by_metric.values() {
        let metric = hours[0].metric;
        let lowest = hours.iter().map(|h| h.lowest_seq).min().unwrap_or(0);
        let highest = hours.iter().map(|h| h.highest_seq).max().unwrap_or(0);
        let before = storage.highest_seq_below(device, metric, lowest).await?;
        let around = surroundings(storage, device, metric, before, lowest, highest).await?;
        per_metric.push(metric_figures(hours, &around));
    }
    let mut tails = Vec::new();
    for said in storage.sent(Some(device), from, to).await? {
        for metric in METRICS {
            let missing = tail_missing(&said, metric, stored_up_to(storage, &said, metric).await?);
            if missing > 0 {
                tails.push((said.said_at, missing));
            }
        }
    }
    Ok(device_delivery(per_metric, &arrived, &tails))
}

/// The highest number of `said.device`'s `metric` stored up to what the
/// sensor said it sent.
async fn stored_up_to(storage: &dyn Storage, said: &Sent, metric: Metric) -> Result<Option<u64>> {
    storage
        .highest_seq_below(&said.device, metric, said.sent_through.saturating_add(1))
        .await
}

/// What `metric_figures` needs around stored numbers `lowest..=highest` of
/// `device`'s `metric`, `before` being the highest stored below them.
async fn surroundings(
    storage: &dyn Storage,
    device: &DeviceId,
    metric: Metric,
    before: Option<u64>,
    lowest: u64,
    highest: u64,
) -> Result<Surroundings> {
    let mut runs = Vec::new();
    for start in storage
        .run_starts(device, before.unwrap_or(0), highest)
        .await?
    {
        // A run that began at or before the lowest number has `before` as
        // the last number below it.
        let stored_below = if start <= lowest {
            before
        } else {
            storage.highest_seq_below(device, metric, start).await?
        };
        runs.push(RunStart {
            start,
            stored_below,
        });
    }
    Ok(Surroundings { before, runs })
}

/// How often the audit counts what arrived.
const AUDIT_EVERY: Duration = Duration::from_secs(15);
/// Readings younger than this are left for the next round. Why: another
/// replica may still hold the ones numbered before them uncommitted, and a
/// broker redelivers within seconds; counting now would call them missing.
const SETTLE_MS: i64 = 10_000;
/// The audit's lease: one replica counts, so counts add up across replicas.
const LEASE_NAME: &str = "delivery";
const LEASE_MS: i64 = 30_000;
/// Every stream a sensor may have.
const METRICS: [Metric; 3] = Metric::MEASURED;

/// Counts, while this replica holds the `delivery` lease, the readings each
/// sensor sent and those missing, per home, into `/metrics`
/// (`hearth_readings_expected_total`, `hearth_readings_missing_total`), and
/// logs each loss with its device. Counting starts where the holder took
/// over; [`delivery`] answers for any range from what is stored.
pub async fn run_audit(core: Arc<Core>, replica: String, shutdown: CancellationToken) {
    let mut lease = Lease::new(core.clone(), LEASE_NAME, LEASE_MS, replica);
    let mut audit = Audit::default();
    let mut ticks = tokio::time::interval(AUDIT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if !lease.hold().await {
            // Another replica counts; starting again later must not count
            // what it counted.
            audit = Audit::default();
            continue;
        }
        if let Err(e) = audit.round(&core).await {
            warn!(error = %e, "delivery audit failed; trying again next round");
        }
    }
    lease.release().await;
}

/// Per sensor and metric, the highest number counted so far (`None`: the
/// stream had no readings when counting began, so it counts from its first).
#[derive(Default)]
struct Audit {
    counted: HashMap<(DeviceId, Metric), Option<u64>>,
    /// Whether a round ran since this replica took the lease.
    started: bool,
    /// What sensors said they sent is counted from here on.
    said_from: UnixMs,
}

impl Audit {
    async fn round(&mut self, core: &Core) -> Result<()> {
        let storage = core.storage.as_ref();
        let settled = core.clock.now() - SETTLE_MS;
        // What was stored before this replica took over was counted by the
        // one before it; a sensor first seen later is counted from its first.
        let taking_over = !self.started;
        let mut homes = HashMap::new();
        for device in storage.list_devices(None).await? {
            if device.kind != DeviceKind::Sensor {
                continue;
            }
            homes.insert(device.id.clone(), device.home_id.clone());
            for metric in METRICS {
                let key = (device.id.clone(), metric);
                let counted = match self.counted.get(&key) {
                    Some(counted) => *counted,
                    None if taking_over => {
                        let now = storage
                            .highest_seq_below(&device.id, metric, MAX_SEQ)
                            .await?;
                        self.counted.insert(key, now);
                        continue;
                    }
                    None => None,
                };
                let Some(new) = storage
                    .stored_after(&device.id, metric, counted.unwrap_or(0), settled)
                    .await?
                else {
                    continue;
                };
                let around = surroundings(
                    storage,
                    &device.id,
                    metric,
                    counted,
                    new.lowest_seq,
                    new.highest_seq,
                )
                .await?;
                let figures = metric_figures(&[new], &around)
                    .first()
                    .map_or_else(Default::default, |(_, f)| *f);
                let home = [("home", device.home_id.to_string())];
                core.metrics
                    .readings_expected
                    .get_or_create(&home)
                    .inc_by(figures.expected);
                if figures.missing() > 0 {
                    core.metrics
                        .readings_missing
                        .get_or_create(&home)
                        .inc_by(figures.missing());
                    warn!(
                        device = %device.id,
                        home = %device.home_id,
                        metric = metric.short_name(),
                        missing = figures.missing(),
                        up_to_seq = new.highest_seq,
                        "readings missing: sent by the device, never stored"
                    );
                }
                self.counted.insert(key, Some(new.highest_seq));
            }
        }
        if taking_over {
            self.said_from = settled;
        }
        self.count_tails(core, &homes, settled).await?;
        self.started = true;
        Ok(())
    }

    /// Counts the readings missing from the end of runs, as sensors said
    /// what they sent (settled, as readings are: the last ones may still be
    /// on their way); counting then goes on from what they said.
    async fn count_tails(
        &mut self,
        core: &Core,
        homes: &HashMap<DeviceId, HomeId>,
        settled: UnixMs,
    ) -> Result<()> {
        for said in core.storage.sent(None, self.said_from, settled).await? {
            let Some(home) = homes.get(&said.device) else {
                continue;
            };
            for metric in METRICS {
                // Counted up to its highest stored: what the round above
                // saw of this stream. A stream with nothing counted yet is
                // left unless nothing of it is stored at all: then only the
                // sensor's word (its metrics) can count the run.
                let counted = match self.counted.get(&(said.device.clone(), metric)) {
                    Some(Some(counted)) => Some(*counted),
                    _ if said.metrics.contains(metric) => {
                        match stored_up_to(core.storage.as_ref(), &said, metric).await? {
                            None => None,
                            Some(_) => continue,
                        }
                    }
                    _ => continue,
                };
                let missing = tail_missing(&said, metric, counted);
                if missing == 0 {
                    continue;
                }
                let home = [("home", home.to_string())];
                core.metrics
                    .readings_expected
                    .get_or_create(&home)
                    .inc_by(missing);
                core.metrics
                    .readings_missing
                    .get_or_create(&home)
                    .inc_by(missing);
                warn!(
                    device = %said.device,
                    home = %home[0].1,
                    metric = metric.short_name(),
                    missing,
                    up_to_seq = said.sent_through,
                    "readings missing: the sensor said it sent them, none came after"
                );
                self.counted
                    .insert((said.device.clone(), metric), Some(said.sent_through));
            }
        }
        self.said_from = settled;
        Ok(())
    }
}

/// Why bounded: a replica forgets devices beyond this and records their run
/// again (a harmless repeat) rather than grow without limit.
const REMEMBERED_DEVICES: usize = 100_000;

/// The run start this replica last recorded per device, so the writer
/// touches `delivery_runs` only when an agent restarts (and once per device
/// after this replica starts), not per batch.
#[derive(Default)]
pub struct RunStarts {
    recorded: Mutex<HashMap<DeviceId, u64>>,
}

impl RunStarts {
    /// The runs among `(device, run_start)` not recorded by this replica yet.
    pub fn unrecorded<'a>(
        &self,
        runs: impl IntoIterator<Item = (&'a DeviceId, u64)>,
        now: UnixMs,
    ) -> Vec<(DeviceId, u64, UnixMs)> {
        let recorded = self.recorded.lock().expect("run starts lock");
        let mut new: Vec<(DeviceId, u64, UnixMs)> = Vec::new();
        for (device, start) in runs {
            if start == 0 || recorded.get(device) == Some(&start) {
                continue;
            }
            if !new.iter().any(|(d, s, _)| d == device && *s == start) {
                new.push((device.clone(), start, now));
            }
        }
        new
    }

    /// Notes runs as recorded (after storage took them).
    pub fn recorded(&self, runs: &[(DeviceId, u64, UnixMs)]) {
        let mut recorded = self.recorded.lock().expect("run starts lock");
        if recorded.len() + runs.len() > REMEMBERED_DEVICES {
            recorded.clear();
        }
        for (device, start, _) in runs {
            let newest = recorded.entry(device.clone()).or_default();
            *newest = (*newest).max(*start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_recorded_once_and_again_only_when_it_changes() {
        let runs = RunStarts::default();
        let a = DeviceId::parse("a", "device_id").unwrap();
        let b = DeviceId::parse("b", "device_id").unwrap();
        let first = runs.unrecorded([(&a, 5), (&a, 5), (&b, 0)], 1);
        assert_eq!(first, [(a.clone(), 5, 1)], "once, and never a run of 0");
        assert_eq!(runs.unrecorded([(&a, 5)], 2).len(), 1, "not recorded yet");
        runs.recorded(&first);
        assert!(runs.unrecorded([(&a, 5)], 3).is_empty());
        assert_eq!(runs.unrecorded([(&a, 900)], 4), [(a, 900, 4)]);
    }
}
