//! Hearth's devices as Home Assistant sees them through MQTT discovery: what
//! each device becomes (a sensor entity per metric; a `fan` or `light` entity
//! and a mode `select` per actuator), the retained config JSON that announces
//! each entity, the payloads of their states, and what a command from Home
//! Assistant asks for. Pure: the bridge (`hearth_backend::mqtt::home_assistant`)
//! does the publishing and hands commands to control.
//!
//! See <https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery>.

use hearth_proto::{topics::HomeAssistantTopics, v1::Metric};
use serde_json::{json, Value};

use crate::{Device, DeviceKind, Mode, Reading};

/// Recorded as `requested_by` with every command that comes from Home Assistant.
pub const REQUESTED_BY: &str = "home-assistant";

/// The entity of an actuator that switches it (Home Assistant's `fan` or `light`).
pub const POWER: &str = "power";
/// The entity of an actuator that chooses who decides: the user or its rules.
pub const MODE: &str = "mode";

const ON: &str = "ON";
const OFF: &str = "OFF";
const AUTO: &str = "AUTO";
const ONLINE: &str = "online";
const OFFLINE: &str = "offline";

/// One retained message: an entity's config, or a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub topic: String,
    pub payload: String,
}

/// What a command from Home Assistant asks of an actuator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub mode: Mode,
}

/// Why a command from Home Assistant was refused (logged with its topic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0:?} is not an entity Hearth takes commands for (power, mode)")]
    UnknownEntity(String),
    #[error("payload {payload:?} is not one of {allowed}")]
    BadPayload {
        payload: String,
        allowed: &'static str,
    },
}

/// The home a config (as [`configs`] makes it) belongs to, read from its
/// availability topic; `None` for anything else, an empty payload included.
/// Why the payload too, when the topic's node names a home: it is what tells
/// this deployment's configs from those of one whose prefix extends its own
/// (`hearth/x`'s node `hearth_x` is also `hearth`'s node of home `x`), whose
/// availability is under another `{prefix}/ha/`.
pub fn config_home(ha: &HomeAssistantTopics, payload: &[u8]) -> Option<String> {
    let config: Value = serde_json::from_slice(payload).ok()?;
    let availability = config[AVAILABILITY_TOPIC].as_str()?;
    ha.home_of(availability).map(str::to_owned)
}

/// The key of a config naming the device's availability topic.
const AVAILABILITY_TOPIC: &str = "availability_topic";

/// The configs announcing every entity of `device`, each at its discovery
/// topic. Publishing the same device twice gives the same messages, so
/// several publishers, or one publishing again, change nothing.
pub fn configs(ha: &HomeAssistantTopics, device: &Device) -> Vec<Retained> {
    let (home, id) = (device.home_id.as_str(), device.id.as_str());
    let object_id = format!("{home}_{id}");
    let unique = |suffix: &str| match suffix {
        "" => format!("{}_{object_id}", ha.node()),
        s => format!("{}_{object_id}_{s}", ha.node()),
    };
    let device_name = match device.name.as_str() {
        "" => id,
        name => name,
    };
    let common = json!({
        AVAILABILITY_TOPIC: ha.availability(home, id),
        "device": {
            "identifiers": [unique("")],
            "name": device_name,
            "manufacturer": "Hearth",
            "model": model(device.kind),
        },
        "origin": { "name": "Hearth" },
    });
    let entity = |fields: Value| {
        let mut config = common.clone();
        if let (Some(config), Value::Object(fields)) = (config.as_object_mut(), fields) {
            config.extend(fields);
        }
        config.to_string()
    };
    match device.kind {
        DeviceKind::Sensor => Metric::MEASURED
            .into_iter()
            .map(|metric| {
                let name = metric.short_name();
                Retained {
                    topic: ha.config(home, "sensor", &format!("{object_id}_{name}")),
                    payload: entity(json!({
                        "name": label(metric),
                        "unique_id": unique(name),
                        "state_topic": ha.state(home, id, name),
                        "device_class": device_class(metric),
                        "unit_of_measurement": metric.unit(),
                        "state_class": "measurement",
                        "suggested_display_precision": 1,
                    })),
                }
            })
            .collect(),
        DeviceKind::Fan | DeviceKind::Light => {
            let component = device.kind.as_str();
            vec![
                Retained {
                    topic: ha.config(home, component, &object_id),
                    payload: entity(json!({
                        // Why null: the entity takes the device's name.
                        "name": null,
                        "unique_id": unique(""),
                        "command_topic": ha.command(home, id, POWER),
                        "state_topic": ha.state(home, id, POWER),
                        "payload_on": ON,
                        "payload_off": OFF,
                    })),
                },
                Retained {
                    topic: ha.config(home, "select", &format!("{object_id}_{MODE}")),
                    payload: entity(json!({
                        "name": "Mode",
                        "unique_id": unique(MODE),
                        "command_topic": ha.command(home, id, MODE),
                        "state_topic": ha.state(home, id, MODE),
                        "options": [AUTO, ON, OFF],
                        "icon": "mdi:robot",
                    })),
                },
            ]
        }
    }
}

