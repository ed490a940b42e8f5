//! Fuzz target: structured `ReadingBatch`es (any metric code, any f64 bit
//! pattern, times around the accepted window, ids that may disagree with the
//! topic), encoded and run through the backend's decode and validation.
//! Reaches validation paths that random bytes rarely build.
#![no_main]

use arbitrary::Arbitrary;
use hearth_fuzz::NOW;
use hearth_proto::{
    topics::Topics,
    v1::{Reading, ReadingBatch},
};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0: absent; 1: the topic's; 2: another.
    ids: (u8, u8),
    seq: u64,
    /// 0: no time (means now); 1: near now; else any.
    time_kind: u8,
    time: i64,
    readings: Vec<(i8, u64)>,
}

fuzz_target!(|input: Input| {
    let pick = |which: u8, same: &str| match which % 3 {
        0 => String::new(),
        1 => same.to_owned(),
        _ => format!("{same}x"),
    };
    let time_unix_ms = match input.time_kind % 3 {
        0 => 0,
        // ± about two years around NOW
        1 => NOW.wrapping_add(input.time % (2 * 366 * 24 * 3_600_000)),
        _ => input.time,
    };
    let batch = ReadingBatch {
        home_id: pick(input.ids.0, "home-1"),
        device_id: pick(input.ids.1, "sensor-1"),
        seq: input.seq,
        time_unix_ms,
        readings: input
            .readings
            .iter()
            .map(|&(metric, bits)| Reading {
                metric: i32::from(metric),
                value: f64::from_bits(bits),
            })
            .collect(),
        ..Default::default()
    };
    let accepted = hearth_fuzz::check_readings_message(
        &Topics::default(),
        "hearth/v1/home-1/sensor-1/readings",
        &batch.encode_to_vec(),
    );
    if !accepted.is_empty() {
        assert!(input.ids.0 % 3 != 2 && input.ids.1 % 3 != 2);
    }
});
