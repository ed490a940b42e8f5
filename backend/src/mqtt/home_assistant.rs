//! The Home Assistant bridge (`HEARTH_HOME_ASSISTANT=true`): Hearth's devices
//! announced through Home Assistant's MQTT discovery, their states kept on
//! retained topics, and Home Assistant's switches taken through Hearth's
//! command path. What each device becomes, and every payload, is decided in
//! [`crate::domain::home_assistant`]; this module only does the MQTT.
//!
//! - Configs: the set every device in the database calls for is compared
//!   with the retained configs under this deployment's nodes on the broker
//!   (one per home, and the bare node an earlier version shared among
//!   homes; subscribed to, so the bridge sees what is there, its own
//!   included): those of devices no longer listed, or moved, are cleared
//!   with an empty retained message, which removes the entities from Home
//!   Assistant; then missing or changed ones are published, retained. Whenever a device not yet announced
//!   shows activity, and every [`RECONCILE_EVERY`] in any case.
//! - States: availability, mode and the reported on/off of every device as
//!   it changes (any replica's change: see `news`), and sensors' readings,
//!   the newest per metric at most once per [`FLUSH_EVERY`], so a sensor
//!   storm is not forwarded reading by reading.
//! - Commands: ON/OFF on a `fan`/`light` and AUTO/ON/OFF on the mode select
//!   become `Control::set_mode(.., "home-assistant")`, exactly what `SetMode`
//!   does: versioned, recorded, subject to modes and overrides, published to
//!   the device by control, never sent to the device from here.
//!
//! One replica at a time runs it: the holder of the `home-assistant` lease
//! in the database, among the replicas with the control role. Configs are
//! idempotent retained messages, so a takeover (or two holders for a moment)
//! changes nothing Home Assistant sees.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use hearth_proto::{topics::HomeAssistantTopics, v1::Metric};
use hearth_runtime::Backoff;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::{
    sync::{broadcast::error::RecvError, mpsc},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    control::ControlError,
    core::Core,
    domain::{
        home_assistant::{self as ha, Retained},
        Device, DeviceId, HomeId, Reading,
    },
    lease::Lease,
    storage::{ReadingOrder, ReadingQuery, StorageError},
};

/// How long the lease lasts unless renewed; renewed at half of it.
const LEASE_MS: i64 = 10_000;
const LEASE_NAME: &str = "home-assistant";
/// How often the bridge renews its lease, or tries to take it.
const TICK: Duration = Duration::from_millis(1_000);
/// Readings' states are sent at most this often per metric of a sensor.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Configs are compared with the database at least this often.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// After (re)connecting, how long the retained configs have to arrive
/// before the first comparison clears any.
const RETAINED_GRACE: Duration = Duration::from_millis(500);
/// Incoming messages buffered between the connection and the bridge.
const INBOX: usize = 256;
/// Between attempts to reach a broker that went away.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Bridges Home Assistant until `shutdown`, whenever this replica holds the
/// lease. `replica` names it in the lease and its MQTT client id.
pub async fn run(
    url: String,
    topics: HomeAssistantTopics,
    core: Arc<Core>,
    replica: String,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease = Lease::new(core.clone(), LEASE_NAME, LEASE_MS, replica.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if !lease.hold().await {
            continue;
        }
        info!(
            holder = replica,
            discovery = topics.home_configs("{home}"),
            "this replica now bridges Home Assistant"
        );
        let bridge = Bridge {
            topics: topics.clone(),
            core: core.clone(),
            configs: HashMap::new(),
        };
        bridge
            .serve(&url, &replica, &mut lease, &mut ticks, &shutdown)
            .await;
    }
    lease.release().await;
}

/// What the connection hands the bridge.
enum Incoming {
    Connected,
    Message(Publish),
}

struct Bridge {
    topics: HomeAssistantTopics,
    core: Arc<Core>,
    /// The retained configs of this node on the broker: topic → payload.
    configs: HashMap<String, String>,
}

