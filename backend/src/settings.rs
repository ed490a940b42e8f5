//! Typed settings, from flags and `HEARTH_*` environment variables ([`Cli`],
//! through `hearth_runtime::settings`). The defaults are the embedded run:
//! SQLite file, in-process broker, demo home. Any setting `X` can instead be
//! read from the file named by `X_FILE` (how Kubernetes mounts Secrets).

use std::{net::SocketAddr, path::PathBuf};

use clap::{builder::BoolishValueParser, Parser};
use hearth_runtime::logging::DEFAULT_FILTER;

use crate::limits::Allowance;

use hearth_proto::{
    topics::{HomeAssistantTopics, Topics, DEFAULT_DISCOVERY_PREFIX, DEFAULT_PREFIX},
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
    /// HEARTH_ROLES: which of the four roles this replica runs.
    pub roles: Roles,
    /// HEARTH_REFLECTION and HEARTH_METRICS: what operators' tools may see.
    pub exposed: Exposed,
    /// HEARTH_CORS_ORIGINS: other origins whose pages may call the API from
    /// a browser (empty: the app's own origin only).
    pub cors_origins: Vec<http::HeaderValue>,
    /// HEARTH_REPLICA: this replica's stable name (Kubernetes: the pod name),
    /// for its MQTT session and the automation lease. Unset: a random one.
    pub replica: Option<String>,
    /// HEARTH_SESSION_MINUTES: how long a login's session token lasts
    /// unless renewed.
    pub session_ttl_ms: i64,
    /// HEARTH_REQUESTS_PER_SECOND, HEARTH_REQUEST_BURST and
    /// HEARTH_STREAMS_PER_CALLER: what each user or API token may do.
    pub allowance: Allowance,
    /// HEARTH_DEVICE_MESSAGES_PER_SECOND: what each device may publish.
    pub device_messages_per_second: u32,
    /// HEARTH_ADMIN and HEARTH_ADMIN_PASSWORD: the first admin, created at
    /// start if no user exists yet (how a cluster gets one from a Secret).
    pub first_admin: Option<FirstAdmin>,
    /// HEARTH_HOME_ASSISTANT and HEARTH_HOME_ASSISTANT_PREFIX: Home
    /// Assistant's topics when the bridge is on, `None` when off.
    pub home_assistant: Option<HomeAssistantTopics>,
    /// HEARTH_MQTT_DYNSEC_ADMIN and HEARTH_MQTT_DYNSEC_PASSWORD: the admin of
    /// Mosquitto's dynamic security plugin, as whom Hearth manages devices'
    /// logins there and logs in itself; `None`: Hearth does not manage the
    /// external broker's logins.
    pub dynsec_admin: Option<DynsecAdmin>,
    /// HEARTH_TLS_CERT_FILE and HEARTH_TLS_KEY_FILE: TLS on HEARTH_LISTEN
    /// and on the embedded broker's HEARTH_MQTT_LISTEN; `None`: plain TCP.
    pub tls: Option<TlsFiles>,
}

/// A server certificate chain and its key, PEM files read again when they
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The dynamic security plugin's admin login.
#[derive(Clone, PartialEq, Eq)]
pub struct DynsecAdmin {
    pub username: String,
    pub password: String,
}

// Why by hand: the password must never reach a log through `{:?}`.
impl std::fmt::Debug for DynsecAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DynsecAdmin({}, password: ***)", self.username)
    }
}

impl DynsecAdmin {
    /// `url` (`mqtt://host:port`) with this login in it: how every MQTT
    /// connection of Hearth's carries it (rumqttc reads it from the URL).
    pub fn url(&self, url: &str) -> String {
        match url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}:{}@{rest}", self.username, self.password)
            }
            None => url.to_owned(),
        }
    }
}

/// The first admin, `NAME@HOME`, with a password.
#[derive(Clone, PartialEq, Eq)]
pub struct FirstAdmin {
    pub username: String,
    pub home: String,
    pub password: String,
}

