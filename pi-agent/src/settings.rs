//! The agent's settings: defaults, then a TOML file whose path is in
//! `HEARTH_AGENT_CONFIG`, then environment variables, each layer overriding
//! the one before. They are parsed once, at start-up, into [`Settings`]; a
//! value that is bad, missing, or does not apply to the chosen role and
//! hardware fails with the name of the setting at fault (the variable, or the
//! key and the file). The binary's doc comment (`main.rs`) lists them all.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use hearth_proto::{
    ids::check_id,
    topics::{Topics, DEFAULT_PREFIX},
};

use hearth_runtime::mqtt::{self, Credentials};

use crate::{
    mqtt::{DeviceLink, LinkOptions},
    sensor::{SensorPlan, Transport},
    sim::Waveform,
};

/// The variable naming the TOML file.
pub const CONFIG_ENV: &str = "HEARTH_AGENT_CONFIG";

/// Where the embedded broker of `hearth` listens.
const DEFAULT_MQTT_URL: &str = "mqtt://127.0.0.1:1884";
const DEFAULT_INTERVAL_MS: u64 = 2_000;
const DEFAULT_TEMPERATURE: &str = "sine:24:3:120";
/// Why a day: a longer interval is surely a slip, and the timer must not overflow.
const MAX_INTERVAL_MS: u64 = 86_400_000;
/// Why: each simulated device holds a connection, so a file descriptor.
const MAX_SIM_SENSORS: u32 = 10_000;
/// The highest BCM number of a GPIO on the Pi's 40-pin header.
const MAX_GPIO_PIN: u8 = 27;

/// What the agent is, once its settings are parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker, topic prefix, home and device.
    pub link: DeviceLink,
    /// The device's broker credentials, if any.
    pub link_options: LinkOptions,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Sends readings every `plan.interval`, over `plan.transport`.
    Sensor {
        hardware: SensorHardware,
        plan: SensorPlan,
    },
    /// Applies desired states to an output.
    Actuator { hardware: ActuatorHardware },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SensorHardware {
    /// A simulated Sense HAT whose temperature follows `temperature`; with a
    /// `fleet` of N, N of them named `{device}-0` to `{device}-{N-1}`, each
    /// with its own connection (for load tests).
    Simulated {
        temperature: Waveform,
        fleet: Option<u32>,
    },
    /// The Sense HAT on I2C bus 1.
    #[cfg(feature = "rpi")]
    SenseHat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActuatorHardware {
    /// An output that only remembers what it was told.
    Simulated,
    /// A GPIO pin (BCM number), active-high.
    #[cfg(feature = "rpi")]
    Gpio { pin: u8 },
}

/// Why the settings were refused; every message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{setting}: {reason}")]
    Invalid { setting: String, reason: String },
    #[error("{setting} must be set: {reason}")]
    Missing {
        setting: String,
        reason: &'static str,
    },
    #[error("{setting}: cannot read {path}: {cause}")]
    Unreadable {
        setting: String,
        path: String,
        cause: std::io::Error,
    },
}

/// A setting: its key in the TOML file and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    key: &'static str,
    env: &'static str,
}

impl Setting {
    const fn new(key: &'static str, env: &'static str) -> Self {
        Self { key, env }
    }

    fn missing(self, reason: &'static str) -> SettingsError {
        SettingsError::Missing {
            setting: format!("{} (or {} in the config file)", self.env, self.key),
            reason,
        }
    }
}

const MQTT_URL: Setting = Setting::new("mqtt_url", "HEARTH_AGENT_MQTT_URL");
const MQTT_USERNAME: Setting = Setting::new("mqtt_username", "HEARTH_AGENT_MQTT_USERNAME");
const MQTT_PASSWORD: Setting = Setting::new("mqtt_password", "HEARTH_AGENT_MQTT_PASSWORD");
const MQTT_PASSWORD_FILE: Setting =
    Setting::new("mqtt_password_file", "HEARTH_AGENT_MQTT_PASSWORD_FILE");
