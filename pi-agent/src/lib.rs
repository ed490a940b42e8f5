//! The Hearth device agent.
//!
//! A device is either a **sensor** (publishes [`ReadingBatch`]es on its
//! `readings` topic) or an **actuator** (applies [`DesiredState`]s from its
//! `desired` topic to an output and reports what it applied on `reported`).
//! Both announce themselves on `status`, with an MQTT last will saying offline.
//!
//! - [`hardware`]: the `Sensors` and `Output` traits the agent drives.
//! - [`sim`]: simulated hardware (the paper's test stub): scripted waveforms
//!   and an output that remembers what it was told. The backend's demo home
//!   runs on it.
//! - [`actuator`]: the pure decision of whether to apply a desired state.
//! - [`mqtt`]: connecting, and the sensor and actuator loops.
//!
//! [`ReadingBatch`]: hearth_proto::v1::ReadingBatch
//! [`DesiredState`]: hearth_proto::v1::DesiredState

pub mod actuator;
pub mod hardware;
pub mod mqtt;
pub mod sim;

/// Milliseconds since the Unix epoch by the system clock.
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