// Why by hand: the password must never reach a log through `{:?}`.
impl std::fmt::Debug for FirstAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FirstAdmin({}@{}, password: ***)",
            self.username, self.home
        )
    }
}

/// What is served for operators' tools besides the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposed {
    /// gRPC server reflection (what `grpcurl list` and `buf curl` use).
    pub reflection: bool,
    /// Prometheus metrics at `/metrics`.
    pub metrics: bool,
}

/// The paper's four roles, any subset of them per replica. Every replica
/// serves the whole gRPC API; a role is the background work it takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The Receiver: devices' readings from the broker into the database.
    pub ingest: bool,
    /// Manual Configuration: devices' reports and status, acknowledgements.
    pub control: bool,
    /// Automatic Configuration: the rules, under the automation lease.
    pub automation: bool,
    /// The Webpage: the web app at `/`.
    pub web: bool,
}

impl Roles {
    pub const ALL: Self = Self {
        ingest: true,
        control: true,
        automation: true,
        web: true,
    };
    const NAMES: &str = "ingest,control,automation,web";

    /// `"ingest,web"`: a comma-separated subset of [`Roles::NAMES`].
    fn parse(value: &str) -> Result<Self, String> {
        let mut roles = Self {
            ingest: false,
            control: false,
            automation: false,
            web: false,
        };
        for name in value.split(',').map(str::trim) {
            let role = match name {
                "ingest" => &mut roles.ingest,
                "control" => &mut roles.control,
                "automation" => &mut roles.automation,
                "web" => &mut roles.web,
                _ => return Err(format!("{name:?} is not one of {}", Self::NAMES)),
            };
            *role = true;
        }
        Ok(roles)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (self.ingest, "ingest"),
            (self.control, "control"),
            (self.automation, "automation"),
            (self.web, "web"),
        ];
        let on: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&on.join(","))
    }
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

/// Why loopback: with no user yet, Hearth is open only to this machine (see
/// `access`); serving the LAN takes a user and `HEARTH_LISTEN=0.0.0.0:8080`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://hearth.db";
/// Why not 1883: a broker such as Mosquitto usually has that port already.
pub const DEFAULT_EMBEDDED_MQTT_LISTEN: &str = "127.0.0.1:1884";
pub const DEFAULT_COMMAND_TTL_MS: i64 = 60_000;

