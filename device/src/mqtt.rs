//! A device's MQTT side: connect with a last will, then either publish
//! readings (sensor, the loop is in [`crate::sensor`]) or apply desired
//! states and report them (actuator). Both reconnect with backoff and jitter,
//! and stop when `shutdown` resolves.
//!
//! [`DeviceLink`] says which device and which broker; [`LinkOptions`] carries
//! the rest of how to connect (today: the device's broker credentials). The
//! `*_with` loops take both; [`run_sensor`] and [`run_actuator`] connect
//! without options, as the demo home and the system tests do.

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{DesiredState, DeviceStatus, Metric, ReportedState},
};
pub use hearth_runtime::mqtt::Credentials;
use hearth_runtime::{
    mqtt::{client, options},
    unix_ms_now, Backoff,
};
use prost::Message as _;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS,
};
use tokio::{sync::mpsc, time::Instant};
use tracing::{debug, info, warn};

use crate::{
    actuator::{judge, Verdict},
    hardware::{Output, Sensors},
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
    pub(crate) fn topic(&self, channel: Channel) -> anyhow::Result<String> {
        self.topics
            .device(&self.home_id, &self.device_id, channel)
            .context("device topic")
    }

    /// A status message; a sensor says what it sent with `sent`
    /// (`(run_start, last_seq)`, see [`crate::seq::Sequence::sent`]) and
    /// the `metrics` each batch carried.
    pub(crate) fn status(
        &self,
        online: bool,
        sent: Option<(u64, u64)>,
        metrics: &[Metric],
    ) -> Vec<u8> {
        let (run_start, last_seq) = sent.unwrap_or_default();
        DeviceStatus {
            online,
            time_unix_ms: unix_ms_now(),
            agent: concat!("hearth-agent/", env!("CARGO_PKG_VERSION")).into(),
            last_seq,
            run_start,
            metrics: match sent {
                Some(_) => metrics.iter().map(|&m| m as i32).collect(),
                None => Vec::new(),
            },
        }
        .encode_to_vec()
    }

    /// Options for this device's connection, with its offline last will and
    /// the credentials of `extra`, if any (they replace any in the URL).
    pub(crate) fn options(&self, extra: &LinkOptions) -> anyhow::Result<MqttOptions> {
        let mut options = options(
            &self.broker_url,
            &hearth_proto::topics::agent_client_id(&self.device_id),
            extra.credentials(),
        )?;
        // Why a persistent session: the broker keeps what it had not
        // acknowledged when the connection went (a credential rotated, a
        // broker restart), and rumqttc sends it again after reconnecting;
        // with a clean session it would drop it.
        options.set_clean_session(false);
        options.set_last_will(LastWill::new(
            self.topic(Channel::Status)?,
            self.status(false, None, &[]),
            QoS::AtLeastOnce,
            false,
        ));
        Ok(options)
    }
}

/// How to connect beyond what [`DeviceLink`] says. Built with methods, so
/// that adding to it breaks no caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkOptions {
    credentials: Option<Credentials>,
    password_file: Option<PathBuf>,
}

