//! The backend's MQTT side: the embedded broker, the connection to whichever
//! broker is in use, routing of what devices publish, and publishing desired
//! states; the Home Assistant bridge ([`home_assistant`]).
//!
//! Messages are acknowledged (MQTT PUBACK) only after their effect is stored,
//! so a broker redelivers anything the backend had not finished with.

mod ack;
pub mod broker;
pub mod dynsec;
pub mod guard;
pub mod home_assistant;
pub mod news;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hearth_proto::{
    topics::{Channel, News, Topics},
    v1::{
        DesiredState, DeviceStatus, ReadingBatch, ReplicaBatch, ReplicaCommit,
        ReplicaDeviceChanged, ReportedState,
    },
};
use hearth_runtime::Backoff;
use prost::Message as _;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    domain::{decode_device_message, Command, DeviceId, DeviceMessage, HomeId, MessageBody},
    ingest::StoredCommit,
    metrics::Metrics,
};

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

impl Inbound {
    /// Who sent it, and on which channel.
    pub fn sender(&self) -> (&HomeId, &DeviceId, &'static str) {
        match self {
            Inbound::Readings {
                home_id, device_id, ..
            } => (home_id, device_id, "readings"),
            Inbound::Reported {
                home_id, device_id, ..
            } => (home_id, device_id, "reported"),
            Inbound::Status {
                home_id, device_id, ..
            } => (home_id, device_id, "status"),
        }
    }

    /// The message's acknowledgement, the rest dropped.
    pub fn into_ack(self) -> Ack {
        match self {
            Inbound::Readings { ack, .. }
            | Inbound::Reported { ack, .. }
            | Inbound::Status { ack, .. } => ack,
        }
    }
}

/// Publishes to devices, and to the other replicas what this one changed.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    topics: Topics,
    /// This replica's name in its news to the others; `None` on the
    /// embedded broker, where there are no others.
    news_from: Option<Arc<str>>,
}

impl Publisher {
    /// Tells the other replicas the readings a commit stored (see
    /// [`news`]). Why not waiting: the writer must not stall on the broker;
    /// a live view that misses a message under overload still has history.
    pub fn stored(&self, commit: &StoredCommit) {
        let message = ReplicaCommit {
            batches: commit
                .iter()
                .map(|b| ReplicaBatch {
                    home_id: b.home_id.to_string(),
                    readings: b
                        .readings
                        .iter()
                        .map(crate::grpc::convert::reading)
                        .collect(),
                })
                .collect(),
        };
        self.news(News::Stored, message.encode_to_vec());
    }

    /// Tells the other replicas that a device's stored state changed.
    pub fn device_changed(&self, id: &DeviceId) {
        let message = ReplicaDeviceChanged {
            device_id: id.to_string(),
        };
        self.news(News::Devices, message.encode_to_vec());
    }

    fn news(&self, news: News, payload: Vec<u8>) {
        let Some(replica) = &self.news_from else {
            return;
        };
        let Ok(topic) = self.topics.replica_news(replica, news) else {
            return;
        };
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            debug!(news = news.as_str(), error = %e, "news to the other replicas not sent");
        }
    }

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
        let publisher = Publisher {
            client,
            topics,
            news_from: None,
        };
        (publisher, sent)
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
    /// The broker URL and client id of a persistent session, which a clean
    /// stop ends (see [`run_inbox`]).
    session: Option<(String, String)>,
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
    /// `desired` out only: a replica without the control role still
    /// publishes the commands its API and rules make.
    Commands,
}

