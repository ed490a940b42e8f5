//! What a Hearth device does on the wire, shared by the Pi agent
//! (`hearth-agent`) and the backend's demo home, without any hardware crate.
//!
//! A device is either a **sensor** (publishes [`ReadingBatch`]es on its
//! `readings` topic) or an **actuator** (applies [`DesiredState`]s from its
//! `desired` topic to an output and reports what it applied on `reported`).
//! Both announce themselves on `status`, with an MQTT last will saying offline.
//!
//! - [`hardware`]: the `Sensors` and `Output` traits the loops drive.
//! - [`sim`]: simulated hardware (the paper's test stub): scripted waveforms
//!   and an output that remembers what it was told.
//! - [`actuator`]: the pure decision of whether to apply a desired state.
//! - [`mqtt`]: connecting (with per-device credentials, backoff and jitter),
//!   and the actuator loop.
//! - [`sensor`]: the sensor loop, sending batches over MQTT, as UDP
//!   datagrams to a gateway, or both.
//! - [`seq`]: sequence numbers that keep growing across restarts.
//!
//! [`ReadingBatch`]: hearth_proto::v1::ReadingBatch
//! [`DesiredState`]: hearth_proto::v1::DesiredState

pub mod actuator;
pub mod hardware;
pub mod mqtt;
pub mod sensor;
pub mod seq;
pub mod sim;
