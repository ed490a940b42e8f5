//! Shared checks of Hearth's fuzz targets (see `fuzz_targets/`).
//!
//! [`check_readings_message`] runs what the backend does with a message on a
//! device's `readings` topic — [`decode_device_message`] (topic parse, size
//! limit, protobuf decode, topic/payload agreement), then [`validate_batch`]:
//! the functions the backend itself calls — and asserts what must hold of
//! whatever they accept.

use hearth_domain::{
    decode_device_message,
    inbound::MAX_PAYLOAD,
    reading::{MAX_FUTURE_MS, MAX_PAST_MS, MAX_READINGS_PER_BATCH},
    validate_batch, DeviceMessage, MessageBody, Reading,
};
use hearth_proto::{
    topics::Topics,
    v1::{Metric, ReadingBatch},
};
use prost::Message as _;

/// The backend's clock in the targets, so inputs can aim at the time window.
pub const NOW: i64 = 1_800_000_000_000;

/// Runs a readings message through decode and validation and checks the
/// invariants; returns the accepted readings.
pub fn check_readings_message(topics: &Topics, topic: &str, payload: &[u8]) -> Vec<Reading> {
    let decoded = decode_device_message(topics, topic, payload);
    // The refusal is logged: it must render.
    if let Err(refused) = &decoded {
        assert!(!refused.to_string().is_empty());
    }
    let Ok(DeviceMessage {
        home_id,
        device_id,
        body: MessageBody::Readings(batch),
    }) = decoded
    else {
        return Vec::new();
    };
    assert!(payload.len() <= MAX_PAYLOAD);
    let parsed = topics
        .parse(topic)
        .expect("a decoded message's topic parses");
    assert_eq!(
        (parsed.home_id, parsed.device_id),
        (home_id.as_str(), device_id.as_str())
    );
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