/// `hearth`'s command line: every setting is a flag and a `HEARTH_*`
/// variable (a flag wins), and `<NAME>_FILE` reads one from a file.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hearth",
    version,
    about = "The Hearth backend: gRPC and gRPC-web API, \
    web app, MQTT ingest and control, automation (see README.md)"
)]
pub struct Cli {
    /// gRPC, gRPC-web, the web app and /metrics; port 0 picks a free port (the
    /// bound address is logged).
    #[arg(long, env = "HEARTH_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// `sqlite://PATH` or `mysql://user:pass@host:3306/db` (MySQL or
    /// MariaDB); migrations run at start.
    #[arg(long, env = "HEARTH_DATABASE_URL", value_name = "URL", hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL, value_parser = database_url)]
    database_url: String,
    /// Unset: run the embedded broker; `mqtt://host:port`: use that broker;
    /// `mqtts://host:8883[?ca_file=PATH]`: over TLS, trusting that CA file
    /// or else the system's CAs.
    #[arg(long, env = "HEARTH_MQTT_URL", value_name = "URL", hide_env_values = true,
        value_parser = mqtt_url)]
    mqtt_url: Option<String>,
    /// Where the embedded broker listens (not 1883, which a system broker
    /// usually has); port 0 allowed.
    #[arg(long, env = "HEARTH_MQTT_LISTEN", value_name = "ADDR",
        default_value = DEFAULT_EMBEDDED_MQTT_LISTEN)]
    mqtt_listen: SocketAddr,
    /// First topic level(s), so several deployments or tests can share a broker.
    #[arg(long, env = "HEARTH_TOPIC_PREFIX", value_name = "PREFIX", default_value = DEFAULT_PREFIX,
        value_parser = topics)]
    topic_prefix: Topics,
    /// Run the simulated demo home [default: on with the embedded broker].
    #[arg(long, env = "HEARTH_DEMO", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    demo: Option<bool>,
    /// The built web app to serve at `/`.
    #[arg(
        long,
        env = "HEARTH_WEB_DIR",
        value_name = "DIR",
        default_value = "frontend/dist"
    )]
    web_dir: PathBuf,
    /// Log filter (tracing syntax, e.g. `hearth_backend=debug`).
    #[arg(long, env = "HEARTH_LOG", value_name = "FILTER", default_value = DEFAULT_FILTER)]
    pub log: String,
    /// How long a command stays applicable (ms): a device never applies one
    /// older than this.
    #[arg(long, env = "HEARTH_COMMAND_TTL_MS", value_name = "MS",
        default_value_t = DEFAULT_COMMAND_TTL_MS,
        value_parser = clap::value_parser!(i64).range(100..=86_400_000))]
    command_ttl_ms: i64,
    /// Other origins (`https://host[:port]`, comma-separated) whose pages may
    /// call the API from a browser [default: none, the app's own origin only].
    #[arg(long, env = "HEARTH_CORS_ORIGINS", value_name = "ORIGINS", value_delimiter = ',',
        value_parser = origin)]
    cors_origins: Vec<http::HeaderValue>,
    /// Serve gRPC server reflection (`grpcurl list`, `buf curl` without
    /// .proto files); false hides the API's shape from anyone who can reach it.
    #[arg(long, env = "HEARTH_REFLECTION", value_name = "BOOL", default_value = "true",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new())]
    reflection: bool,
    /// Serve Prometheus metrics at `/metrics`.
    #[arg(long, env = "HEARTH_METRICS", value_name = "BOOL", default_value = "true",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new())]
    metrics: bool,
    /// The roles this replica runs: a comma-separated subset of
    /// ingest,control,automation,web (see README.md, "Several replicas").
    #[arg(long, env = "HEARTH_ROLES", value_name = "ROLES", default_value = Roles::NAMES,
        value_parser = Roles::parse)]
    roles: Roles,
    /// This replica's stable name (Kubernetes: the pod name): its persistent
    /// MQTT session and its name in the automation lease [default: random].
    #[arg(long, env = "HEARTH_REPLICA", value_name = "NAME", value_parser = replica)]
    replica: Option<String>,
    /// Raw readings kept this many days; per metric:
    /// `30,humidity_percent=7,pressure_hpa=90`.
    #[arg(long, env = "HEARTH_RAW_RETENTION_DAYS", value_name = "DAYS", default_value = "30",
        value_parser = raw_retention)]
    raw_retention_days: RawRetention,
    /// Minute rollups kept this many days (hour and day rollups are kept).
    #[arg(long, env = "HEARTH_MINUTE_RETENTION_DAYS", value_name = "DAYS", default_value_t = 90,
        value_parser = clap::value_parser!(u32).range(1..))]
    minute_retention_days: u32,
    /// How long a login lasts unless the app renews it (minutes).
    #[arg(long, env = "HEARTH_SESSION_MINUTES", value_name = "MINUTES", default_value_t = 15,
        value_parser = clap::value_parser!(u32).range(1..=10_080))]
    session_minutes: u32,
    /// Requests a second each user or API token may make, sustained
    /// (0: unlimited; open mode is never limited).
    #[arg(
        long,
        env = "HEARTH_REQUESTS_PER_SECOND",
        value_name = "N",
        default_value_t = 20
    )]
    requests_per_second: u32,
    /// Requests each user or API token may make at once before the rate
    /// applies (an app opening a home asks for a few dozen things).
    #[arg(long, env = "HEARTH_REQUEST_BURST", value_name = "N", default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..))]
    request_burst: u32,
    /// Streams (live views, exports) each user or API token may hold open
    /// at once (0: unlimited).
    #[arg(
        long,
        env = "HEARTH_STREAMS_PER_CALLER",
        value_name = "N",
        default_value_t = 16
    )]
    streams_per_caller: u32,
    /// MQTT messages a second each device may publish, sustained, after a
    /// burst of a minute's worth; past it they are dropped and counted
    /// (0: unlimited).
    #[arg(
        long,
        env = "HEARTH_DEVICE_MESSAGES_PER_SECOND",
        value_name = "N",
        default_value_t = 100
    )]
    device_messages_per_second: u32,
    /// The first admin, `NAME@HOME`, created at start if no user exists
    /// (the home too, if missing) [default: none].
    #[arg(long, env = "HEARTH_ADMIN", value_name = "NAME@HOME", value_parser = first_admin,
        requires = "admin_password")]
    admin: Option<(String, String)>,
    /// The first admin's password, at least 12 characters; use
    /// HEARTH_ADMIN_PASSWORD_FILE (a Secret) rather than the variable.
    #[arg(long, env = "HEARTH_ADMIN_PASSWORD", value_name = "PASSWORD", hide_env_values = true,
        value_parser = admin_password, requires = "admin")]
    admin_password: Option<String>,

    /// Manage devices' logins on Mosquitto's dynamic security plugin as this
    /// admin (`mosquitto_ctrl dynsec init FILE USER`); Hearth's replicas log
    /// in as it too. Needs HEARTH_MQTT_URL [default: none, Hearth does not
    /// manage the broker's logins].
    #[arg(long, env = "HEARTH_MQTT_DYNSEC_ADMIN", value_name = "USER",
        value_parser = dynsec_username, requires = "mqtt_dynsec_password", requires = "mqtt_url")]
    mqtt_dynsec_admin: Option<String>,
    /// That admin's password (URL-safe characters: A-Z a-z 0-9 . _ ~ -); use
    /// HEARTH_MQTT_DYNSEC_PASSWORD_FILE (a Secret) rather than the variable.
    #[arg(long, env = "HEARTH_MQTT_DYNSEC_PASSWORD", value_name = "PASSWORD",
        hide_env_values = true, value_parser = dynsec_password, requires = "mqtt_dynsec_admin")]
    mqtt_dynsec_password: Option<String>,

    /// Announce the devices to Home Assistant through MQTT discovery on the
    /// broker Hearth uses, and take its switches (see README.md, "Home
    /// Assistant"); run by replicas with the control role.
    #[arg(long, env = "HEARTH_HOME_ASSISTANT", value_name = "BOOL", default_value = "false",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new())]
    home_assistant: bool,
    /// Home Assistant's discovery prefix (its MQTT integration's setting).
    #[arg(long, env = "HEARTH_HOME_ASSISTANT_PREFIX", value_name = "PREFIX",
        default_value = DEFAULT_DISCOVERY_PREFIX, value_parser = discovery_prefix)]
    home_assistant_prefix: String,

    /// Serve TLS with this certificate chain (PEM) on HEARTH_LISTEN and on
    /// the embedded broker's HEARTH_MQTT_LISTEN (`mqtts://`); read again
    /// when it changes [default: none, plain TCP].
    #[arg(
        long,
        env = "HEARTH_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "tls_key_file"
    )]
    tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of HEARTH_TLS_CERT_FILE's certificate.
    #[arg(
        long,
        env = "HEARTH_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "tls_cert_file"
    )]
    tls_key_file: Option<PathBuf>,
}

