//! What devices publish, turned into effects: readings are validated and
//! queued for the ingest writer; reported states and status go to control.
//! Anything rejected is logged with its device, counted and acknowledged, and
//! never stops the messages after it.

use std::sync::Arc;

use hearth_runtime::Clock;
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    control::Control,
    directory::{Directory, Known},
    domain::{validate_batch, DeviceId, DeviceKind, HomeId},
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
}

impl Intake {
    /// Handles inbound messages until the channel closes.
    pub async fn run(self, mut inbox: mpsc::Receiver<Inbound>) {
        while let Some(message) = inbox.recv().await {
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
                    let result = match self.check_sender(&home_id, &device_id, None).await {
                        Ok(()) => self
                            .control
                            .status(&device_id, status.online)
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
