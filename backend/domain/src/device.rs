//! Homes, devices, and the state machine of an actuator's mode, desired state
//! and reported state.
//!
//! The backend owns *desired* (what the device should do, with a version that
//! grows by one at each change); the device owns *reported* (what it applied,
//! naming the version it came from). A command is acknowledged when the
//! reported version reaches the desired one.

use super::{DeviceId, HomeId, UnixMs};

#[derive(Debug, Clone, PartialEq)]
pub struct Home {
    pub id: HomeId,
    pub name: String,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Sensor,
    Fan,
    Light,
}

impl DeviceKind {
    /// Actuators have a mode and desired/reported state; sensors do not.
    pub fn is_actuator(self) -> bool {
        !matches!(self, DeviceKind::Sensor)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Sensor => "sensor",
            DeviceKind::Fan => "fan",
            DeviceKind::Light => "light",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [DeviceKind::Sensor, DeviceKind::Fan, DeviceKind::Light]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Who decides whether an actuator is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    On,
    Off,
    /// Its rules decide.
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
            Mode::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Mode::On, Mode::Off, Mode::Auto]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// What the backend asked a device to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub version: u64,
    pub on: bool,
    pub issued_at: UnixMs,
    /// Who or what asked, and why: "user alice: SetMode ON", "rule r1: 25.3 > 25".
    pub reason: String,
}

/// What a device says it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The desired version this came from; 0 = none (e.g. the state after boot).
    pub applied_version: u64,
    pub on: bool,
    /// When the backend recorded it.
    pub recorded_at: UnixMs,
}

/// Mode, desired and reported state of an actuator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActuatorState {
    pub mode: Mode,
    pub desired: Option<Desired>,
    pub reported: Option<Reported>,
    /// A manual ON/OFF that hands the device back to AUTO at this time.
    pub override_until: Option<UnixMs>,
}

impl Default for ActuatorState {
    /// A new actuator is OFF with nothing asked yet.
    fn default() -> Self {
        Self {
            mode: Mode::Off,
            desired: None,
            reported: None,
            override_until: None,
        }
    }
}

/// The outcome of a change: the new state, and the desired state to publish
/// to the device if a new version was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: ActuatorState,
    pub publish: Option<Desired>,
}

/// Why a report was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("device reported version {reported}, but the newest version sent is {sent}")]
    NeverSent { reported: u64, sent: u64 },
}

impl ActuatorState {
    /// The version the next desired state gets.
    fn next_version(&self) -> u64 {
        self.desired.as_ref().map_or(0, |d| d.version) + 1
    }

    fn desired_on(&self) -> Option<bool> {
        self.desired.as_ref().map(|d| d.on)
    }

    fn with_desired(
        &self,
        mode: Mode,
        on: bool,
        override_until: Option<UnixMs>,
        now: UnixMs,
        reason: String,
    ) -> Transition {
        let desired = Desired {
            version: self.next_version(),
            on,
            issued_at: now,
            reason,
        };
        Transition {
            state: ActuatorState {
                mode,
                desired: Some(desired.clone()),
                reported: self.reported.clone(),
                override_until,
            },
            publish: Some(desired),
        }
    }

    /// A user or script sets the mode. ON and OFF make a new desired version
    /// unless the device is already asked for exactly that; with
    /// `override_until` they are a manual override that ends in AUTO. AUTO
    /// leaves the desired state to the rules.
    pub fn set_mode(
        &self,
        mode: Mode,
        override_until: Option<UnixMs>,
        requested_by: &str,
        now: UnixMs,
    ) -> Transition {
        let reason = match override_until {
            Some(until) => format!(
                "{requested_by}: SetMode {} for {} s",
                mode.as_str().to_uppercase(),
                (until - now).max(0) / 1000
            ),
            None => format!("{requested_by}: SetMode {}", mode.as_str().to_uppercase()),
        };
        match mode {
            Mode::On | Mode::Off => {
                let on = mode == Mode::On;
                if self.mode == mode && self.desired_on() == Some(on) {
                    Transition {
                        state: ActuatorState {
                            override_until,
                            ..self.clone()
                        },
                        publish: None,
                    }
                } else {
                    self.with_desired(mode, on, override_until, now, reason)
                }
            }
            Mode::Auto => Transition {
                state: ActuatorState {
                    mode,
                    override_until: None,
                    ..self.clone()
                },
                publish: None,
            },
        }
    }

    /// True when a manual override has run out at `now`.
    pub fn override_expired(&self, now: UnixMs) -> bool {
        self.mode != Mode::Auto && self.override_until.is_some_and(|until| until <= now)
    }