fn first_admin(value: &str) -> Result<(String, String), String> {
    let (name, home) = value
        .split_once('@')
        .ok_or_else(|| format!("{value:?} is not NAME@HOME"))?;
    for (part, what) in [(name, "NAME"), (home, "HOME")] {
        hearth_proto::ids::check_id(part).map_err(|e| format!("{what} {e}"))?;
    }
    Ok((name.to_owned(), home.to_owned()))
}

fn admin_password(value: &str) -> Result<String, String> {
    let value = value.trim_end_matches(['\n', '\r']);
    crate::access::check_password(value, "the password")?;
    Ok(value.to_owned())
}

fn dynsec_username(value: &str) -> Result<String, String> {
    hearth_proto::ids::check_id(value).map_err(|e| format!("the username {e}"))?;
    Ok(value.to_owned())
}

/// Why only URL-safe characters: the login travels in the broker URL that
/// every MQTT connection of Hearth's is made from.
fn dynsec_password(value: &str) -> Result<String, String> {
    let value = value.trim_end_matches(['\n', '\r']);
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c));
    match ok {
        true => Ok(value.to_owned()),
        false => {
            Err("must be 1 or more of A-Z a-z 0-9 . _ ~ - (e.g. `openssl rand -hex 24`)".into())
        }
    }
}

