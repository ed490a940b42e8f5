//! Validation of incoming readings: whatever arrives from a device or the
//! gateway becomes a list of [`Reading`]s or a reason it was rejected.

use hearth_proto::v1::{self, Metric};
use prost::Message as _;

use super::{DeviceId, HomeId, UnixMs};

/// One stored reading. `(device_id, metric, seq)` is its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device_id: DeviceId,
    pub metric: Metric,
    pub seq: u64,
    pub time: UnixMs,
    pub value: f64,
}

/// How far a reading's timestamp may lie ahead of the backend's clock.
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// The oldest reading accepted (a gateway may replay a long backlog).
pub const MAX_PAST_MS: i64 = 365 * 24 * 60 * 60 * 1000;
/// Readings in one batch, more than a SenseHat has metrics, far less than abuse.
pub const MAX_READINGS_PER_BATCH: usize = 32;
/// The largest sequence number Hearth keeps. Why: the databases store it in a
/// signed 64-bit column, where a larger one would wrap negative and break
/// ordering and gap counting.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The values a sensor of `metric` can report: the measuring ranges of the
/// Sense HAT's HTS221 (temperature, humidity) and LPS25H (pressure). Anything
/// outside is a fault or a forgery, not weather.
pub fn plausible(metric: Metric) -> std::ops::RangeInclusive<f64> {
    match metric {
        Metric::TemperatureCelsius => -40.0..=120.0,
        Metric::HumidityPercent => 0.0..=100.0,
        Metric::PressureHpa => 260.0..=1260.0,
        Metric::Unspecified => 0.0..=0.0,
    }
}

/// Why a batch was rejected; shown in logs and gRPC responses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectReason {
    #[error("batch has no readings")]
    Empty,
    #[error("batch has {0} readings, at most {MAX_READINGS_PER_BATCH} allowed")]
    TooMany(usize),
    #[error("readings[{0}].metric is unspecified or unknown")]
    UnknownMetric(usize),
    #[error("readings[{index}].value {value} is not a finite number")]
    NotFinite { index: usize, value: f64 },
    #[error("time_unix_ms {0} is more than 5 minutes in the future or over a year old")]
    TimeOutOfRange(UnixMs),
    #[error("readings[{0}] repeats a metric already in the batch")]
    DuplicateMetric(usize),
    #[error("seq {0} is above {MAX_SEQ}, the largest Hearth keeps")]
    SeqOutOfRange(u64),
    #[error("run_start {run_start} is above seq {seq}: a run starts at or before its batches")]
    RunStartAfterSeq { run_start: u64, seq: u64 },
    #[error(
        "readings[{index}].value {value} is outside what a {metric} sensor reports ({min} to {max})",
        value = short(*value),
        metric = metric.short_name(),
        min = plausible(*metric).start(),
        max = plausible(*metric).end()
    )]
    Implausible {
        index: usize,
        metric: Metric,
        value: f64,
    },
}

/// `value` as a log line shows it: 21.5, but 1e300 rather than 301 digits.
fn short(value: f64) -> String {
    match value.abs() < 1e9 {
        true => value.to_string(),
        false => format!("{value:e}"),
    }
}

/// Decodes the payload of a message on `device_id`'s `readings` topic: a
/// `ReadingBatch` that names no other device or home than its topic. The
/// backend runs exactly this, and the fuzz targets (`fuzz/`) drive it.
pub fn decode_readings(
    home_id: &HomeId,
    device_id: &DeviceId,
    payload: &[u8],
) -> Result<v1::ReadingBatch, String> {
    let batch = v1::ReadingBatch::decode(payload)
        .map_err(|e| format!("payload is not a hearth.v1.ReadingBatch: {e}"))?;
    if (!batch.device_id.is_empty() && batch.device_id != device_id.as_str())
        || (!batch.home_id.is_empty() && batch.home_id != home_id.as_str())
    {
        return Err("payload names another device than its topic".into());
    }
    Ok(batch)
}

