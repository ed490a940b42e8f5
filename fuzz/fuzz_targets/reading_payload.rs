//! Fuzz target: raw bytes as the payload of a message on a device's
//! `readings` topic, through the backend's decode and validation
//! (`hearth_fuzz::check_readings_message`).
//!
//! Invariants: nothing panics; what decodes re-encodes canonically; an
//! accepted batch keeps every reading, each finite, of a known metric not
//! repeated, of the topic's device, with a time inside the accepted window.
#![no_main]

use hearth_proto::topics::Topics;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let topics = Topics::default();
    hearth_fuzz::check_readings_message(&topics, "hearth/v1/home-1/sensor-1/readings", payload);
});
