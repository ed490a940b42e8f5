//! Hearth's domain: ids, devices and their desired/reported state machine,
//! decoding what devices publish, reading validation, threshold rules and
//! series plans; delivery figures from sequence numbers; readings as CSV; devices as Home Assistant entities.
//! Nothing here does I/O or knows about tonic, sqlx or rumqttc; time comes
//! in as arguments. The backend re-exports it as `hearth_backend::domain`.

pub mod access;
pub mod broker_acl;
pub mod delivery;
pub mod device;
pub mod export;
pub mod home_assistant;
pub mod ids;
pub mod inbound;
pub mod limits;
pub mod reading;
pub mod rule;
pub mod series;

pub use access::{Caller, Decision, Denied, DeviceScope, Grant, Role};
pub use broker_acl::{BrokerClient, BrokerRefusal};
pub use device::{
    ActuatorState, Command, CommandState, Desired, Device, DeviceKind, Home, Mode, ReportError,
    Reported, Transition,
};
pub use ids::{DeviceId, HomeId, InvalidId, RuleId, TokenName, Username};
pub use inbound::{decode_device_message, DeviceMessage, MessageBody, Refused};
pub use reading::{decode_readings, validate_batch, Reading, RejectReason};
pub use rule::{
    replay, Action, LoggedDecision, Pending, RuleDecision, RuleError, RuleState, StaleAction,
    ThresholdRule,
};
pub use series::{Resolution, SeriesPlan, SeriesPoint, DAY_MS, HOUR_MS, MINUTE_MS};

/// Milliseconds since the Unix epoch, the one time unit of the domain.
pub type UnixMs = i64;