const TOPIC_PREFIX: Setting = Setting::new("topic_prefix", "HEARTH_TOPIC_PREFIX");
const HOME: Setting = Setting::new("home", "HEARTH_AGENT_HOME");
const DEVICE: Setting = Setting::new("device", "HEARTH_AGENT_DEVICE");
const ROLE: Setting = Setting::new("role", "HEARTH_AGENT_ROLE");
const HARDWARE: Setting = Setting::new("hardware", "HEARTH_AGENT_HARDWARE");
const GPIO_PIN: Setting = Setting::new("gpio_pin", "HEARTH_AGENT_GPIO_PIN");
const INTERVAL_MS: Setting = Setting::new("interval_ms", "HEARTH_AGENT_INTERVAL_MS");
const TEMPERATURE: Setting = Setting::new("temperature", "HEARTH_AGENT_TEMPERATURE");
const SIM_SENSORS: Setting = Setting::new("sim_sensors", "HEARTH_AGENT_SIM_SENSORS");
const TRANSPORT: Setting = Setting::new("transport", "HEARTH_AGENT_TRANSPORT");
const GATEWAY_UDP: Setting = Setting::new("gateway_udp", "HEARTH_AGENT_GATEWAY_UDP");
const STATE_DIR: Setting = Setting::new("state_dir", "HEARTH_AGENT_STATE_DIR");

/// The settings only a device talking MQTT uses.
const MQTT_SETTINGS: [Setting; 5] = [
    MQTT_URL,
    MQTT_USERNAME,
    MQTT_PASSWORD,
    MQTT_PASSWORD_FILE,
    TOPIC_PREFIX,
];

const SETTINGS: [Setting; 16] = [
    MQTT_URL,
    MQTT_USERNAME,
    MQTT_PASSWORD,
    MQTT_PASSWORD_FILE,
    TOPIC_PREFIX,
    HOME,
    DEVICE,
    ROLE,
    HARDWARE,
    GPIO_PIN,
    INTERVAL_MS,
    TEMPERATURE,
    SIM_SENSORS,
    TRANSPORT,
    GATEWAY_UDP,
    STATE_DIR,
];

impl Settings {
    /// From the process environment and the file it names.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(|name| std::env::var(name).ok())
    }

    /// From the environment `env` looks up, and the file its
    /// `HEARTH_AGENT_CONFIG` names. Why a lookup: tests need not change the
    /// process's environment, which every thread shares.
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        // Why: an empty variable counts as unset, as `VAR= command` means in a shell.
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        let mut layers = Layers::default();
        if let Some(path) = env(CONFIG_ENV) {
            let text =
                std::fs::read_to_string(&path).map_err(|cause| SettingsError::Unreadable {
                    setting: CONFIG_ENV.into(),
                    path: path.clone(),
                    cause,
                })?;
            layers.add_file(&text, &path)?;
        }
        layers.add_env(env);
        layers.into_settings()
    }
}

/// A value as given, and where it was given, for error messages.
#[derive(Debug, Clone)]
struct Raw {
    value: String,
    origin: String,
}

impl Raw {
    fn parse<T>(&self, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, SettingsError> {
        parse(&self.value).map_err(|reason| invalid(&self.origin, reason))
    }
}

fn invalid(setting: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting: setting.into(),
        reason: reason.into(),
    }
}

