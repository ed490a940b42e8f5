//! Conversions between the domain and the hearth.v1 messages.

use hearth_proto::v1;
use tonic::Status;

use super::status::invalid;
use crate::domain::{
    Action, Command, CommandState, Device, DeviceKind, Home, LoggedDecision, Mode, Reading,
    StaleAction, ThresholdRule,
};

pub fn home(h: &Home) -> v1::Home {
    v1::Home {
        id: h.id.to_string(),
        name: h.name.clone(),
        created_unix_ms: h.created_at,
    }
}

pub fn kind_to_proto(k: DeviceKind) -> v1::DeviceKind {
    match k {
        DeviceKind::Sensor => v1::DeviceKind::Sensor,
        DeviceKind::Fan => v1::DeviceKind::Fan,
        DeviceKind::Light => v1::DeviceKind::Light,
    }
}

pub fn kind_from_proto(value: i32, field: &str) -> Result<DeviceKind, Status> {
    match v1::DeviceKind::try_from(value) {
        Ok(v1::DeviceKind::Sensor) => Ok(DeviceKind::Sensor),
        Ok(v1::DeviceKind::Fan) => Ok(DeviceKind::Fan),
        Ok(v1::DeviceKind::Light) => Ok(DeviceKind::Light),
        _ => Err(invalid(
            field,
            "must be DEVICE_KIND_SENSOR, DEVICE_KIND_FAN or DEVICE_KIND_LIGHT",
        )),
    }
}

pub fn mode_to_proto(m: Mode) -> v1::Mode {
    match m {
        Mode::On => v1::Mode::On,
        Mode::Off => v1::Mode::Off,
        Mode::Auto => v1::Mode::Auto,
    }
}

pub fn mode_from_proto(value: i32, field: &str) -> Result<Mode, Status> {
    match v1::Mode::try_from(value) {
        Ok(v1::Mode::On) => Ok(Mode::On),
        Ok(v1::Mode::Off) => Ok(Mode::Off),
        Ok(v1::Mode::Auto) => Ok(Mode::Auto),
        _ => Err(invalid(field, "must be MODE_ON, MODE_OFF or MODE_AUTO")),
    }
}

/// A metric filter: unspecified means all.
pub fn metric_filter(value: i32, field: &str) -> Result<Option<v1::Metric>, Status> {
    match v1::Metric::try_from(value) {
        Ok(v1::Metric::Unspecified) => Ok(None),
        Ok(m) => Ok(Some(m)),
        Err(_) => Err(invalid(field, format!("{value} is not a known metric"))),
    }
}

/// `last_seen` is passed separately: the directory knows fresher values.
pub fn device(d: &Device, last_seen: Option<i64>) -> v1::Device {
    let actuator = d.kind.is_actuator();
    let s = &d.state;
    v1::Device {
        id: d.id.to_string(),
        home_id: d.home_id.to_string(),
        kind: kind_to_proto(d.kind) as i32,
        name: d.name.clone(),
        mode: if actuator {
            mode_to_proto(s.mode) as i32
        } else {
            v1::Mode::Unspecified as i32
        },
        desired: s.desired.as_ref().map(|x| v1::DesiredState {
            version: x.version,
            on: x.on,
            issued_unix_ms: x.issued_at,
            expires_unix_ms: d
                .last_command
                .as_ref()
                .filter(|c| c.version == x.version)
                .map_or(0, |c| c.expires_at),
        }),
        desired_reason: s
            .desired
            .as_ref()
            .map(|x| x.reason.clone())
            .unwrap_or_default(),
        reported: s.reported.as_ref().map(|r| v1::ReportedState {
            applied_version: r.applied_version,
            on: r.on,
            time_unix_ms: r.recorded_at,
        }),
        acknowledged_unix_ms: match (&s.desired, &s.reported) {
            (Some(_), Some(r)) if s.is_acknowledged() => r.recorded_at,
            _ => 0,
        },
        online: d.online,
        last_seen_unix_ms: last_seen.unwrap_or_default(),
        last_command: d.last_command.as_ref().map(command),
        override_expires_unix_ms: s.override_until.unwrap_or_default(),
        mqtt_credential: None,
    }
}

pub fn command(c: &Command) -> v1::Command {
    v1::Command {
        device_id: c.device_id.to_string(),
        version: c.version,
        on: c.on,
        requested_by: c.requested_by.clone(),
        reason: c.reason.clone(),
        state: match c.state {
            CommandState::Requested => v1::CommandState::Requested,
            CommandState::Published => v1::CommandState::Published,
            CommandState::Applied => v1::CommandState::Applied,
            CommandState::Expired => v1::CommandState::Expired,
            CommandState::Superseded => v1::CommandState::Superseded,
        } as i32,
        requested_unix_ms: c.requested_at,
        published_unix_ms: c.published_at.unwrap_or_default(),
        applied_unix_ms: c.applied_at.unwrap_or_default(),
        expires_unix_ms: c.expires_at,
        round_trip_us: c.round_trip_us.unwrap_or_default(),
    }
}

pub fn stale_action_from_proto(value: i32, field: &str) -> Result<StaleAction, Status> {
    match v1::StaleAction::try_from(value) {
        Ok(v1::StaleAction::Unspecified) => Ok(StaleAction::Leave),
        Ok(v1::StaleAction::Off) => Ok(StaleAction::Off),
        Ok(v1::StaleAction::On) => Ok(StaleAction::On),
        Err(_) => Err(invalid(
            field,
            format!("{value} is not a known stale action"),
        )),
    }
}

pub fn decision(d: &LoggedDecision) -> v1::Decision {
    v1::Decision {
        rule_id: d.rule_id.to_string(),
        target_device_id: d.target.to_string(),
        action: match d.decision.action {
            Action::SwitchOn => v1::DecisionAction::SwitchOn,
            Action::SwitchOff => v1::DecisionAction::SwitchOff,
            Action::SustainStarted => v1::DecisionAction::SustainStarted,
            Action::SustainCancelled => v1::DecisionAction::SustainCancelled,
            Action::Held => v1::DecisionAction::Held,
            Action::Stale => v1::DecisionAction::Stale,
        } as i32,
        time_unix_ms: d.decision.at,
        value: d.decision.value.unwrap_or(f64::NAN),
        reason: d.decision.reason.clone(),
        command_version: d.command_version,
    }
}

pub fn reading(r: &Reading) -> v1::StoredReading {
    v1::StoredReading {
        device_id: r.device_id.to_string(),
        metric: r.metric as i32,
        value: r.value,
        time_unix_ms: r.time,
        seq: r.seq,
    }
}

pub fn rule(r: &ThresholdRule) -> v1::Rule {
    v1::Rule {
        id: r.id.to_string(),
        home_id: r.home_id.to_string(),
        name: r.name.clone(),
        source_device_id: r.source.to_string(),
        metric: r.metric as i32,
        target_device_id: r.target.to_string(),
        on_above: r.on_above,
        off_below: r.off_below,
        enabled: r.enabled,
        min_on_seconds: r.min_on_s,
        min_off_seconds: r.min_off_s,
        sustain_seconds: r.sustain_s,
        stale_after_seconds: r.stale_after_s,
        stale_action: match r.stale_action {
            StaleAction::Leave => v1::StaleAction::Unspecified,
            StaleAction::Off => v1::StaleAction::Off,
            StaleAction::On => v1::StaleAction::On,
        } as i32,
    }
}