/// Validates a batch from `device_id`. `time_unix_ms` 0 means "now" (for
/// devices without a clock).
pub fn validate_batch(
    device_id: &DeviceId,
    batch: &v1::ReadingBatch,
    now: UnixMs,
) -> Result<Vec<Reading>, RejectReason> {
    if batch.readings.is_empty() {
        return Err(RejectReason::Empty);
    }
    if batch.readings.len() > MAX_READINGS_PER_BATCH {
        return Err(RejectReason::TooMany(batch.readings.len()));
    }
    if batch.seq > MAX_SEQ {
        return Err(RejectReason::SeqOutOfRange(batch.seq));
    }
    if batch.run_start > batch.seq {
        return Err(RejectReason::RunStartAfterSeq {
            run_start: batch.run_start,
            seq: batch.seq,
        });
    }
    let time = if batch.time_unix_ms == 0 {
        now
    } else {
        batch.time_unix_ms
    };
    if time > now + MAX_FUTURE_MS || time < now - MAX_PAST_MS {
        return Err(RejectReason::TimeOutOfRange(time));
    }
    let mut readings: Vec<Reading> = Vec::with_capacity(batch.readings.len());
    for (index, r) in batch.readings.iter().enumerate() {
        let metric = match Metric::try_from(r.metric) {
            Ok(Metric::Unspecified) | Err(_) => return Err(RejectReason::UnknownMetric(index)),
            Ok(m) => m,
        };
        if !r.value.is_finite() {
            return Err(RejectReason::NotFinite {
                index,
                value: r.value,
            });
        }
        if !plausible(metric).contains(&r.value) {
            return Err(RejectReason::Implausible {
                index,
                metric,
                value: r.value,
            });
        }
        if readings.iter().any(|seen| seen.metric == metric) {
            return Err(RejectReason::DuplicateMetric(index));
        }
        readings.push(Reading {
            device_id: device_id.clone(),
            metric,
            seq: batch.seq,
            time,
            value: r.value,
        });
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMs = 1_800_000_000_000;

    fn batch(readings: &[(i32, f64)], time: UnixMs) -> v1::ReadingBatch {
        v1::ReadingBatch {
            seq: 9,
            time_unix_ms: time,
            readings: readings
                .iter()
                .map(|&(metric, value)| v1::Reading { metric, value })
                .collect(),
            ..Default::default()
        }
    }

    fn dev() -> DeviceId {
        DeviceId::parse("sensor-1", "device_id").unwrap()
    }

    #[test]
    fn accepts_a_sensehat_batch() {
        let b = batch(&[(1, 21.5), (2, 40.0), (3, 1013.2)], NOW - 1000);
        let rs = validate_batch(&dev(), &b, NOW).unwrap();
        assert_eq!(rs.len(), 3);
        assert_eq!(
            rs[0],
            Reading {
                device_id: dev(),
                metric: Metric::TemperatureCelsius,
                seq: 9,
                time: NOW - 1000,
                value: 21.5
            }
        );
    }

    #[test]
    fn a_batch_without_time_is_stamped_now() {
        let rs = validate_batch(&dev(), &batch(&[(1, 20.0)], 0), NOW).unwrap();
        assert_eq!(rs[0].time, NOW);
    }

    #[test]
    fn rejects_nan_infinite_unknown_and_repeated_metrics() {
        assert_eq!(
            validate_batch(&dev(), &batch(&[(1, f64::INFINITY)], NOW), NOW)
                .unwrap_err()
                .to_string(),
            "readings[0].value inf is not a finite number"
        );
        assert!(matches!(
            validate_batch(&dev(), &batch(&[(1, 1.0), (2, f64::NAN)], NOW), NOW),
            Err(RejectReason::NotFinite { index: 1, .. })
        ));
        assert_eq!(
            validate_batch(&dev(), &batch(&[(0, 1.0)], NOW), NOW),
            Err(RejectReason::UnknownMetric(0))
        );
        assert_eq!(
            validate_batch(&dev(), &batch(&[(99, 1.0)], NOW), NOW),
            Err(RejectReason::UnknownMetric(0))
        );
        assert_eq!(
            validate_batch(&dev(), &batch(&[(1, 1.0), (1, 2.0)], NOW), NOW),
            Err(RejectReason::DuplicateMetric(1))
        );
    }

    #[test]
    fn rejects_a_run_that_starts_after_its_batch() {
        let mut b = batch(&[(1, 20.0)], NOW);
        b.run_start = b.seq;
        assert!(validate_batch(&dev(), &b, NOW).is_ok());
        b.run_start = b.seq + 1;
        assert_eq!(
            validate_batch(&dev(), &b, NOW).unwrap_err().to_string(),
            "run_start 10 is above seq 9: a run starts at or before its batches"
        );
    }

    #[test]
    fn rejects_a_seq_the_database_cannot_keep() {
        let mut b = batch(&[(1, 20.0)], NOW);
        b.seq = MAX_SEQ;
        assert!(validate_batch(&dev(), &b, NOW).is_ok());
        b.seq = u64::MAX;
        let e = validate_batch(&dev(), &b, NOW).unwrap_err();
        assert_eq!(e, RejectReason::SeqOutOfRange(u64::MAX));
        assert_eq!(
            e.to_string(),
            "seq 18446744073709551615 is above 9223372036854775807, the largest Hearth keeps"
        );
    }

    #[test]
    fn rejects_values_no_sensor_of_the_metric_reports() {
        let e = validate_batch(&dev(), &batch(&[(1, 1e300)], NOW), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "readings[0].value 1e300 is outside what a temperature_celsius sensor reports \
             (-40 to 120)"
        );
        for (metric, value) in [(2, -0.5), (2, 100.5), (3, 100.0), (3, 1300.0), (1, -41.0)] {
            let b = batch(&[(metric, value)], NOW);
            assert!(
                matches!(
                    validate_batch(&dev(), &b, NOW),
                    Err(RejectReason::Implausible { .. })
                ),
                "{metric} {value}"
            );
        }
        for (metric, value) in [(1, -40.0), (1, 120.0), (2, 0.0), (2, 100.0), (3, 1013.25)] {
            assert!(validate_batch(&dev(), &batch(&[(metric, value)], NOW), NOW).is_ok());
        }
    }

    #[test]
    fn rejects_empty_oversize_and_badly_timed_batches() {
        assert_eq!(
            validate_batch(&dev(), &batch(&[], NOW), NOW),
            Err(RejectReason::Empty)
        );
        let many: Vec<(i32, f64)> = (0..33).map(|_| (1, 1.0)).collect();
        assert_eq!(
            validate_batch(&dev(), &batch(&many, NOW), NOW),
            Err(RejectReason::TooMany(33))
        );
        let future = NOW + MAX_FUTURE_MS + 1;
        assert_eq!(
            validate_batch(&dev(), &batch(&[(1, 1.0)], future), NOW),
            Err(RejectReason::TimeOutOfRange(future))
        );
        let ancient = NOW - MAX_PAST_MS - 1;
        assert_eq!(
            validate_batch(&dev(), &batch(&[(1, 1.0)], ancient), NOW),
            Err(RejectReason::TimeOutOfRange(ancient))
        );
    }
}
