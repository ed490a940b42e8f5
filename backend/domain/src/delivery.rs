//! Delivery: how many of the readings a sensor sent were stored, worked out
//! from the sequence numbers alone.
//!
//! A sensor numbers its batches 1, 2, 3… (every metric of a batch shares the
//! number), so within one *run* of its agent every number between two stored
//! ones was sent, and each one not stored is missing, wherever it was lost:
//! the device's own queue, the LAN, the gateway, the broker or Hearth. An
//! agent restart starts a new run further up (the numbers follow the clock,
//! see hearth-device's `seq.rs`) and says where with `run_start`; the
//! numbers skipped by a restart were never used, so they are not missing.
//!
//! Nothing here is kept per reading: the figures are recomputed from what is
//! stored (a count and the lowest and highest number per hour and metric,
//! which the readings' primary key answers) plus the recorded run starts. So
//! they are exact across restarts and replicas, and a reading that arrives
//! late (a gateway's backlog) simply stops being missing.
//!
//! What is stored cannot say in which order readings came, so the ingest
//! writer sorts each commit's readings as they arrive ([`arrivals`]): *late*
//! (numbered below one of their metric stored before them: they filled a
//! gap) and *duplicates* (stored already, not stored again). It adds them to
//! counters per device, metric and hour ([`Arrivals`]), a row per hour that
//! had some, never one per reading.

use std::collections::{BTreeMap, HashMap, HashSet};

use hearth_proto::v1::Metric;

use crate::{reading::MAX_SEQ, DeviceId, Reading, UnixMs, DAY_MS, HOUR_MS};

/// The longest range one request may cover: the work grows with the range.
pub const MAX_RANGE_MS: i64 = 31 * DAY_MS;
/// The range asked for when none is given: the last day.
pub const DEFAULT_RANGE_MS: i64 = DAY_MS;

/// What is stored of one metric of one device in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHour {
    pub metric: Metric,
    /// The hour's start.
    pub hour: UnixMs,
    /// Readings stored (distinct sequence numbers: the key forbids repeats).
    pub stored: u64,
    pub lowest_seq: u64,
    pub highest_seq: u64,
}

/// What storage knows around the range of one metric: the highest number
/// stored below the range's lowest, and each run start at or below the
/// range's highest, with the highest number stored below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surroundings {
    pub before: Option<u64>,
    /// Ascending by `start`.
    pub runs: Vec<RunStart>,
}

/// A run of an agent began at `start`; `stored_below` is the highest
/// number stored below it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStart {
    pub start: u64,
    pub stored_below: Option<u64>,
}

/// Expected, stored and missing readings, the restarts seen, and how the
/// stored ones arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub expected: u64,
    pub stored: u64,
    pub restarts: u32,
    /// Of `stored`, those that arrived after a higher number of their metric
    /// was stored: each filled a gap, which is no longer missing.
    pub late: u64,
    /// Readings received again after they were stored (not stored twice).
    pub duplicates: u64,
}

impl Figures {
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.stored)
    }

    fn add(&mut self, other: Figures) {
        self.expected += other.expected;
        self.stored += other.stored;
        self.restarts += other.restarts;
        self.late += other.late;
        self.duplicates += other.duplicates;
    }
}

/// Late and duplicate readings of one metric of one device in one hour (the
/// hour they were taken in), as [`arrivals`] counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrivals {
    pub metric: Metric,
    /// The hour's start.
    pub hour: UnixMs,
    pub late: u64,
    pub duplicates: u64,
}

/// A device's delivery over a range: in total and per hour with readings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub total: Figures,
    /// Ascending by hour; summed over the metrics.
    pub hours: Vec<(UnixMs, Figures)>,
}

impl Delivery {
    /// The start of the newest hour with readings missing.
    pub fn last_loss(&self) -> Option<UnixMs> {
        self.hours
            .iter()
            .rev()
            .find(|(_, f)| f.missing() > 0)
            .map(|(hour, _)| *hour)
    }
}