impl LinkOptions {
    /// Logs in with `credentials` (MQTT username and password).
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Where the password came from: read again whenever the broker refuses
    /// the login, so a rotated password takes effect once the file holds
    /// it, without restarting the agent (and losing what it queued).
    pub fn with_password_file(mut self, file: PathBuf) -> Self {
        self.password_file = Some(file);
        self
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
}

/// How long to wait before reconnect attempt `attempt` (0-based): 0.5 s
/// doubling to 15 s, ±25 % jitter so that many devices do not reconnect in step.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));

/// One device's connection: its event loop runs in a task of its own (the
/// [`Driver`]), which reconnects with backoff; the device's loop takes what
/// it needs (CONNACKs, messages) from a channel.
///
/// Why a task: the loops `select!` the connection against their timers, and
/// whatever loses a `select!` is dropped. A connection attempt dropped that
/// way is abandoned, so a sensor whose interval was shorter than a CONNECT's
/// round trip (1 ms on a loaded machine; 100 ms to a broker across the
/// internet over TLS) never connected. Receiving from a channel can be
/// dropped and started again without losing anything.
pub(crate) struct Connection {
    events: mpsc::Receiver<Event>,
    state: Arc<LinkState>,
    driver: tokio::task::JoinHandle<()>,
}

/// What the device's loop and the driver share.
#[derive(Default)]
struct LinkState {
    /// Whether the broker accepted the session (CONNACK) and it still holds.
    connected: AtomicBool,
    /// Set by [`Connection::close`]: the driver ends at the next error.
    closing: AtomicBool,
}

impl Connection {
    /// Starts driving `events` (the connection of `device`).
    pub(crate) fn new(events: EventLoop, options: &LinkOptions, device: &str) -> Self {
        let relogin = options
            .credentials
            .as_ref()
            .zip(options.password_file.clone())
            .map(|(c, file)| (c.username().to_owned(), file));
        let state = Arc::new(LinkState::default());
        let (to_device, from_driver) = mpsc::channel(64);
        let driver = Driver {
            events,
            relogin,
            state: state.clone(),
            attempts: 0,
            next_attempt: None,
            device: device.to_owned(),
        };
        Self {
            events: from_driver,
            state,
            driver: tokio::spawn(driver.run(to_device)),
        }
    }

    /// The next CONNACK or incoming message. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Event {
        match self.events.recv().await {
            Some(event) => event,
            // The driver ended (it does only when closing).
            None => std::future::pending().await,
        }
    }

    /// Publishes `offline` on `status_topic` and disconnects, waiting until
    /// the DISCONNECT is out, for 2 s at most.
    ///
    /// Skipped while the link is down or the queue full: the broker then
    /// publishes the last will (offline) when it sees the connection go.
    pub(crate) async fn close(
        mut self,
        client: &AsyncClient,
        status_topic: &str,
        offline: Vec<u8>,
    ) {
        self.state.closing.store(true, Ordering::Relaxed);
        if self.state.connected.load(Ordering::Relaxed)
            && client
                .try_publish(status_topic, QoS::AtLeastOnce, false, offline)
                .is_ok()
            && client.try_disconnect().is_ok()
        {
            // The driver ends once the DISCONNECT is out (or the link
            // fails), and its channel closes with it; drained meanwhile so
            // that it never waits on a full channel.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while self.events.recv().await.is_some() {}
            })
            .await;
        }
    }
}

/// Why: a loop that ends on an error drops its connection unclosed; its
/// driver must not go on reconnecting for nobody.
impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The task polling one connection's event loop, pausing with backoff
/// between connection attempts.
struct Driver {
    events: EventLoop,
    /// The username, and the file to read its password from again after a
    /// refused login.
    relogin: Option<(String, PathBuf)>,
    state: Arc<LinkState>,
    /// Connection attempts since the last accepted one.
    attempts: u32,
    /// No connection attempt before this.
    next_attempt: Option<Instant>,
    device: String,
}

impl Driver {
    /// Polls until the DISCONNECT is out, or the link fails while closing,
    /// or the device's loop is gone; passes CONNACKs and messages on.
    async fn run(mut self, to_device: mpsc::Sender<Event>) {
        loop {
            match self.next().await {
                Some(event @ Event::Incoming(Packet::ConnAck(_) | Packet::Publish(_))) => {
                    // Err: the device's loop is gone.
                    let Ok(()) = to_device.send(event).await else {
                        return;
                    };
                }
                Some(Event::Outgoing(Outgoing::Disconnect)) => return,
                Some(_) => {}
                None if self.state.closing.load(Ordering::Relaxed) => return,
                None => {}
            }
        }
    }

