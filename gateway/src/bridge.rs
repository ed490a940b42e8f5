//! The MQTT bridge between the LAN broker and the cloud broker (the paper's
//! gateway bridge): desired states go down from the cloud to devices on the
//! LAN; reported states and online/offline status come back up. Topics are
//! the same on both sides (`hearth_proto::topics`), so a device cannot tell
//! whether it talks to the cloud directly or through the gateway.
//!
//! On the cloud side it logs in with the gateway's API token (role
//! `ingest`) unless the URL names a user: as the username
//! [`TOKEN_USERNAME`], the token as the password, which is what Hearth's
//! embedded broker takes from a gateway once logins are required. On
//! Mosquitto the URL names the token's own login, `token.{name}`, and the
//! bridge then connects with the client id Hearth fixed for it.
//!
//! Each direction is QoS 1 end to end: a message is acknowledged to the
//! broker it came from only after the other broker acknowledged it.

use std::{collections::VecDeque, time::Duration};

use hearth_proto::topics::{token_client_id, token_of_username, Channel, Topics, TOKEN_USERNAME};
use hearth_runtime::{
    mqtt::{client, options},
    redact, Backoff, Secret,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tracing::{info, warn};

/// Pauses between connection attempts to a broker. Why at most 5 s: the
/// pause holds up the other side's event loop too, which must ping its
/// broker within the 15 s keep-alive.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));

/// Where to connect.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub lan_url: String,
    pub cloud_url: String,
    pub topics: Topics,
    /// The gateway's API token: its login to the cloud broker unless
    /// `cloud_url` names a user.
    pub cloud_token: Option<Secret>,
}

/// Options for the `side` broker at `url`, logging in with `token` unless
/// the URL has a login of its own; a message is acknowledged to it by
/// hand, once the other broker has it.
fn bridge_options(url: &str, side: &str, token: Option<&Secret>) -> anyhow::Result<MqttOptions> {
    let client_id = format!("hearth-gateway-{side}-{:08x}", std::process::id());
    let mut options = options(url, &client_id, None)?;
    // A login naming its token (`token.{name}`, as on Mosquitto) must use
    // the client id Hearth fixed for it there.
    if let Some(name) = options
        .credentials()
        .and_then(|l| token_of_username(&l.username).map(token_client_id))
    {
        options.set_client_id(name);
    }
    if let (None, Some(token)) = (options.credentials(), token) {
        options.set_credentials(TOKEN_USERNAME, token.expose());
    }
    options.set_manual_acks(true);
    Ok(options)
}

/// One direction: messages matching `filters` on `from` are republished to `to`.
struct Direction {
    name: &'static str,
    filters: Vec<String>,
    from: AsyncClient,
    to: AsyncClient,
    /// Received and republished, waiting for `to`'s PUBACK before acking to `from`.
    waiting: VecDeque<Publish>,
    /// Connection errors from `from` since it last connected.
    failures: u32,
}

impl Direction {
    async fn on_source_event(&mut self, event: Result<Event, rumqttc::ConnectionError>) {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // A new session: messages waiting for an ack belong to the old one.
                self.waiting.clear();
                self.failures = 0;
                info!(direction = self.name, "bridge source connected");
                for filter in &self.filters {
                    if let Err(e) = self.from.subscribe(filter, QoS::AtLeastOnce).await {
                        warn!(direction = self.name, error = %e, "subscribing failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                info!(direction = self.name, "bridge subscribed")
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // Why try_: awaiting a full request queue here would stop this
                // loop from polling the other side, which is what drains it.
                match self.to.try_publish(
                    p.topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    p.payload.clone(),
                ) {
                    Ok(()) => self.waiting.push_back(p),
                    Err(e) => {
                        warn!(direction = self.name, topic = p.topic, error = %e, "relay queue full; message dropped");
                        let _ = self.from.try_ack(&p);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(direction = self.name, error = %e, "bridge connection lost; reconnecting");
                RECONNECT.wait(self.failures).await;
                self.failures = self.failures.saturating_add(1);
            }
        }
    }

    /// The destination acknowledged the oldest relayed message: ack it at the source.
    async fn on_relayed(&mut self) {
        if let Some(p) = self.waiting.pop_front() {
            let _ = self.from.try_ack(&p);
        }
    }
}

fn is_puback(event: &Result<Event, rumqttc::ConnectionError>) -> bool {
    matches!(event, Ok(Event::Incoming(Packet::PubAck(_))))
}

/// Runs the bridge until an unrecoverable error.
pub async fn run(config: BridgeConfig) -> anyhow::Result<()> {
    let (lan, mut lan_events): (AsyncClient, EventLoop) =
        client(bridge_options(&config.lan_url, "lan", None)?, 256);
    let (cloud, mut cloud_events): (AsyncClient, EventLoop) = client(
        bridge_options(&config.cloud_url, "cloud", config.cloud_token.as_ref())?,
        256,
    );
    let mut down = Direction {
        name: "cloud→lan",
        filters: vec![config.topics.all_devices(Channel::Desired)],
        from: cloud.clone(),
        to: lan.clone(),
        waiting: VecDeque::new(),
        failures: 0,
    };
    let mut up = Direction {
        name: "lan→cloud",
        filters: vec![
            config.topics.all_devices(Channel::Reported),
            config.topics.all_devices(Channel::Status),
        ],
        from: lan,
        to: cloud,
        waiting: VecDeque::new(),
        failures: 0,
    };
    info!(
        lan = redact(&config.lan_url),
        cloud = redact(&config.cloud_url),
        token_login = config.cloud_token.is_some(),
        "MQTT bridge started"
    );
    loop {
        tokio::select! {
            event = cloud_events.poll() => {
                // PUBACKs from the cloud are for what went up; everything else is the down direction's.
                if is_puback(&event) { up.on_relayed().await } else { down.on_source_event(event).await }
            }
            event = lan_events.poll() => {
                if is_puback(&event) { down.on_relayed().await } else { up.on_source_event(event).await }
            }
        }
    }
}