/// Works out one metric's figures per hour. A gap is charged to the hour of
/// the first reading stored after it; the gap before the range's first
/// reading counts from `surroundings.before`, so consecutive ranges add up.
/// `hours` must all be of one metric.
pub fn metric_figures(hours: &[StoredHour], surroundings: &Surroundings) -> Vec<(UnixMs, Figures)> {
    let mut hours: Vec<StoredHour> = hours.to_vec();
    // By number, not by time: a clock that jumped does not reorder a run.
    hours.sort_by_key(|h| h.lowest_seq);
    let mut previous = surroundings.before;
    let mut out = Vec::with_capacity(hours.len());
    for h in &hours {
        let mut figures = Figures {
            stored: h.stored,
            ..Figures::default()
        };
        // Runs that began after the previous number and by the hour's last:
        // the numbers between the previous run's last and the start were
        // never used.
        let mut from = previous; // the last number accounted for
        for run in surroundings
            .runs
            .iter()
            .filter(|r| previous.is_none_or(|p| r.start > p) && r.start <= h.highest_seq)
        {
            if previous.is_some() || run.stored_below.is_some() {
                figures.restarts += 1;
            }
            // Up to the run's last stored number (if any, since `from`),
            // everything was sent; then nothing until the new start.
            if let (Some(f), Some(below)) = (from, run.stored_below) {
                if below > f {
                    figures.expected += below - f;
                }
            }
            from = Some(run.start - 1);
        }
        let from = from.unwrap_or(h.lowest_seq - 1);
        figures.expected += h.highest_seq.saturating_sub(from);
        previous = Some(previous.map_or(h.highest_seq, |p| p.max(h.highest_seq)));
        out.push((h.hour, figures));
    }
    out
}

/// The metrics each batch of a run carries, as a sensor said them (empty:
/// it did not say). Kept as a bit per metric, so storage keeps it in one
/// small integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricSet(u8);

impl MetricSet {
    /// The metrics a status message names, each a `hearth.v1.Metric` number.
    pub fn parse(numbers: &[i32]) -> Result<Self, SentError> {
        let mut set = MetricSet::default();
        for &n in numbers {
            match Metric::try_from(n) {
                Ok(m) if m != Metric::Unspecified => set.0 |= Self::bit(m),
                _ => return Err(SentError::UnknownMetric(n)),
            }
        }
        Ok(set)
    }

    pub fn contains(self, metric: Metric) -> bool {
        self.0 & Self::bit(metric) != 0
    }

    /// The set as stored.
    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    /// A stored set; bits of no metric (a later version's) are dropped.
    pub fn from_bits(bits: i64) -> Self {
        let known = Self::bit(Metric::TemperatureCelsius)
            | Self::bit(Metric::HumidityPercent)
            | Self::bit(Metric::PressureHpa);
        MetricSet((bits & i64::from(known)) as u8)
    }

    fn bit(metric: Metric) -> u8 {
        1 << (metric as i32).clamp(0, 7)
    }
}

/// What a status message says a run sent: batches `run_start..=last_seq`,
/// each carrying `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAccount {
    pub run_start: u64,
    pub last_seq: u64,
    pub metrics: MetricSet,
}

/// A sensor's account of one run, from its status messages: the run began
/// at `run_start` and had numbered batches up to `sent_through`, each of
/// `metrics`, when it said so last, at `said_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub device: DeviceId,
    pub run_start: u64,
    pub sent_through: u64,
    pub metrics: MetricSet,
    pub said_at: UnixMs,
}

/// Why a sensor's account of what it sent is not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentError {
    #[error("last_seq {0} is above {MAX_SEQ}, the largest Hearth keeps")]
    TooHigh(u64),
    #[error("last_seq {last_seq} is below run_start {run_start}")]
    BeforeRun { last_seq: u64, run_start: u64 },
    #[error("metrics names {0}, which is no metric")]
    UnknownMetric(i32),
}