    /// The next event, or `None` after a connection error.
    async fn next(&mut self) -> Option<Event> {
        let device = self.device.as_str();
        if !self.state.connected.load(Ordering::Relaxed) {
            if let Some(until) = self.next_attempt {
                tokio::time::sleep_until(until).await;
            }
            // This poll connects first.
            self.next_attempt = Some(Instant::now() + RECONNECT.delay(self.attempts));
            self.attempts = self.attempts.saturating_add(1);
        }
        match self.events.poll().await {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    self.state.connected.store(true, Ordering::Relaxed);
                    self.attempts = 0;
                    self.next_attempt = None;
                }
                Some(event)
            }
            Err(e) => {
                warn!(device, error = %e, "MQTT connection lost; reconnecting");
                if let (
                    ConnectionError::ConnectionRefused(
                        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
                    ),
                    Some((username, file)),
                ) = (&e, &self.relogin)
                {
                    match std::fs::read_to_string(file) {
                        Ok(text) => {
                            let password = text.trim_end_matches(['\r', '\n']);
                            let new = self
                                .events
                                .mqtt_options
                                .credentials()
                                .is_none_or(|login| login.password != password);
                            if new {
                                // A new password: no reason to wait.
                                self.events
                                    .mqtt_options
                                    .set_credentials(username.as_str(), password);
                                self.next_attempt = None;
                                info!(device, file = %file.display(), "login refused: trying the new password in the file");
                            }
                        }
                        Err(e) => {
                            warn!(device, file = %file.display(), error = %e, "login refused, and the password file cannot be read");
                        }
                    }
                }
                if self.state.connected.swap(false, Ordering::Relaxed) {
                    // An accepted session ended: the first pause before
                    // trying again.
                    self.next_attempt = Some(Instant::now() + RECONNECT.delay(0));
                    self.attempts = 1;
                }
                None
            }
        }
    }
}

/// Publishes a reading batch every `interval` until `shutdown`, connecting
/// without [`LinkOptions`] and numbering batches from the clock (see
/// [`crate::sensor`] for UDP and the other options).
pub async fn run_sensor(
    link: DeviceLink,
    sensors: impl Sensors,
    interval: Duration,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    crate::sensor::run_sensor_with(
        link,
        &LinkOptions::default(),
        sensors,
        &crate::sensor::SensorPlan::mqtt(interval),
        shutdown,
    )
    .await
}

/// Applies desired states to `output` and reports them until `shutdown`,
/// connecting without [`LinkOptions`]; drives the output off on the way out.
pub async fn run_actuator(
    link: DeviceLink,
    output: impl Output,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    run_actuator_with(link, &LinkOptions::default(), output, shutdown).await
}

