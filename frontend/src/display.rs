//! How values read on screen: a reading with its unit, "3 s ago", and the
//! names of kinds and modes. Plain functions of their inputs (the current time
//! is passed in), so they are tested natively.

use hearth_proto::v1::{
    CommandState, DecisionAction, Device, DeviceKind, Metric, Mode, StaleAction,
};

use crate::number;

/// A reading with its unit, to one decimal: `23.4 °C`, `45.0 %`, `1013.2 hPa`.
pub fn reading(metric: Metric, value: f64) -> String {
    let value = number::fixed(value, 1);
    match unit(metric) {
        Some(unit) => format!("{value} {unit}"),
        None => value,
    }
}

/// The unit of `metric`, if it has one: `°C`.
pub fn unit(metric: Metric) -> Option<&'static str> {
    metric.unit()
}

/// The name of a CSV export of `device_id` between two local times as
/// `<input type="datetime-local">` writes them (`2026-11-30T07:30`):
/// `sensor_2026-11-30T07-30_2026-11-30T08-30.csv`. Why no colons: Windows
/// does not allow them in file names.
pub fn export_filename(device_id: &str, start_local: &str, end_local: &str) -> String {
    format!("{device_id}_{start_local}_{end_local}.csv").replace(':', "-")
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

/// What a metric measures, in running text: `temperature`.
// Why not `metric_name(..).to_lowercase()`: that links Unicode case tables.
pub fn metric_noun(metric: Metric) -> &'static str {
    match metric {
        Metric::TemperatureCelsius => "temperature",
        Metric::HumidityPercent => "humidity",
        Metric::PressureHpa => "pressure",
        Metric::Unspecified => "unknown",
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

/// A time span given in seconds, in its largest whole unit(s): `45 s`,
/// `5 min`, `1 h 30 min`, `2 d`; `0 s` for none.
pub fn seconds(total: u64) -> String {
    match total {
        0..60 => format!("{total} s"),
        60..3600 if total.is_multiple_of(60) => format!("{} min", total / 60),
        60..3600 => format!("{} min {} s", total / 60, total % 60),
        3600..86_400 if total.is_multiple_of(3600) => format!("{} h", total / 3600),
        3600..86_400 => format!("{} h {} min", total / 3600, (total % 3600) / 60),
        _ if total.is_multiple_of(86_400) => format!("{} d", total / 86_400),
        _ => format!("{} d {} h", total / 86_400, (total % 86_400) / 3600),
    }
}

/// A command's round trip, given in microseconds: `850 µs`, `182 ms`, `1.25 s`.
pub fn round_trip(micros: u64) -> String {
    match micros {
        0..1000 => format!("{micros} µs"),
        1000..1_000_000 => format!("{} ms", micros / 1000),
        _ => format!("{} s", number::fixed(micros as f64 / 1e6, 2)),
    }
}

/// How long until `then_unix_ms`, coarsely: `in 12 min`; `now` once passed.
pub fn time_until(now_unix_ms: i64, then_unix_ms: i64) -> String {
    let seconds = (then_unix_ms - now_unix_ms).max(0) / 1000;
    if seconds == 0 {
        return "now".into();
    }
    // Why whole minutes past one: a countdown ticking every second is noise.
    let rounded = if seconds < 60 {
        seconds
    } else {
        seconds / 60 * 60
    };
    format!("in {}", self::seconds(rounded as u64))
}

/// Who sent a command, from its `requested_by`: `rule fan-auto`, `web app`,
/// `override expiry`; `API` when empty.
pub fn requested_by(requested_by: &str) -> String {
    if let Some(rule) = requested_by.strip_prefix("rule:") {
        return format!("rule {rule}");
    }
    match requested_by {
        "" | "api" => "API".into(),
        "web" => "web app".into(),
        other => other.replace('-', " "),
    }
}

/// What became of a command, for its history row.
pub fn command_state(state: CommandState) -> &'static str {
    match state {
        CommandState::Requested => "requested",
        CommandState::Published => "sent",
        CommandState::Applied => "applied",
        CommandState::Expired => "expired",
        CommandState::Superseded => "superseded",
        CommandState::Unspecified => "unknown",
    }
}

/// What a rule decided, for the decisions log.
pub fn decision_action(action: DecisionAction) -> &'static str {
    match action {
        DecisionAction::SwitchOn => "switch on",
        DecisionAction::SwitchOff => "switch off",
        DecisionAction::SustainStarted => "waiting (sustain)",
        DecisionAction::SustainCancelled => "crossing did not hold",
        DecisionAction::Held => "held (minimum time)",
        DecisionAction::Stale => "sensor stale",
        DecisionAction::Unspecified => "unknown",
    }
}

