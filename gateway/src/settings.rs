//! `hearth-gateway`'s settings: each a flag and a `HEARTH_*` environment
//! variable (a flag wins), and `<NAME>_FILE` reads one from a file, through
//! `hearth_runtime::settings`. `hearth-gateway --help` lists them with their
//! defaults; README.md ("The gateway") has the same table, checked below.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use hearth_proto::topics::{Topics, DEFAULT_PREFIX};

use crate::{bridge::BridgeConfig, Config};

/// `hearth-gateway`'s command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hearth-gateway",
    version,
    about = "The Hearth LAN gateway: reading batches as UDP datagrams in, a durable \
    queue, the backend's gRPC API out; optionally an MQTT bridge (see README.md)"
)]
pub struct Cli {
    /// Where sensors send datagrams; port 0 picks one (logged).
    #[arg(
        long,
        env = "HEARTH_GATEWAY_UDP",
        value_name = "ADDR",
        default_value = "0.0.0.0:7878"
    )]
    udp: SocketAddr,
    /// The hearth backend's gRPC address.
    #[arg(
        long,
        env = "HEARTH_GATEWAY_CLOUD",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    cloud: String,
    /// The CA (PEM) of an https:// HEARTH_GATEWAY_CLOUD's certificate
    /// [default: the system's CAs].
    #[arg(long, env = "HEARTH_GATEWAY_CLOUD_CA_FILE", value_name = "PATH")]
    cloud_ca_file: Option<PathBuf>,
    /// The API token the gateway sends its readings with (README, "The
    /// gateway"), and its MQTT bridge's login to the cloud broker (username
    /// `token`) unless --cloud-mqtt names a user; give it as
    /// HEARTH_GATEWAY_CLOUD_TOKEN_FILE [default: none, for a backend in open
    /// mode].
    #[arg(
        long,
        env = "HEARTH_GATEWAY_CLOUD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    cloud_token: Option<String>,
    /// Directory of the durable queue.
    #[arg(
        long,
        env = "HEARTH_GATEWAY_DATA",
        value_name = "DIR",
        default_value = "gateway-data"
    )]
    data: PathBuf,
    /// The queue's bound in MiB; when full, new datagrams are refused.
    #[arg(
        long,
        env = "HEARTH_GATEWAY_QUEUE_MB",
        value_name = "MIB",
        default_value_t = 256
    )]
    queue_mb: u64,
    /// Datagrams per second per source address (bursts of twice that).
    #[arg(
        long,
        env = "HEARTH_GATEWAY_RATE",
        value_name = "PER_S",
        default_value_t = 1000
    )]
    rate: u32,
    /// How often appended datagrams are fsynced (ms): a datagram is accepted
    /// (survives a power cut) at most this long after it arrived.
    #[arg(
        long,
        env = "HEARTH_GATEWAY_FSYNC_MS",
        value_name = "MS",
        default_value_t = 20
    )]
    fsync_ms: u64,
    /// How often the stats line (queue depth, counts) is logged (ms).
    #[arg(
        long,
        env = "HEARTH_GATEWAY_STATS_MS",
        value_name = "MS",
        default_value_t = 10_000
    )]
    stats_ms: u64,
    /// `ip:port` of the Prometheus endpoint `GET /metrics`, e.g. 0.0.0.0:9878;
    /// port 0 picks one (logged as `metrics=`) [default: none].
    #[arg(long, env = "HEARTH_GATEWAY_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// The LAN broker devices use, e.g. mqtt://127.0.0.1:1883; with
    /// --cloud-mqtt, the MQTT bridge relays desired states down and reported
    /// states and status up.
    #[arg(
        long,
        env = "HEARTH_GATEWAY_LAN_MQTT",
        value_name = "URL",
        hide_env_values = true
    )]
    lan_mqtt: Option<String>,
    /// The backend's broker, the other end of the MQTT bridge.
    #[arg(
        long,
        env = "HEARTH_GATEWAY_CLOUD_MQTT",
        value_name = "URL",
        hide_env_values = true
    )]
    cloud_mqtt: Option<String>,
    /// Topic prefix, the same on both brokers.
    #[arg(long, env = "HEARTH_TOPIC_PREFIX", value_name = "PREFIX", default_value = DEFAULT_PREFIX,
        value_parser = topics)]
    topic_prefix: Topics,
    /// The sensors' keys: a line `DEVICE_ID KEY` per device, the key 64 hex
    /// digits (`openssl rand -hex 32`); only datagrams signed with them are
    /// taken. Unset: unsigned datagrams, allowed only on a loopback --udp.
    #[arg(long, env = "HEARTH_GATEWAY_KEYS_FILE", value_name = "PATH")]
    keys_file: Option<PathBuf>,
    /// Log filter (tracing syntax, e.g. `hearth_gateway=debug`).
    #[arg(
        long,
        env = "HEARTH_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub log: String,
}

