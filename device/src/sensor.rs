//! The sensor loop: every interval it samples the sensors, numbers the batch
//! ([`Sequence`]) and sends it over MQTT (QoS 1, on the device's `readings`
//! topic), as one UDP datagram to a LAN gateway (`hearth-gateway`), or both,
//! as [`Transport`] says. Both carry the same encoded [`ReadingBatch`] with the
//! same sequence number, so the backend stores a batch sent both ways once.
//!
//! UDP is the paper's unicast to the gateway: fire and forget, no connection
//! to lose, no broker needed on the sensor's side. A datagram lost on the LAN
//! is not resent; the gateway keeps what reached it.
//!
//! With a key ([`SensorPlan::udp_keys`]) each datagram is a
//! `hearth.v1.SignedReadingBatch` (`hearth_proto::signing`): the batch and
//! its HMAC with the device's key, so the gateway can tell it from a forgery
//! and, by its sequence number, from a replay. MQTT carries the bare batch
//! (the broker authenticates the connection instead).
//!
//! What a run sent is said over UDP too, as a `hearth.v1.RunAccount` datagram
//! (the status topic says it over MQTT): when the agent stops, and for the
//! run before at every start, so the backend counts the batches lost from a
//! run's end, where no later batch shows the gap.

use std::{future::Future, io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use hearth_proto::{
    signing::{unsigned_account, DeviceKey, DeviceKeys},
    topics::Channel,
    v1::{Metric, Reading, ReadingBatch, RunAccount},
};
use hearth_runtime::unix_ms_now;
use prost::Message as _;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::{
    hardware::Sensors,
    mqtt::{Connection, DeviceLink, LinkOptions},
    seq::{Sequence, ACCOUNT_SYNC_EVERY},
};

/// How a sensor's batches leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Published to the broker (QoS 1).
    Mqtt,
    /// Sent as UDP datagrams to the gateway at `host:port`.
    Udp { gateway: String },
    /// Both: published, and sent to the gateway.
    MqttAndUdp { gateway: String },
}

impl Transport {
    pub fn uses_mqtt(&self) -> bool {
        matches!(self, Transport::Mqtt | Transport::MqttAndUdp { .. })
    }

    /// The gateway's `host:port`, if batches go there.
    pub fn udp_gateway(&self) -> Option<&str> {
        match self {
            Transport::Mqtt => None,
            Transport::Udp { gateway } | Transport::MqttAndUdp { gateway } => Some(gateway),
        }
    }
}

/// What a sensor does, beyond which device it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorPlan {
    /// Between two samples.
    pub interval: Duration,
    pub transport: Transport,
    /// Where the sequence bound of each device is kept (`{device}.seq`);
    /// without it sequence numbers come from the clock alone.
    pub state_dir: Option<PathBuf>,
    /// The keys that sign UDP datagrams, by device id (a fleet's devices
    /// each have their own); without them datagrams go unsigned, which only
    /// a gateway without keys, on loopback, takes.
    pub udp_keys: Option<Arc<DeviceKeys>>,
}

impl SensorPlan {
    /// Over MQTT every `interval`, numbered by the clock.
    pub fn mqtt(interval: Duration) -> Self {
        Self {
            interval,
            transport: Transport::Mqtt,
            state_dir: None,
            udp_keys: None,
        }
    }
}

/// Sends encoded batches to a gateway over UDP, resolving its name for each
/// datagram (a gateway on DHCP may move) and logging a failure once until a
/// send succeeds again.
pub struct UdpLink {
    gateway: String,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    failures: u64,
}