/// The raw values by key, the later layers over the earlier.
#[derive(Debug, Default)]
struct Layers(BTreeMap<&'static str, Raw>);

impl Layers {
    fn add_file(&mut self, text: &str, path: &str) -> Result<(), SettingsError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            invalid(&format!("{path} ({CONFIG_ENV})"), e.to_string())
        })?;
        for (key, value) in table {
            let origin = format!("{key} in {path}");
            let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
                let known = SETTINGS.map(|s| s.key).join(", ");
                return Err(invalid(
                    &origin,
                    format!("unknown setting; the settings are {known}"),
                ));
            };
            let value = match value {
                toml::Value::String(s) if s.is_empty() => {
                    return Err(invalid(&origin, "is empty; leave it out for the default"))
                }
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                other => {
                    return Err(invalid(
                        &origin,
                        format!("must be a string or an integer, not a {}", other.type_str()),
                    ))
                }
            };
            self.0.insert(setting.key, Raw { value, origin });
        }
        Ok(())
    }

    fn add_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        // Why: a password given in the environment, in either form, replaces
        // the file's in either form.
        if env(MQTT_PASSWORD.env).is_some() || env(MQTT_PASSWORD_FILE.env).is_some() {
            self.0.remove(MQTT_PASSWORD.key);
            self.0.remove(MQTT_PASSWORD_FILE.key);
        }
        for setting in SETTINGS {
            if let Some(value) = env(setting.env) {
                self.0.insert(
                    setting.key,
                    Raw {
                        value,
                        origin: setting.env.into(),
                    },
                );
            }
        }
    }

    fn take(&mut self, setting: Setting) -> Option<Raw> {
        self.0.remove(setting.key)
    }

    fn into_settings(mut self) -> Result<Settings, SettingsError> {
        let mqtt_setting = MQTT_SETTINGS
            .iter()
            .find_map(|s| self.0.get(s.key))
            .map(|raw| raw.origin.clone());
        let broker_url = match self.take(MQTT_URL) {
            Some(raw) => raw.parse(|url| {
                mqtt::options(url, "hearth-agent", None)
                    .map(|_| url.to_owned())
                    .map_err(|e| format!("{e:#}"))
            })?,
            None => DEFAULT_MQTT_URL.to_owned(),
        };
        let topics = match self.take(TOPIC_PREFIX) {
            Some(raw) => raw.parse(|prefix| Topics::new(prefix).map_err(|e| e.to_string()))?,
            None => Topics::new(DEFAULT_PREFIX).expect("the default prefix is valid"),
        };
        let home_id = self
            .take(HOME)
            .ok_or_else(|| HOME.missing("the id of the device's home"))?
            .parse(id)?;
        let device_id = self
            .take(DEVICE)
            .ok_or_else(|| DEVICE.missing("the id of the device"))?
            .parse(id)?;
        let link_options = match self.credentials()? {
            Some(credentials) => LinkOptions::default().with_credentials(credentials),
            None => LinkOptions::default(),
        };
        let is_actuator = match self.take(ROLE) {
            Some(raw) => raw.parse(|role| match role {
                "sensor" => Ok(false),
                "actuator" => Ok(true),
                other => Err(format!("{other:?} is not sensor or actuator")),
            })?,
            None => false,
        };
        let role = if is_actuator {
            self.actuator()?
        } else {
            self.sensor(&device_id)?
        };
        if let (Role::Sensor { plan, .. }, Some(origin)) = (&role, mqtt_setting) {
            if !plan.transport.uses_mqtt() {
                return Err(invalid(
                    &origin,
                    format!(
                        "does not apply to a sensor sending over UDP only ({} is udp)",
                        TRANSPORT.env
                    ),
                ));
            }
        }
        // Whatever is left was set for another role or other hardware.
        if let Some(raw) = self.0.values().next() {
            return Err(invalid(
                &raw.origin,
                format!("does not apply to {}", describe(&role)),
            ));
        }
        Ok(Settings {
            link: DeviceLink {
                broker_url,
                topics,
                home_id,
                device_id,
            },
            link_options,
            role,
        })
    }

    fn credentials(&mut self) -> Result<Option<Credentials>, SettingsError> {
        let username = self.take(MQTT_USERNAME);
        let password = match (self.take(MQTT_PASSWORD), self.take(MQTT_PASSWORD_FILE)) {
            (Some(inline), Some(file)) => {
                return Err(invalid(
                    &file.origin,
                    format!("set either it or {}, not both", inline.origin),
                ));
            }
            (Some(inline), None) => Some(inline),
            (None, Some(file)) => Some(Raw {
                value: read_password(&file)?,
                origin: file.origin,
            }),
            (None, None) => None,
        };
        match (username, password) {
            (Some(username), Some(password)) => {
                Ok(Some(Credentials::new(username.value, password.value)))
            }
            (None, None) => Ok(None),
            (Some(username), None) => Err(invalid(
                &username.origin,
                format!(
                    "needs a password: set {} or {}",
                    MQTT_PASSWORD.env, MQTT_PASSWORD_FILE.env
                ),
            )),
            (None, Some(password)) => Err(invalid(
                &password.origin,
                format!("needs a username: set {}", MQTT_USERNAME.env),
            )),
        }
    }

    fn sensor(&mut self, device_id: &str) -> Result<Role, SettingsError> {
        let interval = match self.take(INTERVAL_MS) {
            Some(raw) => raw.parse(|v| {
                v.parse()
                    .ok()
                    .filter(|ms| (1..=MAX_INTERVAL_MS).contains(ms))
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("{v:?} is not a whole number of milliseconds from 1 to {MAX_INTERVAL_MS}"))
            })?,
            None => Duration::from_millis(DEFAULT_INTERVAL_MS),
        };
        let hardware = match self.take(HARDWARE) {
            None => self.simulated_sensor(device_id)?,
            Some(raw) => match raw.value.as_str() {
                "sim" => self.simulated_sensor(device_id)?,
                "sensehat" => sensehat(&raw)?,
                other => {
                    return Err(invalid(
                        &raw.origin,
                        format!("{other:?} is not sim or sensehat (the hardware of a sensor)"),
                    ))
                }
            },
        };
        let transport = self.transport()?;
        let state_dir = self.take(STATE_DIR).map(|raw| PathBuf::from(raw.value));
        Ok(Role::Sensor {
            hardware,
            plan: SensorPlan {
                interval,
                transport,
                state_dir,
            },
        })
    }

    fn transport(&mut self) -> Result<Transport, SettingsError> {
        // (over UDP, over MQTT too)
        let (udp, mqtt) = match self.take(TRANSPORT) {
            None => (false, true),
            Some(raw) => match raw.value.as_str() {
                "mqtt" => (false, true),
                "udp" => (true, false),
                "mqtt+udp" => (true, true),
                other => {
                    return Err(invalid(
                        &raw.origin,
                        format!("{other:?} is not mqtt, udp or mqtt+udp"),
                    ))
                }
            },
        };
        if !udp {
            if let Some(gateway) = self.take(GATEWAY_UDP) {
                return Err(invalid(
                    &gateway.origin,
                    format!(
                        "does not apply to a sensor sending over MQTT only; set {} to udp or mqtt+udp",
                        TRANSPORT.env
                    ),
                ));
            }
            return Ok(Transport::Mqtt);
        }
        let gateway = self
            .take(GATEWAY_UDP)
            .ok_or_else(|| GATEWAY_UDP.missing("the gateway's host:port that UDP datagrams go to"))?
            .parse(gateway_address)?;
        Ok(if mqtt {
            Transport::MqttAndUdp { gateway }
        } else {
            Transport::Udp { gateway }
        })
    }

    fn simulated_sensor(&mut self, device_id: &str) -> Result<SensorHardware, SettingsError> {
        let temperature = match self.take(TEMPERATURE) {
            Some(raw) => raw.parse(str::parse)?,
            None => DEFAULT_TEMPERATURE
                .parse()
                .expect("the default waveform is valid"),
        };
        let fleet = match self.take(SIM_SENSORS) {
            Some(raw) => Some(raw.parse(|v| {
                let count = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_SIM_SENSORS).contains(n))
                    .ok_or_else(|| {
                        format!("{v:?} is not a number of devices from 1 to {MAX_SIM_SENSORS}")
                    })?;
                let last = format!("{device_id}-{}", count - 1);
                check_id(&last).map_err(|e| format!("the device id {last:?} {e}"))?;
                Ok(count)
            })?),
            None => None,
        };
        Ok(SensorHardware::Simulated { temperature, fleet })
    }

    fn actuator(&mut self) -> Result<Role, SettingsError> {
        let hardware = match self.take(HARDWARE) {
            None => ActuatorHardware::Simulated,
            Some(raw) => match raw.value.as_str() {
                "sim" => ActuatorHardware::Simulated,
                "gpio" => {
                    let pin = self.take(GPIO_PIN).ok_or_else(|| {
                        GPIO_PIN.missing("the BCM number of the pin driving the output")
                    })?;
                    let pin = pin.parse(|v| {
                        v.parse()
                            .ok()
                            .filter(|pin| *pin <= MAX_GPIO_PIN)
                            .ok_or_else(|| format!("{v:?} is not the BCM number of a GPIO on the 40-pin header (0 to {MAX_GPIO_PIN})"))
                    })?;
                    gpio(&raw, pin)?
                }
                other => {
                    return Err(invalid(
                        &raw.origin,
                        format!("{other:?} is not sim or gpio (the hardware of an actuator)"),
                    ))
                }
            },
        };
        Ok(Role::Actuator { hardware })
    }
}