/// What a rule does when its sensor goes silent.
pub fn stale_action(action: StaleAction) -> &'static str {
    match action {
        StaleAction::Unspecified => "leave as is",
        StaleAction::Off => "switch off",
        StaleAction::On => "switch on",
    }
}

/// A sensor's delivery over the last day, for its tile: `All 1234 readings
/// of the last day arrived`, or `99.2% arrived: 10 missing, the last in the
/// hour from 2 h ago` (the API names the hour of the last loss, not its
/// minute), with `(3 late)` after `arrived` when some readings filled a gap
/// after later ones; `None` before any reading was sent.
pub fn delivery(
    expected: u64,
    stored: u64,
    late: u64,
    last_loss_unix_ms: i64,
    now_unix_ms: i64,
) -> Option<String> {
    if expected == 0 {
        return None;
    }
    let late = if late > 0 {
        format!(" ({late} late)")
    } else {
        String::new()
    };
    let missing = expected.saturating_sub(stored);
    if missing == 0 {
        return Some(format!(
            "All {expected} readings of the last day arrived{late}"
        ));
    }
    // Why floor, to one decimal: 99.96% must not read as 100% with readings lost.
    let percent = (stored as f64 / expected as f64 * 1000.0).floor() / 10.0;
    Some(format!(
        "{}% arrived{late}: {missing} missing, the last in the hour from {}",
        number::fixed(percent, 1),
        time_ago(now_unix_ms, last_loss_unix_ms)
    ))
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
        assert_eq!(metric_noun(Metric::HumidityPercent), "humidity");
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

    #[test]
    fn spans_of_seconds_use_whole_units() {
        assert_eq!(seconds(0), "0 s");
        assert_eq!(seconds(45), "45 s");
        assert_eq!(seconds(300), "5 min");
        assert_eq!(seconds(90), "1 min 30 s");
        assert_eq!(seconds(5400), "1 h 30 min");
        assert_eq!(seconds(7200), "2 h");
        assert_eq!(seconds(2 * 86_400), "2 d");
        assert_eq!(seconds(86_400 + 3 * 3600), "1 d 3 h");
    }

    #[test]
    fn round_trips_read_in_the_unit_that_fits() {
        assert_eq!(round_trip(850), "850 µs");
        assert_eq!(round_trip(182_400), "182 ms");
        assert_eq!(round_trip(1_250_000), "1.25 s");
    }

    #[test]
    fn time_until_rounds_to_minutes_and_stops_at_now() {
        let now = 1_700_000_000_000;
        assert_eq!(time_until(now, now + 12 * 60_000 + 30_000), "in 12 min");
        assert_eq!(time_until(now, now + 30_000), "in 30 s");
        assert_eq!(time_until(now, now + 90 * 60_000), "in 1 h 30 min");
        assert_eq!(time_until(now, now - 5_000), "now");
    }

    #[test]
    fn requesters_read_as_words() {
        assert_eq!(requested_by("rule:fan-auto"), "rule fan-auto");
        assert_eq!(requested_by("web"), "web app");
        assert_eq!(requested_by(""), "API");
        assert_eq!(requested_by("override-expiry"), "override expiry");
    }

    #[test]
    fn export_file_names_carry_device_and_range_without_colons() {
        assert_eq!(
            export_filename("demo-sensor", "2026-11-30T07:30", "2026-11-30T08:30"),
            "demo-sensor_2026-11-30T07-30_2026-11-30T08-30.csv"
        );
    }

    #[test]
    fn delivery_says_what_was_lost_and_when() {
        assert_eq!(delivery(0, 0, 0, 0, 0), None);
        assert_eq!(
            delivery(1234, 1234, 0, 0, 0).as_deref(),
            Some("All 1234 readings of the last day arrived")
        );
        assert_eq!(
            delivery(10_000, 9_996, 0, 1_000, 7_201_000).as_deref(),
            Some("99.9% arrived: 4 missing, the last in the hour from 2 h ago")
        );
        assert_eq!(
            delivery(3, 1, 0, 1_000, 1_000).as_deref(),
            Some("33.3% arrived: 2 missing, the last in the hour from just now")
        );
    }

    #[test]
    fn delivery_mentions_late_readings_only_when_there_are_some() {
        assert_eq!(
            delivery(1234, 1234, 12, 0, 0).as_deref(),
            Some("All 1234 readings of the last day arrived (12 late)")
        );
        assert_eq!(
            delivery(10_000, 9_996, 3, 1_000, 7_201_000).as_deref(),
            Some("99.9% arrived (3 late): 4 missing, the last in the hour from 2 h ago")
        );
    }
}