fn discovery_prefix(value: &str) -> Result<String, String> {
    Topics::new(value)
        .map(|t| t.prefix().to_owned())
        .map_err(|e| e.to_string())
}

/// Raw retention as `HEARTH_RAW_RETENTION_DAYS` gives it.
#[derive(Debug, Clone)]
struct RawRetention(u32, Vec<(Metric, u32)>);

fn raw_retention(value: &str) -> Result<RawRetention, String> {
    Retention::parse_raw(value).map(|(d, per_metric)| RawRetention(d, per_metric))
}

fn database_url(value: &str) -> Result<String, String> {
    if ["sqlite:", "mysql:", "mariadb:"]
        .iter()
        .any(|s| value.starts_with(s))
    {
        Ok(value.to_owned())
    } else {
        Err("must start with sqlite:// or mysql://".into())
    }
}

fn mqtt_url(value: &str) -> Result<String, String> {
    if ["mqtt://", "tcp://", "mqtts://", "ssl://"]
        .iter()
        .any(|s| value.starts_with(s))
    {
        Ok(value.to_owned())
    } else {
        Err("must start with mqtt:// or mqtts://".into())
    }
}

fn origin(value: &str) -> Result<http::HeaderValue, String> {
    let value = value.trim();
    let host = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| format!("{value:?} is not an origin (https://host[:port])"))?;
    if host.is_empty() || host.contains('/') || host == "*" {
        return Err(format!("{value:?} is not an origin (https://host[:port])"));
    }
    http::HeaderValue::from_str(value).map_err(|e| e.to_string())
}

fn topics(value: &str) -> Result<Topics, String> {
    Topics::new(value).map_err(|e| e.to_string())
}

fn replica(value: &str) -> Result<String, String> {
    let valid = value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be 1-64 of [A-Za-z0-9._-]".into())
    }
}

impl From<Cli> for Settings {
    fn from(cli: Cli) -> Self {
        let mqtt = match cli.mqtt_url {
            Some(url) => MqttBroker::External { url },
            None => MqttBroker::Embedded {
                listen: cli.mqtt_listen,
            },
        };
        let RawRetention(raw_default_days, raw_per_metric) = cli.raw_retention_days;
        Self {
            listen: cli.listen,
            database_url: cli.database_url,
            demo: cli
                .demo
                .unwrap_or(matches!(mqtt, MqttBroker::Embedded { .. })),
            mqtt,
            topics: cli.topic_prefix.clone(),
            web_dir: cli.web_dir,
            command_ttl_ms: cli.command_ttl_ms,
            retention: Retention {
                raw_default_days,
                raw_per_metric,
                minute_days: cli.minute_retention_days,
            },
            roles: cli.roles,
            exposed: Exposed {
                reflection: cli.reflection,
                metrics: cli.metrics,
            },
            cors_origins: cli.cors_origins,
            replica: cli.replica,
            session_ttl_ms: i64::from(cli.session_minutes) * 60_000,
            device_messages_per_second: cli.device_messages_per_second,
            allowance: Allowance {
                per_second: cli.requests_per_second,
                burst: cli.request_burst,
                streams: cli.streams_per_caller,
            },
            first_admin: cli
                .admin
                .zip(cli.admin_password)
                .map(|((username, home), password)| FirstAdmin {
                    username,
                    home,
                    password,
                }),
            dynsec_admin: cli
                .mqtt_dynsec_admin
                .zip(cli.mqtt_dynsec_password)
                .map(|(username, password)| DynsecAdmin { username, password }),
            tls: cli
                .tls_cert_file
                .zip(cli.tls_key_file)
                .map(|(cert, key)| TlsFiles { cert, key }),
            home_assistant: cli.home_assistant.then(|| {
                cli.topic_prefix
                    .home_assistant(&cli.home_assistant_prefix)
                    .expect("the discovery prefix was checked when parsed")
            }),
        }
    }
}

