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
//! - [`sensehat`]: the Sense HAT's HTS221 and LPS25H over an [`I2cBus`]
//!   trait: register decoding and factory calibration, tested on a fake bus.
//! - [`gpio`]: a fan or light on an output pin, off whenever not driven.
//! - `rpi` (feature `rpi`, on by default): rppal's I2C and GPIO behind those
//!   two, for a real Pi.
//! - [`actuator`]: the pure decision of whether to apply a desired state.
//! - [`mqtt`]: connecting (with per-device credentials, backoff and jitter),
//!   and the actuator loop.
//! - [`sensor`]: the sensor loop, sending batches over MQTT, as UDP
//!   datagrams to a gateway, or both.
//! - [`seq`]: sequence numbers that keep growing across restarts.
//! - [`settings`]: the typed settings, from a TOML file and the environment.
//! - [`app`]: from settings to running hardware and loops, including a fleet
//!   of simulated sensors for load tests.
//!
//! [`ReadingBatch`]: hearth_proto::v1::ReadingBatch
//! [`DesiredState`]: hearth_proto::v1::DesiredState
//! [`I2cBus`]: sensehat::I2cBus

pub mod actuator;
pub mod app;
pub mod gpio;
pub mod hardware;
pub mod mqtt;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod sensehat;
pub mod sensor;
pub mod seq;
pub mod settings;
pub mod sim;

/// Milliseconds since the Unix epoch by the system clock.
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