/// Checks what a status message says was sent: `Ok(None)` when it says
/// nothing (`last_seq` 0).
pub fn sent(
    run_start: u64,
    last_seq: u64,
    metrics: &[i32],
) -> Result<Option<RunAccount>, SentError> {
    if last_seq == 0 {
        Ok(None)
    } else if last_seq > MAX_SEQ {
        Err(SentError::TooHigh(last_seq))
    } else if last_seq < run_start {
        Err(SentError::BeforeRun {
            last_seq,
            run_start,
        })
    } else {
        Ok(Some(RunAccount {
            run_start,
            last_seq,
            metrics: MetricSet::parse(metrics)?,
        }))
    }
}

/// The readings of `metric` missing from the end of a run: those a sensor
/// said it sent (`sent`) above the highest number of that metric stored up
/// to `sent.sent_through` (`highest_stored`). No gap after them shows they
/// are missing, so only the sensor's word counts them. With nothing of the
/// metric stored at all, the whole run is missing if the sensor said its
/// batches carry the metric; if it did not say, nothing tells a stream lost
/// whole from one it does not measure, so nothing is counted.
pub fn tail_missing(sent: &Sent, metric: Metric, highest_stored: Option<u64>) -> u64 {
    let whole_run = sent.sent_through - sent.run_start + 1;
    match highest_stored {
        None if sent.metrics.contains(metric) => whole_run,
        None => 0,
        Some(h) if h >= sent.sent_through => 0,
        Some(h) if h >= sent.run_start => sent.sent_through - h,
        // Nothing of this run is stored: all of it is missing.
        Some(_) => whole_run,
    }
}

/// Sums the metrics' figures and the late and duplicate readings counted as
/// they arrived into a device's, by hour; `tails` are readings missing from
/// the end of a run ([`tail_missing`]), charged to the hour the sensor said
/// what it sent.
pub fn device_delivery(
    per_metric: impl IntoIterator<Item = Vec<(UnixMs, Figures)>>,
    arrived: &[Arrivals],
    tails: &[(UnixMs, u64)],
) -> Delivery {
    let mut by_hour = BTreeMap::<UnixMs, Figures>::new();
    for metric in per_metric {
        for (hour, figures) in metric {
            let sum = by_hour.entry(hour).or_default();
            sum.expected += figures.expected;
            sum.stored += figures.stored;
            // Every metric sees the same restart.
            sum.restarts = sum.restarts.max(figures.restarts);
        }
    }
    for (at, missing) in tails {
        by_hour.entry(hour_of(*at)).or_default().expected += missing;
    }
    for a in arrived {
        let sum = by_hour.entry(a.hour).or_default();
        sum.late += a.late;
        sum.duplicates += a.duplicates;
    }
    let mut delivery = Delivery::default();
    for (hour, figures) in by_hour {
        delivery.total.add(figures);
        delivery.hours.push((hour, figures));
    }
    delivery
}

/// One commit's readings sorted by how they arrived.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Arrived {
    /// Late readings and duplicates per device, metric and hour (only
    /// those with some).
    pub counts: Vec<(DeviceId, Arrivals)>,
    /// Where the duplicates are among the readings, in order: they are not
    /// news, so live streams and automation do not see them again.
    pub repeats: Vec<usize>,
}

