//! MQTT client options every Hearth client uses (backend, gateway, agent),
//! so keep-alive, packet limits, credentials and TCP_NODELAY are set once.

use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, EventLoop, MqttOptions};

/// How often an idle connection pings, so a dead peer is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The largest packet sent or accepted (a batch of readings is far smaller).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

/// A username and password on the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }
}

/// Why by hand: the password must not reach a log through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// MQTT options for `url` (`mqtt://host:port`) under `client_id`, logging in
/// with `credentials` if given.
pub fn options(
    url: &str,
    client_id: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<MqttOptions> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut options = MqttOptions::parse_url(format!("{url}{separator}client_id={client_id}"))
        .with_context(|| format!("{:?} is not an mqtt://host:port URL", crate::redact(url)))?;
    options.set_keep_alive(KEEP_ALIVE);
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(c) = credentials {
        options.set_credentials(c.username.as_str(), c.password.as_str());
    }
    Ok(options)
}

/// A client and its event loop for `options`, with Nagle's algorithm off.
/// Why: MQTT packets are small, and Nagle holding one for the peer's delayed
/// ACK adds 40 ms per hop to a command's round trip.
pub fn client(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut events) = AsyncClient::new(options, capacity);
    let mut network = events.network_options();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    (client, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_client_id_keep_alive_and_credentials() {
        let credentials = Credentials::new("fan-1", "s3cret");
        let o = options("mqtt://127.0.0.1:1883", "hearth-x", Some(&credentials)).unwrap();
        assert_eq!(o.client_id(), "hearth-x");
        assert_eq!(o.keep_alive(), KEEP_ALIVE);
        let login = o.credentials().expect("credentials set");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("fan-1", "s3cret")
        );
        assert!(!format!("{credentials:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let e = options("http://u:pw@x:1/", "c", None).unwrap_err();
        assert!(!format!("{e:#}").contains("pw@"), "{e:#}");
    }
}
