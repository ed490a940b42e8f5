//! The agent's MQTT side: connect with a last will, then either publish
//! readings (sensor) or apply desired states and report them (actuator).
//! Both reconnect with backoff and jitter, and stop when `shutdown` resolves.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{DesiredState, DeviceStatus, Reading, ReadingBatch, ReportedState},
};
use prost::Message as _;
use rand::Rng as _;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tracing::{debug, info, warn};

use crate::{
    actuator::{judge, Verdict},
    hardware::{Output, Sensors},
    unix_ms_now,
};

/// Which device this agent is, and where its broker is.
#[derive(Debug, Clone)]
pub struct DeviceLink {
    /// `mqtt://host:port`, optionally with `user:password@`.
    pub broker_url: String,
    pub topics: Topics,
    pub home_id: String,
    pub device_id: String,
}

impl DeviceLink {
    fn topic(&self, channel: Channel) -> anyhow::Result<String> {
        self.topics.device(&self.home_id, &self.device_id, channel).context("device topic")
    }

    fn status(&self, online: bool) -> Vec<u8> {
        DeviceStatus { online, time_unix_ms: unix_ms_now(), agent: concat!("hearth-agent/", env!("CARGO_PKG_VERSION")).into() }
            .encode_to_vec()
    }

    /// Options for this device's connection, with its offline last will.
    fn options(&self) -> anyhow::Result<MqttOptions> {
        let mut options = options(&self.broker_url, &format!("hearth-agent-{}", self.device_id))?;
        options.set_last_will(LastWill::new(self.topic(Channel::Status)?, self.status(false), QoS::AtLeastOnce, false));
        Ok(options)
    }
}

/// MQTT options for `url` (`mqtt://host:port`) under `client_id`.
pub fn options(url: &str, client_id: &str) -> anyhow::Result<MqttOptions> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut options = MqttOptions::parse_url(format!("{url}{separator}client_id={client_id}"))
        .with_context(|| format!("{url:?} is not an mqtt://host:port URL"))?;
    options.set_keep_alive(Duration::from_secs(15));
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    Ok(options)
}

/// Waits before reconnect attempt `attempt` (0-based): 0.5 s doubling to 15 s, ±25 % jitter.
async fn backoff(attempt: u32) {
    let base = 500u64.saturating_mul(1 << attempt.min(5)).min(15_000);
    let jitter = rand::rng().random_range(0.75..1.25);
    tokio::time::sleep(Duration::from_millis((base as f64 * jitter) as u64)).await;
}

/// Polls the event loop, turning connection errors into a backoff pause.
async fn next_event(events: &mut EventLoop, failures: &mut u32, who: &str) -> Option<Event> {
    match events.poll().await {
        Ok(event) => {
            if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                *failures = 0;
            }
            Some(event)
        }
        Err(e) => {
            warn!(device = who, error = %e, "MQTT connection lost; reconnecting");
            backoff(*failures).await;
            *failures += 1;
            None
        }
    }
}

/// Publishes a reading batch every `interval` until `shutdown`.
///
/// Sequence numbers start at the current Unix time in milliseconds and grow
/// by one per batch. Why: with one batch per millisecond at most, a restarted
/// agent starts above every number it used before, so the backend's
/// de-duplication by `(device, seq)` holds without a file to persist.
pub async fn run_sensor(link: DeviceLink, mut sensors: impl Sensors, interval: Duration, shutdown: impl Future) -> anyhow::Result<()> {
    let readings_topic = link.topic(Channel::Readings)?;
    let status_topic = link.topic(Channel::Status)?;
    let (client, mut events) = AsyncClient::new(link.options()?, 64);
    let mut seq = unix_ms_now() as u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failures = 0;
    tokio::pin!(shutdown);
    info!(device = link.device_id, topic = readings_topic, "sensor agent started");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let now = unix_ms_now();
                let sample = match sensors.sample(now) {
                    Ok(s) => s,
                    Err(e) => { warn!(device = link.device_id, error = %e, "reading the sensors failed"); continue; }
                };
                seq += 1;
                let batch = ReadingBatch {
                    home_id: link.home_id.clone(),
                    device_id: link.device_id.clone(),
                    seq,
                    time_unix_ms: now,
                    readings: sample.into_iter().map(|(metric, value)| Reading { metric: metric as i32, value }).collect(),
                };
                if let Err(e) = client.try_publish(&readings_topic, QoS::AtLeastOnce, false, batch.encode_to_vec()) {
                    warn!(device = link.device_id, error = %e, "reading batch dropped: MQTT queue full");
                }
            }
            event = next_event(&mut events, &mut failures, &link.device_id) => {
                if let Some(Event::Incoming(Packet::ConnAck(_))) = event {
                    client.try_publish(&status_topic, QoS::AtLeastOnce, false, link.status(true))?;
                }
            }
        }
    }
    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, false, link.status(false));
    let _ = client.disconnect().await;
    Ok(())
}

/// Applies desired states to `output` and reports them until `shutdown`;
/// drives the output off on the way out.
pub async fn run_actuator(link: DeviceLink, mut output: impl Output, shutdown: impl Future) -> anyhow::Result<()> {
    let desired_topic = link.topic(Channel::Desired)?;
    let reported_topic = link.topic(Channel::Reported)?;
    let status_topic = link.topic(Channel::Status)?;
    let (client, mut events) = AsyncClient::new(link.options()?, 64);
    let mut applied_version = 0u64;
    let report = |applied_version: u64, on: bool| ReportedState { applied_version, on, time_unix_ms: unix_ms_now() }.encode_to_vec();
    let mut failures = 0;
    tokio::pin!(shutdown);
    info!(device = link.device_id, topic = desired_topic, "actuator agent started");
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            event = next_event(&mut events, &mut failures, &link.device_id) => event,
        };
        match event {
            Some(Event::Incoming(Packet::ConnAck(_))) => {
                client.try_subscribe(&desired_topic, QoS::AtLeastOnce)?;
                client.try_publish(&status_topic, QoS::AtLeastOnce, false, link.status(true))?;
                client.try_publish(&reported_topic, QoS::AtLeastOnce, false, report(applied_version, output.is_on()))?;
            }
            Some(Event::Incoming(Packet::Publish(p))) if p.topic == desired_topic => {
                let desired = match DesiredState::decode(p.payload.as_ref()) {
                    Ok(d) => d,
                    Err(e) => { warn!(topic = p.topic, error = %e, "malformed desired state dropped"); continue; }
                };
                match judge(&desired, applied_version, unix_ms_now()) {
                    Verdict::Apply => {
                        if let Err(e) = output.set(desired.on) {
                            warn!(device = link.device_id, error = %e, "driving the output failed");
                            continue;
                        }
                        applied_version = desired.version;
                        info!(device = link.device_id, version = desired.version, on = desired.on, "applied desired state");
                        client.try_publish(&reported_topic, QoS::AtLeastOnce, false, report(applied_version, desired.on))?;
                    }
                    verdict => debug!(device = link.device_id, version = desired.version, ?verdict, "desired state not applied"),
                }
            }
            _ => {}
        }
    }
    if let Err(e) = output.set(false) {
        warn!(device = link.device_id, error = %e, "could not switch the output off on shutdown");
    }
    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, false, link.status(false));
    let _ = client.disconnect().await;
    Ok(())
}