/// The retained states of `device` itself: its availability and, for an
/// actuator, its mode and what it reported it applied (none before its
/// first report: Home Assistant shows "unknown").
pub fn device_states(ha: &HomeAssistantTopics, device: &Device) -> Vec<Retained> {
    let (home, id) = (device.home_id.as_str(), device.id.as_str());
    let mut states = vec![Retained {
        topic: ha.availability(home, id),
        payload: if device.online { ONLINE } else { OFFLINE }.to_owned(),
    }];
    if device.kind.is_actuator() {
        states.push(Retained {
            topic: ha.state(home, id, MODE),
            payload: mode_payload(device.state.mode).to_owned(),
        });
        if let Some(reported) = &device.state.reported {
            states.push(Retained {
                topic: ha.state(home, id, POWER),
                payload: if reported.on { ON } else { OFF }.to_owned(),
            });
        }
    }
    states
}

/// The retained state of a stored reading of a device of `home_id`.
pub fn reading_state(ha: &HomeAssistantTopics, home_id: &str, reading: &Reading) -> Retained {
    Retained {
        topic: ha.state(
            home_id,
            reading.device_id.as_str(),
            reading.metric.short_name(),
        ),
        payload: reading.value.to_string(),
    }
}

/// What a message from Home Assistant on `entity`'s command topic asks.
pub fn parse_command(entity: &str, payload: &[u8]) -> Result<Command, CommandError> {
    let text = String::from_utf8_lossy(payload);
    let (mode, allowed) = match entity {
        POWER => (
            match text.trim() {
                ON => Some(Mode::On),
                OFF => Some(Mode::Off),
                _ => None,
            },
            "ON, OFF",
        ),
        MODE => (
            match text.trim() {
                ON => Some(Mode::On),
                OFF => Some(Mode::Off),
                AUTO => Some(Mode::Auto),
                _ => None,
            },
            "AUTO, ON, OFF",
        ),
        other => return Err(CommandError::UnknownEntity(other.to_owned())),
    };
    let mode = mode.ok_or_else(|| CommandError::BadPayload {
        payload: text.chars().take(64).collect(),
        allowed,
    })?;
    Ok(Command { mode })
}

fn mode_payload(mode: Mode) -> &'static str {
    match mode {
        Mode::On => ON,
        Mode::Off => OFF,
        Mode::Auto => AUTO,
    }
}

/// Home Assistant's device class for a metric: what icon, unit conversions
/// and history graphs it gets there.
fn device_class(metric: Metric) -> Option<&'static str> {
    match metric {
        Metric::TemperatureCelsius => Some("temperature"),
        Metric::HumidityPercent => Some("humidity"),
        Metric::PressureHpa => Some("atmospheric_pressure"),
        Metric::Unspecified => None,
    }
}

fn label(metric: Metric) -> &'static str {
    match metric {
        Metric::TemperatureCelsius => "Temperature",
        Metric::HumidityPercent => "Humidity",
        Metric::PressureHpa => "Pressure",
        Metric::Unspecified => "Unknown",
    }
}