impl UdpLink {
    pub fn new(gateway: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into(),
            v4: None,
            v6: None,
            failures: 0,
        }
    }

    /// Sends one datagram; a failure is logged and counted, never fatal.
    pub async fn send(&mut self, device: &str, payload: &[u8]) {
        match self.try_send(payload).await {
            Ok(()) => {
                if self.failures > 0 {
                    info!(
                        device,
                        gateway = self.gateway,
                        lost = self.failures,
                        "sending to the gateway works again"
                    );
                    self.failures = 0;
                }
            }
            Err(e) => {
                if self.failures == 0 {
                    warn!(device, gateway = self.gateway, error = %e, "reading batch not sent to the gateway; retrying with the next one");
                }
                self.failures += 1;
            }
        }
    }

    async fn try_send(&mut self, payload: &[u8]) -> io::Result<()> {
        let to = tokio::net::lookup_host(&self.gateway)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let (slot, any) = match to {
            SocketAddr::V4(_) => (&mut self.v4, "0.0.0.0:0"),
            SocketAddr::V6(_) => (&mut self.v6, "[::]:0"),
        };
        if slot.is_none() {
            *slot = Some(UdpSocket::bind(any).await?);
        }
        let socket = slot.as_ref().expect("bound above");
        let sent = socket.send_to(payload, to).await?;
        if sent < payload.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                payload.len()
            )));
        }
        Ok(())
    }
}

/// The MQTT side of a sensor: its client and connection.
struct MqttLink {
    client: AsyncClient,
    connection: Connection,
    readings_topic: String,
    status_topic: String,
}

/// Sends a reading batch every `plan.interval` until `shutdown`.
pub async fn run_sensor_with(
    link: DeviceLink,
    link_options: &LinkOptions,
    mut sensors: impl Sensors,
    plan: &SensorPlan,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let mut sequence = match &plan.state_dir {
        Some(dir) => {
            let file = Sequence::file_in(dir, &link.device_id);
            Sequence::with_file(unix_ms_now(), file.clone()).with_context(|| {
                format!(
                    "HEARTH_AGENT_STATE_DIR={}: cannot keep sequence numbers in {}",
                    dir.display(),
                    file.display()
                )
            })?
        }
        None => Sequence::from_clock(unix_ms_now()),
    };
    let mut mqtt = if plan.transport.uses_mqtt() {
        let (client, events) = hearth_runtime::mqtt::client(link.options(link_options)?, 64);
        Some(MqttLink {
            client,
            connection: Connection::new(events, link_options, &link.device_id),
            readings_topic: link.topic(Channel::Readings)?,
            status_topic: link.topic(Channel::Status)?,
        })
    } else {
        None
    };
    let mut udp = plan.transport.udp_gateway().map(UdpLink::new);
    let udp_key = match (&udp, &plan.udp_keys) {
        (Some(_), Some(keys)) => Some(keys.get(&link.device_id).cloned().with_context(|| {
            format!(
                "the UDP keys file holds no key for device {:?}",
                link.device_id
            )
        })?),
        _ => None,
    };
    let mut tick = tokio::time::interval(plan.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut flush_account = tokio::time::interval(ACCOUNT_SYNC_EVERY);
    flush_account.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    info!(
        device = link.device_id,
        topic = mqtt.as_ref().map(|m| m.readings_topic.as_str()),
        gateway = plan.transport.udp_gateway(),
        signed = udp_key.is_some(),
        "sensor agent started"
    );
    // The run before, which may have ended without its account reaching
    // the gateway (a crash, or the datagram lost). Said at every start, as
    // over MQTT; the backend keeps the highest, so a repeat changes nothing.
    if let (Some(udp), Some(previous)) = (&mut udp, sequence.previous_run()) {
        let datagram = account_datagram(&link, previous, sensors.metrics(), udp_key.as_ref());
        udp.send(&link.device_id, &datagram).await;
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = flush_account.tick() => {
                sequence.sync_account();
            }
            _ = tick.tick() => {
                let now = unix_ms_now();
                let sample = match sensors.sample(now) {
                    Ok(s) => s,
                    Err(e) => { warn!(device = link.device_id, error = %e, "reading the sensors failed"); continue; }
                };
                let batch = ReadingBatch {
                    home_id: link.home_id.clone(),
                    device_id: link.device_id.clone(),
                    seq: sequence.next_seq(),
                    time_unix_ms: now,
                    readings: sample.into_iter().map(|(metric, value)| Reading { metric: metric as i32, value }).collect(),
                    run_start: sequence.run_start(),
                }
                .encode_to_vec();
                if let Some(m) = &mqtt {
                    if let Err(e) = m.client.try_publish(&m.readings_topic, QoS::AtLeastOnce, false, batch.clone()) {
                        warn!(device = link.device_id, error = %e, "reading batch dropped: MQTT queue full");
                    }
                }
                if let Some(udp) = &mut udp {
                    let datagram = match &udp_key {
                        Some(key) => key.seal(batch),
                        None => batch,
                    };
                    udp.send(&link.device_id, &datagram).await;
                }
            }
            // Why inline: the future borrows `mqtt`, and select! drops it
            // before a handler runs, so the handlers may use `mqtt` again.
            event = async {
                match mqtt.as_mut() {
                    Some(m) => m.connection.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Event::Incoming(Packet::ConnAck(_)), Some(m)) = (event, &mqtt) {
                    // The run before, which may have crashed before its
                    // offline status could say what it sent.
                    if let Some(previous) = sequence.previous_run() {
                        match m.client.try_publish(&m.status_topic, QoS::AtLeastOnce, false, link.status(true, Some(previous), sensors.metrics())) {
                            Ok(()) => sequence.previous_run_said(),
                            Err(e) => warn!(device = link.device_id, error = %e, "the previous run's account dropped: MQTT queue full"),
                        }
                    }
                    // Why not `?`: after an outage the queue can be full of
                    // readings; that must not stop the agent.
                    if let Err(e) = m.client.try_publish(&m.status_topic, QoS::AtLeastOnce, false, link.status(true, sequence.sent(), sensors.metrics())) {
                        warn!(device = link.device_id, error = %e, "online status dropped: MQTT queue full");
                    }
                }
            }
        }
    }
    if let (Some(udp), Some(sent)) = (&mut udp, sequence.sent()) {
        let datagram = account_datagram(&link, sent, sensors.metrics(), udp_key.as_ref());
        udp.send(&link.device_id, &datagram).await;
    }
    if let Some(m) = mqtt {
        m.connection
            .close(
                &m.client,
                &m.status_topic,
                link.status(false, sequence.sent(), sensors.metrics()),
            )
            .await;
    }
    Ok(())
}

