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

use hearth_proto::v1::Metric;

use crate::{UnixMs, DAY_MS, HOUR_MS};

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

/// Expected, stored and missing readings, and the restarts seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub expected: u64,
    pub stored: u64,
    pub restarts: u32,
}

impl Figures {
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.stored)
    }

    fn add(&mut self, other: Figures) {
        self.expected += other.expected;
        self.stored += other.stored;
        self.restarts += other.restarts;
    }
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

/// Sums the metrics' figures into a device's, by hour.
pub fn device_delivery(per_metric: impl IntoIterator<Item = Vec<(UnixMs, Figures)>>) -> Delivery {
    let mut by_hour = std::collections::BTreeMap::<UnixMs, Figures>::new();
    for metric in per_metric {
        for (hour, figures) in metric {
            let sum = by_hour.entry(hour).or_default();
            sum.expected += figures.expected;
            sum.stored += figures.stored;
            // Every metric sees the same restart.
            sum.restarts = sum.restarts.max(figures.restarts);
        }
    }
    let mut delivery = Delivery::default();
    for (hour, figures) in by_hour {
        delivery.total.add(figures);
        delivery.hours.push((hour, figures));
    }
    delivery
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
        let d = device_delivery([temperature, humidity]);
        assert_eq!(d.total, figures(40, 37, 0));
        let restart = |restarts| vec![(0, figures(1, 1, restarts))];
        assert_eq!(
            device_delivery([restart(1), restart(1)]).total.restarts,
            1,
            "one restart, two metrics"
        );
        assert_eq!(d.hours[0].1.missing(), 1);
        assert_eq!(d.last_loss(), Some(HOUR_MS));
        assert_eq!(device_delivery([]).last_loss(), None);
    }

    #[test]
    fn ranges_default_to_the_last_day_and_are_bounded() {
        assert_eq!(range(0, 0, 10 * DAY_MS), Ok((9 * DAY_MS, 10 * DAY_MS)));
        assert_eq!(range(5, 4, 0), Err(RangeError::Backwards));
        assert_eq!(range(1, 1 + 32 * DAY_MS, 0), Err(RangeError::TooLong));
        assert_eq!(hour_of(HOUR_MS + 5), HOUR_MS);
    }
}