/// Sorts one commit's readings, in the order they arrived, into late ones
/// and duplicates. `highest_stored` is the highest number of a device's
/// metric stored before the commit; `stored` says whether a number at or
/// below it is.
///
/// A reading is a duplicate when its number is stored already or came
/// earlier in the commit, and late when a higher number of its metric is
/// stored or came earlier in the commit: so the counts do not depend on how
/// the writer grouped readings into commits.
pub fn arrivals(
    readings: &[Reading],
    highest_stored: impl Fn(&DeviceId, Metric) -> Option<u64>,
    stored: impl Fn(&DeviceId, Metric, u64) -> bool,
) -> Arrived {
    let mut highest: HashMap<(&DeviceId, Metric), Option<u64>> = HashMap::new();
    let mut seen: HashSet<(&DeviceId, Metric, u64)> = HashSet::with_capacity(readings.len());
    let mut counted: BTreeMap<(&DeviceId, Metric, UnixMs), (u64, u64)> = BTreeMap::new();
    let mut repeats = Vec::new();
    for (at, r) in readings.iter().enumerate() {
        let high = highest
            .entry((&r.device_id, r.metric))
            .or_insert_with(|| highest_stored(&r.device_id, r.metric));
        let repeat = !seen.insert((&r.device_id, r.metric, r.seq))
            || (high.is_some_and(|h| r.seq <= h) && stored(&r.device_id, r.metric, r.seq));
        let late = !repeat && high.is_some_and(|h| r.seq < h);
        if repeat {
            repeats.push(at);
        }
        *high = Some(high.map_or(r.seq, |h| h.max(r.seq)));
        if repeat || late {
            let (l, d) = counted
                .entry((&r.device_id, r.metric, hour_of(r.time)))
                .or_default();
            *l += u64::from(late);
            *d += u64::from(repeat);
        }
    }
    let counts = counted
        .into_iter()
        .map(|((device, metric, hour), (late, duplicates))| {
            let arrived = Arrivals {
                metric,
                hour,
                late,
                duplicates,
            };
            (device.clone(), arrived)
        })
        .collect();
    Arrived { counts, repeats }
}

/// The hour `time` falls in.
pub fn hour_of(time: UnixMs) -> UnixMs {
    time.div_euclid(HOUR_MS) * HOUR_MS
}

/// Why a range cannot be answered; the messages follow the field they are
/// about (`start_unix_ms`, `end_unix_ms`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("must be before end_unix_ms")]
    Backwards,
    #[error("is more than 31 days after start_unix_ms; ask for less")]
    TooLong,
}