impl Lane {
    fn channels(self) -> &'static [Channel] {
        match self {
            Lane::Readings => &[Channel::Readings],
            Lane::Control => &[Channel::Reported, Channel::Status],
            Lane::Commands => &[],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Readings => "readings",
            Lane::Control => "control",
            Lane::Commands => "commands",
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
    news_from: Option<&str>,
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
        .with_context(|| format!("{setting}={}", hearth_runtime::redact(url)))?;
    options.set_clean_session(replica.is_none());
    // Why above what devices may send: an oversize message must reach
    // `decode_device_message` to be refused and acknowledged; if the client
    // refused it, the broker would redeliver it after every reconnect.
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
    info!(url = %hearth_runtime::redact(url), client_id, "connected to the MQTT broker");
    Ok(Connection {
        publisher: Publisher {
            client,
            topics: topics.clone(),
            news_from: news_from.map(Arc::from),
        },
        events,
        how,
        lane,
        session: replica.map(|_| (url.to_owned(), client_id)),
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

async fn unsubscribe(client: &AsyncClient, topics: &Topics, lane: Lane) -> anyhow::Result<()> {
    for &channel in lane.channels() {
        client
            .unsubscribe(topics.all_devices_shared(SUBSCRIPTION_GROUP, channel))
            .await
            .context("unsubscribing")?;
    }
    Ok(())
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

/// Longest a stopping replica spends handing over its share of the
/// subscription; within Kubernetes' termination grace (k8s/: 45 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// A stopping replica is done once everything it received is acknowledged
/// and nothing more has arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// Reads what devices publish and hands it to `inbox` until `shutdown`.
/// Reconnects (and resubscribes) after a lost connection. Malformed topics
/// and payloads are logged with their topic, counted, acknowledged and
/// dropped; they never stop later messages.
///
/// On `shutdown` a replica with a persistent session leaves the shared
/// subscription, keeps taking what the broker had already sent or queued for
/// it until all of it is stored and acknowledged, and then ends its session,
/// so a replica scaled away or replaced by a rollout strands nothing in the
/// broker. (One killed with SIGKILL skips this; it gets its unacknowledged
/// messages back when it returns under the same name.)
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
        session,
    } = connection;
    let Publisher { client, topics, .. } = publisher;
    let acks = AckOrder::new(client.clone());
    let mut failures = 0u32;
    // Set once the replica has left the group: until when it may drain, and
    // when the last message arrived.
    let mut draining: Option<(Instant, Instant)> = None;
    // Why an interval: it ticks while acknowledgements keep the event loop
    // busy, where a new sleep per turn would never fire.
    let mut drain_tick = tokio::time::interval(DRAIN_QUIET / 5);
    let mut was_drained = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled(), if draining.is_none() => {
                if session.is_none() || how != Subscription::Shared || failures > 0 {
                    break;
                }
                info!(lane = lane.name(), "leaving the shared subscription and draining");
                if let Err(e) = unsubscribe(&client, &topics, lane).await {
                    warn!(lane = lane.name(), error = %e, "could not leave the shared subscription");
                    break;
                }
                let now = Instant::now();
                draining = Some((now + DRAIN_LIMIT, now));
                continue;
            }
            _ = drain_tick.tick(), if draining.is_some() => {
                let (until, last) = draining.expect("draining");
                let drained = acks.unacknowledged() == 0 && last.elapsed() >= DRAIN_QUIET;
                // Why twice in a row: the last released acknowledgements
                // must reach the client before DISCONNECT is queued.
                let done = drained && was_drained;
                was_drained = drained;
                if done || Instant::now() >= until {
                    if !drained {
                        warn!(lane = lane.name(), held = acks.unacknowledged(),
                            "drain time is up; the broker redelivers what is unacknowledged");
                    }
                    break;
                }
                continue;
            }
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                acks.reset();
                if failures > 0 {
                    info!(lane = lane.name(), "reconnected to the MQTT broker");
                    metrics.mqtt_lanes_down.dec();
                    failures = 0;
                    if let Err(e) = subscribe(&client, &topics, how, lane).await {
                        warn!(lane = lane.name(), error = %e, "resubscribing failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if let Some((_, last)) = &mut draining {
                    *last = Instant::now();
                }
                let parsed = decode_device_message(&topics, &publish.topic, &publish.payload);
                let ack = acks.take(publish);
                match parsed {
                    Ok(message) => {
                        let message = Inbound::new(message, ack);
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
                    metrics.mqtt_lanes_down.inc();
                }
                failures += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = RECONNECT.wait(failures - 1) => {}
                }
            }
        }
    }
    if failures > 0 {
        metrics.mqtt_lanes_down.dec();
    }
    disconnect(&client, &mut events).await;
    if let (Some((url, client_id)), Some(_)) = (session, draining) {
        if acks.unacknowledged() == 0 {
            end_session(&url, &client_id).await;
        }
    }
}

/// Sends DISCONNECT after everything queued before it (acknowledgements
/// included), waiting at most 2 s.
async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Ends the persistent session `client_id` on the broker: connecting with a
/// clean session discards the stored one (MQTT 3.1.1 has no other way).
async fn end_session(url: &str, client_id: &str) {
    let Ok(mut options) = hearth_runtime::mqtt::options(url, client_id, None) else {
        return;
    };
    options.set_clean_session(true);
    let (client, mut events) = hearth_runtime::mqtt::client(options, 8);
    let accepted = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    if accepted == Ok(true) {
        disconnect(&client, &mut events).await;
        info!(client_id, "ended the persistent MQTT session");
    } else {
        warn!(client_id, "could not end the persistent MQTT session");
    }
}

impl Inbound {
    fn new(message: DeviceMessage, ack: Ack) -> Self {
        let DeviceMessage {
            home_id,
            device_id,
            body,
        } = message;
        match body {
            MessageBody::Readings(batch) => Inbound::Readings {
                home_id,
                device_id,
                batch,
                ack,
            },
            MessageBody::Reported(state) => Inbound::Reported {
                home_id,
                device_id,
                state,
                ack,
            },
            MessageBody::Status(status) => Inbound::Status {
                home_id,
                device_id,
                status,
                ack,
            },
        }
    }
}