/// The datagram of a run's account, `sent` = `(run_start, last_seq)`:
/// signed with `key`, or in the envelope alone for a gateway without keys.
fn account_datagram(
    link: &DeviceLink,
    (run_start, last_seq): (u64, u64),
    metrics: &[Metric],
    key: Option<&DeviceKey>,
) -> Vec<u8> {
    let account = RunAccount {
        home_id: link.home_id.clone(),
        device_id: link.device_id.clone(),
        run_start,
        last_seq,
        metrics: metrics.iter().map(|&m| m as i32).collect(),
        time_unix_ms: unix_ms_now(),
    }
    .encode_to_vec();
    match key {
        Some(key) => key.seal_account(account),
        None => unsigned_account(account),
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::{topics::Topics, v1::Metric};

    use super::*;
    use crate::sim::{SimulatedSensors, Waveform};

    fn link() -> DeviceLink {
        DeviceLink {
            // Nothing listens here: a UDP-only sensor must not need a broker.
            broker_url: "mqtt://127.0.0.1:9".into(),
            topics: Topics::default(),
            home_id: "h".into(),
            device_id: "s1".into(),
        }
    }

    /// A broker that answers a CONNECT only after `delay`, far longer
    /// than the sensor's interval, then reports the first PUBLISH it gets.
    #[tokio::test]
    async fn a_sensor_connects_to_a_broker_slower_than_its_interval() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let broker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = DeviceLink {
            broker_url: format!("mqtt://{}", broker.local_addr().unwrap()),
            ..link()
        };
        let plan = SensorPlan::mqtt(Duration::from_millis(2));
        let sensors = SimulatedSensors::new(0, Waveform::Steady(21.5));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            run_sensor_with(link, &LinkOptions::default(), sensors, &plan, async {
                let _ = stopped.await;
            })
            .await
        });
        let published = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let (mut socket, _) = broker.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                // The CONNECT (one read is enough for its few bytes).
                if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if socket.write_all(&[0x20, 2, 0, 0]).await.is_err() {
                    continue; // the client gave this attempt up
                }
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    if buf[..n].iter().any(|&b| b >> 4 == 3) {
                        return;
                    }
                }
            }
        })
        .await;
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert!(published.is_ok(), "no PUBLISH after a CONNACK 100 ms late");
    }

    #[tokio::test]
    async fn a_udp_sensor_sends_numbered_batches_to_the_gateway_as_datagrams() {
        let gateway = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plan = SensorPlan {
            interval: Duration::from_millis(10),
            transport: Transport::Udp {
                gateway: gateway.local_addr().unwrap().to_string(),
            },
            state_dir: None,
            udp_keys: None,
        };
        let sensors = SimulatedSensors::new(0, Waveform::Steady(21.5));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            run_sensor_with(link(), &LinkOptions::default(), sensors, &plan, async {
                let _ = stopped.await;
            })
            .await
        });
        let mut buf = [0u8; 2048];
        let mut batches = Vec::new();
        while batches.len() < 3 {
            let (n, _) = gateway.recv_from(&mut buf).await.unwrap();
            batches.push(ReadingBatch::decode(&buf[..n]).expect("a ReadingBatch"));
        }
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert!(batches
            .iter()
            .all(|b| b.home_id == "h" && b.device_id == "s1" && b.time_unix_ms > 0));
        assert_eq!(
            batches[0].readings[0].metric,
            Metric::TemperatureCelsius as i32
        );
        assert_eq!(batches[0].readings[0].value, 21.5);
        let seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2], "consecutive");
    }

    #[tokio::test]
    async fn a_sensor_with_a_key_signs_each_datagram_with_it() {
        use hearth_proto::{signing::DeviceKey, v1::SignedReadingBatch};
        let key = DeviceKey::from_bytes([7; 32]);
        let gateway = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plan = SensorPlan {
            interval: Duration::from_millis(10),
            transport: Transport::Udp {
                gateway: gateway.local_addr().unwrap().to_string(),
            },
            state_dir: None,
            udp_keys: Some(Arc::new(
                [
                    ("other".to_owned(), DeviceKey::from_bytes([8; 32])),
                    ("s1".to_owned(), key.clone()),
                ]
                .into_iter()
                .collect(),
            )),
        };
        let sensors = SimulatedSensors::new(0, Waveform::Steady(21.5));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            run_sensor_with(link(), &LinkOptions::default(), sensors, &plan, async {
                let _ = stopped.await;
            })
            .await
        });
        let mut buf = [0u8; 2048];
        let mut seqs = Vec::new();
        while seqs.len() < 2 {
            let (n, _) = gateway.recv_from(&mut buf).await.unwrap();
            let signed = SignedReadingBatch::decode(&buf[..n]).unwrap();
            assert!(
                key.verifies(&signed.batch, &signed.hmac_sha256),
                "signed with s1's key"
            );
            let batch = ReadingBatch::decode(signed.batch.as_slice()).unwrap();
            assert_eq!(batch.device_id, "s1");
            seqs.push(batch.seq);
        }
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert_eq!(seqs[1], seqs[0] + 1);
    }

    #[tokio::test]
    async fn a_udp_sensor_says_what_its_run_sent_when_it_stops_and_again_at_its_next_start() {
        use hearth_proto::{signing::DeviceKey, v1::SignedReadingBatch};
        let key = DeviceKey::from_bytes([7; 32]);
        let state = std::env::temp_dir().join(format!("hearth-udp-account-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        let gateway = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plan = SensorPlan {
            interval: Duration::from_millis(10),
            transport: Transport::Udp {
                gateway: gateway.local_addr().unwrap().to_string(),
            },
            state_dir: Some(state.clone()),
            udp_keys: Some(Arc::new(
                [("s1".to_owned(), key.clone())].into_iter().collect(),
            )),
        };
        // Reads datagrams until an account comes: the highest batch number
        // seen before it, and the account.
        async fn until_account(gateway: &UdpSocket, key: &DeviceKey) -> (u64, RunAccount) {
            let mut buf = [0u8; 2048];
            let mut highest = 0;
            loop {
                let (n, _) = gateway.recv_from(&mut buf).await.unwrap();
                let signed = SignedReadingBatch::decode(&buf[..n]).unwrap();
                if signed.account.is_empty() {
                    highest = ReadingBatch::decode(signed.batch.as_slice()).unwrap().seq;
                    continue;
                }
                assert!(key.verifies_account(&signed.account, &signed.hmac_sha256));
                return (
                    highest,
                    RunAccount::decode(signed.account.as_slice()).unwrap(),
                );
            }
        }
        let run = |stopped: tokio::sync::oneshot::Receiver<()>| {
            let plan = plan.clone();
            tokio::spawn(async move {
                let sensors = SimulatedSensors::new(0, Waveform::Steady(21.5));
                run_sensor_with(link(), &LinkOptions::default(), sensors, &plan, async {
                    let _ = stopped.await;
                })
                .await
            })
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let first = run(stopped);
        let mut buf = [0u8; 2048];
        let (n, _) = gateway.recv_from(&mut buf).await.unwrap();
        let signed = SignedReadingBatch::decode(&buf[..n]).unwrap();
        let first_batch = ReadingBatch::decode(signed.batch.as_slice()).unwrap().seq;
        stop.send(()).unwrap();
        first.await.unwrap().unwrap();
        let (later_batch, said) = until_account(&gateway, &key).await;
        assert_eq!(
            said.last_seq,
            later_batch.max(first_batch),
            "the run's last batch"
        );
        assert!(said.run_start <= said.last_seq && said.device_id == "s1");
        assert_eq!(said.metrics, [1, 2, 3], "a SenseHat's metrics");

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let second = run(stopped);
        let (before, again) = until_account(&gateway, &key).await;
        assert_eq!(before, 0, "said before the new run's first batch");
        assert_eq!(
            (again.run_start, again.last_seq),
            (said.run_start, said.last_seq),
            "the run before, said again"
        );
        stop.send(()).unwrap();
        second.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&state);
    }

    #[tokio::test]
    async fn a_sensor_whose_keys_file_lacks_its_key_does_not_start() {
        let plan = SensorPlan {
            interval: Duration::from_millis(10),
            transport: Transport::Udp {
                gateway: "127.0.0.1:9".into(),
            },
            state_dir: None,
            udp_keys: Some(Arc::new(
                [(
                    "other".to_owned(),
                    hearth_proto::signing::DeviceKey::from_bytes([8; 32]),
                )]
                .into_iter()
                .collect(),
            )),
        };
        let sensors = SimulatedSensors::new(0, Waveform::Steady(21.5));
        let e = run_sensor_with(
            link(),
            &LinkOptions::default(),
            sensors,
            &plan,
            std::future::pending::<()>(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the UDP keys file holds no key for device \"s1\""
        );
    }

    #[tokio::test]
    async fn a_sensor_sending_both_ways_keeps_feeding_the_gateway_while_the_broker_is_down() {
        let gateway = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plan = SensorPlan {
            interval: Duration::from_millis(10),
            transport: Transport::MqttAndUdp {
                gateway: gateway.local_addr().unwrap().to_string(),
            },
            state_dir: None,
            udp_keys: None,
        };
        let sensors = SimulatedSensors::new(0, Waveform::Steady(20.0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            run_sensor_with(link(), &LinkOptions::default(), sensors, &plan, async {
                let _ = stopped.await;
            })
            .await
        });
        let mut buf = [0u8; 2048];
        for _ in 0..20 {
            let (n, _) = gateway.recv_from(&mut buf).await.unwrap();
            ReadingBatch::decode(&buf[..n]).expect("a ReadingBatch");
        }
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_gateway_that_cannot_be_reached_is_logged_not_fatal() {
        // A name that cannot resolve: every send fails.
        let mut udp = UdpLink::new("gateway.invalid:7878");
        udp.send("s1", b"x").await;
        udp.send("s1", b"x").await;
        assert_eq!(udp.failures, 2);
        udp.gateway = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        udp.send("s1", b"x").await;
        assert_eq!(udp.failures, 0, "counting restarts once a send works");
    }

    #[test]
    fn a_transport_says_which_ways_batches_go() {
        let gateway = "gw:7878".to_string();
        assert!(Transport::Mqtt.uses_mqtt() && Transport::Mqtt.udp_gateway().is_none());
        let udp = Transport::Udp {
            gateway: gateway.clone(),
        };
        assert!(!udp.uses_mqtt() && udp.udp_gateway() == Some("gw:7878"));
        let both = Transport::MqttAndUdp { gateway };
        assert!(both.uses_mqtt() && both.udp_gateway() == Some("gw:7878"));
    }
}
