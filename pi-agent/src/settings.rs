//! The agent's settings: defaults, then a TOML file (`--config`,
//! `HEARTH_AGENT_CONFIG`), then environment variables, then flags, each
//! layer overriding the one before. Every setting is a flag and a variable
//! ([`Cli`], through `hearth_runtime::settings`; `hearth-agent --help` lists
//! them) and a key of the file (the flag's name with `_`). They are parsed
//! once, at start-up, into [`Settings`]; a value that is bad, missing, or
//! does not apply to the chosen role and hardware fails with the name of the
//! setting at fault (the variable, or the key and the file). An empty
//! variable counts as unset.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use clap::{CommandFactory as _, Parser};
use hearth_proto::{
    ids::check_id,
    signing::DeviceKeys,
    topics::{Topics, DEFAULT_PREFIX},
};
use hearth_runtime::mqtt::{self, Credentials};

use crate::{
    mqtt::{DeviceLink, LinkOptions},
    sensor::{SensorPlan, Transport},
    sim::Waveform,
};

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

/// `hearth-agent`'s command line. Why every setting a string: the file's
/// values are checked by the same code, so an error names the key and file.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "hearth-agent",
    version,
    about = "The Hearth device agent: one sensor or actuator (or, for load tests, \
    many simulated sensors) over MQTT or UDP (see README.md, \"Devices\")"
)]
pub struct Cli {
    /// A TOML file of settings, keys named as the flags with `_`
    /// (`mqtt_url = "…"`); a variable or a flag overrides its key.
    #[arg(long, env = "HEARTH_AGENT_CONFIG", value_name = "PATH")]
    pub config: Option<String>,
    /// The broker [default: mqtt://127.0.0.1:1884, the embedded broker of `hearth`].
    #[arg(
        long,
        env = "HEARTH_AGENT_MQTT_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    mqtt_url: Option<String>,
    /// The device's broker user [default: anonymous].
    #[arg(long, env = "HEARTH_AGENT_MQTT_USERNAME", value_name = "USER")]
    mqtt_username: Option<String>,
    /// Its password; needs the username.
    #[arg(
        long,
        env = "HEARTH_AGENT_MQTT_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    mqtt_password: Option<String>,
    /// Or a file holding it (line ends at its end ignored); a password given
    /// as a variable or flag, in either form, replaces the file's.
    #[arg(long, env = "HEARTH_AGENT_MQTT_PASSWORD_FILE", value_name = "PATH")]
    mqtt_password_file: Option<String>,
    /// First topic level(s) [default: hearth].
    #[arg(long, env = "HEARTH_TOPIC_PREFIX", value_name = "PREFIX")]
    topic_prefix: Option<String>,
    /// The id of the device's home (required).
    #[arg(long, env = "HEARTH_AGENT_HOME", value_name = "ID")]
    home: Option<String>,
    /// The id of the device (required).
    #[arg(long, env = "HEARTH_AGENT_DEVICE", value_name = "ID")]
    device: Option<String>,
    /// sensor | actuator [default: sensor].
    #[arg(long, env = "HEARTH_AGENT_ROLE", value_name = "ROLE")]
    role: Option<String>,
    /// A sensor's: sim | sensehat; an actuator's: sim | gpio [default: sim].
    #[arg(long, env = "HEARTH_AGENT_HARDWARE", value_name = "HARDWARE")]
    hardware: Option<String>,
    /// BCM number 0–27 of the output pin (gpio; required there).
    #[arg(long, env = "HEARTH_AGENT_GPIO_PIN", value_name = "PIN")]
    gpio_pin: Option<String>,
    /// Milliseconds between readings (sensor) [default: 2000].
    #[arg(long, env = "HEARTH_AGENT_INTERVAL_MS", value_name = "MS")]
    interval_ms: Option<String>,
    /// The simulated temperature: steady:V | ramp:FROM:TO:S |
    /// sine:MEAN:AMPLITUDE:S | step:FROM:TO:AFTER_S | noise:MEAN:AMPLITUDE;
    /// the first four may end in +noise:AMPLITUDE (e.g. ramp:20:30:120+noise:0.2)
    /// [default: sine:24:3:120].
    #[arg(long, env = "HEARTH_AGENT_TEMPERATURE", value_name = "WAVEFORM")]
    temperature: Option<String>,
    /// N simulated sensors {device}-0 … {device}-{N-1}, each with its own
    /// connection, for load tests (sim sensor).
    #[arg(long, env = "HEARTH_AGENT_SIM_SENSORS", value_name = "N")]
    sim_sensors: Option<String>,
    /// A file of the simulated sensors' own broker logins, a line
    /// `DEVICE_ID PASSWORD` for each of {device}-0 … {device}-{N-1} (the
    /// passwords RegisterDevice gave): each logs in as itself, as a broker
    /// with per-device logins requires (sim_sensors) [default: the one login
    /// of HEARTH_AGENT_MQTT_USERNAME for all].
    #[arg(long, env = "HEARTH_AGENT_SIM_LOGINS_FILE", value_name = "PATH")]
    sim_logins_file: Option<String>,
    /// How a sensor's readings leave: mqtt | udp (datagrams to a gateway; no
    /// broker, so no MQTT setting applies) | mqtt+udp (both; the backend
    /// stores each batch once) [default: mqtt].
    #[arg(long, env = "HEARTH_AGENT_TRANSPORT", value_name = "TRANSPORT")]
    transport: Option<String>,
    /// host:port of hearth-gateway's UDP socket (udp, mqtt+udp).
    #[arg(long, env = "HEARTH_AGENT_GATEWAY_UDP", value_name = "HOST:PORT")]
    gateway_udp: Option<String>,
    /// A writable directory where a sensor keeps its sequence number bound
    /// ({device}.seq), so numbers keep growing across restarts even when the
    /// clock went back.
    #[arg(long, env = "HEARTH_AGENT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<String>,
    /// A keys file holding the device's key (a line `DEVICE_ID KEY`, the key
    /// 64 hex digits; with sim_sensors a line per simulated device): UDP
    /// datagrams are then signed, as a gateway with keys requires (udp,
    /// mqtt+udp) [default: unsigned].
    #[arg(long, env = "HEARTH_AGENT_UDP_KEY_FILE", value_name = "PATH")]
    udp_key_file: Option<String>,
    /// Log filter (tracing syntax).
    #[arg(
        long,
        env = "HEARTH_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub log: String,
}