/// Applies desired states to `output` and reports them until `shutdown`;
/// drives the output off on the way out.
pub async fn run_actuator_with(
    link: DeviceLink,
    link_options: &LinkOptions,
    mut output: impl Output,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let desired_topic = link.topic(Channel::Desired)?;
    let reported_topic = link.topic(Channel::Reported)?;
    let status_topic = link.topic(Channel::Status)?;
    let (client, events) = client(link.options(link_options)?, 64);
    let mut connection = Connection::new(events, link_options, &link.device_id);
    let mut applied_version = 0u64;
    let report = |applied_version: u64, on: bool| {
        ReportedState {
            applied_version,
            on,
            time_unix_ms: unix_ms_now(),
        }
        .encode_to_vec()
    };
    tokio::pin!(shutdown);
    info!(
        device = link.device_id,
        topic = desired_topic,
        "actuator agent started"
    );
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            event = connection.next() => event,
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client.try_subscribe(&desired_topic, QoS::AtLeastOnce)?;
                client.try_publish(
                    &status_topic,
                    QoS::AtLeastOnce,
                    false,
                    link.status(true, None, &[]),
                )?;
                client.try_publish(
                    &reported_topic,
                    QoS::AtLeastOnce,
                    false,
                    report(applied_version, output.is_on()),
                )?;
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == desired_topic => {
                let desired = match DesiredState::decode(p.payload.as_ref()) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(topic = p.topic, error = %e, "malformed desired state dropped");
                        continue;
                    }
                };
                match judge(&desired, applied_version, unix_ms_now()) {
                    Verdict::Apply => {
                        if let Err(e) = output.set(desired.on) {
                            warn!(device = link.device_id, error = %e, "driving the output failed");
                            continue;
                        }
                        applied_version = desired.version;
                        info!(
                            device = link.device_id,
                            version = desired.version,
                            on = desired.on,
                            "applied desired state"
                        );
                        client.try_publish(
                            &reported_topic,
                            QoS::AtLeastOnce,
                            false,
                            report(applied_version, desired.on),
                        )?;
                    }
                    verdict => debug!(
                        device = link.device_id,
                        version = desired.version,
                        ?verdict,
                        "desired state not applied"
                    ),
                }
            }
            _ => {}
        }
    }
    if let Err(e) = output.set(false) {
        warn!(device = link.device_id, error = %e, "could not switch the output off on shutdown");
    }
    connection
        .close(&client, &status_topic, link.status(false, None, &[]))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(broker_url: &str) -> DeviceLink {
        DeviceLink {
            broker_url: broker_url.into(),
            topics: Topics::default(),
            home_id: "h".into(),
            device_id: "d".into(),
        }
    }

    #[test]
    fn credentials_reach_the_mqtt_connection_and_replace_those_in_the_url() {
        let extra = LinkOptions::default().with_credentials(Credentials::new("sensor-1", "s3cret"));
        let options = link("mqtt://url-user:url-pass@127.0.0.1:1883")
            .options(&extra)
            .unwrap();
        let login = options.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("sensor-1", "s3cret")
        );
    }

    #[test]
    fn a_sensors_status_says_what_it_sent_and_its_last_will_says_nothing() {
        let metrics = [Metric::TemperatureCelsius, Metric::PressureHpa];
        let said = link("mqtt://h").status(false, Some((5, 9)), &metrics);
        let said = DeviceStatus::decode(said.as_slice()).unwrap();
        assert_eq!((said.online, said.run_start, said.last_seq), (false, 5, 9));
        assert_eq!(said.metrics, [1, 3], "what each batch carried");
        let quiet = DeviceStatus::decode(link("mqtt://h").status(true, None, &metrics).as_slice());
        assert!(
            quiet.unwrap().metrics.is_empty(),
            "nothing sent, nothing said"
        );
        let options = link("mqtt://127.0.0.1:1883")
            .options(&LinkOptions::default())
            .unwrap();
        let will = DeviceStatus::decode(options.last_will().unwrap().message).unwrap();
        assert_eq!((will.online, will.last_seq), (false, 0));
    }

    #[test]
    fn a_link_without_credentials_connects_anonymously() {
        let options = link("mqtt://127.0.0.1:1883")
            .options(&LinkOptions::default())
            .unwrap();
        assert!(options.credentials().is_none());
        assert_eq!(options.client_id(), "hearth-agent-d");
    }

    #[test]
    fn reconnect_pauses_double_to_15_seconds_with_a_quarter_of_jitter() {
        for (attempt, base) in [
            (0, 500.0),
            (1, 1_000.0),
            (4, 8_000.0),
            (5, 15_000.0),
            (40, 15_000.0),
        ] {
            let ms = RECONNECT.delay(attempt).as_millis() as f64;
            assert!(
                (base * 0.75..base * 1.25).contains(&ms),
                "attempt {attempt}: {ms} ms"
            );
        }
    }

    #[tokio::test]
    async fn a_sensor_backs_off_between_reconnects_even_while_readings_fall_due() {
        // A broker that hangs up on every connection, counting them.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("mqtt://{}", listener.local_addr().unwrap());
        let (counted, connections) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
                counted.send_modify(|n| *n += 1);
            }
        });
        let sensors = crate::sim::SimulatedSensors::new(0, crate::sim::Waveform::Steady(20.0));
        let window = Duration::from_millis(1_500);
        // Counted when the window closes, not when the sensor has stopped:
        // on a loaded machine stopping can take long enough for one more.
        let (at_close, counted_at_close) = tokio::sync::oneshot::channel();
        let closing = connections.clone();
        run_sensor(link(&url), sensors, Duration::from_millis(10), async move {
            tokio::time::sleep(window).await;
            let _ = at_close.send(*closing.borrow());
        })
        .await
        .unwrap();
        // Pauses of 0.5 s then 1 s (±25 %) allow 3 attempts in 1.5 s; a
        // reading due every 10 ms must not cut them short (150 attempts).
        let attempts = counted_at_close.await.unwrap();
        assert!(
            (1..=3).contains(&attempts),
            "{attempts} connection attempts in {window:?}"
        );
    }

    #[test]
    fn credentials_never_show_their_password_in_debug_output() {
        let shown = format!(
            "{:?}",
            LinkOptions::default().with_credentials(Credentials::new("sensor-1", "s3cret"))
        );
        assert!(
            shown.contains("sensor-1") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
