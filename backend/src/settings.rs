//! Typed settings, read from `HEARTH_*` environment variables. The defaults
//! are the embedded run: SQLite file, in-process broker, demo home. Any
//! setting `X` can instead be read from the file named by `X_FILE` (how
//! Kubernetes mounts Secrets).

use std::{net::SocketAddr, path::PathBuf};

use hearth_proto::{
    topics::{Topics, DEFAULT_PREFIX},
    v1::Metric,
};

/// Where the MQTT broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttBroker {
    /// Start rumqttd inside the process, listening here (port 0: any free port).
    Embedded { listen: SocketAddr },
    /// Use an external broker, e.g. `mqtt://127.0.0.1:1883`.
    External { url: String },
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// gRPC, gRPC-web and the web app (HEARTH_LISTEN).
    pub listen: SocketAddr,
    /// HEARTH_DATABASE_URL.
    pub database_url: String,
    /// HEARTH_MQTT_URL (unset: embedded, on HEARTH_MQTT_LISTEN).
    pub mqtt: MqttBroker,
    /// HEARTH_TOPIC_PREFIX.
    pub topics: Topics,
    /// HEARTH_DEMO: run the simulated demo home (default: on with the embedded broker).
    pub demo: bool,
    /// HEARTH_WEB_DIR: the built web app to serve at `/`.
    pub web_dir: PathBuf,
    /// HEARTH_COMMAND_TTL_MS: how long a command stays applicable; a device
    /// never applies one older than this.
    pub command_ttl_ms: i64,
    /// HEARTH_RAW_RETENTION_DAYS and HEARTH_MINUTE_RETENTION_DAYS.
    pub retention: Retention,
    /// HEARTH_REPLICA: this replica's stable name (Kubernetes: the pod name),
    /// for its MQTT session and the automation lease. Unset: a random one.
    pub replica: Option<String>,
}

/// How long data is kept. Hour and day rollups are kept for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Raw readings, in days: a default and per-metric exceptions.
    pub raw_default_days: u32,
    pub raw_per_metric: Vec<(Metric, u32)>,
    /// Minute rollups, in days.
    pub minute_days: u32,
}

impl Retention {
    pub fn raw_days(&self, metric: Metric) -> u32 {
        self.raw_per_metric
            .iter()
            .find(|(m, _)| *m == metric)
            .map_or(self.raw_default_days, |(_, d)| *d)
    }

    /// `"30"` or `"30,humidity_percent=7,pressure_hpa=90"`.
    fn parse_raw(value: &str) -> Result<(u32, Vec<(Metric, u32)>), String> {
        let days = |s: &str| -> Result<u32, String> {
            match s.trim().parse::<u32>() {
                Ok(d) if d > 0 => Ok(d),
                _ => Err(format!("{s:?} is not a number of days above 0")),
            }
        };
        let mut parts = value.split(',');
        let default = days(parts.next().unwrap_or_default())?;
        let mut per_metric = Vec::new();
        for part in parts {
            let (name, d) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not metric=days"))?;
            let metric = [
                Metric::TemperatureCelsius,
                Metric::HumidityPercent,
                Metric::PressureHpa,
            ]
            .into_iter()
            .find(|m| m.short_name() == name.trim())
            .ok_or_else(|| {
                format!("{name:?} is not temperature_celsius, humidity_percent or pressure_hpa")
            })?;
            per_metric.push((metric, days(d)?));
        }
        Ok((default, per_metric))
    }
}

