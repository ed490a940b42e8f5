//! The backend's MQTT side: the embedded broker, the connection to whichever
//! broker is in use, routing of what devices publish, and publishing desired
//! states.
//!
//! Messages are acknowledged (MQTT PUBACK) only after their effect is stored,
//! so a broker redelivers anything the backend had not finished with.

mod ack;
pub mod broker;

use std::{sync::Arc, time::Duration};

use anyhow::{bail, Context as _};
use hearth_proto::{
    topics::{Channel, DeviceTopic, Topics},
    v1::{DesiredState, DeviceStatus, ReadingBatch, ReportedState},
};
use hearth_runtime::Backoff;
use prost::Message as _;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{self, Command, DeviceId, HomeId},
    metrics::Metrics,
};

/// Largest device payload accepted; a reading batch is a few dozen bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

pub use ack::Ack;
use ack::AckOrder;

/// Something a device said, parsed and handed to its handler.
pub enum Inbound {
    Readings {
        home_id: HomeId,
        device_id: DeviceId,
        batch: ReadingBatch,
        ack: Ack,
    },
    Reported {
        home_id: HomeId,
        device_id: DeviceId,
        state: ReportedState,
        ack: Ack,
    },
    Status {
        home_id: HomeId,
        device_id: DeviceId,
        status: DeviceStatus,
        ack: Ack,
    },
}

/// Publishes to devices.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    topics: Topics,
}

impl Publisher {
    /// Publishes `command` on the device's `desired` topic (QoS 1).
    pub async fn desired(
        &self,
        home: &HomeId,
        device: &DeviceId,
        command: &Command,
    ) -> anyhow::Result<()> {
        let topic = self
            .topics
            .device(home.as_str(), device.as_str(), Channel::Desired)?;
        let payload = DesiredState {
            version: command.version,
            on: command.on,
            issued_unix_ms: command.requested_at,
            expires_unix_ms: command.expires_at,
        };
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.encode_to_vec())
            .await
            .context("queueing the desired state for the MQTT broker")
    }
}

/// Test doubles of the broker connection, for unit tests: what the backend
/// hands its MQTT client (publishes, PUBACKs) lands in a channel the test
/// reads, with no broker and no event loop.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub use super::ack::AckOrder;

    /// What the client was asked to send, oldest first.
    pub type Sent = flume::Receiver<rumqttc::Request>;

    pub fn client() -> (AsyncClient, Sent) {
        let (tx, rx) = flume::bounded(1_024);
        (AsyncClient::from_senders(tx), rx)
    }

    pub fn publisher(topics: Topics) -> (Publisher, Sent) {
        let (client, sent) = client();
        (Publisher { client, topics }, sent)
    }

    /// An acknowledger whose PUBACKs land in `Sent`.
    pub fn acks() -> (AckOrder, Sent) {
        let (client, sent) = client();
        (AckOrder::new(client), sent)
    }
}

/// A connected MQTT session: a [`Publisher`] and the event loop that
/// [`run_inbox`] drives.
pub struct Connection {
    pub publisher: Publisher,
    events: EventLoop,
    how: Subscription,
    lane: Lane,
}

/// What a connection carries. Why two: a device's acknowledgement of a
/// command must not wait behind thousands of readings, in the broker's queue
/// for the session, in the socket, or in the inbox; on a connection of its
/// own it never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `readings` of every device.
    Readings,
    /// `reported` and `status` in, `desired` out.
    Control,
}

impl Lane {
    fn channels(self) -> &'static [Channel] {
        match self {
            Lane::Readings => &[Channel::Readings],
            Lane::Control => &[Channel::Reported, Channel::Status],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Readings => "readings",
            Lane::Control => "control",
        }
    }
}

/// Connects to `url` and waits for the broker to accept; `setting` names
/// where the URL came from, for the error.
///
/// With `replica` (a stable name, e.g. the pod of a StatefulSet) the session
/// is persistent: messages this replica had received but not acknowledged
/// when it died are delivered to it again when it comes back under the same
/// name, so a SIGKILL mid-batch loses nothing. Without one, each start is a
/// fresh session.
pub async fn connect(
    url: &str,
    topics: &Topics,
    setting: &str,
    how: Subscription,
    lane: Lane,
    replica: Option<&str>,
) -> anyhow::Result<Connection> {
    let client_id = match replica {
        Some(name) => format!("hearth-backend-{name}-{}", lane.name()),
        None => format!(
            "hearth-backend-{:08x}-{}",
            rand::random::<u32>(),
            lane.name()
        ),
    };
    let mut options = hearth_runtime::mqtt::options(url, &client_id, None)
        .with_context(|| format!("{setting}={}", hearth_runtime::mqtt::redact(url)))?;
    options.set_clean_session(replica.is_none());
    // Why above what devices may send: an oversize message must reach
    // `parse` to be refused and acknowledged; if the client refused it, the
    // broker would redeliver it after every reconnect.
    options.set_max_packet_size(4 * 1024 * 1024, 256 * 1024);
    options.set_manual_acks(true);
    options.set_inflight(200);
    let (client, mut events) = hearth_runtime::mqtt::client(options, 1024);
    // Why retry: an embedded broker may still be starting, and a broker
    // restarting under Kubernetes comes back within seconds.
    let mut last_error = None;
    let accepted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    if accepted.is_err() {
        let why = last_error.map_or_else(|| "no answer".to_owned(), |e| e.to_string());
        bail!("cannot reach the MQTT broker at {url} ({setting}) within 5 s: {why}");
    }
    subscribe(&client, topics, how, lane).await?;
    info!(url, client_id, "connected to the MQTT broker");
    Ok(Connection {
        publisher: Publisher {
            client,
            topics: topics.clone(),
        },
        events,
        how,
        lane,
    })
}

