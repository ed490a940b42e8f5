//! The embedded MQTT broker (rumqttd) of the one-process run. It listens
//! on a loopback port of its own and takes only the guard's login
//! ([`super::guard`] is what devices reach, on HEARTH_MQTT_LISTEN).

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tracing::{debug, warn};

/// Starts rumqttd on `listen`, accepting only `login` (username, password),
/// and returns the address it will accept on (the caller's MQTT connection
/// retries until it does).
///
/// Port 0 picks a free port. Why probe first: rumqttd binds inside its own
/// thread and only logs a bind failure, so a taken port is detected here and
/// reported naming the setting.
pub fn start(listen: SocketAddr, login: (&str, &str)) -> anyhow::Result<SocketAddr> {
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
            auth: Some(HashMap::from([(login.0.to_owned(), login.1.to_owned())])),
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

    match disable_nagle(addr, Duration::from_secs(5)) {
        Ok(()) => debug!(%addr, "embedded MQTT broker listening"),
        Err(e) => {
            warn!(%addr, error = %e, "embedded MQTT broker listening, with Nagle's algorithm on: each MQTT hop may wait up to 40 ms")
        }
    }
    Ok(addr)
}

/// Sets TCP_NODELAY on the broker's listening socket once rumqttd has bound
/// it, so that every connection it accepts inherits the option (Linux copies
/// a listener's options to the sockets it accepts).
///
/// Why: rumqttd 0.20 neither sets TCP_NODELAY on the sockets it accepts nor
/// has a setting for it. Without it, a packet written while the previous one
/// is unacknowledged waits for the peer's delayed ACK, and every MQTT hop
/// through the embedded broker took about 40 ms (`bench-command --embedded`
/// measured 44 ms for one QoS 1 round trip). rumqttd binds inside its own
/// runtime and does not hand the socket out, so it is found among the
/// process's open descriptors by its local address.
#[cfg(target_os = "linux")]
fn disable_nagle(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    use std::os::fd::{BorrowedFd, RawFd};

    let deadline = Instant::now() + within;
    loop {
        let mut found = false;
        for entry in std::fs::read_dir("/proc/self/fd").context("listing /proc/self/fd")? {
            let Some(fd) = entry
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: the descriptor is only borrowed for these calls. Should it
            // have been closed and reused meanwhile, the calls act on whatever
            // socket holds the number now, and only one bound to the broker's
            // own address is changed.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&fd);
            if socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr)
                && socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            {
                socket
                    .set_tcp_nodelay(true)
                    .context("setting TCP_NODELAY")?;
                found = true;
            }
        }
        if found {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("rumqttd's listening socket did not appear within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_nagle(_addr: SocketAddr, _within: Duration) -> anyhow::Result<()> {
    bail!("accepted sockets inherit TCP_NODELAY from their listener only on Linux")
}
