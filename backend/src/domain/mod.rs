//! Hearth's domain: ids, devices and their desired/reported state machine,
//! reading validation and threshold rules. Nothing here does I/O or knows
//! about tonic, sqlx or rumqttc; time comes in as arguments.

pub mod device;
pub mod ids;
pub mod reading;
pub mod rule;

pub use device::{
    ActuatorState, Desired, Device, DeviceKind, Home, Mode, ReportError, Reported, Transition,
};
pub use ids::{DeviceId, HomeId, InvalidId, RuleId};
pub use reading::{validate_batch, Reading, RejectReason};
pub use rule::{RuleError, ThresholdRule};

/// Milliseconds since the Unix epoch, the one time unit of the domain.
pub type UnixMs = i64;
