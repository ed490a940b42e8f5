//! Device control: changing an actuator's mode or desired state (from a user,
//! a script or a rule), publishing it, and following each command through its
//! lifecycle: requested, published, applied or expired.
//!
//! Every change is a compare-and-set on the stored desired version, so two
//! writers (two API replicas, or a user and a rule) never both win, and each
//! version is published once. A device that is offline is not sent anything:
//! its newest command waits, older ones are superseded, and it gets only the
//! newest when it comes back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hearth_runtime::Clock;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::{
    directory::Directory,
    domain::{ActuatorState, Command, CommandState, Device, DeviceId, Mode, Transition, UnixMs},
    metrics::Metrics,
    mqtt::Publisher,
    storage::{Applied, Storage, StorageError},
};

/// Attempts at a compare-and-set before giving up under contention.
const CAS_ATTEMPTS: usize = 8;
/// Devices buffered per live view before it starts skipping.
const CHANGES_BUFFER: usize = 1_024;
/// How long a command's publish time waits to be stored with its
/// acknowledgement before it is stored on its own.
const PUBLISHED_WRITE_DELAY: Duration = Duration::from_millis(100);
/// Open commands tracked before those past their time-to-live are dropped.
const TRACKED_COMMANDS: usize = 1_024;

/// A command this replica made or published, until it is acknowledged.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// Since when it is tracked here.
    since: Instant,
    /// When it was asked for here, for a round-trip time finer than the
    /// clock's milliseconds.
    requested: Option<Instant>,
    /// When this replica handed it to the broker.
    published_at: Option<UnixMs>,
}