impl Bridge {
    /// Runs while the lease holds and until `shutdown`.
    async fn serve(
        mut self,
        url: &str,
        replica: &str,
        lease: &mut Lease,
        ticks: &mut tokio::time::Interval,
        shutdown: &CancellationToken,
    ) {
        let client_id = format!("hearth-backend-{replica}-home-assistant");
        let options = match hearth_runtime::mqtt::options(url, &client_id, None) {
            Ok(options) => options,
            Err(e) => {
                warn!(error = %e, "no Home Assistant bridge");
                return;
            }
        };
        // Why a clean session: everything the bridge publishes is retained
        // and sent again on each connection; commands missed while it was
        // away are better lost than applied late.
        let (client, events) = hearth_runtime::mqtt::client(options, INBOX);
        let (inbox_tx, mut inbox) = mpsc::channel(INBOX);
        let connection = tokio::spawn(poll(events, inbox_tx));
        let mut changes = self.core.control.subscribe_changes();
        let mut stored = self.core.stored.subscribe();
        // The newest reading of each sensor's metric not yet sent.
        let mut readings: HashMap<(DeviceId, Metric), (HomeId, Reading)> = HashMap::new();
        let mut announced: HashSet<DeviceId> = HashSet::new();
        let mut reconcile_at: Option<Instant> = None;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    if !lease.hold().await {
                        break;
                    }
                }
                _ = flush.tick() => {
                    for (_, (home_id, reading)) in readings.drain() {
                        let state = ha::reading_state(&self.topics, home_id.as_str(), &reading);
                        publish(&client, state).await;
                    }
                }
                _ = sleep_until(reconcile_at) => {
                    match self.reconcile(&client).await {
                        Ok(devices) => announced = devices,
                        Err(e) => warn!(error = %e, "could not compare Home Assistant's configs with the devices"),
                    }
                    reconcile_at = Some(Instant::now() + RECONCILE_EVERY);
                }
                incoming = inbox.recv() => match incoming {
                    Some(Incoming::Connected) => {
                        subscribe(&client, &self.topics).await;
                        if let Err(e) = self.publish_all_states(&client).await {
                            warn!(error = %e, "could not send Home Assistant the devices' states");
                        }
                        reconcile_at = Some(Instant::now() + RETAINED_GRACE);
                    }
                    Some(Incoming::Message(message)) => self.take(message).await,
                    None => break,
                },
                change = changes.recv() => match change {
                    Ok(device) => {
                        if !announced.contains(&device.id) {
                            reconcile_at = Some(Instant::now());
                        }
                        for state in ha::device_states(&self.topics, &device) {
                            publish(&client, state).await;
                        }
                    }
                    // Missed changes: send every state again.
                    Err(RecvError::Lagged(_)) => {
                        if let Err(e) = self.publish_all_states(&client).await {
                            warn!(error = %e, "could not send Home Assistant the devices' states");
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                commit = stored.recv() => match commit {
                    Ok(commit) => {
                        for batch in commit.iter() {
                            for reading in &batch.readings {
                                if !announced.contains(&reading.device_id) {
                                    reconcile_at = Some(Instant::now());
                                }
                                readings.insert(
                                    (reading.device_id.clone(), reading.metric),
                                    (batch.home_id.clone(), reading.clone()),
                                );
                            }
                        }
                    }
                    // Why nothing more: newer readings follow.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
            }
        }
        let _ = client.disconnect().await;
        // The connection ends with the disconnect, or when its inbox goes.
        drop(inbox);
        let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
    }

    /// A message on a subscribed topic: one of this node's retained configs,
    /// or a command from Home Assistant.
    async fn take(&mut self, message: Publish) {
        let topic = message.topic.as_str();
        if self.topics.is_config_filter(topic) {
            // Ours when its node is and its payload names a home of ours
            // (see `ha::config_home`); anyone else's is left alone.
            if message.payload.is_empty() {
                self.configs.remove(topic);
            } else if self.topics.is_config(topic)
                && ha::config_home(&self.topics, &message.payload).is_some()
            {
                let payload = String::from_utf8_lossy(&message.payload).into_owned();
                self.configs.insert(topic.to_owned(), payload);
            }
            return;
        }
        // Why skip retained commands: a command is for now; one a client
        // published with the retain flag would otherwise switch the device
        // again on every reconnection.
        if message.retain {
            warn!(topic, "retained command from Home Assistant ignored");
            return;
        }
        if let Err(problem) = self.command(topic, &message.payload).await {
            warn!(topic, problem, "command from Home Assistant refused");
        }
    }

    /// Takes a command through control, as `SetMode` would.
    async fn command(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let (home_id, device_id, entity) = self
            .topics
            .parse_command(topic)
            .map_err(|e| e.to_string())?;
        let command = ha::parse_command(entity, payload).map_err(|e| e.to_string())?;
        let id = DeviceId::parse(device_id, "device").map_err(|e| e.to_string())?;
        let known = self
            .core
            .directory
            .lookup(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no device {id}"))?;
        if known.home_id.as_str() != home_id {
            return Err(format!("device {id} is not in home {home_id}"));
        }
        match self
            .core
            .control
            .set_mode(&id, command.mode, None, ha::REQUESTED_BY)
            .await
        {
            Ok(_) => Ok(()),
            Err(e @ (ControlError::NotFound(_) | ControlError::NotAnActuator(_))) => {
                Err(e.to_string())
            }
            Err(e) => Err(format!("control failed: {e}")),
        }
    }

    /// Publishes the configs the devices call for and clears those of
    /// devices no longer listed. Returns the devices announced.
    async fn reconcile(&mut self, client: &AsyncClient) -> Result<HashSet<DeviceId>, StorageError> {
        let devices = self.core.storage.list_devices(None).await?;
        let wanted: HashMap<String, String> = devices
            .iter()
            .flat_map(|d| ha::configs(&self.topics, d))
            .map(|c| (c.topic, c.payload))
            .collect();
        let stale: Vec<String> = self
            .configs
            .keys()
            .filter(|topic| !wanted.contains_key(*topic))
            .cloned()
            .collect();
        // Topics a wanted entity still reads are left alone.
        let in_use: HashSet<String> = wanted.values().flat_map(|c| read_topics(c)).collect();
        for topic in stale {
            let config = self.configs.remove(&topic).unwrap_or_default();
            info!(
                topic,
                "removing a Home Assistant config whose device is gone, or which moved"
            );
            publish(client, cleared(topic)).await;
            // Why clear its states too: retained messages outlive entities.
            for state in read_topics(&config).filter(|t| !in_use.contains(t)) {
                publish(client, cleared(state)).await;
            }
        }
        // Why after the clearing: an entity whose config moved (an earlier
        // version's, under the node every home shared) keeps its unique id,
        // and Home Assistant takes the new config only once the old is gone.
        for (topic, payload) in &wanted {
            if self.configs.get(topic) != Some(payload) {
                publish(
                    client,
                    Retained {
                        topic: topic.clone(),
                        payload: payload.clone(),
                    },
                )
                .await;
                self.configs.insert(topic.clone(), payload.clone());
            }
        }
        Ok(devices.into_iter().map(|d| d.id).collect())
    }

    /// Every device's states and each sensor's newest readings.
    async fn publish_all_states(&self, client: &AsyncClient) -> Result<(), StorageError> {
        for device in self.core.storage.list_devices(None).await? {
            for state in ha::device_states(&self.topics, &device) {
                publish(client, state).await;
            }
            if device.kind.is_actuator() {
                continue;
            }
            for reading in self.newest_readings(&device).await? {
                let state = ha::reading_state(&self.topics, device.home_id.as_str(), &reading);
                publish(client, state).await;
            }
        }
        Ok(())
    }

    async fn newest_readings(&self, device: &Device) -> Result<Vec<Reading>, StorageError> {
        let mut newest = Vec::new();
        for metric in Metric::MEASURED {
            let query = ReadingQuery {
                device_id: device.id.clone(),
                metric: Some(metric),
                start: None,
                end: None,
                cursor: None,
                limit: 1,
                order: ReadingOrder::NewestFirst,
            };
            newest.extend(self.core.storage.list_readings(&query).await?);
        }
        Ok(newest)
    }
}

/// The state and availability topics a config tells Home Assistant to read.
fn read_topics(config: &str) -> impl Iterator<Item = String> {
    let json: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
    ["state_topic", "availability_topic"]
        .into_iter()
        .filter_map(move |key| json.get(key).and_then(|t| t.as_str()).map(str::to_owned))
}

/// An empty retained message: the broker forgets the topic's message.
fn cleared(topic: String) -> Retained {
    Retained {
        topic,
        payload: String::new(),
    }
}

async fn subscribe(client: &AsyncClient, topics: &HomeAssistantTopics) {
    for filter in [topics.all_configs(), topics.all_commands()] {
        if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
            warn!(error = %e, "could not subscribe for Home Assistant");
        }
    }
}

/// Publishes retained at QoS 1. Why not wait for the acknowledgement: every
/// message is sent again after a reconnection, and a slow broker must not
/// hold up commands.
async fn publish(client: &AsyncClient, message: Retained) {
    if let Err(e) = client
        .publish(message.topic, QoS::AtLeastOnce, true, message.payload)
        .await
    {
        warn!(error = %e, "could not publish to Home Assistant");
    }
}

/// Drives the connection, handing the bridge what arrives, until the bridge
/// is gone or disconnects.
async fn poll(mut events: rumqttc::EventLoop, inbox: mpsc::Sender<Incoming>) {
    let mut failures = 0u32;
    loop {
        let incoming = match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                Incoming::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Incoming::Message(p),
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                if failures == 0 {
                    warn!(error = %e, "lost the broker for Home Assistant");
                }
                failures += 1;
                tokio::select! {
                    _ = inbox.closed() => return,
                    _ = RECONNECT.wait(failures - 1) => continue,
                }
            }
        };
        if inbox.send(incoming).await.is_err() {
            return;
        }
    }
}

/// Resolves at `at`, never if `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
