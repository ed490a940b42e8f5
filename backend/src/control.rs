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
    domain::{
        delivery::RunAccount, ActuatorState, Command, CommandState, Device, DeviceId, Mode,
        Transition, UnixMs,
    },
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

    /// Tells this replica's live views, and the other replicas, that
    /// `device` changed.
    fn changed(&self, device: Device) {
        self.publisher.device_changed(&device.id);
        self.announce(device);
    }

    /// Tells this replica's live views that `device` changed (another
    /// replica changed it; see `mqtt::news`).
    pub fn announce(&self, device: Device) {
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(device);
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
            self.changed(device.clone());
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
        self.changed(device);
        Ok(())
    }

    /// The device says it is online or offline. A device coming online is
    /// sent its current desired state within this call: the waiting command
    /// if it is still valid, otherwise the same state again as a new version.
    /// Why not retained messages: brokers differ in how they replay them to
    /// resumed sessions, and a retained command could be stale.
    ///
    /// A sensor's status may also say what it sent, `sent` (see
    /// `domain::delivery::sent`); it is recorded first.
    pub async fn status(
        &self,
        id: &DeviceId,
        online: bool,
        sent: Option<RunAccount>,
    ) -> Result<(), ControlError> {
        let now = self.clock.now();
        self.directory.seen(id, now);
        if let Some(account) = sent {
            self.storage.record_sent(id, &account, now).await?;
        }
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
        self.changed(device);
        Ok(())
    }

    /// Marks commands whose time-to-live passed as expired.
    pub async fn expire_commands(&self) -> Result<(), ControlError> {
        let now = self.clock.now();
        for id in self.storage.expire_commands(now).await? {
            self.metrics.commands_expired.inc();
            warn!(device = %id, "a command expired before the device applied it");
            if let Some(device) = self.storage.get_device(&id).await? {
                self.changed(device);
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

/// A home for unit tests of control and what drives it: real SQLite storage
/// in a temporary file, and a publisher whose output the test reads.
#[cfg(test)]
pub(crate) mod testing {
    use hearth_proto::{topics::Topics, v1::DesiredState};
    use prost::Message as _;
    use rumqttc::Request;

    use super::*;
    use crate::{
        domain::{DeviceKind, Home, HomeId},
        mqtt::testing::{publisher, Sent},
    };

    /// The manual clock's start.
    pub const T0: UnixMs = 1_800_000_000_000;
    pub const TTL_MS: i64 = 30_000;
    pub const HOME: &str = "home";
    pub const SENSOR: &str = "sensor";
    pub const FAN: &str = "fan";

    pub fn id(s: &str) -> DeviceId {
        DeviceId::parse(s, "test id").unwrap()
    }

    /// What `check` finds once it finds something, polled until then (at
    /// most 5 s).
    pub async fn eventually<T, F, C>(check: C) -> T
    where
        C: Fn() -> F,
        F: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(Instant::now() < deadline, "gave up waiting after 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub struct TestHome {
        pub control: Arc<Control>,
        pub storage: Arc<dyn Storage>,
        pub directory: Arc<Directory>,
        pub metrics: Arc<Metrics>,
        pub clock: Clock,
        pub home: HomeId,
        sent: Sent,
        _dir: tempfile::TempDir,
    }

    impl TestHome {
        /// Home `home` with `sensor` and `fan` (the fan in `fan_mode`), both
        /// offline, at `T0`.
        pub async fn new(fan_mode: Mode) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("hearth.db").display());
            let storage = crate::storage::connect(&url).await.unwrap();
            let clock = Clock::manual(T0);
            let home = HomeId::parse(HOME, "test id").unwrap();
            storage
                .create_home(&Home {
                    id: home.clone(),
                    name: "Test home".into(),
                    created_at: T0,
                })
                .await
                .unwrap();
            for (device, kind, mode) in [
                (SENSOR, DeviceKind::Sensor, Mode::Off),
                (FAN, DeviceKind::Fan, fan_mode),
            ] {
                storage
                    .register_device(&Device {
                        id: id(device),
                        home_id: home.clone(),
                        kind,
                        name: device.into(),
                        state: ActuatorState {
                            mode,
                            ..ActuatorState::default()
                        },
                        online: false,
                        last_seen: None,
                        last_command: None,
                    })
                    .await
                    .unwrap();
            }
            let (publisher, sent) = publisher(Topics::new("test").unwrap());
            let directory = Arc::new(Directory::new(storage.clone()));
            let metrics = Arc::new(Metrics::default());
            let control = Arc::new(Control::new(
                storage.clone(),
                directory.clone(),
                publisher,
                metrics.clone(),
                clock.clone(),
                TTL_MS,
            ));
            Self {
                control,
                storage,
                directory,
                metrics,
                clock,
                home,
                sent,
                _dir: dir,
            }
        }

        pub async fn device(&self, name: &str) -> Device {
            self.storage.get_device(&id(name)).await.unwrap().unwrap()
        }

        /// The desired states published since last asked, with their topics.
        /// Publishing is awaited by the call that does it, so this needs no
        /// waiting.
        pub fn published(&self) -> Vec<(String, DesiredState)> {
            self.sent
                .try_iter()
                .filter_map(|request| match request {
                    Request::Publish(p) => Some((
                        p.topic.clone(),
                        DesiredState::decode(p.payload.as_ref()).unwrap(),
                    )),
                    _ => None,
                })
                .collect()
        }

        /// Versions and on/off of what was published since last asked.
        pub fn published_versions(&self) -> Vec<(u64, bool)> {
            self.published()
                .into_iter()
                .map(|(_, d)| (d.version, d.on))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};

    #[tokio::test]
    async fn set_mode_makes_one_version_per_change_and_none_for_a_repeat() {
        let t = TestHome::new(Mode::Off).await;
        t.control.status(&id(FAN), true, None).await.unwrap();

        let on = t
            .control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();
        assert_eq!(
            on.state.desired.as_ref().map(|d| (d.version, d.on)),
            Some((1, true))
        );
        t.control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();
        t.control
            .set_mode(&id(FAN), Mode::Off, None, "bob")
            .await
            .unwrap();

        assert_eq!(t.published_versions(), [(1, true), (2, false)]);
        let commands = t.storage.list_commands(&id(FAN), 10).await.unwrap();
        let versions: Vec<_> = commands
            .iter()
            .map(|c| (c.version, c.requested_by.as_str()))
            .collect();
        assert_eq!(versions, [(2, "bob"), (1, "alice")]);
    }

    #[tokio::test]
    async fn concurrent_writers_never_make_the_same_version_twice() {
        let t = TestHome::new(Mode::Off).await;
        let writers = (0..6).map(|i| {
            let control = t.control.clone();
            let mode = if i % 2 == 0 { Mode::On } else { Mode::Off };
            tokio::spawn(async move {
                control
                    .set_mode(&id(FAN), mode, None, &format!("writer{i}"))
                    .await
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.unwrap().unwrap();
        }
        let device = t.device(FAN).await;
        let newest = device.state.desired.map_or(0, |d| d.version);
        let mut versions: Vec<u64> = t
            .storage
            .list_commands(&id(FAN), 100)
            .await
            .unwrap()
            .iter()
            .map(|c| c.version)
            .collect();
        versions.sort();
        assert_eq!(versions, (1..=newest).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_sensor_cannot_be_switched_and_an_unknown_device_is_not_found() {
        let t = TestHome::new(Mode::Off).await;
        let sensor = t
            .control
            .set_mode(&id(SENSOR), Mode::On, None, "alice")
            .await;
        assert!(
            matches!(sensor, Err(ControlError::NotAnActuator(_))),
            "{sensor:?}"
        );
        let unknown = t
            .control
            .set_mode(&id("nowhere"), Mode::On, None, "alice")
            .await;
        assert!(
            matches!(unknown, Err(ControlError::NotFound(_))),
            "{unknown:?}"
        );
        assert!(t.published().is_empty());
    }

    #[tokio::test]
    async fn nothing_is_published_to_an_offline_device_and_it_gets_only_the_newest_command_when_back(
    ) {
        let t = TestHome::new(Mode::Off).await;
        t.control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();
        t.control
            .set_mode(&id(FAN), Mode::Off, None, "alice")
            .await
            .unwrap();
        t.control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();
        assert!(t.published().is_empty(), "the fan is offline");

        t.clock.advance(1_000);
        t.control.status(&id(FAN), true, None).await.unwrap();

        let published = t.published();
        assert_eq!(published.len(), 1, "{published:?}");
        let (topic, desired) = &published[0];
        let fan_desired = hearth_proto::topics::Topics::new("test")
            .unwrap()
            .device(HOME, FAN, hearth_proto::topics::Channel::Desired)
            .unwrap();
        assert_eq!(topic, &fan_desired);
        assert_eq!((desired.version, desired.on), (3, true));
        assert_eq!(desired.expires_unix_ms, T0 + TTL_MS);
        // The publish time is stored a moment later unless an
        // acknowledgement carries it first.
        let states = eventually(|| async {
            let states: Vec<_> = t
                .storage
                .list_commands(&id(FAN), 10)
                .await
                .unwrap()
                .iter()
                .map(|c| (c.version, c.state))
                .collect();
            (states[0].1 == CommandState::Published).then_some(states)
        })
        .await;
        assert_eq!(
            states,
            [
                (3, CommandState::Published),
                (2, CommandState::Superseded),
                (1, CommandState::Superseded)
            ]
        );
    }

    #[tokio::test]
    async fn a_command_expires_when_the_clock_passes_its_ttl_and_is_reissued_when_the_device_returns(
    ) {
        let t = TestHome::new(Mode::Off).await;
        t.control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();

        t.clock.advance(TTL_MS - 1);
        t.control.expire_commands().await.unwrap();
        assert_eq!(t.metrics.commands_expired.get(), 0, "one millisecond left");

        t.clock.advance(1);
        t.control.expire_commands().await.unwrap();
        assert_eq!(t.metrics.commands_expired.get(), 1);
        let expired = t.storage.list_commands(&id(FAN), 1).await.unwrap();
        assert_eq!(expired[0].state, CommandState::Expired);

        t.control.status(&id(FAN), true, None).await.unwrap();
        assert_eq!(
            t.published_versions(),
            [(2, true)],
            "the same state again as a new version"
        );
        let fan = t.device(FAN).await;
        let reissued = fan.last_command.unwrap();
        assert_eq!(reissued.requested_by, "resend");
        assert_eq!(reissued.expires_at, t.clock.now() + TTL_MS);
    }

    #[tokio::test]
    async fn a_report_acknowledges_its_command() {
        let t = TestHome::new(Mode::Off).await;
        t.control.status(&id(FAN), true, None).await.unwrap();
        t.control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();
        let mut changes = t.control.subscribe_changes();

        t.clock.advance(40);
        t.control.reported(&id(FAN), 1, true).await.unwrap();

        assert_eq!(t.metrics.commands_acknowledged.get(), 1);
        let command = &t.storage.list_commands(&id(FAN), 1).await.unwrap()[0];
        assert_eq!(command.state, CommandState::Applied);
        assert_eq!(command.applied_at, Some(T0 + 40));
        assert_eq!(
            command.published_at,
            Some(T0),
            "stored with the acknowledgement"
        );
        let fan = t.device(FAN).await;
        assert!(fan.state.is_acknowledged());
        let seen = changes.try_recv().unwrap();
        assert_eq!(
            seen.last_command.map(|c| c.state),
            Some(CommandState::Applied)
        );
    }

    #[tokio::test]
    async fn a_report_of_a_version_never_sent_is_refused_and_counted() {
        let t = TestHome::new(Mode::Off).await;
        t.control.status(&id(FAN), true, None).await.unwrap();
        t.control
            .set_mode(&id(FAN), Mode::On, None, "alice")
            .await
            .unwrap();

        t.control.reported(&id(FAN), 7, false).await.unwrap();

        assert_eq!(t.metrics.reports_rejected.get(), 1);
        assert_eq!(t.metrics.commands_acknowledged.get(), 0);
        let fan = t.device(FAN).await;
        assert_eq!(fan.state.reported, None);
        assert_ne!(
            fan.last_command.map(|c| c.state),
            Some(CommandState::Applied)
        );
    }

    #[tokio::test]
    async fn a_rule_switches_a_device_in_auto_only() {
        let t = TestHome::new(Mode::Auto).await;
        t.control.status(&id(FAN), true, None).await.unwrap();
        let made = t
            .control
            .rule_decision(&id(FAN), true, "rule:r1", "hot")
            .await
            .unwrap();
        assert_eq!(made, Some(1));
        let again = t
            .control
            .rule_decision(&id(FAN), true, "rule:r1", "still hot")
            .await
            .unwrap();
        assert_eq!(again, None, "already asked to be on");

        t.control
            .set_mode(&id(FAN), Mode::Off, None, "alice")
            .await
            .unwrap();
        let overridden = t
            .control
            .rule_decision(&id(FAN), true, "rule:r1", "hot")
            .await
            .unwrap();
        assert_eq!(overridden, None, "OFF is the user's");
        assert_eq!(t.published_versions(), [(1, true), (2, false)]);
        assert_eq!(t.metrics.rule_actions.get(), 1);
    }

    #[tokio::test]
    async fn a_manual_override_ends_in_auto_at_its_time() {
        let t = TestHome::new(Mode::Auto).await;
        t.control
            .set_mode(&id(FAN), Mode::On, Some(T0 + 60_000), "alice")
            .await
            .unwrap();

        t.clock.advance(59_999);
        assert!(!t.control.end_override(&id(FAN)).await.unwrap());
        assert_eq!(t.device(FAN).await.state.mode, Mode::On);

        t.clock.advance(1);
        assert!(t.control.end_override(&id(FAN)).await.unwrap());
        let fan = t.device(FAN).await;
        assert_eq!(
            (fan.state.mode, fan.state.override_until),
            (Mode::Auto, None)
        );
    }
}