fn topics(value: &str) -> Result<Topics, String> {
    Topics::new(value).map_err(|e| e.to_string())
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        let cloud_token = cli.cloud_token.map(hearth_runtime::Secret::new);
        Self {
            udp: cli.udp,
            cloud: cli.cloud,
            cloud_ca_file: cli.cloud_ca_file,
            cloud_token: cloud_token.clone(),
            data_dir: cli.data,
            max_queue_bytes: cli.queue_mb.saturating_mul(1024 * 1024),
            rate: cli.rate,
            sync_every: Duration::from_millis(cli.fsync_ms.max(1)),
            stats_every: Duration::from_millis(cli.stats_ms.max(10)),
            metrics: cli.metrics_listen,
            // Why both or neither: a bridge needs its two ends.
            bridge: match (cli.lan_mqtt, cli.cloud_mqtt) {
                (Some(lan_url), Some(cloud_url)) => Some(BridgeConfig {
                    lan_url,
                    cloud_url,
                    topics: cli.topic_prefix,
                    cloud_token,
                }),
                _ => None,
            },
            keys_file: cli.keys_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::{error::ErrorKind, CommandFactory as _};

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, clap::Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        hearth_runtime::settings::try_parse_from::<Cli>(["hearth-gateway"], |name| {
            vars.get(name).cloned()
        })
        .map(Config::from)
    }

    #[test]
    fn the_defaults_listen_on_7878_and_forward_to_a_local_backend() {
        let c = config(&[]).unwrap();
        assert_eq!(c.udp, "0.0.0.0:7878".parse().unwrap());
        assert_eq!(c.cloud, "http://127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("gateway-data"));
        assert_eq!(c.max_queue_bytes, 256 << 20);
        assert_eq!(c.rate, 1000);
        assert_eq!(c.sync_every, Duration::from_millis(20));
        assert_eq!(c.stats_every, Duration::from_secs(10));
        assert_eq!(c.metrics, None);
        assert!(c.bridge.is_none());
        assert_eq!(c.keys_file, None);
    }

    #[test]
    fn the_bridge_needs_both_brokers() {
        let lan = ("HEARTH_GATEWAY_LAN_MQTT", "mqtt://127.0.0.1:1883");
        let cloud = ("HEARTH_GATEWAY_CLOUD_MQTT", "mqtt://cloud:1883");
        assert!(config(&[lan]).unwrap().bridge.is_none());
        let bridge = config(&[lan, cloud, ("HEARTH_TOPIC_PREFIX", "t1")])
            .unwrap()
            .bridge
            .expect("a bridge");
        assert_eq!(bridge.cloud_url, "mqtt://cloud:1883");
        assert_eq!(bridge.topics.prefix(), "t1");
        assert_eq!(bridge.cloud_token, None);
        let token = ("HEARTH_GATEWAY_CLOUD_TOKEN", "ht_x");
        let bridge = config(&[lan, cloud, token]).unwrap().bridge.unwrap();
        assert_eq!(
            bridge.cloud_token.as_ref().map(|t| t.expose()),
            Some("ht_x"),
            "the bridge logs in to the cloud broker with the gateway's token"
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("HEARTH_GATEWAY_UDP", "localhost"),
            ("HEARTH_GATEWAY_QUEUE_MB", "lots"),
            ("HEARTH_GATEWAY_RATE", "-1"),
            ("HEARTH_GATEWAY_METRICS_LISTEN", "9878"),
            ("HEARTH_TOPIC_PREFIX", "a/+"),
        ] {
            let e = config(&[(var, value)]).unwrap_err().to_string();
            assert!(e.contains(&format!("{var}: ")), "{var}={value}: {e}");
        }
    }

    #[test]
    fn help_and_version_exit_without_starting_anything() {
        let help =
            hearth_runtime::settings::try_parse_from::<Cli>(["hearth-gateway", "--help"], |_| None)
                .unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert_eq!(help.exit_code(), 0);
        let text = help.to_string();
        for needle in [
            "--udp",
            "HEARTH_GATEWAY_UDP",
            "0.0.0.0:7878",
            "--metrics-listen",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let version = hearth_runtime::settings::try_parse_from::<Cli>(
            ["hearth-gateway", "--version"],
            |_| None,
        )
        .unwrap_err();
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
    }

    #[test]
    fn the_readme_lists_every_setting_with_its_default() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("\n### The gateway\n")
            .nth(1)
            .and_then(|s| s.split("| variable | default | meaning |").nth(1))
            .expect("README.md has the gateway's settings table");
        // Each row: the variables, then the default.
        let mut rows: HashMap<String, String> = HashMap::new();
        for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let mut cells = row.trim_matches('|').split(" | ").map(str::trim);
            let (names, default) = (cells.next().unwrap_or(""), cells.next().unwrap_or(""));
            for name in names.split('`').skip(1).step_by(2) {
                rows.insert(name.to_owned(), default.to_owned());
            }
        }
        let command = Cli::command();
        let settings: Vec<_> = command
            .get_arguments()
            .filter_map(|a| Some((a.get_env()?.to_str()?, a.get_default_values())))
            .collect();
        for (name, defaults) in &settings {
            let row = rows
                .get(*name)
                .unwrap_or_else(|| panic!("{name} is not in README.md's gateway table"));
            match defaults.first() {
                Some(default) => assert_eq!(
                    row,
                    &format!("`{}`", default.to_string_lossy()),
                    "README.md: {name}'s default"
                ),
                None => assert!(row.starts_with("unset"), "README.md: {name} is {row}"),
            }
        }
        assert_eq!(
            rows.len(),
            settings.len(),
            "README.md lists a setting hearth-gateway lacks"
        );
    }
}