/// A gateway's `host:port` (or `ip:port`, `[ipv6]:port`), resolved when sending.
fn gateway_address(address: &str) -> Result<String, String> {
    let bad = || format!("{address:?} is not host:port (e.g. 192.168.1.10:7878)");
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return if socket.port() > 0 {
            Ok(address.to_owned())
        } else {
            Err(bad())
        };
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    match port.parse::<u16>() {
        Ok(port) if port > 0 && valid_host => Ok(address.to_owned()),
        _ => Err(bad()),
    }
}

fn id(id: &str) -> Result<String, String> {
    check_id(id)
        .map(|()| id.to_owned())
        .map_err(|e| format!("{id:?} {e}"))
}

/// Reads a password file, without the line end an editor or `echo` leaves.
fn read_password(file: &Raw) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(&file.value).map_err(|cause| SettingsError::Unreadable {
        setting: file.origin.clone(),
        path: file.value.clone(),
        cause,
    })?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(invalid(&file.origin, format!("{} is empty", file.value)));
    }
    Ok(password.to_owned())
}

#[cfg(feature = "rpi")]
fn sensehat(_: &Raw) -> Result<SensorHardware, SettingsError> {
    Ok(SensorHardware::SenseHat)
}

#[cfg(not(feature = "rpi"))]
fn sensehat(hardware: &Raw) -> Result<SensorHardware, SettingsError> {
    Err(invalid(&hardware.origin, NO_RPI))
}

