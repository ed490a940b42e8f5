//! What devices publish, turned into effects: readings are validated and
//! queued for the ingest writer; reported states and status go to control.
//! Anything rejected is logged with its device, counted and acknowledged, and
//! never stops the messages after it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use hearth_runtime::Clock;
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    control::Control,
    directory::{Directory, Known},
    domain::{delivery, limits::Bucket, validate_batch, DeviceId, DeviceKind, HomeId, UnixMs},
    ingest::{Done, Ingest, IngestItem},
    metrics::Metrics,
    mqtt::{Ack, Inbound},
};

#[derive(Clone)]
pub struct Intake {
    pub directory: Arc<Directory>,
    pub ingest: Ingest,
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub rates: Arc<DeviceRates>,
}

/// Each device's message rate (HEARTH_DEVICE_MESSAGES_PER_SECOND), shared
/// by the lanes: a device flooding its topics is throttled, the others not.
pub struct DeviceRates {
    per_second: u32,
    burst: u32,
    /// Each device's bucket, and whether it is being throttled now (so a
    /// flood is logged once when it starts, not per message).
    buckets: Mutex<HashMap<DeviceId, (Bucket, bool)>>,
}

/// Why bounded: a replica forgets devices beyond this (each starts with a
/// full bucket again) rather than grow without limit.
const REMEMBERED_DEVICES: usize = 100_000;

/// Whether a device's message may go on.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// `first`: the first message refused since the device was last admitted.
    Throttled {
        first: bool,
    },
}

impl DeviceRates {
    /// `per_second` messages a second per device after a burst of a
    /// minute's worth (a broker or an agent flushing a backlog after an
    /// outage comes all at once); 0: unlimited.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            burst: per_second.saturating_mul(60),
            buckets: Mutex::default(),
        }
    }

    fn admit(&self, device: &DeviceId, now: UnixMs) -> Admission {
        if self.per_second == 0 {
            return Admission::Admitted;
        }
        let mut buckets = self.buckets.lock().expect("rates lock");
        // Why a lookup before the entry: the entry API would clone the id on
        // every message, and nearly every message is from a known device.
        if !buckets.contains_key(device) {
            if buckets.len() >= REMEMBERED_DEVICES {
                buckets.clear();
            }
            buckets.insert(device.clone(), (Bucket::full(self.burst, now), false));
        }
        let (bucket, throttled) = buckets.get_mut(device).expect("inserted above");
        if bucket.take(now, self.per_second, self.burst) {
            *throttled = false;
            Admission::Admitted
        } else {
            let first = !std::mem::replace(throttled, true);
            Admission::Throttled { first }
        }
    }
}