fn model(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Sensor => "Sense HAT sensor node",
        DeviceKind::Fan => "Fan on a GPIO pin",
        DeviceKind::Light => "Light on a GPIO pin",
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::topics::Topics;

    use super::*;
    use crate::{ActuatorState, DeviceId, HomeId, Reported};

    fn ha() -> HomeAssistantTopics {
        Topics::new("hearth")
            .unwrap()
            .home_assistant("homeassistant")
            .unwrap()
    }

    fn device(id: &str, kind: DeviceKind) -> Device {
        Device {
            id: DeviceId::parse(id, "id").unwrap(),
            home_id: HomeId::parse("demo", "home_id").unwrap(),
            kind,
            name: format!("Living room {}", kind.as_str()),
            state: ActuatorState::default(),
            online: true,
            last_seen: None,
            last_command: None,
        }
    }

    fn parsed(r: &Retained) -> Value {
        serde_json::from_str(&r.payload).expect("a config is JSON")
    }

    #[test]
    fn a_sensor_is_one_entity_per_metric_with_unit_and_device_class() {
        let configs = configs(&ha(), &device("s1", DeviceKind::Sensor));
        let topics: Vec<&str> = configs.iter().map(|c| c.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/sensor/hearth_demo/demo_s1_temperature_celsius/config",
                "homeassistant/sensor/hearth_demo/demo_s1_humidity_percent/config",
                "homeassistant/sensor/hearth_demo/demo_s1_pressure_hpa/config",
            ]
        );
        let temperature = parsed(&configs[0]);
        assert_eq!(temperature["device_class"], "temperature");
        assert_eq!(temperature["unit_of_measurement"], "°C");
        assert_eq!(temperature["state_class"], "measurement");
        assert_eq!(
            temperature["state_topic"],
            "hearth/ha/demo/s1/temperature_celsius/state"
        );
        assert_eq!(
            temperature["availability_topic"],
            "hearth/ha/demo/s1/availability"
        );
        assert_eq!(
            temperature["unique_id"],
            "hearth_demo_s1_temperature_celsius"
        );
        assert_eq!(
            temperature["device"]["identifiers"][0], "hearth_demo_s1",
            "the three entities share one device"
        );
        assert_eq!(temperature["device"]["name"], "Living room sensor");
        let (humidity, pressure) = (parsed(&configs[1]), parsed(&configs[2]));
        assert_eq!(humidity["device_class"], "humidity");
        assert_eq!(humidity["unit_of_measurement"], "%");
        assert_eq!(pressure["device_class"], "atmospheric_pressure");
        assert_eq!(pressure["unit_of_measurement"], "hPa");
    }

    #[test]
    fn fans_and_lights_are_switchable_with_a_mode_select() {
        for (kind, component) in [(DeviceKind::Fan, "fan"), (DeviceKind::Light, "light")] {
            let configs = configs(&ha(), &device("a1", kind));
            assert_eq!(
                configs[0].topic,
                format!("homeassistant/{component}/hearth_demo/demo_a1/config")
            );
            let switch = parsed(&configs[0]);
            assert_eq!(switch["command_topic"], "hearth/ha/demo/a1/power/set");
            assert_eq!(switch["state_topic"], "hearth/ha/demo/a1/power/state");
            assert_eq!(
                (&switch["payload_on"], &switch["payload_off"]),
                (&json!("ON"), &json!("OFF"))
            );
            assert!(switch["name"].is_null(), "named after the device");
            assert_eq!(
                configs[1].topic,
                "homeassistant/select/hearth_demo/demo_a1_mode/config"
            );
            let mode = parsed(&configs[1]);
            assert_eq!(mode["options"], json!(["AUTO", "ON", "OFF"]));
            assert_eq!(mode["command_topic"], "hearth/ha/demo/a1/mode/set");
            assert_ne!(switch["unique_id"], mode["unique_id"]);
        }
    }

    #[test]
    fn configs_are_the_same_every_time() {
        let fan = device("f", DeviceKind::Fan);
        assert_eq!(configs(&ha(), &fan), configs(&ha(), &fan));
    }

    #[test]
    fn states_say_availability_mode_and_what_was_applied() {
        let mut fan = device("f", DeviceKind::Fan);
        fan.state.mode = Mode::Auto;
        let before_report = device_states(&ha(), &fan);
        assert_eq!(
            before_report,
            [
                Retained {
                    topic: "hearth/ha/demo/f/availability".into(),
                    payload: "online".into()
                },
                Retained {
                    topic: "hearth/ha/demo/f/mode/state".into(),
                    payload: "AUTO".into()
                },
            ],
            "no power state before the device reported one"
        );
        fan.online = false;
        fan.state.reported = Some(Reported {
            applied_version: 3,
            on: true,
            recorded_at: 0,
        });
        let states = device_states(&ha(), &fan);
        assert_eq!(states[0].payload, "offline");
        assert_eq!(states[2].topic, "hearth/ha/demo/f/power/state");
        assert_eq!(states[2].payload, "ON");
        let sensor = device("s", DeviceKind::Sensor);
        assert_eq!(device_states(&ha(), &sensor).len(), 1, "availability only");
    }

    #[test]
    fn a_reading_is_the_state_of_its_metric() {
        let reading = Reading {
            device_id: DeviceId::parse("s1", "id").unwrap(),
            metric: Metric::HumidityPercent,
            seq: 1,
            time: 0,
            value: 45.5,
        };
        assert_eq!(
            reading_state(&ha(), "demo", &reading),
            Retained {
                topic: "hearth/ha/demo/s1/humidity_percent/state".into(),
                payload: "45.5".into()
            }
        );
    }

    #[test]
    fn commands_switch_or_choose_the_mode_and_refuse_anything_else() {
        assert_eq!(parse_command(POWER, b"ON"), Ok(Command { mode: Mode::On }));
        assert_eq!(
            parse_command(POWER, b"OFF"),
            Ok(Command { mode: Mode::Off })
        );
        assert_eq!(
            parse_command(MODE, b"AUTO"),
            Ok(Command { mode: Mode::Auto })
        );
        assert!(matches!(
            parse_command(POWER, b"AUTO"),
            Err(CommandError::BadPayload { .. })
        ));
        assert!(matches!(
            parse_command(POWER, &[0xff, 0xfe]),
            Err(CommandError::BadPayload { .. })
        ));
        assert_eq!(
            parse_command("temperature_celsius", b"ON"),
            Err(CommandError::UnknownEntity("temperature_celsius".into()))
        );
    }
}
