//! The embedded MQTT broker (rumqttd) of the one-process run.

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
};

use anyhow::{bail, Context as _};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tracing::info;

/// Starts rumqttd on `listen` and returns the address it will accept on
/// (the caller's MQTT connection retries until it does).
///
/// Port 0 picks a free port. Why probe first: rumqttd binds inside its own
/// thread and only logs a bind failure, so a taken port is detected here and
/// reported naming the setting.
pub fn start(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let addr = match TcpListener::bind(listen) {
        Ok(probe) => probe.local_addr().context("reading the probed broker address")?,
        Err(e) if e.kind() == ErrorKind::AddrInUse => bail!(
            "HEARTH_MQTT_LISTEN={listen}: the port is already taken (another MQTT broker?). \
             Choose another port with HEARTH_MQTT_LISTEN, or use that broker with HEARTH_MQTT_URL=mqtt://{listen}"
        ),
        Err(e) => bail!("HEARTH_MQTT_LISTEN={listen}: cannot listen there: {e}"),
    };

    let server = ServerSettings {
        name: "hearth-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("hearth".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .context("starting the embedded MQTT broker thread")?;

    info!(%addr, "embedded MQTT broker listening");
    Ok(addr)
}