/// Shared-subscription group of every backend replica.
const SUBSCRIPTION_GROUP: &str = "hearth-backend";
/// Between attempts to reach a broker that went away.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// How the backend subscribes to what devices publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// One subscriber: the embedded broker, which has one backend by
    /// construction. Why not shared there: rumqttd 0.20 stops delivering to a
    /// shared QoS 1 subscription whose acknowledgements arrive late.
    Exclusive,
    /// A shared subscription: with several replicas on one broker, each
    /// message goes to one of them instead of to all.
    Shared,
}

async fn subscribe(
    client: &AsyncClient,
    topics: &Topics,
    how: Subscription,
    lane: Lane,
) -> anyhow::Result<()> {
    for &channel in lane.channels() {
        let filter = match how {
            Subscription::Exclusive => topics.all_devices(channel),
            Subscription::Shared => topics.all_devices_shared(SUBSCRIPTION_GROUP, channel),
        };
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .context("subscribing")?;
    }
    Ok(())
}

/// Reads what devices publish and hands it to `inbox` until `shutdown`.
/// Reconnects (and resubscribes) after a lost connection. Malformed topics
/// and payloads are logged with their topic, counted, acknowledged and
/// dropped; they never stop later messages.
pub async fn run_inbox(
    connection: Connection,
    inbox: mpsc::Sender<Inbound>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let Connection {
        publisher,
        mut events,
        how,
        lane,
    } = connection;
    let Publisher { client, topics } = publisher;
    let acks = AckOrder::new(client.clone());
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                acks.reset();
                if failures > 0 {
                    info!(lane = lane.name(), "reconnected to the MQTT broker");
                    failures = 0;
                    if let Err(e) = subscribe(&client, &topics, how, lane).await {
                        warn!(lane = lane.name(), error = %e, "resubscribing failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let parsed = parse(&topics, &publish);
                let ack = acks.take(publish);
                match parsed {
                    Ok(message) => {
                        let message = message(ack);
                        // Why await: a full inbox is backpressure; the broker
                        // holds further messages until we acknowledge these.
                        if inbox.send(message).await.is_err() {
                            break;
                        }
                    }
                    Err(reason) => {
                        metrics.mqtt_rejected.inc();
                        warn!(topic = ack.topic, %reason, "dropped an MQTT message");
                        ack.send().await;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if failures == 0 {
                    warn!(lane = lane.name(), error = %e, "lost the MQTT broker; reconnecting");
                }
                failures += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = RECONNECT.wait(failures - 1) => {}
                }
            }
        }
    }
    let _ = client.disconnect().await;
}

type Builder = Box<dyn FnOnce(Ack) -> Inbound + Send>;

/// Parses a received message, or says why it is dropped.
fn parse(topics: &Topics, publish: &Publish) -> Result<Builder, String> {
    let DeviceTopic {
        home_id,
        device_id,
        channel,
    } = topics.parse(&publish.topic).map_err(|e| e.to_string())?;
    let home_id = HomeId::parse(home_id, "topic home").map_err(|e| e.to_string())?;
    let device_id = DeviceId::parse(device_id, "topic device").map_err(|e| e.to_string())?;
    let payload = publish.payload.as_ref();
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
            payload.len()
        ));
    }
    let bad = |what: &str, e: prost::DecodeError| format!("payload is not a hearth.v1.{what}: {e}");
    Ok(match channel {
        Channel::Readings => {
            let batch = domain::decode_readings(&home_id, &device_id, payload)?;
            Box::new(move |ack| Inbound::Readings {
                home_id,
                device_id,
                batch,
                ack,
            })
        }
        Channel::Reported => {
            let state = ReportedState::decode(payload).map_err(|e| bad("ReportedState", e))?;
            Box::new(move |ack| Inbound::Reported {
                home_id,
                device_id,
                state,
                ack,
            })
        }
        Channel::Status => {
            let status = DeviceStatus::decode(payload).map_err(|e| bad("DeviceStatus", e))?;
            Box::new(move |ack| Inbound::Status {
                home_id,
                device_id,
                status,
                ack,
            })
        }
        Channel::Desired => {
            return Err("the backend does not take desired states from devices".into())
        }
    })
}