    /// The same desired state again as a new version: for a device that
    /// comes back after its command expired unapplied.
    pub fn reissue(&self, reason: String, now: UnixMs) -> Option<Transition> {
        let on = self.desired_on()?;
        Some(self.with_desired(self.mode, on, self.override_until, now, reason))
    }

    /// A rule wants the device `on`. Only acts in AUTO, and only when that
    /// changes what the device is asked to do.
    pub fn rule_decision(&self, on: bool, reason: String, now: UnixMs) -> Option<Transition> {
        (self.mode == Mode::Auto && self.desired_on() != Some(on))
            .then(|| self.with_desired(Mode::Auto, on, None, now, reason))
    }

    /// The device reports what it applied.
    pub fn report(
        &self,
        applied_version: u64,
        on: bool,
        now: UnixMs,
    ) -> Result<ActuatorState, ReportError> {
        let sent = self.desired.as_ref().map_or(0, |d| d.version);
        if applied_version > sent {
            return Err(ReportError::NeverSent {
                reported: applied_version,
                sent,
            });
        }
        Ok(ActuatorState {
            reported: Some(Reported {
                applied_version,
                on,
                recorded_at: now,
            }),
            ..self.clone()
        })
    }

    /// True when the device has applied the newest desired state.
    pub fn is_acknowledged(&self) -> bool {
        match (&self.desired, &self.reported) {
            (Some(d), Some(r)) => r.applied_version == d.version,
            (None, _) => true,
            (Some(_), None) => false,
        }
    }
}

/// A registered device as the backend knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub home_id: HomeId,
    pub kind: DeviceKind,
    pub name: String,
    /// Meaningful for actuators only.
    pub state: ActuatorState,
    pub online: bool,
    pub last_seen: Option<UnixMs>,
    /// The command behind `state.desired` (actuators that were sent one).
    pub last_command: Option<Command>,
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    /// Stored; not yet handed to the broker (e.g. the device is offline).
    Requested,
    /// Handed to the broker.
    Published,
    /// The device reported this version applied.
    Applied,
    /// Its time-to-live passed before the device applied it.
    Expired,
    /// A newer command replaced it before it was applied.
    Superseded,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Requested => "requested",
            CommandState::Published => "published",
            CommandState::Applied => "applied",
            CommandState::Expired => "expired",
            CommandState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use CommandState::*;
        [Requested, Published, Applied, Expired, Superseded]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// Still waiting for the device.
    pub fn is_open(self) -> bool {
        matches!(self, CommandState::Requested | CommandState::Published)
    }
}

/// One desired version sent to a device, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub device_id: DeviceId,
    pub version: u64,
    pub on: bool,
    /// "user", "api", "rule:<id>", "override-expiry", ...
    pub requested_by: String,
    pub reason: String,
    pub state: CommandState,
    pub requested_at: UnixMs,
    pub published_at: Option<UnixMs>,
    pub applied_at: Option<UnixMs>,
    /// A device must not apply it after this time.
    pub expires_at: UnixMs,
    pub round_trip_us: Option<u64>,
}

impl Command {
    /// The command that carries `desired` to `device`, valid for `ttl_ms`.
    pub fn for_desired(
        device: &DeviceId,
        desired: &Desired,
        requested_by: &str,
        ttl_ms: i64,
    ) -> Self {
        Self {
            device_id: device.clone(),
            version: desired.version,
            on: desired.on,
            requested_by: requested_by.to_owned(),
            reason: desired.reason.clone(),
            state: CommandState::Requested,
            requested_at: desired.issued_at,
            published_at: None,
            applied_at: None,
            expires_at: desired.issued_at + ttl_ms,
            round_trip_us: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_on_makes_version_one_and_publishes_it() {
        let t = ActuatorState::default().set_mode(Mode::On, None, "user", 1_000);
        let d = t.publish.expect("a new desired state");
        assert_eq!((d.version, d.on, d.issued_at), (1, true, 1_000));
        assert_eq!(d.reason, "user: SetMode ON");
        assert_eq!(t.state.mode, Mode::On);
        assert_eq!(t.state.desired, Some(d));
        assert!(!t.state.is_acknowledged());
    }

    #[test]
    fn repeating_the_same_mode_makes_no_new_version() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        let again = s.set_mode(Mode::On, None, "user", 2);
        assert_eq!(again.publish, None);
        assert_eq!(again.state, s);
    }

    #[test]
    fn off_after_on_makes_the_next_version() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        let t = s.set_mode(Mode::Off, None, "user", 2);
        assert_eq!(t.publish.map(|d| (d.version, d.on)), Some((2, false)));
    }