impl Intake {
    /// Handles inbound messages until the channel closes.
    pub async fn run(self, mut inbox: mpsc::Receiver<Inbound>) {
        while let Some(message) = inbox.recv().await {
            let (home_id, device_id, channel) = message.sender();
            if let Admission::Throttled { first } = self.rates.admit(device_id, self.clock.now()) {
                self.metrics.device_messages_throttled.inc();
                if first {
                    warn!(
                        home = %home_id,
                        device = %device_id,
                        channel,
                        per_second = self.rates.per_second,
                        "device sends more messages than HEARTH_DEVICE_MESSAGES_PER_SECOND; \
                         dropping them (counted in hearth_device_messages_throttled_total)"
                    );
                }
                message.into_ack().send().await;
                continue;
            }
            match message {
                Inbound::Readings {
                    home_id,
                    device_id,
                    batch,
                    ack,
                } => {
                    let checked = match self
                        .check_sender(&home_id, &device_id, Some(DeviceKind::Sensor))
                        .await
                    {
                        Ok(()) => validate_batch(&device_id, &batch, self.clock.now())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match checked {
                        Ok(readings) => {
                            self.directory.seen(&device_id, self.clock.now());
                            let item = IngestItem {
                                home_id,
                                readings,
                                run_start: batch.run_start,
                                done: Done::Mqtt(ack),
                            };
                            if self.ingest.submit(item).await.is_err() {
                                return;
                            }
                        }
                        Err(reason) => {
                            self.reject(&home_id, &device_id, "readings", &reason, ack)
                                .await
                        }
                    }
                }
                Inbound::Reported {
                    home_id,
                    device_id,
                    state,
                    ack,
                } => {
                    let result = match self.check_sender(&home_id, &device_id, None).await {
                        Ok(()) => self
                            .control
                            .reported(&device_id, state.applied_version, state.on)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => ack.send().await,
                        Err(reason) => {
                            self.reject(&home_id, &device_id, "reported", &reason, ack)
                                .await
                        }
                    }
                }
                Inbound::Status {
                    home_id,
                    device_id,
                    status,
                    ack,
                } => {
                    let checked = match self.check_sender(&home_id, &device_id, None).await {
                        Ok(()) => {
                            delivery::sent(status.run_start, status.last_seq, &status.metrics)
                                .map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e),
                    };
                    let result = match checked {
                        Ok(sent) => self
                            .control
                            .status(&device_id, status.online, sent)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => ack.send().await,
                        Err(reason) => {
                            self.reject(&home_id, &device_id, "status", &reason, ack)
                                .await
                        }
                    }
                }
            }
        }
    }

    /// Checks that the device exists, belongs to the home in its topic and,
    /// if given, is of `kind`.
    async fn check_sender(
        &self,
        home_id: &HomeId,
        device_id: &DeviceId,
        kind: Option<DeviceKind>,
    ) -> Result<(), String> {
        match self.directory.lookup(device_id).await {
            Ok(Some(Known {
                home_id: home,
                kind: actual,
            })) => {
                if &home != home_id {
                    Err(format!(
                        "device {device_id} belongs to home {home}, not {home_id}"
                    ))
                } else if kind.is_some_and(|k| k != actual) {
                    Err(format!(
                        "device {device_id} is a {}, not a sensor",
                        actual.as_str()
                    ))
                } else {
                    Ok(())
                }
            }
            Ok(None) => Err(format!("unknown device {device_id}")),
            Err(e) => Err(format!("cannot look up device {device_id}: {e}")),
        }
    }

    async fn reject(
        &self,
        home_id: &HomeId,
        device_id: &DeviceId,
        channel: &str,
        reason: &str,
        ack: Ack,
    ) {
        self.metrics.batches_rejected.inc();
        warn!(home = %home_id, device = %device_id, channel, reason, "dropped a device message");
        ack.send().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearth_proto::v1::{self, DeviceStatus, Metric, ReadingBatch, ReportedState};
    use rumqttc::{Publish, QoS, Request};

    use super::*;
    use crate::{
        control::testing::{id, TestHome, FAN, HOME, SENSOR},
        domain::Mode,
        ingest::IngestItem,
        mqtt::testing::{acks, Sent},
    };

    /// Intake over a test home, fed through `inbox`; what it stores goes to
    /// `queued`, its PUBACKs to `acked`.
    struct Running {
        home: TestHome,
        inbox: mpsc::Sender<Inbound>,
        queued: mpsc::Receiver<IngestItem>,
        acks: crate::mqtt::testing::AckOrder,
        acked: Sent,
        next_pkid: u16,
    }

    impl Running {
        async fn new() -> Self {
            Self::with_rates(DeviceRates::new(0)).await
        }

        async fn with_rates(rates: DeviceRates) -> Self {
            let home = TestHome::new(Mode::Off).await;
            let (ingest, queued) = Ingest::new();
            let intake = Intake {
                directory: home.directory.clone(),
                ingest,
                control: home.control.clone(),
                metrics: home.metrics.clone(),
                clock: home.clock.clone(),
                rates: Arc::new(rates),
            };
            let (inbox, inbox_rx) = mpsc::channel(16);
            tokio::spawn(intake.run(inbox_rx));
            let (acks, acked) = acks();
            Self {
                home,
                inbox,
                queued,
                acks,
                acked,
                next_pkid: 1,
            }
        }

        /// A received message's ack and its packet id.
        fn ack(&mut self) -> (Ack, u16) {
            let pkid = self.next_pkid;
            self.next_pkid += 1;
            let mut publish = Publish::new("test/topic", QoS::AtLeastOnce, vec![]);
            publish.pkid = pkid;
            (self.acks.take(publish), pkid)
        }

        async fn readings(&mut self, home: &str, device: &str, batch: ReadingBatch) -> u16 {
            let (ack, pkid) = self.ack();
            let message = Inbound::Readings {
                home_id: HomeId::parse(home, "test").unwrap(),
                device_id: id(device),
                batch,
                ack,
            };
            self.inbox.send(message).await.unwrap();
            pkid
        }

        async fn reported(&mut self, device: &str, applied_version: u64, on: bool) -> u16 {
            let (ack, pkid) = self.ack();
            let message = Inbound::Reported {
                home_id: self.home.home.clone(),
                device_id: id(device),
                state: ReportedState {
                    applied_version,
                    on,
                    ..ReportedState::default()
                },
                ack,
            };
            self.inbox.send(message).await.unwrap();
            pkid
        }

        async fn status(&mut self, device: &str, online: bool) -> u16 {
            let (ack, pkid) = self.ack();
            let message = Inbound::Status {
                home_id: self.home.home.clone(),
                device_id: id(device),
                status: DeviceStatus {
                    online,
                    ..DeviceStatus::default()
                },
                ack,
            };
            self.inbox.send(message).await.unwrap();
            pkid
        }

        /// The next PUBACK sent; intake handles messages in order, so this
        /// is also the sign that it finished the message.
        async fn next_ack(&self) -> u16 {
            match tokio::time::timeout(Duration::from_secs(5), self.acked.recv_async()).await {
                Ok(Ok(Request::PubAck(ack))) => ack.pkid,
                other => panic!("expected a PUBACK, got {other:?}"),
            }
        }
    }

    fn temperature(value: f64) -> ReadingBatch {
        ReadingBatch {
            seq: 1,
            readings: vec![v1::Reading {
                metric: Metric::TemperatureCelsius as i32,
                value,
            }],
            ..ReadingBatch::default()
        }
    }

    #[tokio::test]
    async fn a_device_past_its_rate_is_throttled_and_acknowledged_and_others_are_not() {
        // 1 a second after a burst of 60; the test's clock stands still.
        let mut t = Running::with_rates(DeviceRates::new(1)).await;
        for _ in 0..62 {
            t.status(FAN, true).await;
            t.next_ack().await;
        }
        assert_eq!(t.home.metrics.device_messages_throttled.get(), 2);
        // Another device goes on.
        t.readings(HOME, SENSOR, temperature(21.5)).await;
        tokio::time::timeout(Duration::from_secs(5), t.queued.recv())
            .await
            .unwrap()
            .expect("the sensor's batch is queued");
    }

    #[test]
    fn a_flood_is_reported_once_until_the_device_is_admitted_again() {
        let rates = DeviceRates::new(1);
        let fan = id(FAN);
        assert!((0..60).all(|_| rates.admit(&fan, 0) == Admission::Admitted));
        assert_eq!(rates.admit(&fan, 0), Admission::Throttled { first: true });
        assert_eq!(rates.admit(&fan, 0), Admission::Throttled { first: false });
        assert_eq!(rates.admit(&fan, 1_000), Admission::Admitted);
        assert_eq!(
            rates.admit(&fan, 1_000),
            Admission::Throttled { first: true }
        );
        let unlimited = DeviceRates::new(0);
        assert!((0..100_000).all(|_| unlimited.admit(&fan, 0) == Admission::Admitted));
    }

    #[tokio::test]
    async fn good_readings_reach_the_ingest_queue_and_are_acknowledged_only_once_stored() {
        let mut t = Running::new().await;
        let pkid = t.readings(HOME, SENSOR, temperature(21.5)).await;

        let item = tokio::time::timeout(Duration::from_secs(5), t.queued.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.home_id.as_str(), HOME);
        let values: Vec<_> = item.readings.iter().map(|r| (r.metric, r.value)).collect();
        assert_eq!(values, [(Metric::TemperatureCelsius, 21.5)]);
        assert!(t.acked.is_empty(), "not acknowledged before it is stored");

        let crate::ingest::Done::Mqtt(ack) = item.done else {
            panic!("an MQTT message is acknowledged over MQTT");
        };
        ack.send().await;
        assert_eq!(t.next_ack().await, pkid);
        assert_eq!(t.home.metrics.batches_rejected.get(), 0);
    }

    #[tokio::test]
    async fn readings_from_an_unknown_device_are_rejected_counted_and_acknowledged() {
        let mut t = Running::new().await;
        let pkid = t.readings(HOME, "stranger", temperature(21.5)).await;
        assert_eq!(t.next_ack().await, pkid);
        assert_eq!(t.home.metrics.batches_rejected.get(), 1);
        assert!(t.queued.try_recv().is_err());
    }

    #[tokio::test]
    async fn readings_naming_another_home_than_the_devices_are_rejected() {
        let mut t = Running::new().await;
        let pkid = t.readings("elsewhere", SENSOR, temperature(21.5)).await;
        assert_eq!(t.next_ack().await, pkid);
        assert_eq!(t.home.metrics.batches_rejected.get(), 1);
        assert!(t.queued.try_recv().is_err());
    }

    #[tokio::test]
    async fn readings_from_an_actuator_are_rejected() {
        let mut t = Running::new().await;
        let pkid = t.readings(HOME, FAN, temperature(21.5)).await;
        assert_eq!(t.next_ack().await, pkid);
        assert_eq!(t.home.metrics.batches_rejected.get(), 1);
        assert!(t.queued.try_recv().is_err());
    }

    #[tokio::test]
    async fn invalid_readings_are_rejected_and_the_next_good_batch_still_gets_through() {
        let mut t = Running::new().await;
        let empty = t.readings(HOME, SENSOR, ReadingBatch::default()).await;
        let not_finite = t.readings(HOME, SENSOR, temperature(f64::NAN)).await;
        let mut future = temperature(20.0);
        future.time_unix_ms = t.home.clock.now() + 60 * 60 * 1000;
        let from_the_future = t.readings(HOME, SENSOR, future).await;
        assert_eq!(t.next_ack().await, empty);
        assert_eq!(t.next_ack().await, not_finite);
        assert_eq!(t.next_ack().await, from_the_future);
        assert_eq!(t.home.metrics.batches_rejected.get(), 3);

        t.readings(HOME, SENSOR, temperature(22.0)).await;
        let item = tokio::time::timeout(Duration::from_secs(5), t.queued.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.readings[0].value, 22.0);
    }

    #[tokio::test]
    async fn status_and_reports_reach_control() {
        let mut t = Running::new().await;
        t.home
            .control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();
        assert!(t.home.published().is_empty(), "the fan is offline");

        let online = t.status(FAN, true).await;
        assert_eq!(t.next_ack().await, online);
        assert!(t.home.device(FAN).await.online);
        assert_eq!(t.home.published_versions(), [(1, true)]);

        let report = t.reported(FAN, 1, true).await;
        assert_eq!(t.next_ack().await, report);
        assert_eq!(t.home.metrics.commands_acknowledged.get(), 1);
        assert!(t.home.device(FAN).await.state.is_acknowledged());
    }

    #[tokio::test]
    async fn a_report_from_an_unknown_device_is_rejected_and_acknowledged() {
        let mut t = Running::new().await;
        let report = t.reported("stranger", 1, true).await;
        assert_eq!(t.next_ack().await, report);
        assert_eq!(t.home.metrics.batches_rejected.get(), 1);
        assert_eq!(t.home.metrics.commands_acknowledged.get(), 0);
    }
}