type TrackedCommands = Arc<Mutex<HashMap<(DeviceId, u64), Tracked>>>;

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
    /// How long a command stays applicable.
    ttl_ms: i64,
    /// Open commands this replica made or published.
    tracked: TrackedCommands,
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
        ttl_ms: i64,
    ) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        Self {
            storage,
            directory,
            publisher,
            metrics,
            clock,
            ttl_ms,
            tracked: TrackedCommands::default(),
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

    /// Applies `change` to the device's state with compare-and-set, records
    /// the command for a new desired version (made by `requested_by`), and
    /// publishes it if the device is online. `None` from `change` means
    /// nothing to do. Returns the device as stored and the new command's
    /// version, if one was made.
    async fn change(
        &self,
        id: &DeviceId,
        requested_by: &str,
        change: impl Fn(&ActuatorState, UnixMs) -> Option<Transition>,
    ) -> Result<(Device, Option<u64>), ControlError> {
        // The round trip is timed from here: the call, not its commit.
        let started = Instant::now();
        for _ in 0..CAS_ATTEMPTS {
            let mut device = self.actuator(id).await?;
            let now = self.clock.now();
            let Some(Transition { state, publish }) = change(&device.state, now) else {
                return Ok((device, None));
            };
            if state == device.state {
                return Ok((device, None));
            }
            let command = publish
                .as_ref()
                .map(|d| Command::for_desired(id, d, requested_by, self.ttl_ms));
            let expected = device.state.desired.as_ref().map_or(0, |d| d.version);
            match self
                .storage
                .save_actuator_state(id, expected, &state, command.as_ref())
                .await
            {
                Ok(()) => {}
                Err(StorageError::Stale(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            device.state = state;
            let made = command.as_ref().map(|c| c.version);
            if let Some(command) = command {
                self.track(id, command.version, |t| t.requested = Some(started));
                info!(device = %id, version = command.version, on = command.on, requested_by, reason = command.reason, "desired state changed");
                device.last_command = Some(command);
                if device.online || self.came_online(id).await? {
                    device.online = true;
                    self.publish(&mut device).await;
                } else {
                    info!(device = %id, "device offline: the command waits until it is back");
                }
            }
            let _ = self.changes.send(device.clone());
            return Ok((device, made));
        }
        Err(ControlError::Contended(id.clone()))
    }

    /// Whether device `id` is online now, read again after its command was
    /// stored. Why: `status` stores the device's presence and then reads its
    /// command, and this stores the command and then reads the presence, so
    /// of two that overlap at least one sees the other's write. Reading the
    /// presence only before the command was stored lost the command of a
    /// device that came online meanwhile: it waited until the device next
    /// reconnected.
    async fn came_online(&self, id: &DeviceId) -> Result<bool, ControlError> {
        Ok(self.storage.get_device(id).await?.is_some_and(|d| d.online))
    }

    /// Updates the tracked command `version` of `id`, tracking it if new.
    fn track(&self, id: &DeviceId, version: u64, update: impl FnOnce(&mut Tracked)) {
        let mut tracked = self.tracked.lock().expect("tracked commands lock");
        // Commands never acknowledged (expired, superseded) stay behind;
        // past their time-to-live they are useless.
        if tracked.len() >= TRACKED_COMMANDS {
            let ttl = Duration::from_millis(self.ttl_ms.max(0) as u64);
            tracked.retain(|_, t| t.since.elapsed() < ttl);
        }
        let entry = tracked.entry((id.clone(), version)).or_insert(Tracked {
            since: Instant::now(),
            requested: None,
            published_at: None,
        });
        update(entry);
    }

    /// Publishes the device's current command and records that it was.
    ///
    /// Why the publish time is not written at once: that write would hold
    /// the command's row while the device answers, and the acknowledgement
    /// would wait for it (and for its disk flush) on every round trip. So it
    /// travels with the acknowledgement if that comes here within
    /// `PUBLISHED_WRITE_DELAY`, and is written on its own only if not.
    async fn publish(&self, device: &mut Device) {
        let Some(command) = device.last_command.as_mut() else {
            return;
        };
        let now = self.clock.now();
        match self
            .publisher
            .desired(&device.home_id, &device.id, command)
            .await
        {
            Ok(()) => {
                self.metrics.commands_published.inc();
                if command.state.is_open() {
                    command.state = CommandState::Published;
                    command.published_at = Some(now);
                }
                self.track(&device.id, command.version, |t| t.published_at = Some(now));
                let (storage, tracked) = (self.storage.clone(), self.tracked.clone());
                let key = (device.id.clone(), command.version);
                tokio::spawn(async move {
                    tokio::time::sleep(PUBLISHED_WRITE_DELAY).await;
                    let unrecorded = tracked
                        .lock()
                        .expect("tracked commands lock")
                        .get(&key)
                        .is_some_and(|t| t.published_at == Some(now));
                    if unrecorded {
                        if let Err(e) = storage.command_published(&key.0, key.1, now).await {
                            warn!(device = %key.0, error = %e, "could not record a command as published");
                        }
                    }
                });
            }
            // Why not fail the call: the command is stored, and the device
            // gets it when it next says it is online.
            Err(e) => {
                warn!(device = %device.id, error = %e, "desired state stored but not published")
            }
        }
    }

    /// A user or script sets the mode; ON and OFF with `override_until` are a
    /// manual override that returns to AUTO then.
    pub async fn set_mode(
        &self,
        id: &DeviceId,
        mode: Mode,
        override_until: Option<UnixMs>,
        requested_by: &str,
    ) -> Result<Device, ControlError> {
        let (device, _) = self
            .change(id, requested_by, |s, now| {
                Some(s.set_mode(mode, override_until, requested_by, now))
            })
            .await?;
        Ok(device)
    }

    /// Ends a manual override whose time is up: the device returns to AUTO.
    /// Returns whether it did (another replica may have been first).
    pub async fn end_override(&self, id: &DeviceId) -> Result<bool, ControlError> {
        let (device, _) = self
            .change(id, "override-expiry", |s, now| {
                s.override_expired(now)
                    .then(|| s.set_mode(Mode::Auto, None, "override-expiry", now))
            })
            .await?;
        let ended = device.state.mode == Mode::Auto;
        if ended {
            info!(device = %id, "manual override ended; back to AUTO");
        }
        Ok(ended)
    }

    /// A rule wants the device on or off; acts only in AUTO. Returns the
    /// version of the command it made, if any.
    pub async fn rule_decision(
        &self,
        id: &DeviceId,
        on: bool,
        requested_by: &str,
        reason: &str,
    ) -> Result<Option<u64>, ControlError> {
        let (_, version) = self
            .change(id, requested_by, |s, now| {
                s.rule_decision(on, reason.to_owned(), now)
            })
            .await?;
        if version.is_some() {
            self.metrics.rule_actions.inc();
        }
        Ok(version)
    }

    /// The device reports what it applied: stored, with the command it
    /// applied closed, in one transaction.
    pub async fn reported(
        &self,
        id: &DeviceId,
        applied_version: u64,
        on: bool,
    ) -> Result<(), ControlError> {
        let mut device = self.actuator(id).await?;
        let now = self.clock.now();
        self.directory.seen(id, now);
        let state = match device.state.report(applied_version, on, now) {
            Ok(state) => state,
            Err(e) => {
                self.metrics.reports_rejected.inc();
                warn!(device = %id, error = %e, "reported state ignored");
                return Ok(());
            }
        };
        let mut started = None;
        let applied = (applied_version > 0).then(|| {
            let tracked = self
                .tracked
                .lock()
                .expect("tracked commands lock")
                .remove(&(id.clone(), applied_version));
            started = tracked.and_then(|t| t.requested);
            Applied {
                version: applied_version,
                at: now,
                round_trip_us: round_trip_us(&device, applied_version, started, now),
                published_at: tracked.and_then(|t| t.published_at),
            }
        });
        let closed = self.storage.save_reported(id, &state, applied).await?;
        if let (true, Some(applied)) = (closed, applied) {
            self.metrics.commands_acknowledged.inc();
            // Two figures: `rtt_us` (stored with the command) ends when the
            // report reached Hearth; `stored_us` when it was committed, which
            // is the round trip as a user sees it and what the metric counts.
            // Only the replica that made the command can time the second.
            let stored_us = started.map(|at| at.elapsed().as_micros() as u64);
            self.metrics
                .command_round_trip
                .observe(stored_us.unwrap_or(applied.round_trip_us) as f64 / 1e6);
            info!(device = %id, version = applied.version, rtt_us = applied.round_trip_us, stored_us, "device applied the command");
            if let Some(c) = device
                .last_command
                .as_mut()
                .filter(|c| c.version == applied.version)
            {
                c.state = CommandState::Applied;
                c.applied_at = Some(now);
                c.round_trip_us = Some(applied.round_trip_us);
            }
        }
        device.state = state;
        let _ = self.changes.send(device);
        Ok(())
    }

    /// The device says it is online or offline. A device coming online is
    /// sent its current desired state within this call: the waiting command
    /// if it is still valid, otherwise the same state again as a new version.
    /// Why not retained messages: brokers differ in how they replay them to
    /// resumed sessions, and a retained command could be stale.
    pub async fn status(&self, id: &DeviceId, online: bool) -> Result<(), ControlError> {
        let now = self.clock.now();
        self.directory.seen(id, now);
        // Stored before the command is read: see `came_online`.
        self.storage.save_presence(id, Some(online), now).await?;
        info!(device = %id, online, "device status");
        let Some(mut device) = self.storage.get_device(id).await? else {
            return Err(ControlError::NotFound(id.clone()));
        };
        device.last_seen = Some(now);
        if online && device.kind.is_actuator() {
            let valid = device
                .last_command
                .as_ref()
                .is_some_and(|c| c.state == CommandState::Applied || now < c.expires_at);
            if valid {
                if let Some(c) = device.last_command.as_mut() {
                    if c.state == CommandState::Applied {
                        // Applied before: the device may have rebooted since;
                        // the same version again is harmless to it.
                        c.expires_at = now + self.ttl_ms;
                    }
                }
                self.publish(&mut device).await;
            } else if device.state.desired.is_some() {
                let stale = device.last_command.as_ref().map_or(0, |c| c.version);
                let reason = format!("{id} is back online; command v{stale} expired unapplied");
                let (again, _) = self
                    .change(id, "resend", |s, now| s.reissue(reason.clone(), now))
                    .await?;
                device = again;
            }
        }
        let _ = self.changes.send(device);
        Ok(())
    }

    /// Marks commands whose time-to-live passed as expired.
    pub async fn expire_commands(&self) -> Result<(), ControlError> {
        let now = self.clock.now();
        for id in self.storage.expire_commands(now).await? {
            self.metrics.commands_expired.inc();
            warn!(device = %id, "a command expired before the device applied it");
            if let Some(device) = self.storage.get_device(&id).await? {
                let _ = self.changes.send(device);
            }
        }
        Ok(())
    }
}

/// Microseconds from the request of command `version` to `now`: measured
/// here if this replica made it (`started`), else from the stored request
/// time.
fn round_trip_us(device: &Device, version: u64, started: Option<Instant>, now: UnixMs) -> u64 {
    let requested_at = device
        .last_command
        .as_ref()
        .filter(|c| c.version == version)
        .map(|c| c.requested_at);
    match (started, requested_at) {
        (Some(at), _) => at.elapsed().as_micros() as u64,
        (None, Some(at)) => (now - at).max(0) as u64 * 1000,
        (None, None) => 0,
    }
}
