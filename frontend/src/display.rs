//! How values read on screen: a reading with its unit, "3 s ago", and the
//! names of kinds and modes. Plain functions of their inputs (the current time
//! is passed in), so they are tested natively.

use hearth_proto::v1::{Device, DeviceKind, Metric, Mode};

/// A reading with its unit, to one decimal: `23.4 °C`, `45.0 %`, `1013.2 hPa`.
pub fn reading(metric: Metric, value: f64) -> String {
    match unit(metric) {
        Some(unit) => format!("{value:.1} {unit}"),
        None => format!("{value:.1}"),
    }
}

fn unit(metric: Metric) -> Option<&'static str> {
    match metric {
        Metric::TemperatureCelsius => Some("°C"),
        Metric::HumidityPercent => Some("%"),
        Metric::PressureHpa => Some("hPa"),
        Metric::Unspecified => None,
    }
}

/// What a metric measures, capitalised for a label: `Temperature`.
pub fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::TemperatureCelsius => "Temperature",
        Metric::HumidityPercent => "Humidity",
        Metric::PressureHpa => "Pressure",
        Metric::Unspecified => "Unknown",
    }
}

/// The metrics a sensor tile shows, in the order it shows them.
pub const SENSOR_METRICS: [Metric; 3] = [
    Metric::TemperatureCelsius,
    Metric::HumidityPercent,
    Metric::PressureHpa,
];

/// A device kind in lower case: `sensor`, `fan`, `light`.
pub fn kind(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Sensor => "sensor",
        DeviceKind::Fan => "fan",
        DeviceKind::Light => "light",
        DeviceKind::Unspecified => "device",
    }
}

/// A mode as its button reads: `ON`, `OFF`, `AUTO`; `none` before one is set.
pub fn mode(mode: Mode) -> &'static str {
    match mode {
        Mode::On => "ON",
        Mode::Off => "OFF",
        Mode::Auto => "AUTO",
        Mode::Unspecified => "none",
    }
}

/// What choosing `mode` does to device `name`, for the button's accessible label.
pub fn mode_action(mode: Mode, name: &str) -> String {
    match mode {
        Mode::On => format!("Switch {name} on"),
        Mode::Off => format!("Switch {name} off"),
        Mode::Auto => format!("Let the rules switch {name}"),
        Mode::Unspecified => name.to_owned(),
    }
}

/// A device's name, or its id when it has none.
pub fn device_name(device: &Device) -> &str {
    if device.name.is_empty() {
        &device.id
    } else {
        &device.name
    }
}

/// `on` or `off`.
pub fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// How long ago `then_unix_ms` was, coarsely: `just now`, `3 s ago`,
/// `5 min ago`, `2 h ago`, `4 d ago`; `never` for 0, the API's "no time".
pub fn time_ago(now_unix_ms: i64, then_unix_ms: i64) -> String {
    if then_unix_ms == 0 {
        return "never".into();
    }
    // Why: the browser's clock may run behind the backend's; a time "in the
    // future" is as fresh as it gets.
    let seconds = (now_unix_ms - then_unix_ms).max(0) / 1000;
    match seconds {
        0 => "just now".into(),
        1..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_carry_their_unit_to_one_decimal() {
        assert_eq!(reading(Metric::TemperatureCelsius, 23.449), "23.4 °C");
        assert_eq!(reading(Metric::HumidityPercent, 45.0), "45.0 %");
        assert_eq!(reading(Metric::PressureHpa, 1013.25), "1013.2 hPa");
        assert_eq!(reading(Metric::TemperatureCelsius, -3.06), "-3.1 °C");
        assert_eq!(reading(Metric::Unspecified, 7.0), "7.0");
    }

    #[test]
    fn time_ago_uses_the_largest_whole_unit() {
        let now = 1_700_000_000_000;
        assert_eq!(time_ago(now, now - 400), "just now");
        assert_eq!(time_ago(now, now - 3_000), "3 s ago");
        assert_eq!(time_ago(now, now - 59_999), "59 s ago");
        assert_eq!(time_ago(now, now - 60_000), "1 min ago");
        assert_eq!(time_ago(now, now - 2 * 3_600_000 - 5), "2 h ago");
        assert_eq!(time_ago(now, now - 4 * 86_400_000), "4 d ago");
    }

    #[test]
    fn time_ago_says_never_for_zero_and_just_now_for_the_future() {
        assert_eq!(time_ago(1_700_000_000_000, 0), "never");
        assert_eq!(time_ago(1_700_000_000_000, 1_700_000_005_000), "just now");
    }

    #[test]
    fn kinds_and_modes_have_readable_names() {
        assert_eq!(kind(DeviceKind::Fan), "fan");
        assert_eq!(mode(Mode::Auto), "AUTO");
        assert_eq!(mode(Mode::Unspecified), "none");
        assert_eq!(metric_name(Metric::PressureHpa), "Pressure");
        assert_eq!(
            mode_action(Mode::Auto, "Demo fan"),
            "Let the rules switch Demo fan"
        );
    }

    #[test]
    fn a_device_without_a_name_goes_by_its_id() {
        let named = Device {
            id: "fan-1".into(),
            name: "Attic fan".into(),
            ..Default::default()
        };
        let unnamed = Device {
            id: "fan-2".into(),
            ..Default::default()
        };
        assert_eq!(device_name(&named), "Attic fan");
        assert_eq!(device_name(&unnamed), "fan-2");
    }
}
