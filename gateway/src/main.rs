//! `hearth-gateway`: UDP on the LAN in, the backend's gRPC API out.
//!
//! ```text
//! HEARTH_GATEWAY_UDP       0.0.0.0:7878            where sensors send datagrams (port 0: any)
//! HEARTH_GATEWAY_CLOUD     http://127.0.0.1:8080   the hearth backend
//! HEARTH_GATEWAY_DATA      gateway-data            directory of the durable queue
//! HEARTH_GATEWAY_QUEUE_MB  256                     queue bound; when full, new datagrams are refused
//! HEARTH_GATEWAY_RATE      1000                    datagrams per second per source (bursts of twice that)
//! HEARTH_GATEWAY_FSYNC_MS  20                      fsync interval: a datagram is accepted (survives a
//!                                                  power cut) at most this long after it arrived
//! HEARTH_GATEWAY_STATS_MS  10000                   how often the stats line (queue depth, counts) is logged
//! HEARTH_GATEWAY_METRICS_LISTEN unset              ip:port of the Prometheus endpoint GET /metrics (e.g.
//!                                                  0.0.0.0:9878; port 0: any, logged); unset: none
//! HEARTH_GATEWAY_LAN_MQTT  unset                   the LAN broker devices use, e.g. mqtt://127.0.0.1:1883
//! HEARTH_GATEWAY_CLOUD_MQTT unset                  the backend's broker; with both set, desired states are
//!                                                  relayed down and reported/status up (the MQTT bridge)
//! HEARTH_TOPIC_PREFIX      hearth                  topic prefix, the same on both brokers
//! HEARTH_LOG               info
//! ```
//!
//! SIGTERM or Ctrl-C: stop taking datagrams, fsync the queue, exit 0.

use std::time::Duration;

use anyhow::Context as _;
use hearth_gateway::{bridge::BridgeConfig, Config};

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

fn number(name: &str, default: &str) -> anyhow::Result<u64> {
    let value = var(name, default);
    value
        .parse()
        .with_context(|| format!("{name}={value:?} is not a whole number"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(var("HEARTH_LOG", "info"))
        .with_ansi(ansi)
        .init();
    let udp = var("HEARTH_GATEWAY_UDP", "0.0.0.0:7878");
    let config = Config {
        udp: udp
            .parse()
            .with_context(|| format!("HEARTH_GATEWAY_UDP={udp:?} is not an ip:port address"))?,
        cloud: var("HEARTH_GATEWAY_CLOUD", "http://127.0.0.1:8080"),
        data_dir: var("HEARTH_GATEWAY_DATA", "gateway-data").into(),
        max_queue_bytes: number("HEARTH_GATEWAY_QUEUE_MB", "256")? * 1024 * 1024,
        rate: u32::try_from(number("HEARTH_GATEWAY_RATE", "1000")?)
            .context("HEARTH_GATEWAY_RATE is too large")?,
        sync_every: Duration::from_millis(number("HEARTH_GATEWAY_FSYNC_MS", "20")?.max(1)),
        stats_every: Duration::from_millis(number("HEARTH_GATEWAY_STATS_MS", "10000")?.max(10)),
        metrics: match var("HEARTH_GATEWAY_METRICS_LISTEN", "").as_str() {
            "" => None,
            addr => Some(addr.parse().with_context(|| {
                format!("HEARTH_GATEWAY_METRICS_LISTEN={addr:?} is not an ip:port address")
            })?),
        },
        bridge: match (
            std::env::var("HEARTH_GATEWAY_LAN_MQTT"),
            std::env::var("HEARTH_GATEWAY_CLOUD_MQTT"),
        ) {
            (Ok(lan_url), Ok(cloud_url)) if !lan_url.is_empty() && !cloud_url.is_empty() => {
                let prefix = var("HEARTH_TOPIC_PREFIX", hearth_proto::topics::DEFAULT_PREFIX);
                let topics = hearth_proto::topics::Topics::new(&prefix)
                    .with_context(|| format!("HEARTH_TOPIC_PREFIX={prefix:?}"))?;
                Some(BridgeConfig {
                    lan_url,
                    cloud_url,
                    topics,
                })
            }
            _ => None,
        },
    };
    hearth_gateway::run(config, shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes).
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