/// The range `[start, end)` a request means: 0 for the end is now, 0 for
/// the start is a day before the end.
pub fn range(start: UnixMs, end: UnixMs, now: UnixMs) -> Result<(UnixMs, UnixMs), RangeError> {
    let end = if end == 0 { now } else { end };
    let start = if start == 0 {
        end - DEFAULT_RANGE_MS
    } else {
        start
    };
    if start >= end {
        return Err(RangeError::Backwards);
    }
    if end - start > MAX_RANGE_MS {
        return Err(RangeError::TooLong);
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Metric = Metric::TemperatureCelsius;

    fn hour(h: i64, stored: u64, lowest_seq: u64, highest_seq: u64) -> StoredHour {
        StoredHour {
            metric: T,
            hour: h * HOUR_MS,
            stored,
            lowest_seq,
            highest_seq,
        }
    }

    fn figures(expected: u64, stored: u64, restarts: u32) -> Figures {
        Figures {
            expected,
            stored,
            restarts,
            ..Figures::default()
        }
    }

    #[test]
    fn an_unbroken_run_misses_nothing() {
        let f = metric_figures(
            &[hour(0, 10, 1, 10), hour(1, 10, 11, 20)],
            &Surroundings::default(),
        );
        assert_eq!(f, [(0, figures(10, 10, 0)), (HOUR_MS, figures(10, 10, 0))]);
    }

    #[test]
    fn a_gap_is_charged_to_the_hour_after_it() {
        // 1..=10 stored, 11..=13 lost, 14..=20 stored.
        let f = metric_figures(
            &[hour(0, 10, 1, 10), hour(1, 7, 14, 20)],
            &Surroundings::default(),
        );
        assert_eq!(f[1].1, figures(10, 7, 0));
        assert_eq!(f[1].1.missing(), 3);
        // Inside an hour as well: 5 of 1..=8.
        let f = metric_figures(&[hour(0, 5, 1, 8)], &Surroundings::default());
        assert_eq!(f[0].1.missing(), 3);
    }

    #[test]
    fn the_gap_before_the_range_counts_from_the_number_stored_before_it() {
        let before = Surroundings {
            before: Some(100),
            runs: vec![],
        };
        let f = metric_figures(&[hour(5, 4, 103, 106)], &before);
        assert_eq!(f[0].1, figures(6, 4, 0));
    }

    #[test]
    fn a_restart_is_not_loss_but_the_end_of_the_old_run_and_the_start_of_the_new_are() {
        // Run 1 started at 1: 1..=10 stored. The agent restarted; run 2
        // starts at 5000: 5000 lost, 5001..=5004 stored.
        let runs = Surroundings {
            before: None,
            runs: vec![
                RunStart {
                    start: 1,
                    stored_below: None,
                },
                RunStart {
                    start: 5000,
                    stored_below: Some(10),
                },
            ],
        };
        let f = metric_figures(&[hour(0, 10, 1, 10), hour(1, 4, 5001, 5004)], &runs);
        assert_eq!(f[0].1, figures(10, 10, 0));
        assert_eq!(f[1].1, figures(5, 4, 1));
        // Both runs in one hour: the same.
        let f = metric_figures(&[hour(0, 14, 1, 5004)], &runs);
        assert_eq!(f[0].1, figures(15, 14, 1));
    }

    #[test]
    fn the_first_readings_of_a_run_lost_are_missing() {
        // The run started at 1, the first stored is 4.
        let runs = Surroundings {
            before: None,
            runs: vec![RunStart {
                start: 1,
                stored_below: None,
            }],
        };
        let f = metric_figures(&[hour(0, 3, 4, 6)], &runs);
        assert_eq!(f[0].1, figures(6, 3, 0));
    }

    #[test]
    fn a_sender_that_names_no_run_has_every_gap_counted() {
        let f = metric_figures(
            &[hour(0, 2, 1, 1), hour(1, 1, 1000, 1000)],
            &Surroundings::default(),
        );
        assert_eq!(f[1].1.missing(), 998);
    }

    #[test]
    fn a_late_reading_fills_its_gap() {
        let before = metric_figures(&[hour(0, 9, 1, 10)], &Surroundings::default());
        let after = metric_figures(&[hour(0, 10, 1, 10)], &Surroundings::default());
        assert_eq!((before[0].1.missing(), after[0].1.missing()), (1, 0));
    }

    #[test]
    fn metrics_add_up_by_hour_and_the_last_loss_is_the_newest_hour_with_one() {
        let temperature = metric_figures(
            &[hour(0, 10, 1, 10), hour(1, 8, 11, 20)],
            &Surroundings::default(),
        );
        let humidity = metric_figures(
            &[hour(0, 9, 1, 10), hour(1, 10, 11, 20)],
            &Surroundings::default(),
        );
        let d = device_delivery([temperature, humidity], &[], &[]);
        assert_eq!(d.total, figures(40, 37, 0));
        let restart = |restarts| vec![(0, figures(1, 1, restarts))];
        assert_eq!(
            device_delivery([restart(1), restart(1)], &[], &[])
                .total
                .restarts,
            1,
            "one restart, two metrics"
        );
        assert_eq!(d.hours[0].1.missing(), 1);
        assert_eq!(d.last_loss(), Some(HOUR_MS));
        assert_eq!(device_delivery([], &[], &[]).last_loss(), None);
    }

    fn sent_through(run_start: u64, sent_through: u64) -> Sent {
        Sent {
            device: DeviceId::parse("sensor-1", "device_id").unwrap(),
            run_start,
            sent_through,
            metrics: MetricSet::default(),
            said_at: 5 * HOUR_MS + 1,
        }
    }

    #[test]
    fn what_a_sensor_said_it_sent_above_the_last_stored_is_missing() {
        let said = sent_through(100, 120);
        let t = Metric::TemperatureCelsius;
        assert_eq!(tail_missing(&said, t, Some(110)), 10, "111..=120");
        assert_eq!(tail_missing(&said, t, Some(120)), 0, "all of it stored");
        assert_eq!(
            tail_missing(&said, t, Some(40)),
            21,
            "nothing of the run stored: 100..=120"
        );
        assert_eq!(
            tail_missing(&said, t, None),
            0,
            "a metric never stored, and not said: maybe not one it measures"
        );
    }

    #[test]
    fn a_run_said_to_carry_a_metric_never_stored_is_missing_whole() {
        let account = sent(100, 120, &[1, 3]).unwrap().unwrap();
        let said = Sent {
            metrics: account.metrics,
            ..sent_through(account.run_start, account.last_seq)
        };
        assert_eq!(tail_missing(&said, Metric::TemperatureCelsius, None), 21);
        assert_eq!(tail_missing(&said, Metric::PressureHpa, None), 21);
        assert_eq!(
            tail_missing(&said, Metric::HumidityPercent, None),
            0,
            "not one of its metrics"
        );
        assert_eq!(tail_missing(&said, Metric::PressureHpa, Some(118)), 2);
        assert_eq!(
            MetricSet::from_bits(account.metrics.bits()),
            account.metrics
        );
        assert_eq!(MetricSet::from_bits(1 << 40), MetricSet::default());
    }

    #[test]
    fn an_account_naming_no_metric_is_refused_by_name() {
        assert_eq!(sent(1, 5, &[2, 9]), Err(SentError::UnknownMetric(9)));
        assert_eq!(sent(1, 5, &[0]), Err(SentError::UnknownMetric(0)));
        assert_eq!(
            SentError::UnknownMetric(9).to_string(),
            "metrics names 9, which is no metric"
        );
        assert_eq!(sent(0, 0, &[9]), Ok(None), "nothing said, nothing checked");
    }

    #[test]
    fn a_tail_is_charged_to_the_hour_the_sensor_said_it_and_adds_to_the_gaps() {
        let stored = metric_figures(&[hour(5, 9, 1, 10)], &Surroundings::default());
        let said = sent_through(1, 15);
        let tail = tail_missing(&said, Metric::TemperatureCelsius, Some(10));
        let d = device_delivery([stored], &[], &[(said.said_at, tail)]);
        assert_eq!(d.total.expected, 15);
        assert_eq!(d.total.missing(), 6, "seq 5 (a gap) and 11..=15 (the tail)");
        assert_eq!(d.hours.len(), 1);
        assert_eq!(d.last_loss(), Some(5 * HOUR_MS));
    }

    #[test]
    fn a_status_says_nothing_sent_or_a_number_hearth_keeps() {
        let account = |run_start, last_seq| {
            Some(RunAccount {
                run_start,
                last_seq,
                metrics: MetricSet::default(),
            })
        };
        assert_eq!(sent(7, 0, &[]), Ok(None));
        assert_eq!(sent(7, 9, &[]), Ok(account(7, 9)));
        assert_eq!(
            sent(0, 9, &[]),
            Ok(account(0, 9)),
            "a sender that names no run"
        );
        assert_eq!(sent(7, u64::MAX, &[]), Err(SentError::TooHigh(u64::MAX)));
        assert_eq!(
            sent(7, 6, &[]).unwrap_err().to_string(),
            "last_seq 6 is below run_start 7"
        );
    }

    fn reading(device: &str, metric: Metric, seq: u64) -> Reading {
        Reading {
            device_id: DeviceId::parse(device, "device_id").unwrap(),
            metric,
            seq,
            // Numbers 1..=99 in hour 0, 100.. in hour 1.
            time: (seq / 100) as i64 * HOUR_MS,
            value: 20.0,
        }
    }

    /// `arrivals` over `readings` with `stored` stored before them.
    fn sorted(readings: &[Reading], stored: &[Reading]) -> Vec<(String, Arrivals)> {
        let key = |r: &Reading| (r.device_id.clone(), r.metric, r.seq);
        let stored: HashSet<_> = stored.iter().map(key).collect();
        arrivals(
            readings,
            |d, m| {
                stored
                    .iter()
                    .filter(|(sd, sm, _)| sd == d && *sm == m)
                    .map(|s| s.2)
                    .max()
            },
            |d, m, seq| stored.contains(&(d.clone(), m, seq)),
        )
        .counts
        .into_iter()
        .map(|(d, a)| (d.to_string(), a))
        .collect()
    }

    fn arrived(device: &str, hour: i64, late: u64, duplicates: u64) -> (String, Arrivals) {
        let arrived = Arrivals {
            metric: T,
            hour: hour * HOUR_MS,
            late,
            duplicates,
        };
        (device.to_owned(), arrived)
    }

    #[test]
    fn readings_in_order_are_neither_late_nor_duplicates() {
        let before = [reading("a", T, 1), reading("a", T, 2)];
        let now = [reading("a", T, 3), reading("a", T, 5), reading("a", T, 6)];
        assert!(sorted(&now, &before).is_empty());
        assert!(
            sorted(&now, &[]).is_empty(),
            "the first readings of a metric"
        );
    }

    #[test]
    fn a_reading_below_the_highest_stored_is_late_and_one_stored_already_a_duplicate() {
        let before = [reading("a", T, 1), reading("a", T, 2), reading("a", T, 5)];
        // 3 and 4 fill the gap; 2 and 5 come again; 6 is on time.
        let now = [3, 2, 4, 5, 6].map(|s| reading("a", T, s));
        assert_eq!(sorted(&now, &before), [arrived("a", 0, 2, 2)]);
    }

    #[test]
    fn duplicates_are_named_by_where_they_are_in_the_commit() {
        // 2 is stored; 3 comes twice.
        let now = [3, 2, 4, 3].map(|s| reading("a", T, s));
        let sorted = arrivals(&now, |_, _| Some(2), |_, _, seq| seq == 2);
        assert_eq!(sorted.repeats, [1, 3]);
        let fresh = arrivals(&now[..1], |_, _| Some(2), |_, _, _| false);
        assert!(fresh.repeats.is_empty() && fresh.counts.is_empty());
    }

    #[test]
    fn within_one_commit_order_of_arrival_counts_as_if_each_were_committed_alone() {
        // 5 then 3: 3 is late; 5 twice: once a duplicate.
        let now = [5, 3, 5].map(|s| reading("a", T, s));
        assert_eq!(sorted(&now, &[]), [arrived("a", 0, 1, 1)]);
    }

    #[test]
    fn counts_are_per_device_metric_and_hour_of_the_reading() {
        let h = Metric::HumidityPercent;
        let before = [
            reading("a", T, 150),
            reading("a", h, 150),
            reading("b", T, 10),
        ];
        let now = [
            reading("a", T, 10),  // late, hour 0
            reading("a", T, 120), // late, hour 1
            reading("a", T, 150), // duplicate, hour 1
            reading("a", h, 151), // on time
            reading("b", T, 10),  // duplicate of b's
            reading("b", T, 11),  // on time
        ];
        let found = sorted(&now, &before);
        assert_eq!(
            found,
            [
                arrived("a", 0, 1, 0),
                arrived("a", 1, 1, 1),
                arrived("b", 0, 0, 1)
            ]
        );
        // Summed into one device's delivery by hour, next to what is stored.
        let a: Vec<Arrivals> = found
            .iter()
            .filter(|(d, _)| d == "a")
            .map(|(_, a)| *a)
            .collect();
        let stored = vec![(0, figures(10, 10, 0)), (HOUR_MS, figures(5, 5, 0))];
        let d = device_delivery([stored], &a, &[]);
        assert_eq!((d.total.late, d.total.duplicates), (2, 1));
        assert_eq!((d.hours[1].1.late, d.hours[1].1.duplicates), (1, 1));
        assert_eq!(d.total.missing(), 0, "late readings are not missing");
    }

    #[test]
    fn ranges_default_to_the_last_day_and_are_bounded() {
        assert_eq!(range(0, 0, 10 * DAY_MS), Ok((9 * DAY_MS, 10 * DAY_MS)));
        assert_eq!(range(5, 4, 0), Err(RangeError::Backwards));
        assert_eq!(range(1, 1 + 32 * DAY_MS, 0), Err(RangeError::TooLong));
        assert_eq!(hour_of(HOUR_MS + 5), HOUR_MS);
    }
}
