//! What checking a datagram costs the gateway's receive loop, signed
//! (HMAC-SHA256 and the replay window) against unsigned (a gateway without
//! keys, on loopback): the time `Admission::check` and `record` take per
//! datagram of a typical three-reading batch, on one core.
//!
//! ```sh
//! cargo run --release -p hearth-gateway --example admission-cost [-- DATAGRAMS]
//! ```

use std::time::Instant;

use hearth_gateway::{admission::Admission, replay::ReplayGuard};
use hearth_proto::{
    signing::{DeviceKey, DeviceKeys},
    v1::{Metric, Reading, ReadingBatch},
};
use prost::Message as _;

const DEVICES: u64 = 100;

fn batch(i: u64) -> Vec<u8> {
    ReadingBatch {
        home_id: "home-1".into(),
        device_id: format!("sensor-{}", i % DEVICES),
        seq: 1_764_000_000_000 + i / DEVICES,
        time_unix_ms: 1_764_000_000_000 + i as i64,
        readings: [
            Metric::TemperatureCelsius,
            Metric::HumidityPercent,
            Metric::PressureHpa,
        ]
        .iter()
        .map(|m| Reading {
            metric: *m as i32,
            value: 20.0 + (i % 100) as f64 / 10.0,
        })
        .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Datagrams per second through `check` and `record`.
fn rate(mut admission: Admission, datagrams: &[Vec<u8>]) -> f64 {
    let started = Instant::now();
    for datagram in datagrams {
        let admitted = admission.check(datagram).expect("every datagram is taken");
        admission.record(&admitted.record);
    }
    datagrams.len() as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("DATAGRAMS is a number"));
    let key = |d: u64| DeviceKey::from_bytes([d as u8; 32]);
    let keys: DeviceKeys = (0..DEVICES)
        .map(|d| (format!("sensor-{d}"), key(d)))
        .collect();
    let bare: Vec<Vec<u8>> = (0..n).map(batch).collect();
    let signed: Vec<Vec<u8>> = (0..n).map(|i| key(i % DEVICES).seal(batch(i))).collect();
    let open = rate(Admission::Open, &bare);
    let checked = rate(
        Admission::Signed {
            keys,
            replay: ReplayGuard::default(),
        },
        &signed,
    );
    println!(
        "{n} datagrams of {} bytes (signed: {} bytes), {DEVICES} devices",
        bare[0].len(),
        signed[0].len()
    );
    println!(
        "  unsigned (no keys)  {open:>10.0} datagrams/s  {:>6.2} µs each",
        1e6 / open
    );
    println!(
        "  signed and checked  {checked:>10.0} datagrams/s  {:>6.2} µs each",
        1e6 / checked
    );
}
