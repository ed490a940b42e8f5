//! The Hearth device agent for a Raspberry Pi.
//!
//! What a device does on the wire (the hardware traits, simulated hardware,
//! the sensor and actuator loops, sequence numbers) is `hearth-device`,
//! re-exported here; this crate adds the real hardware and the binary's
//! settings and start-up.
//!
//! - [`sensehat`]: the Sense HAT's HTS221 and LPS25H over an [`I2cBus`]
//!   trait: register decoding and factory calibration, tested on a fake bus.
//! - [`gpio`]: a fan or light on an output pin, off whenever not driven.
//! - `rpi` (feature `rpi`, on by default): rppal's I2C and GPIO behind those
//!   two, for a real Pi.
//! - [`settings`]: the typed settings, from a TOML file, the environment and
//!   flags.
//! - [`app`]: from settings to running hardware and loops, including a fleet
//!   of simulated sensors for load tests.
//!
//! [`I2cBus`]: sensehat::I2cBus

pub mod app;
pub mod gpio;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod sensehat;
pub mod settings;

pub use hearth_device::{actuator, hardware, mqtt, sensor, seq, sim};
pub use hearth_runtime::unix_ms_now;