    #[test]
    fn auto_keeps_the_desired_state_for_the_rules_to_change() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        let t = s.set_mode(Mode::Auto, None, "user", 2);
        assert_eq!(t.publish, None);
        assert_eq!(t.state.mode, Mode::Auto);
        assert_eq!(t.state.desired, s.desired);
    }

    #[test]
    fn rules_act_only_in_auto_and_only_on_change() {
        let manual = ActuatorState::default()
            .set_mode(Mode::Off, None, "user", 1)
            .state;
        assert_eq!(
            manual.rule_decision(true, "rule".into(), 2),
            None,
            "a rule must not override OFF"
        );

        let auto = manual.set_mode(Mode::Auto, None, "user", 3).state;
        let t = auto
            .rule_decision(true, "rule r1: 26 > 25".into(), 4)
            .expect("switches on");
        assert_eq!(
            t.publish.as_ref().map(|d| (d.version, d.on)),
            Some((2, true))
        );
        assert_eq!(t.state.mode, Mode::Auto);
        assert_eq!(
            t.state.rule_decision(true, "rule".into(), 5),
            None,
            "already on"
        );
    }

    #[test]
    fn a_report_of_the_newest_version_acknowledges_it() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        let s = s.report(1, true, 7).unwrap();
        assert!(s.is_acknowledged());
        assert_eq!(
            s.reported,
            Some(Reported {
                applied_version: 1,
                on: true,
                recorded_at: 7
            })
        );
    }

    #[test]
    fn a_report_of_an_older_version_is_recorded_but_does_not_acknowledge() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        let s = s.set_mode(Mode::Off, None, "user", 2).state;
        let s = s.report(1, true, 3).unwrap();
        assert!(!s.is_acknowledged());
    }

    #[test]
    fn a_report_of_a_version_never_sent_is_refused() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        assert_eq!(
            s.report(5, true, 2),
            Err(ReportError::NeverSent {
                reported: 5,
                sent: 1
            })
        );
        assert_eq!(
            ActuatorState::default().report(1, true, 2),
            Err(ReportError::NeverSent {
                reported: 1,
                sent: 0
            })
        );
    }

    #[test]
    fn an_override_ends_in_auto_only_once_its_time_is_up() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, Some(61_000), "user", 1_000)
            .state;
        assert_eq!(s.override_until, Some(61_000));
        assert_eq!(
            s.desired.as_ref().unwrap().reason,
            "user: SetMode ON for 60 s"
        );
        assert!(!s.override_expired(60_999));
        assert!(s.override_expired(61_000));
        let auto = s
            .set_mode(Mode::Auto, None, "override-expiry", 61_000)
            .state;
        assert_eq!((auto.mode, auto.override_until), (Mode::Auto, None));
        assert!(!auto.override_expired(100_000), "AUTO has nothing to end");
    }

    #[test]
    fn a_plain_on_clears_an_override_without_a_new_version() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, Some(61_000), "user", 1_000)
            .state;
        let t = s.set_mode(Mode::On, None, "user", 2_000);
        assert_eq!(t.publish, None);
        assert_eq!(t.state.override_until, None);
    }

    #[test]
    fn reissue_repeats_the_desired_state_as_the_next_version() {
        let s = ActuatorState::default()
            .set_mode(Mode::On, None, "user", 1)
            .state;
        let t = s.reissue("resend".into(), 9).unwrap();
        assert_eq!(
            t.publish.map(|d| (d.version, d.on, d.issued_at)),
            Some((2, true, 9))
        );
        assert_eq!(ActuatorState::default().reissue("x".into(), 1), None);
    }

    #[test]
    fn command_states_round_trip_and_only_two_are_open() {
        use CommandState::*;
        for c in [Requested, Published, Applied, Expired, Superseded] {
            assert_eq!(CommandState::parse(c.as_str()), Some(c));
            assert_eq!(c.is_open(), matches!(c, Requested | Published));
        }
    }

    #[test]
    fn kinds_and_modes_round_trip_through_their_names() {
        for k in [DeviceKind::Sensor, DeviceKind::Fan, DeviceKind::Light] {
            assert_eq!(DeviceKind::parse(k.as_str()), Some(k));
        }
        for m in [Mode::On, Mode::Off, Mode::Auto] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert!(!DeviceKind::Sensor.is_actuator() && DeviceKind::Fan.is_actuator());
    }
}