impl Settings {
    /// Reads settings through `lookup`, which returns a variable's value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, clap::Error> {
        hearth_runtime::settings::try_parse_from::<Cli>(["hearth"], lookup).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, clap::Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    /// The variable an error names: its message starts with it.
    fn named(e: &clap::Error) -> String {
        let text = e.to_string();
        let text = text.trim_start_matches("error: ");
        text.split(':').next().unwrap_or_default().to_owned()
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
        assert_eq!(s.roles, Roles::ALL);
        assert_eq!(
            s.exposed,
            Exposed {
                reflection: true,
                metrics: true
            }
        );
        let hidden = settings(&[("HEARTH_REFLECTION", "false"), ("HEARTH_METRICS", "off")]);
        assert_eq!(
            hidden.unwrap().exposed,
            Exposed {
                reflection: false,
                metrics: false
            }
        );
    }

    #[test]
    fn cors_is_same_origin_unless_origins_are_listed() {
        assert!(settings(&[]).unwrap().cors_origins.is_empty());
        let s = settings(&[(
            "HEARTH_CORS_ORIGINS",
            "https://home.example,http://192.168.1.5:8080",
        )])
        .unwrap();
        assert_eq!(s.cors_origins.len(), 2);
        for bad in ["*", "home.example", "https://a/b"] {
            let e = settings(&[("HEARTH_CORS_ORIGINS", bad)]).unwrap_err();
            assert_eq!(named(&e), "HEARTH_CORS_ORIGINS", "{bad}");
        }
    }

    #[test]
    fn roles_are_any_subset_of_the_four() {
        let s = settings(&[("HEARTH_ROLES", "web, ingest")]).unwrap();
        assert_eq!((s.roles.ingest, s.roles.control), (true, false));
        assert_eq!((s.roles.automation, s.roles.web), (false, true));
        assert_eq!(s.roles.to_string(), "ingest,web");
        let e = settings(&[("HEARTH_ROLES", "ingest,receiver")]).unwrap_err();
        assert_eq!(named(&e), "HEARTH_ROLES");
        assert!(e.to_string().contains("\"receiver\" is not one of"), "{e}");
    }