#[cfg(feature = "rpi")]
fn gpio(_: &Raw, pin: u8) -> Result<ActuatorHardware, SettingsError> {
    Ok(ActuatorHardware::Gpio { pin })
}

#[cfg(not(feature = "rpi"))]
fn gpio(hardware: &Raw, _: u8) -> Result<ActuatorHardware, SettingsError> {
    Err(invalid(&hardware.origin, NO_RPI))
}

#[cfg(not(feature = "rpi"))]
const NO_RPI: &str = "this hearth-agent was built without the `rpi` feature, so only sim hardware";

/// The role and hardware, as a setting that does not apply to them is told.
fn describe(role: &Role) -> &'static str {
    match role {
        Role::Sensor {
            hardware: SensorHardware::Simulated { .. },
            ..
        } => "a simulated sensor",
        #[cfg(feature = "rpi")]
        Role::Sensor {
            hardware: SensorHardware::SenseHat,
            ..
        } => "a Sense HAT sensor",
        Role::Actuator {
            hardware: ActuatorHardware::Simulated,
        } => "a simulated actuator",
        #[cfg(feature = "rpi")]
        Role::Actuator {
            hardware: ActuatorHardware::Gpio { .. },
        } => "a GPIO actuator",
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, path::PathBuf};

    use super::*;

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("hearth-agent-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(|name| vars.get(name).cloned())
    }

    /// The settings from `vars` plus a home and a device.
    fn load_device(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        load(
            &[
                &[("HEARTH_AGENT_HOME", "h"), ("HEARTH_AGENT_DEVICE", "d")],
                vars,
            ]
            .concat(),
        )
    }

    fn error(vars: &[(&str, &str)]) -> String {
        load_device(vars).unwrap_err().to_string()
    }

    #[test]
    fn a_home_and_a_device_are_enough_for_a_simulated_sensor_on_the_embedded_broker() {
        let settings = load_device(&[]).unwrap();
        assert_eq!(settings.link.broker_url, "mqtt://127.0.0.1:1884");
        assert_eq!(settings.link.topics.prefix(), "hearth");
        assert_eq!(
            (
                settings.link.home_id.as_str(),
                settings.link.device_id.as_str()
            ),
            ("h", "d")
        );
        assert_eq!(settings.link_options, LinkOptions::default());
        assert_eq!(
            settings.role,
            Role::Sensor {
                hardware: SensorHardware::Simulated {
                    temperature: "sine:24:3:120".parse().unwrap(),
                    fleet: None
                },
                plan: SensorPlan::mqtt(Duration::from_secs(2)),
            }
        );
    }

    #[test]
    fn a_missing_home_or_device_names_the_variable_and_the_key() {
        assert_eq!(
            load(&[("HEARTH_AGENT_DEVICE", "d")]).unwrap_err().to_string(),
            "HEARTH_AGENT_HOME (or home in the config file) must be set: the id of the device's home"
        );
        assert_eq!(
            load(&[("HEARTH_AGENT_HOME", "h"), ("HEARTH_AGENT_DEVICE", "")])
                .unwrap_err()
                .to_string(),
            "HEARTH_AGENT_DEVICE (or device in the config file) must be set: the id of the device"
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = TempFile::new("layers.toml", "home = \"from-file\"\ndevice = \"fan\"\nrole = \"actuator\"\nmqtt_url = \"mqtt://broker:1883\"\n");
        let settings = load(&[
            ("HEARTH_AGENT_CONFIG", file.path()),
            ("HEARTH_AGENT_HOME", "from-env"),
        ])
        .unwrap();
        assert_eq!(settings.link.home_id, "from-env");
        assert_eq!(settings.link.device_id, "fan");
        assert_eq!(settings.link.broker_url, "mqtt://broker:1883");
        assert_eq!(
            settings.role,
            Role::Actuator {
                hardware: ActuatorHardware::Simulated
            }
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        for (var, value, message) in [
            (
                "HEARTH_AGENT_MQTT_URL",
                "http://x",
                "HEARTH_AGENT_MQTT_URL: \"http://x\" is not an mqtt://host:port URL",
            ),
            (
                "HEARTH_TOPIC_PREFIX",
                "a/+",
                "HEARTH_TOPIC_PREFIX: topic prefix \"a/+\" is invalid",
            ),
            (
                "HEARTH_AGENT_DEVICE",
                "fan/1",
                "HEARTH_AGENT_DEVICE: \"fan/1\" contains '/'",
            ),
            (
                "HEARTH_AGENT_ROLE",
                "fan",
                "HEARTH_AGENT_ROLE: \"fan\" is not sensor or actuator",
            ),
            (
                "HEARTH_AGENT_HARDWARE",
                "gpio",
                "HEARTH_AGENT_HARDWARE: \"gpio\" is not sim or sensehat (the hardware of a sensor)",
            ),
            (
                "HEARTH_AGENT_INTERVAL_MS",
                "0",
                "HEARTH_AGENT_INTERVAL_MS: \"0\" is not a whole number of milliseconds",
            ),
            (
                "HEARTH_AGENT_INTERVAL_MS",
                "2s",
                "HEARTH_AGENT_INTERVAL_MS: \"2s\" is not a whole number of milliseconds",
            ),
            (
                "HEARTH_AGENT_TEMPERATURE",
                "square:1",
                "HEARTH_AGENT_TEMPERATURE: \"square:1\" is not steady:V",
            ),
            (
                "HEARTH_AGENT_SIM_SENSORS",
                "0",
                "HEARTH_AGENT_SIM_SENSORS: \"0\" is not a number of devices from 1 to 10000",
            ),
        ] {
            let error = error(&[(var, value)]);
            assert!(error.starts_with(message), "{var}={value}: {error}");
        }
    }

    #[test]
    fn bad_values_in_the_file_name_the_key_and_the_file() {
        let file = TempFile::new(
            "bad.toml",
            "home = \"h\"\ndevice = \"d\"\ninterval_ms = -5\n",
        );
        let error = load(&[("HEARTH_AGENT_CONFIG", file.path())])
            .unwrap_err()
            .to_string();
        assert_eq!(error, format!("interval_ms in {}: \"-5\" is not a whole number of milliseconds from 1 to 86400000", file.path()));
    }

    #[test]
    fn the_file_must_hold_only_known_settings_as_strings_or_integers() {
        let unknown = TempFile::new(
            "unknown.toml",
            "home = \"h\"\ndevice = \"d\"\nintervall_ms = 5\n",
        );
        let error = load(&[("HEARTH_AGENT_CONFIG", unknown.path())])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "intervall_ms in {}: unknown setting; the settings are mqtt_url,",
                unknown.path()
            )),
            "{error}"
        );
        let boolean = TempFile::new("boolean.toml", "home = \"h\"\ndevice = true\n");
        let error = load(&[("HEARTH_AGENT_CONFIG", boolean.path())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!(
                "device in {}: must be a string or an integer, not a boolean",
                boolean.path()
            )
        );
    }

    #[test]
    fn a_config_file_that_cannot_be_read_or_parsed_is_named() {
        let error = load(&[("HEARTH_AGENT_CONFIG", "/nonexistent/agent.toml")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("HEARTH_AGENT_CONFIG: cannot read /nonexistent/agent.toml: "),
            "{error}"
        );
        let broken = TempFile::new("broken.toml", "home = \n");
        let error = load(&[("HEARTH_AGENT_CONFIG", broken.path())])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "{} (HEARTH_AGENT_CONFIG): TOML parse error",
                broken.path()
            )),
            "{error}"
        );
    }

    #[test]
    fn settings_that_do_not_apply_to_the_role_or_hardware_are_refused() {
        assert_eq!(
            error(&[
                ("HEARTH_AGENT_ROLE", "actuator"),
                ("HEARTH_AGENT_INTERVAL_MS", "100")
            ]),
            "HEARTH_AGENT_INTERVAL_MS: does not apply to a simulated actuator"
        );
        assert_eq!(
            error(&[("HEARTH_AGENT_GPIO_PIN", "17")]),
            "HEARTH_AGENT_GPIO_PIN: does not apply to a simulated sensor"
        );
    }

    #[test]
    fn a_sensor_sends_over_udp_to_a_gateway_or_both_ways() {
        let plan = |vars: &[(&str, &str)]| match load_device(vars).unwrap().role {
            Role::Sensor { plan, .. } => plan,
            other => panic!("{other:?}"),
        };
        assert_eq!(plan(&[]).transport, Transport::Mqtt);
        assert_eq!(
            plan(&[
                ("HEARTH_AGENT_TRANSPORT", "udp"),
                ("HEARTH_AGENT_GATEWAY_UDP", "192.168.1.10:7878")
            ])
            .transport,
            Transport::Udp {
                gateway: "192.168.1.10:7878".into()
            }
        );
        let file = TempFile::new(
            "udp.toml",
            "home = \"h\"\ndevice = \"d\"\ntransport = \"mqtt+udp\"\ngateway_udp = \"gateway.lan:7878\"\nstate_dir = \"/var/lib/hearth-agent\"\n",
        );
        let settings = load(&[("HEARTH_AGENT_CONFIG", file.path())]).unwrap();
        assert_eq!(
            settings.role,
            Role::Sensor {
                hardware: SensorHardware::Simulated {
                    temperature: DEFAULT_TEMPERATURE.parse().unwrap(),
                    fleet: None
                },
                plan: SensorPlan {
                    interval: Duration::from_secs(2),
                    transport: Transport::MqttAndUdp {
                        gateway: "gateway.lan:7878".into()
                    },
                    state_dir: Some("/var/lib/hearth-agent".into()),
                },
            }
        );
    }

    #[test]
    fn udp_settings_are_checked_and_named() {
        for (vars, message) in [
            (
                &[("HEARTH_AGENT_TRANSPORT", "udp")][..],
                "HEARTH_AGENT_GATEWAY_UDP (or gateway_udp in the config file) must be set: the gateway's host:port that UDP datagrams go to",
            ),
            (
                &[("HEARTH_AGENT_TRANSPORT", "coap")],
                "HEARTH_AGENT_TRANSPORT: \"coap\" is not mqtt, udp or mqtt+udp",
            ),
            (
                &[("HEARTH_AGENT_TRANSPORT", "udp"), ("HEARTH_AGENT_GATEWAY_UDP", "gateway.lan")],
                "HEARTH_AGENT_GATEWAY_UDP: \"gateway.lan\" is not host:port (e.g. 192.168.1.10:7878)",
            ),
            (
                &[("HEARTH_AGENT_TRANSPORT", "udp"), ("HEARTH_AGENT_GATEWAY_UDP", "10.0.0.1:0")],
                "HEARTH_AGENT_GATEWAY_UDP: \"10.0.0.1:0\" is not host:port (e.g. 192.168.1.10:7878)",
            ),
            (
                &[("HEARTH_AGENT_GATEWAY_UDP", "10.0.0.1:7878")],
                "HEARTH_AGENT_GATEWAY_UDP: does not apply to a sensor sending over MQTT only; set HEARTH_AGENT_TRANSPORT to udp or mqtt+udp",
            ),
            (
                &[("HEARTH_AGENT_TRANSPORT", "udp"), ("HEARTH_AGENT_GATEWAY_UDP", "10.0.0.1:7878"), ("HEARTH_AGENT_MQTT_URL", "mqtt://b:1883")],
                "HEARTH_AGENT_MQTT_URL: does not apply to a sensor sending over UDP only (HEARTH_AGENT_TRANSPORT is udp)",
            ),
            (
                &[("HEARTH_AGENT_ROLE", "actuator"), ("HEARTH_AGENT_STATE_DIR", "/var/lib/hearth-agent")],
                "HEARTH_AGENT_STATE_DIR: does not apply to a simulated actuator",
            ),
        ] {
            assert_eq!(error(vars), message, "{vars:?}");
        }
    }

    #[test]
    fn credentials_come_from_a_username_and_a_password() {
        let settings = load_device(&[
            ("HEARTH_AGENT_MQTT_USERNAME", "sensor-1"),
            ("HEARTH_AGENT_MQTT_PASSWORD", "s3cret"),
        ])
        .unwrap();
        assert_eq!(
            settings.link_options.credentials(),
            Some(&Credentials::new("sensor-1", "s3cret"))
        );
    }

    #[test]
    fn the_password_file_is_read_without_its_line_end() {
        let password = TempFile::new("password", "s3cret\n");
        let settings = load_device(&[
            ("HEARTH_AGENT_MQTT_USERNAME", "sensor-1"),
            ("HEARTH_AGENT_MQTT_PASSWORD_FILE", password.path()),
        ])
        .unwrap();
        assert_eq!(
            settings.link_options.credentials(),
            Some(&Credentials::new("sensor-1", "s3cret"))
        );
        let error = error(&[
            ("HEARTH_AGENT_MQTT_USERNAME", "u"),
            ("HEARTH_AGENT_MQTT_PASSWORD_FILE", "/nonexistent/password"),
        ]);
        assert!(
            error.starts_with(
                "HEARTH_AGENT_MQTT_PASSWORD_FILE: cannot read /nonexistent/password: "
            ),
            "{error}"
        );
    }

    #[test]
    fn a_password_in_the_environment_replaces_the_one_in_the_file_whatever_its_form() {
        let password = TempFile::new("env-password", "from-env-file\n");
        let file = TempFile::new(
            "password.toml",
            "home = \"h\"\ndevice = \"d\"\nmqtt_username = \"u\"\nmqtt_password = \"from-file\"\n",
        );
        let settings = load(&[
            ("HEARTH_AGENT_CONFIG", file.path()),
            ("HEARTH_AGENT_MQTT_PASSWORD_FILE", password.path()),
        ])
        .unwrap();
        assert_eq!(
            settings.link_options.credentials(),
            Some(&Credentials::new("u", "from-env-file"))
        );
    }

    #[test]
    fn a_username_and_a_password_need_each_other_and_one_password_form() {
        assert_eq!(
            error(&[("HEARTH_AGENT_MQTT_USERNAME", "u")]),
            "HEARTH_AGENT_MQTT_USERNAME: needs a password: set HEARTH_AGENT_MQTT_PASSWORD or HEARTH_AGENT_MQTT_PASSWORD_FILE"
        );
        assert_eq!(
            error(&[("HEARTH_AGENT_MQTT_PASSWORD", "p")]),
            "HEARTH_AGENT_MQTT_PASSWORD: needs a username: set HEARTH_AGENT_MQTT_USERNAME"
        );
        assert_eq!(
            error(&[("HEARTH_AGENT_MQTT_USERNAME", "u"), ("HEARTH_AGENT_MQTT_PASSWORD", "p"), ("HEARTH_AGENT_MQTT_PASSWORD_FILE", "/p")]),
            "HEARTH_AGENT_MQTT_PASSWORD_FILE: set either it or HEARTH_AGENT_MQTT_PASSWORD, not both"
        );
    }

    #[test]
    fn a_password_never_appears_in_an_error() {
        let error = error(&[("HEARTH_AGENT_MQTT_PASSWORD", "s3cret")]);
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn sim_sensors_make_a_fleet_whose_ids_must_stay_valid() {
        let settings = load_device(&[
            ("HEARTH_AGENT_SIM_SENSORS", "250"),
            ("HEARTH_AGENT_TEMPERATURE", "steady:21"),
        ])
        .unwrap();
        assert_eq!(
            settings.role,
            Role::Sensor {
                hardware: SensorHardware::Simulated {
                    temperature: Waveform::Steady(21.0),
                    fleet: Some(250)
                },
                plan: SensorPlan::mqtt(Duration::from_secs(2)),
            }
        );
        let long = "d".repeat(62);
        let error = load(&[
            ("HEARTH_AGENT_HOME", "h"),
            ("HEARTH_AGENT_DEVICE", &long),
            ("HEARTH_AGENT_SIM_SENSORS", "100"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(error, format!("HEARTH_AGENT_SIM_SENSORS: the device id \"{long}-99\" is 65 characters long, at most 64 allowed"));
    }

    #[cfg(feature = "rpi")]
    #[test]
    fn a_gpio_actuator_needs_a_pin_on_the_header() {
        let gpio = [
            ("HEARTH_AGENT_ROLE", "actuator"),
            ("HEARTH_AGENT_HARDWARE", "gpio"),
        ];
        let settings =
            load_device(&[&gpio[..], &[("HEARTH_AGENT_GPIO_PIN", "17")]].concat()).unwrap();
        assert_eq!(
            settings.role,
            Role::Actuator {
                hardware: ActuatorHardware::Gpio { pin: 17 }
            }
        );
        assert_eq!(
            error(&gpio),
            "HEARTH_AGENT_GPIO_PIN (or gpio_pin in the config file) must be set: the BCM number of the pin driving the output"
        );
        assert_eq!(
            error(&[&gpio[..], &[("HEARTH_AGENT_GPIO_PIN", "28")]].concat()),
            "HEARTH_AGENT_GPIO_PIN: \"28\" is not the BCM number of a GPIO on the 40-pin header (0 to 27)"
        );
    }

    #[cfg(feature = "rpi")]
    #[test]
    fn a_sensehat_sensor_takes_no_simulation_settings() {
        let settings = load_device(&[
            ("HEARTH_AGENT_HARDWARE", "sensehat"),
            ("HEARTH_AGENT_INTERVAL_MS", "500"),
        ])
        .unwrap();
        assert_eq!(
            settings.role,
            Role::Sensor {
                hardware: SensorHardware::SenseHat,
                plan: SensorPlan::mqtt(Duration::from_millis(500))
            }
        );
        assert_eq!(
            error(&[
                ("HEARTH_AGENT_HARDWARE", "sensehat"),
                ("HEARTH_AGENT_TEMPERATURE", "steady:20")
            ]),
            "HEARTH_AGENT_TEMPERATURE: does not apply to a Sense HAT sensor"
        );
    }

    #[cfg(not(feature = "rpi"))]
    #[test]
    fn without_the_rpi_feature_real_hardware_is_refused() {
        assert_eq!(
            error(&[("HEARTH_AGENT_HARDWARE", "sensehat")]),
            "HEARTH_AGENT_HARDWARE: this hearth-agent was built without the `rpi` feature, so only sim hardware"
        );
    }
}
