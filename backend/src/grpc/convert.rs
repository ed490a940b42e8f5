//! Conversions between the domain and the hearth.v1 messages.

use hearth_proto::v1;
use tonic::Status;

use super::status::invalid;
use crate::domain::{Device, DeviceKind, Home, Mode, Reading, ThresholdRule};

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
            expires_unix_ms: 0,
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
    }
}