    #[test]
    fn retention_has_a_default_and_per_metric_exceptions() {
        let s = settings(&[("HEARTH_RAW_RETENTION_DAYS", "30,humidity_percent=7")]).unwrap();
        assert_eq!(s.retention.raw_days(Metric::HumidityPercent), 7);
        assert_eq!(s.retention.raw_days(Metric::TemperatureCelsius), 30);
        assert_eq!(s.retention.minute_days, 90);
        for bad in ["0", "x", "30,co2=4", "30,humidity_percent"] {
            let e = settings(&[("HEARTH_RAW_RETENTION_DAYS", bad)]).unwrap_err();
            assert_eq!(named(&e), "HEARTH_RAW_RETENTION_DAYS", "{bad}");
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
            assert_eq!(named(&e), name);
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
        assert_eq!(named(&e), "HEARTH_LISTEN");
        assert!(
            e.to_string().contains("'localhost'") && e.to_string().contains("socket address"),
            "{e}"
        );
        assert_eq!(
            named(&settings(&[("HEARTH_DATABASE_URL", "postgres://x")]).unwrap_err()),
            "HEARTH_DATABASE_URL"
        );
        assert_eq!(
            named(&settings(&[("HEARTH_MQTT_URL", "http://x")]).unwrap_err()),
            "HEARTH_MQTT_URL"
        );
        assert_eq!(
            named(&settings(&[("HEARTH_TOPIC_PREFIX", "a/+")]).unwrap_err()),
            "HEARTH_TOPIC_PREFIX"
        );
        assert_eq!(
            named(&settings(&[("HEARTH_DEMO", "maybe")]).unwrap_err()),
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

    #[test]
    fn the_readme_lists_every_setting_with_its_default() {
        use clap::CommandFactory as _;
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Settings\n")
            .nth(1)
            .and_then(|s| s.split("\n### ").next())
            .expect("README.md has a ## Settings section");
        let rows: HashMap<&str, &str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once("` | "))
            .collect();
        let command = Cli::command();
        let settings: Vec<_> = command
            .get_arguments()
            .filter_map(|a| Some((a.get_env()?.to_str()?, a.get_default_values())))
            .collect();
        for (name, defaults) in &settings {
            let row = rows
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not in README.md's settings table"));
            for default in *defaults {
                let default = format!("`{}`", default.to_string_lossy());
                assert!(
                    row.starts_with(&default),
                    "README.md: {name}'s default is {default}"
                );
            }
        }
        assert_eq!(
            rows.len(),
            settings.len(),
            "README.md lists a setting hearth lacks"
        );
    }

    #[test]
    fn dynamic_security_needs_an_external_broker_and_a_url_safe_password() {
        assert_eq!(settings(&[]).unwrap().dynsec_admin, None);
        let on = settings(&[
            ("HEARTH_MQTT_URL", "mqtt://127.0.0.1:1883"),
            ("HEARTH_MQTT_DYNSEC_ADMIN", "hearth-admin"),
            ("HEARTH_MQTT_DYNSEC_PASSWORD", "s3cret-pw\n"),
        ])
        .unwrap();
        let admin = on.dynsec_admin.expect("set");
        assert_eq!(
            admin.url("mqtt://127.0.0.1:1883"),
            "mqtt://hearth-admin:s3cret-pw@127.0.0.1:1883"
        );
        assert!(!format!("{admin:?}").contains("s3cret"));
        let e = settings(&[
            ("HEARTH_MQTT_URL", "mqtt://127.0.0.1:1883"),
            ("HEARTH_MQTT_DYNSEC_ADMIN", "hearth-admin"),
            ("HEARTH_MQTT_DYNSEC_PASSWORD", "has@and:"),
        ])
        .unwrap_err();
        assert_eq!(named(&e), "HEARTH_MQTT_DYNSEC_PASSWORD");
        assert!(settings(&[
            ("HEARTH_MQTT_DYNSEC_ADMIN", "hearth-admin"),
            ("HEARTH_MQTT_DYNSEC_PASSWORD", "pw"),
        ])
        .is_err());
    }

    #[test]
    fn home_assistant_is_off_unless_asked_and_takes_a_discovery_prefix() {
        assert_eq!(settings(&[]).unwrap().home_assistant, None);
        let on = settings(&[("HEARTH_HOME_ASSISTANT", "true")]).unwrap();
        let topics = on.home_assistant.expect("on when asked");
        assert_eq!(
            topics.config("demo", "fan", "demo_fan"),
            "homeassistant/fan/hearth_demo/demo_fan/config"
        );
        let custom = settings(&[
            ("HEARTH_HOME_ASSISTANT", "1"),
            ("HEARTH_HOME_ASSISTANT_PREFIX", "ha"),
            ("HEARTH_TOPIC_PREFIX", "site-2/hearth"),
        ])
        .unwrap();
        assert_eq!(
            custom.home_assistant.unwrap().config("h", "fan", "h_f"),
            "ha/fan/site-2_hearth_h/h_f/config"
        );
        for bad in ["ha/#", "$SYS", "a//b"] {
            let e = settings(&[("HEARTH_HOME_ASSISTANT_PREFIX", bad)]).unwrap_err();
            assert_eq!(named(&e), "HEARTH_HOME_ASSISTANT_PREFIX", "{bad:?}");
        }
    }
}
