//! Device control: changing an actuator's mode or desired state (from a user,
//! a script or a rule), publishing it, and recording what the device reports.
//!
//! Every change is a compare-and-set on the stored desired version, so two
//! writers (two API replicas, or a user and a rule) never both win, and each
//! version is published once.

use std::sync::Arc;

use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::{
    clock::Clock,
    directory::Directory,
    domain::{ActuatorState, Device, DeviceId, Mode, Transition},
    metrics::Metrics,
    mqtt::Publisher,
    storage::{Storage, StorageError},
};

/// Attempts at a compare-and-set before giving up under contention.
const CAS_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("device {0} not found")]
    NotFound(DeviceId),
    #[error("device {0} is a sensor; only fans and lights can be switched")]
    NotAnActuator(DeviceId),
    #[error("device {0} is being changed by others; try again")]
    Contended(DeviceId),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Control {
    storage: Arc<dyn Storage>,
    directory: Arc<Directory>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Every device change, for live views.
    changes: broadcast::Sender<Device>,
}

impl Control {
    pub fn new(
        storage: Arc<dyn Storage>,
        directory: Arc<Directory>,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        let (changes, _) = broadcast::channel(256);
        Self {
            storage,
            directory,
            publisher,
            metrics,
            clock,
            changes,
        }
    }

    pub fn subscribe_changes(&self) -> broadcast::Receiver<Device> {
        self.changes.subscribe()
    }

    async fn actuator(&self, id: &DeviceId) -> Result<Device, ControlError> {
        let device = self
            .storage
            .get_device(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(id.clone()))?;
        if !device.kind.is_actuator() {
            return Err(ControlError::NotAnActuator(id.clone()));
        }
        Ok(device)
    }

    /// Applies `change` to the device's state with compare-and-set, then
    /// publishes the new desired state if there is one. `None` from `change`
    /// means nothing to do. Returns the device as stored.
    async fn change(
        &self,
        id: &DeviceId,
        change: impl Fn(&ActuatorState, i64) -> Option<Transition>,
    ) -> Result<(Device, bool), ControlError> {
        for _ in 0..CAS_ATTEMPTS {
            let mut device = self.actuator(id).await?;
            let now = self.clock.now();
            let Some(Transition { state, publish }) = change(&device.state, now) else {
                return Ok((device, false));
            };
            if state == device.state {
                return Ok((device, false));
            }
            let expected = device.state.desired.as_ref().map_or(0, |d| d.version);
            match self.storage.save_actuator_state(id, expected, &state).await {
                Ok(()) => {}
                Err(StorageError::Stale(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            device.state = state;
            if let Some(desired) = &publish {
                // Why not fail the call: the state is stored, and the device
                // gets it when it next says it is online.
                match self
                    .publisher
                    .desired(&device.home_id, id, desired, now)
                    .await
                {
                    Ok(()) => self.metrics.commands_published.inc(),
                    Err(e) => {
                        warn!(device = %id, error = %e, "desired state stored but not published")
                    }
                }
                info!(device = %id, version = desired.version, on = desired.on, reason = desired.reason, "desired state changed");
            }
            let _ = self.changes.send(device.clone());
            return Ok((device, true));
        }
        Err(ControlError::Contended(id.clone()))
    }

    /// A user or script sets the mode.
    pub async fn set_mode(
        &self,
        id: &DeviceId,
        mode: Mode,
        requested_by: &str,
    ) -> Result<Device, ControlError> {
        let (device, _) = self
            .change(id, |s, now| Some(s.set_mode(mode, requested_by, now)))
            .await?;
        Ok(device)
    }

    /// A rule wants the device on or off; acts only in AUTO. Returns whether
    /// the desired state changed.
    pub async fn rule_decision(
        &self,
        id: &DeviceId,
        on: bool,
        reason: &str,
    ) -> Result<bool, ControlError> {
        let (_, changed) = self
            .change(id, |s, now| s.rule_decision(on, reason.to_owned(), now))
            .await?;
        if changed {
            self.metrics.rule_actions.inc();
        }
        Ok(changed)
    }

    /// The device reports what it applied.
    pub async fn reported(
        &self,
        id: &DeviceId,
        applied_version: u64,
        on: bool,
    ) -> Result<(), ControlError> {
        let mut device = self.actuator(id).await?;
        let now = self.clock.now();
        self.directory.seen(id, now);
        match device.state.report(applied_version, on, now) {
            Ok(state) => {
                self.storage.save_reported(id, &state).await?;
                let acknowledged = state.is_acknowledged() && state.desired.is_some();
                if acknowledged {
                    self.metrics.commands_acknowledged.inc();
                    let rtt = state.desired.as_ref().map(|d| now - d.issued_at);
                    info!(device = %id, version = applied_version, on, rtt_ms = rtt, "device acknowledged");
                }
                device.state = state;
                let _ = self.changes.send(device);
                Ok(())
            }
            Err(e) => {
                self.metrics.reports_rejected.inc();
                warn!(device = %id, error = %e, "reported state ignored");
                Ok(())
            }
        }
    }

    /// The device says it is online or offline. A device coming online is
    /// sent its current desired state. Why not retained messages: brokers
    /// differ in how they replay them to resumed sessions.
    pub async fn status(&self, id: &DeviceId, online: bool) -> Result<(), ControlError> {
        let now = self.clock.now();
        self.directory.seen(id, now);
        self.storage.save_presence(id, Some(online), now).await?;
        let Some(mut device) = self.storage.get_device(id).await? else {
            return Err(ControlError::NotFound(id.clone()));
        };
        if online && device.kind.is_actuator() {
            if let Some(desired) = &device.state.desired {
                if let Err(e) = self
                    .publisher
                    .desired(&device.home_id, id, desired, now)
                    .await
                {
                    warn!(device = %id, error = %e, "could not resend the desired state");
                }
            }
        }
        device.last_seen = Some(now);
        let _ = self.changes.send(device);
        Ok(())
    }
}
