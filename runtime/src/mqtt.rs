//! MQTT client options every Hearth client uses (backend, gateway, agent),
//! so keep-alive, packet limits, credentials and TCP_NODELAY are set once.

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, bail, Context as _};
use rumqttc::{AsyncClient, EventLoop, MqttOptions, TlsConfiguration, Transport};

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

/// MQTT options for `url` under `client_id`, logging in with `credentials`
/// if given. `mqtt://host:port` is plain TCP; `mqtts://host:port` is TLS,
/// trusting the CA file named by a `ca_file` query parameter
/// (`mqtts://hub.lan:8883?ca_file=/etc/hearth/ca.pem`, as libpq's
/// `sslrootcert`) or else the system's CAs.
pub fn options(
    url: &str,
    client_id: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<MqttOptions> {
    let not_a_url = || format!("{:?} is not an mqtt://host:port URL", crate::redact(url));
    let mut parsed = url::Url::parse(url).with_context(not_a_url)?;
    let ca_file = parsed
        .query_pairs()
        .find(|(k, _)| k == "ca_file")
        .map(|(_, v)| PathBuf::from(v.as_ref()));
    let rest: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "ca_file")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(rest)
        .append_pair("client_id", client_id);
    let tls = match parsed.scheme() {
        "mqtts" | "ssl" => Some(
            crate::tls::client_config(ca_file.as_deref())
                .with_context(|| format!("{:?}: the broker's CA", crate::redact(url)))?,
        ),
        _ if ca_file.is_some() => bail!(
            "{:?}: ca_file is for a TLS broker (mqtts://)",
            crate::redact(url)
        ),
        _ => None,
    };
    if tls.is_some() {
        // Why: rumqttc would make its own TLS config for mqtts; ours is set below.
        parsed
            .set_scheme("mqtt")
            .map_err(|()| anyhow!(not_a_url()))?;
    }
    let mut options = MqttOptions::parse_url(parsed.as_str()).with_context(not_a_url)?;
    if let Some(config) = tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
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

    #[test]
    fn mqtts_trusts_the_named_ca_file_and_names_it_when_it_is_not_there() {
        let dir = std::env::temp_dir().join(format!("hearth-mqtts-{:x}", rand::random::<u64>()));
        let files = crate::test_ca::TestCa::new().write(&dir);
        let url = format!("mqtts://localhost:8883?ca_file={}", files.ca.display());
        let o = options(&url, "hearth-x", None).unwrap();
        assert!(matches!(
            o.transport(),
            Transport::Tls(TlsConfiguration::Rustls(_))
        ));
        assert_eq!(o.broker_address(), ("localhost".to_owned(), 8883));
        assert_eq!(o.client_id(), "hearth-x");

        let plain = options("mqtt://localhost:1883?keep_alive_secs=5", "c", None).unwrap();
        assert!(matches!(plain.transport(), Transport::Tcp));

        let missing = format!(
            "mqtts://u:pw@localhost:8883?ca_file={}",
            dir.join("no.pem").display()
        );
        let e = format!("{:#}", options(&missing, "c", None).unwrap_err());
        assert!(e.contains("no.pem") && !e.contains("pw@"), "{e}");
        let e = format!(
            "{:#}",
            options(
                &format!("mqtt://localhost?ca_file={}", files.ca.display()),
                "c",
                None
            )
            .unwrap_err()
        );
        assert!(e.contains("ca_file is for a TLS broker"), "{e}");
    }
}