/// A setting has a value Hearth cannot use; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {problem}")]
pub struct SettingError {
    pub name: &'static str,
    pub value: String,
    pub problem: String,
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://hearth.db";
/// Why not 1883: a broker such as Mosquitto usually has that port already.
pub const DEFAULT_EMBEDDED_MQTT_LISTEN: &str = "127.0.0.1:1884";
pub const DEFAULT_COMMAND_TTL_MS: i64 = 60_000;

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, which returns a variable's value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let get = |name: &'static str| -> Result<Option<String>, SettingError> {
            if let Some(v) = lookup(name).filter(|v| !v.is_empty()) {
                return Ok(Some(v));
            }
            let file_var = format!("{name}_FILE");
            match lookup(&file_var).filter(|v| !v.is_empty()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|e| SettingError {
                        name,
                        value: path,
                        problem: format!("cannot read the file named by {file_var}: {e}"),
                    }),
                None => Ok(None),
            }
        };
        let addr = |name: &'static str, default: &str| -> Result<SocketAddr, SettingError> {
            let value = get(name)?.unwrap_or_else(|| default.to_owned());
            value.parse().map_err(|e| SettingError {
                name,
                value,
                problem: format!("not an ip:port address ({e})"),
            })
        };

        let listen = addr("HEARTH_LISTEN", DEFAULT_LISTEN)?;
        let database_url =
            get("HEARTH_DATABASE_URL")?.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !["sqlite:", "mysql:", "mariadb:"]
            .iter()
            .any(|s| database_url.starts_with(s))
        {
            return Err(SettingError {
                name: "HEARTH_DATABASE_URL",
                value: database_url,
                problem: "must start with sqlite:// or mysql://".into(),
            });
        }
        let mqtt = match get("HEARTH_MQTT_URL")? {
            Some(url) if url.starts_with("mqtt://") || url.starts_with("tcp://") => {
                MqttBroker::External { url }
            }
            Some(url) => {
                return Err(SettingError {
                    name: "HEARTH_MQTT_URL",
                    value: url,
                    problem: "must start with mqtt://".into(),
                })
            }
            None => MqttBroker::Embedded {
                listen: addr("HEARTH_MQTT_LISTEN", DEFAULT_EMBEDDED_MQTT_LISTEN)?,
            },
        };
        let prefix = get("HEARTH_TOPIC_PREFIX")?.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        let topics = Topics::new(&prefix).map_err(|e| SettingError {
            name: "HEARTH_TOPIC_PREFIX",
            value: prefix.clone(),
            problem: e.to_string(),
        })?;
        let demo = match get("HEARTH_DEMO")?.as_deref() {
            None => matches!(mqtt, MqttBroker::Embedded { .. }),
            Some("1" | "true" | "on" | "yes") => true,
            Some("0" | "false" | "off" | "no") => false,
            Some(other) => {
                return Err(SettingError {
                    name: "HEARTH_DEMO",
                    value: other.into(),
                    problem: "must be true or false".into(),
                })
            }
        };
        let web_dir =
            PathBuf::from(get("HEARTH_WEB_DIR")?.unwrap_or_else(|| "frontend/dist".into()));
        let command_ttl_ms = match get("HEARTH_COMMAND_TTL_MS")? {
            None => DEFAULT_COMMAND_TTL_MS,
            Some(v) => match v.parse::<i64>() {
                Ok(ms) if (100..=86_400_000).contains(&ms) => ms,
                _ => {
                    return Err(SettingError {
                        name: "HEARTH_COMMAND_TTL_MS",
                        value: v,
                        problem: "must be milliseconds between 100 and 86400000".into(),
                    })
                }
            },
        };
        let raw = get("HEARTH_RAW_RETENTION_DAYS")?.unwrap_or_else(|| "30".into());
        let (raw_default_days, raw_per_metric) =
            Retention::parse_raw(&raw).map_err(|problem| SettingError {
                name: "HEARTH_RAW_RETENTION_DAYS",
                value: raw.clone(),
                problem,
            })?;
        let minute = get("HEARTH_MINUTE_RETENTION_DAYS")?.unwrap_or_else(|| "90".into());
        let minute_days = match minute.parse::<u32>() {
            Ok(d) if d > 0 => d,
            _ => {
                return Err(SettingError {
                    name: "HEARTH_MINUTE_RETENTION_DAYS",
                    value: minute,
                    problem: "must be a number of days above 0".into(),
                })
            }
        };
        let retention = Retention {
            raw_default_days,
            raw_per_metric,
            minute_days,
        };
        let replica = get("HEARTH_REPLICA")?;
        if let Some(r) = &replica {
            if r.len() > 64
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(SettingError {
                    name: "HEARTH_REPLICA",
                    value: r.clone(),
                    problem: "must be 1-64 of [A-Za-z0-9._-]".into(),
                });
            }
        }
        Ok(Self {
            listen,
            database_url,
            mqtt,
            topics,
            demo,
            web_dir,
            command_ttl_ms,
            retention,
            replica,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_run() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(
            s.mqtt,
            MqttBroker::Embedded {
                listen: "127.0.0.1:1884".parse().unwrap()
            }
        );
        assert_eq!(s.topics.prefix(), "hearth");
        assert!(s.demo);
        assert_eq!(s.command_ttl_ms, DEFAULT_COMMAND_TTL_MS);
        assert_eq!(s.replica, None);
    }

    #[test]
    fn retention_has_a_default_and_per_metric_exceptions() {
        let s = settings(&[("HEARTH_RAW_RETENTION_DAYS", "30,humidity_percent=7")]).unwrap();
        assert_eq!(s.retention.raw_days(Metric::HumidityPercent), 7);
        assert_eq!(s.retention.raw_days(Metric::TemperatureCelsius), 30);
        assert_eq!(s.retention.minute_days, 90);
        for bad in ["0", "x", "30,co2=4", "30,humidity_percent"] {
            let e = settings(&[("HEARTH_RAW_RETENTION_DAYS", bad)]).unwrap_err();
            assert_eq!(e.name, "HEARTH_RAW_RETENTION_DAYS", "{bad}");
        }
    }

    #[test]
    fn command_ttl_and_replica_name_are_checked() {
        let s = settings(&[
            ("HEARTH_COMMAND_TTL_MS", "1500"),
            ("HEARTH_REPLICA", "hearth-0"),
        ])
        .unwrap();
        assert_eq!(
            (s.command_ttl_ms, s.replica.as_deref()),
            (1500, Some("hearth-0"))
        );
        for (name, value) in [
            ("HEARTH_COMMAND_TTL_MS", "0"),
            ("HEARTH_COMMAND_TTL_MS", "soon"),
            ("HEARTH_REPLICA", "a b"),
        ] {
            let e = settings(&[(name, value)]).unwrap_err();
            assert_eq!(e.name, name);
        }
    }

    #[test]
    fn an_external_broker_turns_the_demo_off_unless_asked() {
        let s = settings(&[("HEARTH_MQTT_URL", "mqtt://127.0.0.1:1883")]).unwrap();
        assert_eq!(
            s.mqtt,
            MqttBroker::External {
                url: "mqtt://127.0.0.1:1883".into()
            }
        );
        assert!(!s.demo);
        assert!(
            settings(&[("HEARTH_MQTT_URL", "mqtt://h:1"), ("HEARTH_DEMO", "true")])
                .unwrap()
                .demo
        );
    }

    #[test]
    fn port_zero_is_allowed() {
        let s = settings(&[
            ("HEARTH_LISTEN", "127.0.0.1:0"),
            ("HEARTH_MQTT_LISTEN", "127.0.0.1:0"),
        ])
        .unwrap();
        assert_eq!(s.listen.port(), 0);
        assert_eq!(
            s.mqtt,
            MqttBroker::Embedded {
                listen: "127.0.0.1:0".parse().unwrap()
            }
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let e = settings(&[("HEARTH_LISTEN", "localhost")]).unwrap_err();
        assert_eq!(e.name, "HEARTH_LISTEN");
        assert!(
            e.to_string()
                .starts_with("HEARTH_LISTEN=\"localhost\": not an ip:port address"),
            "{e}"
        );
        assert_eq!(
            settings(&[("HEARTH_DATABASE_URL", "postgres://x")])
                .unwrap_err()
                .name,
            "HEARTH_DATABASE_URL"
        );
        assert_eq!(
            settings(&[("HEARTH_MQTT_URL", "http://x")])
                .unwrap_err()
                .name,
            "HEARTH_MQTT_URL"
        );
        assert_eq!(
            settings(&[("HEARTH_TOPIC_PREFIX", "a/+")])
                .unwrap_err()
                .name,
            "HEARTH_TOPIC_PREFIX"
        );
        assert_eq!(
            settings(&[("HEARTH_DEMO", "maybe")]).unwrap_err().name,
            "HEARTH_DEMO"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let path = std::env::temp_dir().join(format!("hearth-settings-{}", std::process::id()));
        std::fs::write(&path, "mysql://root:pw@db/hearth\n").unwrap();
        let s = settings(&[("HEARTH_DATABASE_URL_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(s.database_url, "mysql://root:pw@db/hearth");
        std::fs::remove_file(&path).unwrap();
        let e = settings(&[("HEARTH_DATABASE_URL_FILE", "/nonexistent/hearth")]).unwrap_err();
        assert!(e.to_string().contains("HEARTH_DATABASE_URL_FILE"), "{e}");
    }
}
