//! Shared checks of Hearth's fuzz targets (see `fuzz_targets/`).
//!
//! [`check_readings_message`] runs what the backend does with a message on a
//! device's `readings` topic — topic parse, protobuf decode, topic/payload
//! agreement, [`validate_batch`] — and asserts what must hold of whatever it
//! accepts.

use hearth_domain::{
    reading::{MAX_FUTURE_MS, MAX_PAST_MS, MAX_READINGS_PER_BATCH},
    validate_batch, DeviceId, HomeId, Reading,
};
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{Metric, ReadingBatch},
};
use prost::Message as _;

/// The backend's clock in the targets, so inputs can aim at the time window.
pub const NOW: i64 = 1_800_000_000_000;
/// Topic and payload → the backend's decision: the topic parse, then the
/// backend's own decode step.
pub fn decode_readings(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
) -> Result<(HomeId, DeviceId, ReadingBatch), String> {
    let parsed = topics.parse(topic).map_err(|e| e.to_string())?;
    if parsed.channel != Channel::Readings {
        return Err("not a readings topic".into());
    }
    let home_id = HomeId::parse(parsed.home_id, "topic home").map_err(|e| e.to_string())?;
    let device_id = DeviceId::parse(parsed.device_id, "topic device").map_err(|e| e.to_string())?;
    let batch = hearth_domain::decode_readings(&home_id, &device_id, payload)?;
    Ok((home_id, device_id, batch))
}

/// Runs a readings message through decode and validation and checks the
/// invariants; returns the accepted readings.
pub fn check_readings_message(topics: &Topics, topic: &str, payload: &[u8]) -> Vec<Reading> {
    let Ok((home_id, device_id, batch)) = decode_readings(topics, topic, payload) else {
        return Vec::new();
    };
    assert!(batch.home_id.is_empty() || batch.home_id == home_id.as_str());
    assert!(batch.device_id.is_empty() || batch.device_id == device_id.as_str());

    // What decodes re-encodes to one canonical form.
    let encoded = batch.encode_to_vec();
    let again = ReadingBatch::decode(encoded.as_slice()).expect("re-encoded batch decodes");
    assert_eq!(again.encode_to_vec(), encoded, "protobuf round trip");

    let readings = match validate_batch(&device_id, &batch, NOW) {
        Ok(readings) => readings,
        Err(reason) => {
            // The reason is shown to people: it must render.
            assert!(!reason.to_string().is_empty());
            return Vec::new();
        }
    };
    assert!(!readings.is_empty(), "an accepted batch has readings");
    assert!(readings.len() <= MAX_READINGS_PER_BATCH);
    assert_eq!(
        readings.len(),
        batch.readings.len(),
        "nothing silently dropped"
    );
    let time = if batch.time_unix_ms == 0 {
        NOW
    } else {
        batch.time_unix_ms
    };
    for (i, (r, sent)) in readings.iter().zip(&batch.readings).enumerate() {
        assert!(
            r.value.is_finite(),
            "readings[{i}] accepted with {}",
            r.value
        );
        assert_eq!(r.value.to_bits(), sent.value.to_bits());
        assert_ne!(r.metric, Metric::Unspecified);
        assert_eq!(r.metric as i32, sent.metric);
        assert!(
            readings[..i].iter().all(|o| o.metric != r.metric),
            "metric repeated in an accepted batch"
        );
        assert_eq!(r.device_id, device_id);
        assert_eq!(r.seq, batch.seq);
        assert_eq!(r.time, time);
        assert!(
            (NOW - MAX_PAST_MS..=NOW + MAX_FUTURE_MS).contains(&r.time),
            "time {} accepted outside the window",
            r.time
        );
    }
    readings
}