impl Cli {
    /// The settings given as flags or variables, by their key in the file.
    fn given(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("mqtt_url", &self.mqtt_url),
            ("mqtt_username", &self.mqtt_username),
            ("mqtt_password", &self.mqtt_password),
            ("mqtt_password_file", &self.mqtt_password_file),
            ("topic_prefix", &self.topic_prefix),
            ("home", &self.home),
            ("device", &self.device),
            ("role", &self.role),
            ("hardware", &self.hardware),
            ("gpio_pin", &self.gpio_pin),
            ("interval_ms", &self.interval_ms),
            ("temperature", &self.temperature),
            ("sim_sensors", &self.sim_sensors),
            ("sim_logins_file", &self.sim_logins_file),
            ("transport", &self.transport),
            ("gateway_udp", &self.gateway_udp),
            ("state_dir", &self.state_dir),
            ("udp_key_file", &self.udp_key_file),
        ]
        .into_iter()
        // Why: an empty variable counts as unset, as `VAR= command` means in a shell.
        .filter_map(|(key, value)| Some((key, value.as_ref().filter(|v| !v.is_empty())?)))
    }
}

/// The variable of the setting whose file key (and clap id) is `key`.
fn variable(key: &str) -> String {
    Cli::command()
        .get_arguments()
        .find(|a| a.get_id() == key)
        .and_then(|a| a.get_env())
        .map_or_else(|| key.to_owned(), |e| e.to_string_lossy().into_owned())
}

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
    /// with its own connection (for load tests), and with `logins` each
    /// with its own broker login.
    Simulated {
        temperature: Waveform,
        fleet: Option<u32>,
        logins: Option<Arc<FleetLogins>>,
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

/// The broker logins of a fleet's devices, by device id.
pub type FleetLogins = BTreeMap<String, Credentials>;

/// Why the settings were refused; every message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A bad command line, or `--help` or `--version` (clap's message).
    #[error(transparent)]
    CommandLine(#[from] clap::Error),
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

fn missing(key: &str, reason: &'static str) -> SettingsError {
    SettingsError::Missing {
        setting: format!("{} (or {key} in the config file)", variable(key)),
        reason,
    }
}

impl Settings {
    /// From the arguments `args` (the first is the program's name) and the
    /// environment `env` looks up, and the file they name. Why a lookup:
    /// tests need not change the process's environment, which every thread
    /// shares.
    pub fn try_parse_from(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        Self::from_cli(hearth_runtime::settings::try_parse_from(args, env)?)
    }

    /// From the flags and variables of `cli`, over the file it names.
    pub fn from_cli(cli: Cli) -> Result<Self, SettingsError> {
        let mut layers = Layers::default();
        if let Some(path) = cli.config.as_ref().filter(|p| !p.is_empty()) {
            let text =
                std::fs::read_to_string(path).map_err(|cause| SettingsError::Unreadable {
                    setting: variable("config"),
                    path: path.clone(),
                    cause,
                })?;
            layers.add_file(&text, path)?;
        }
        layers.add_cli(&cli);
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
struct Layers(BTreeMap<String, Raw>);

impl Layers {
    fn add_file(&mut self, text: &str, path: &str) -> Result<(), SettingsError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            invalid(&format!("{path} ({})", variable("config")), e.to_string())
        })?;
        // Every setting but the file itself and the log filter.
        let keys: Vec<String> = Cli::command()
            .get_arguments()
            .filter(|a| a.get_env().is_some() && !["config", "log"].contains(&a.get_id().as_str()))
            .map(|a| a.get_id().to_string())
            .collect();
        for (key, value) in table {
            let origin = format!("{key} in {path}");
            if !keys.contains(&key) {
                let known = keys.join(", ");
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
            self.0.insert(key, Raw { value, origin });
        }
        Ok(())
    }

    fn add_cli(&mut self, cli: &Cli) {
        let given: Vec<_> = cli.given().collect();
        // Why: a password given as a variable or flag, in either form,
        // replaces the file's in either form.
        if given
            .iter()
            .any(|(key, _)| key.starts_with("mqtt_password"))
        {
            self.0.remove("mqtt_password");
            self.0.remove("mqtt_password_file");
        }
        for (key, value) in given {
            let origin = variable(key);
            self.0.insert(
                key.to_owned(),
                Raw {
                    value: value.clone(),
                    origin,
                },
            );
        }
    }

    fn take(&mut self, key: &str) -> Option<Raw> {
        self.0.remove(key)
    }

    fn into_settings(mut self) -> Result<Settings, SettingsError> {
        let mqtt_setting = self
            .0
            .iter()
            .find(|(key, _)| key.starts_with("mqtt_") || *key == "topic_prefix")
            .map(|(_, raw)| raw.origin.clone());
        let broker_url = match self.take("mqtt_url") {
            Some(raw) => raw.parse(|url| {
                mqtt::options(url, "hearth-agent", None)
                    .map(|_| url.to_owned())
                    .map_err(|e| format!("{e:#}"))
            })?,
            None => DEFAULT_MQTT_URL.to_owned(),
        };
        let topics = match self.take("topic_prefix") {
            Some(raw) => raw.parse(|prefix| Topics::new(prefix).map_err(|e| e.to_string()))?,
            None => Topics::new(DEFAULT_PREFIX).expect("the default prefix is valid"),
        };
        let home_id = self
            .take("home")
            .ok_or_else(|| missing("home", "the id of the device's home"))?
            .parse(id)?;
        let device_id = self
            .take("device")
            .ok_or_else(|| missing("device", "the id of the device"))?
            .parse(id)?;
        let link_options = match self.credentials()? {
            Some((credentials, Some(file))) => LinkOptions::default()
                .with_credentials(credentials)
                .with_password_file(file),
            Some((credentials, None)) => LinkOptions::default().with_credentials(credentials),
            None => LinkOptions::default(),
        };
        let is_actuator = match self.take("role") {
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
        let fleet_logins = matches!(
            &role,
            Role::Sensor {
                hardware: SensorHardware::Simulated {
                    logins: Some(_),
                    ..
                },
                ..
            }
        )
        .then(|| variable("sim_logins_file"));
        if let Some(origin) = &fleet_logins {
            if let Some(credentials) = link_options.credentials() {
                return Err(invalid(
                    origin,
                    format!(
                        "gives each simulated sensor its own login: set it or \
                         HEARTH_AGENT_MQTT_USERNAME ({}), not both",
                        credentials.username()
                    ),
                ));
            }
        }
        if let (Role::Sensor { plan, .. }, Some(origin)) = (&role, mqtt_setting.or(fleet_logins)) {
            if !plan.transport.uses_mqtt() {
                return Err(invalid(
                    &origin,
                    "does not apply to a sensor sending over UDP only (HEARTH_AGENT_TRANSPORT is udp)",
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

    /// The broker login, and the file its password came from (read again
    /// when the broker refuses it).
    fn credentials(&mut self) -> Result<Option<(Credentials, Option<PathBuf>)>, SettingsError> {
        let username = self.take("mqtt_username");
        let mut file_path = None;
        let password = match (self.take("mqtt_password"), self.take("mqtt_password_file")) {
            (Some(inline), Some(file)) => {
                return Err(invalid(
                    &file.origin,
                    format!("set either it or {}, not both", inline.origin),
                ));
            }
            (Some(inline), None) => Some(inline),
            (None, Some(file)) => {
                file_path = Some(PathBuf::from(&file.value));
                Some(Raw {
                    value: read_password(&file)?,
                    origin: file.origin,
                })
            }
            (None, None) => None,
        };
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some((
                Credentials::new(username.value, password.value),
                file_path,
            ))),
            (None, None) => Ok(None),
            (Some(username), None) => Err(invalid(
                &username.origin,
                "needs a password: set HEARTH_AGENT_MQTT_PASSWORD or HEARTH_AGENT_MQTT_PASSWORD_FILE",
            )),
            (None, Some(password)) => Err(invalid(
                &password.origin,
                "needs a username: set HEARTH_AGENT_MQTT_USERNAME",
            )),
        }
    }

    fn sensor(&mut self, device_id: &str) -> Result<Role, SettingsError> {
        let interval = match self.take("interval_ms") {
            Some(raw) => raw.parse(|v| {
                v.parse()
                    .ok()
                    .filter(|ms| (1..=MAX_INTERVAL_MS).contains(ms))
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("{v:?} is not a whole number of milliseconds from 1 to {MAX_INTERVAL_MS}"))
            })?,
            None => Duration::from_millis(DEFAULT_INTERVAL_MS),
        };
        let hardware = match self.take("hardware") {
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
        let state_dir = self.take("state_dir").map(|raw| PathBuf::from(raw.value));
        let udp_keys = match self.take("udp_key_file") {
            None => None,
            Some(file) if transport.udp_gateway().is_none() => {
                return Err(invalid(
                    &file.origin,
                    "does not apply to a sensor sending over MQTT only; set HEARTH_AGENT_TRANSPORT to udp or mqtt+udp",
                ))
            }
            Some(file) => {
                let devices: Vec<String> = match &hardware {
                    SensorHardware::Simulated {
                        fleet: Some(count), ..
                    } => (0..*count).map(|i| format!("{device_id}-{i}")).collect(),
                    _ => vec![device_id.to_owned()],
                };
                Some(Arc::new(read_udp_keys(&file, &devices)?))
            }
        };
        Ok(Role::Sensor {
            hardware,
            plan: SensorPlan {
                interval,
                transport,
                state_dir,
                udp_keys,
            },
        })
    }

    fn transport(&mut self) -> Result<Transport, SettingsError> {
        // (over UDP, over MQTT too)
        let (udp, mqtt) = match self.take("transport") {
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
            if let Some(gateway) = self.take("gateway_udp") {
                return Err(invalid(
                    &gateway.origin,
                    "does not apply to a sensor sending over MQTT only; set HEARTH_AGENT_TRANSPORT to udp or mqtt+udp",
                ));
            }
            return Ok(Transport::Mqtt);
        }
        let gateway = self
            .take("gateway_udp")
            .ok_or_else(|| {
                missing(
                    "gateway_udp",
                    "the gateway's host:port that UDP datagrams go to",
                )
            })?
            .parse(gateway_address)?;
        Ok(if mqtt {
            Transport::MqttAndUdp { gateway }
        } else {
            Transport::Udp { gateway }
        })
    }

    fn simulated_sensor(&mut self, device_id: &str) -> Result<SensorHardware, SettingsError> {
        let temperature = match self.take("temperature") {
            Some(raw) => raw.parse(str::parse)?,
            None => DEFAULT_TEMPERATURE
                .parse()
                .expect("the default waveform is valid"),
        };
        let fleet = match self.take("sim_sensors") {
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
        let logins = match (self.take("sim_logins_file"), fleet) {
            (Some(raw), Some(count)) => Some(Arc::new(read_fleet_logins(&raw, device_id, count)?)),
            (Some(raw), None) => {
                return Err(invalid(
                    &raw.origin,
                    "applies to a fleet of simulated sensors only (HEARTH_AGENT_SIM_SENSORS)",
                ))
            }
            (None, _) => None,
        };
        Ok(SensorHardware::Simulated {
            temperature,
            fleet,
            logins,
        })
    }

    fn actuator(&mut self) -> Result<Role, SettingsError> {
        let hardware = match self.take("hardware") {
            None => ActuatorHardware::Simulated,
            Some(raw) => match raw.value.as_str() {
                "sim" => ActuatorHardware::Simulated,
                "gpio" => {
                    let pin = self.take("gpio_pin").ok_or_else(|| {
                        missing("gpio_pin", "the BCM number of the pin driving the output")
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

/// The text of the file a setting names, or an error naming both.
fn read_file(file: &Raw) -> Result<String, SettingsError> {
    std::fs::read_to_string(&file.value).map_err(|cause| SettingsError::Unreadable {
        setting: file.origin.clone(),
        path: file.value.clone(),
        cause,
    })
}

/// Reads a password file, without the line end an editor or `echo` leaves.
fn read_password(file: &Raw) -> Result<String, SettingsError> {
    let text = read_file(file)?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(invalid(&file.origin, format!("{} is empty", file.value)));
    }
    Ok(password.to_owned())
}

/// Reads a keys file that must hold the key of each of `devices`.
fn read_udp_keys(file: &Raw, devices: &[String]) -> Result<DeviceKeys, SettingsError> {
    let text = read_file(file)?;
    let keys = DeviceKeys::parse(&text)
        .map_err(|e| invalid(&file.origin, format!("{}: {e}", file.value)))?;
    if let Some(missing) = devices.iter().find(|d| keys.get(d).is_none()) {
        return Err(invalid(
            &file.origin,
            format!("{} holds no key for device {missing:?}", file.value),
        ));
    }
    Ok(keys)
}

/// Reads a fleet's logins file: a line `DEVICE_ID PASSWORD` for each of
/// `{device}-0` … `{device}-{count-1}` (blank lines and `#` comments
/// skipped). An error names the line, never its text: it holds a password.
fn read_fleet_logins(file: &Raw, device: &str, count: u32) -> Result<FleetLogins, SettingsError> {
    let text = read_file(file)?;
    let error = |reason: String| invalid(&file.origin, format!("{}: {reason}", file.value));
    let mut logins = FleetLogins::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(id), Some(password), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(error(format!(
                "line {}: expected a device id and its password, separated by a space",
                i + 1
            )));
        };
        if logins
            .insert(id.to_owned(), Credentials::new(id, password))
            .is_some()
        {
            return Err(error(format!(
                "line {}: a second line for one device",
                i + 1
            )));
        }
    }
    if let Some(missing) = (0..count)
        .map(|i| format!("{device}-{i}"))
        .find(|d| !logins.contains_key(d))
    {
        return Err(error(format!("holds no login for device {missing:?}")));
    }
    Ok(logins)
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
        Settings::try_parse_from(["hearth-agent"], |name| vars.get(name).cloned())
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
                    fleet: None,
                    logins: None,
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
    fn a_fleet_with_a_logins_file_logs_each_device_in_as_itself() {
        let file = TempFile::new(
            "fleet-logins",
            "# RegisterDevice's passwords\nd-0 first-secret\n\nd-1\tsecond-secret\n",
        );
        let fleet = [
            ("HEARTH_AGENT_SIM_SENSORS", "2"),
            ("HEARTH_AGENT_SIM_LOGINS_FILE", file.path()),
        ];
        let settings = load_device(&fleet).unwrap();
        let Role::Sensor {
            hardware:
                SensorHardware::Simulated {
                    logins: Some(logins),
                    ..
                },
            ..
        } = &settings.role
        else {
            panic!("{:?}", settings.role)
        };
        assert_eq!(
            logins.values().cloned().collect::<Vec<_>>(),
            [
                Credentials::new("d-0", "first-secret"),
                Credentials::new("d-1", "second-secret")
            ]
        );
        assert!(
            !format!("{settings:?}").contains("secret"),
            "passwords stay out of logs"
        );

        let three = [("HEARTH_AGENT_SIM_SENSORS", "3"), fleet[1]];
        let named = format!("HEARTH_AGENT_SIM_LOGINS_FILE: {}: ", file.path());
        assert_eq!(
            error(&three),
            format!("{named}holds no login for device \"d-2\"")
        );
        assert_eq!(
            error(&[fleet[1]]),
            "HEARTH_AGENT_SIM_LOGINS_FILE: applies to a fleet of simulated sensors only (HEARTH_AGENT_SIM_SENSORS)"
        );
        let shared = [
            ("HEARTH_AGENT_MQTT_USERNAME", "all"),
            ("HEARTH_AGENT_MQTT_PASSWORD", "p"),
        ];
        assert_eq!(
            error(&[&fleet[..], &shared[..]].concat()),
            "HEARTH_AGENT_SIM_LOGINS_FILE: gives each simulated sensor its own login: set it or \
             HEARTH_AGENT_MQTT_USERNAME (all), not both"
        );
        let udp = [
            ("HEARTH_AGENT_TRANSPORT", "udp"),
            ("HEARTH_AGENT_GATEWAY_UDP", "127.0.0.1:7878"),
        ];
        assert_eq!(
            error(&[&fleet[..], &udp[..]].concat()),
            "HEARTH_AGENT_SIM_LOGINS_FILE: does not apply to a sensor sending over UDP only (HEARTH_AGENT_TRANSPORT is udp)"
        );
        let bad = TempFile::new("fleet-logins-bad", "d-0 a-secret extra\n");
        let error = error(&[fleet[0], ("HEARTH_AGENT_SIM_LOGINS_FILE", bad.path())]);
        assert_eq!(
            error,
            format!(
                "HEARTH_AGENT_SIM_LOGINS_FILE: {}: line 1: expected a device id and its password, separated by a space",
                bad.path()
            )
        );
        assert!(!error.contains("a-secret"));
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
                    fleet: None,
                    logins: None,
                },
                plan: SensorPlan {
                    interval: Duration::from_secs(2),
                    transport: Transport::MqttAndUdp {
                        gateway: "gateway.lan:7878".into()
                    },
                    state_dir: Some("/var/lib/hearth-agent".into()),
                    udp_keys: None,
                },
            }
        );
    }

    #[test]
    fn a_udp_key_file_must_hold_the_key_of_every_device_it_signs_for() {
        let key = "ab".repeat(32);
        let file = TempFile::new("udp-keys", &format!("d {key}\nd-0 {key}\nd-1 {key}\n"));
        let udp = [
            ("HEARTH_AGENT_TRANSPORT", "udp"),
            ("HEARTH_AGENT_GATEWAY_UDP", "10.0.0.1:7878"),
            ("HEARTH_AGENT_UDP_KEY_FILE", file.path()),
        ];
        let keys = |vars: &[(&str, &str)]| match load_device(vars).unwrap().role {
            Role::Sensor { plan, .. } => plan.udp_keys.expect("keys"),
            other => panic!("{other:?}"),
        };
        let expected = hearth_proto::signing::DeviceKey::from_hex(&key).unwrap();
        assert_eq!(keys(&udp).get("d"), Some(&expected));
        let fleet = [&udp[..], &[("HEARTH_AGENT_SIM_SENSORS", "2")]].concat();
        assert_eq!(keys(&fleet).len(), 3);

        let three = [&udp[..], &[("HEARTH_AGENT_SIM_SENSORS", "3")]].concat();
        assert_eq!(
            error(&three),
            format!(
                "HEARTH_AGENT_UDP_KEY_FILE: {} holds no key for device \"d-2\"",
                file.path()
            )
        );
        let bad = TempFile::new("udp-keys-bad", &format!("d {}\n", &key[..20]));
        let message = error(&[&udp[..2], &[("HEARTH_AGENT_UDP_KEY_FILE", bad.path())]].concat());
        assert_eq!(
            message,
            format!(
                "HEARTH_AGENT_UDP_KEY_FILE: {}: line 1: the key is not 64 hex digits (32 random bytes, e.g. from `openssl rand -hex 32`)",
                bad.path()
            )
        );
        assert!(!message.contains(&key[..20]));
        let message = error(
            &[
                &udp[..2],
                &[("HEARTH_AGENT_UDP_KEY_FILE", "/nonexistent/keys")],
            ]
            .concat(),
        );
        assert!(
            message.starts_with("HEARTH_AGENT_UDP_KEY_FILE: cannot read /nonexistent/keys"),
            "{message}"
        );
        assert_eq!(
            error(&[("HEARTH_AGENT_UDP_KEY_FILE", file.path())]),
            "HEARTH_AGENT_UDP_KEY_FILE: does not apply to a sensor sending over MQTT only; set HEARTH_AGENT_TRANSPORT to udp or mqtt+udp"
        );
        assert_eq!(
            error(&[
                ("HEARTH_AGENT_ROLE", "actuator"),
                ("HEARTH_AGENT_UDP_KEY_FILE", file.path())
            ]),
            "HEARTH_AGENT_UDP_KEY_FILE: does not apply to a simulated actuator"
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
                    fleet: Some(250),
                    logins: None,
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

    #[test]
    fn a_flag_overrides_its_variable_and_help_and_version_start_nothing() {
        let settings = Settings::try_parse_from(
            ["hearth-agent", "--home", "from-flag", "--device", "d"],
            |name| (name == "HEARTH_AGENT_HOME").then(|| "from-env".to_owned()),
        )
        .unwrap();
        assert_eq!(settings.link.home_id, "from-flag");
        for (flag, kind) in [
            ("--help", clap::error::ErrorKind::DisplayHelp),
            ("--version", clap::error::ErrorKind::DisplayVersion),
        ] {
            match Settings::try_parse_from(["hearth-agent", flag], |_| None) {
                Err(SettingsError::CommandLine(e)) => {
                    assert_eq!((e.kind(), e.exit_code()), (kind, 0), "{flag}")
                }
                other => panic!("{flag}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_readme_lists_every_setting_with_its_key_and_default() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("| variable | file key | default / meaning |")
            .nth(1)
            .expect("README.md has the agent's settings table");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        // Each variable: its file key and the row's last cell.
        let mut rows: HashMap<String, (Option<String>, String)> = HashMap::new();
        for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            let keys = ticked(cells[1]);
            for (i, name) in ticked(cells[0]).into_iter().enumerate() {
                rows.insert(name, (keys.get(i).cloned(), cells[2].to_owned()));
            }
        }
        let command = Cli::command();
        let settings: Vec<_> = command
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .collect();
        for arg in &settings {
            let name = arg.get_env().unwrap().to_string_lossy();
            let (key, meaning) = rows
                .get(name.as_ref())
                .unwrap_or_else(|| panic!("{name} is not in README.md's agent table"));
            let id = arg.get_id().as_str();
            if !["config", "log"].contains(&id) {
                assert_eq!(key.as_deref(), Some(id), "README.md: {name}'s file key");
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let default = arg
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned())
                .or_else(|| {
                    let rest = help.split("[default: ").nth(1)?;
                    Some(rest.split([',', ']']).next()?.to_owned())
                });
            if let Some(default) = default {
                assert!(
                    meaning.contains(&default),
                    "README.md: {name}'s default is {default}"
                );
            }
        }
        assert_eq!(
            rows.len(),
            settings.len(),
            "README.md lists a setting hearth-agent lacks"
        );
    }
}
