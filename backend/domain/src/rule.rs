//! Threshold rules: switch an actuator on when a sensor metric rises above one
//! value and off when it falls below another (hysteresis, so a reading that
//! hovers at the threshold does not flap the device), with optional timing:
//! a sustain time a crossing must hold before the rule acts, minimum on and
//! off times, and a fail-safe when the sensor falls silent.
//!
//! [`RuleState`] is everything a rule remembers between readings. It is a
//! plain value, persisted after each evaluation, so a restart in the middle of
//! a sustain window resumes the timer instead of forgetting or repeating it.
//! Time only comes in as arguments, so the machine is tested without sleeps.

use hearth_proto::v1::Metric;

use super::{DeviceId, HomeId, RuleId, UnixMs};

/// Longest accepted duration setting: one week.
pub const MAX_DURATION_S: u32 = 7 * 24 * 3600;

/// What a rule does to its device when the sensor falls silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StaleAction {
    /// Leave the device as it is.
    #[default]
    Leave,
    Off,
    On,
}

impl StaleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StaleAction::Leave => "none",
            StaleAction::Off => "off",
            StaleAction::On => "on",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [StaleAction::Leave, StaleAction::Off, StaleAction::On]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    fn switch(self) -> Option<bool> {
        match self {
            StaleAction::Leave => None,
            StaleAction::Off => Some(false),
            StaleAction::On => Some(true),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    pub id: RuleId,
    pub home_id: HomeId,
    pub name: String,
    pub source: DeviceId,
    pub metric: Metric,
    pub target: DeviceId,
    pub on_above: f64,
    pub off_below: f64,
    pub enabled: bool,
    pub min_on_s: u32,
    pub min_off_s: u32,
    pub sustain_s: u32,
    /// 0: the sensor is never considered stale.
    pub stale_after_s: u32,
    pub stale_action: StaleAction,
}

/// Why a rule definition is invalid; names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("rule.metric must be set")]
    NoMetric,
    #[error("rule.on_above and rule.off_below must be finite numbers")]
    NotFinite,
    #[error("rule.off_below ({off_below}) must not be above rule.on_above ({on_above})")]
    OffAboveOn { on_above: f64, off_below: f64 },
    #[error("rule.{field} must be between 0 and {MAX_DURATION_S} seconds, not {value}")]
    Duration { field: &'static str, value: i64 },
    #[error("rule.stale_action needs rule.stale_after_seconds above 0")]
    StaleActionWithoutStaleAfter,
}

/// What a rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SwitchOn,
    SwitchOff,
    /// A crossing seen; waiting for it to hold for the sustain time.
    SustainStarted,
    /// The crossing did not hold.
    SustainCancelled,
    /// A switch is due but the minimum on/off time holds it back.
    Held,
    /// The sensor fell silent; the fail-safe (if any) applies.
    Stale,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SwitchOn => "switch_on",
            Action::SwitchOff => "switch_off",
            Action::SustainStarted => "sustain_started",
            Action::SustainCancelled => "sustain_cancelled",
            Action::Held => "held",
            Action::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use Action::*;
        [
            SwitchOn,
            SwitchOff,
            SustainStarted,
            SustainCancelled,
            Held,
            Stale,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One decision, with the value behind it and whether it switches the device.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDecision {
    pub action: Action,
    pub at: UnixMs,
    /// The reading that made the rule decide (`None` for a stale decision).
    pub value: Option<f64>,
    pub reason: String,
    /// `Some(on)`: the device should now be switched so.
    pub switch: Option<bool>,
}

/// A decision as the decisions log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedDecision {
    pub rule_id: RuleId,
    pub home_id: HomeId,
    pub target: DeviceId,
    pub decision: RuleDecision,
    /// The command it sent (0: none, e.g. the device was not in AUTO).
    pub command_version: u64,
}

/// A crossing waiting for its sustain time or for a minimum on/off time.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub on: bool,
    pub since: UnixMs,
    pub value: f64,
    /// A `Held` decision was already logged for it.
    pub held: bool,
}

/// What a rule remembers between readings.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleState {
    /// What the rule last switched its device to (`None`: not yet).
    pub output: Option<bool>,
    pub switched_at: Option<UnixMs>,
    pub pending: Option<Pending>,
    pub last_reading_at: Option<UnixMs>,
    pub last_value: Option<f64>,
    pub stale: bool,
    /// When the rule started evaluating (staleness counts from here until
    /// the first reading).
    pub started_at: UnixMs,
    /// The last reading evaluated: `(time, seq)`.
    pub cursor: (UnixMs, u64),
}

impl ThresholdRule {
    /// Checks thresholds, metric and durations (ids are checked when parsed).
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.metric == Metric::Unspecified {
            return Err(RuleError::NoMetric);
        }
        if !self.on_above.is_finite() || !self.off_below.is_finite() {
            return Err(RuleError::NotFinite);
        }
        if self.off_below > self.on_above {
            return Err(RuleError::OffAboveOn {
                on_above: self.on_above,
                off_below: self.off_below,
            });
        }
        for (field, value) in [
            ("min_on_seconds", self.min_on_s),
            ("min_off_seconds", self.min_off_s),
            ("sustain_seconds", self.sustain_s),
            ("stale_after_seconds", self.stale_after_s),
        ] {
            if value > MAX_DURATION_S {
                return Err(RuleError::Duration {
                    field,
                    value: value.into(),
                });
            }
        }
        if self.stale_action != StaleAction::Leave && self.stale_after_s == 0 {
            return Err(RuleError::StaleActionWithoutStaleAfter);
        }
        Ok(())
    }

    /// What the target should be given a new `value`: `Some(true)` above the
    /// on threshold, `Some(false)` below the off threshold, `None` in between
    /// (keep whatever it is).
    pub fn decide(&self, value: f64) -> Option<bool> {
        if value > self.on_above {
            Some(true)
        } else if value < self.off_below {
            Some(false)
        } else {
            None
        }
    }

    /// The reason recorded with a decision, e.g. `rule fan-auto: 25.40 > 25`.
    pub fn reason(&self, value: f64, on: bool) -> String {
        if on {
            format!(
                "rule {}: {} {value:.2} > {}",
                self.id,
                self.metric.short_name(),
                self.on_above
            )
        } else {
            format!(
                "rule {}: {} {value:.2} < {}",
                self.id,
                self.metric.short_name(),
                self.off_below
            )
        }
    }

    fn ms(seconds: u32) -> i64 {
        i64::from(seconds) * 1000
    }
}

impl RuleState {
    /// A rule that starts evaluating at `now`; earlier readings are history.
    pub fn new(now: UnixMs) -> Self {
        Self {
            output: None,
            switched_at: None,
            pending: None,
            last_reading_at: None,
            last_value: None,
            stale: false,
            started_at: now,
            cursor: (now, 0),
        }
    }

    /// Evaluates a reading taken at `at` (timers due before it fire first).
    pub fn observe(&mut self, rule: &ThresholdRule, value: f64, at: UnixMs) -> Vec<RuleDecision> {
        let mut out = self.tick(rule, at);
        // Why a reading after silence is not a crossing by itself: the rule
        // compares it with what it last switched to, as before the silence.
        self.stale = false;
        self.last_reading_at = Some(at);
        self.last_value = Some(value);
        match rule.decide(value) {
            Some(want) if Some(want) != self.output => {
                match &self.pending {
                    Some(p) if p.on == want => {}
                    _ => {
                        self.pending = Some(Pending {
                            on: want,
                            since: at,
                            value,
                            held: false,
                        });
                        if rule.sustain_s > 0 {
                            out.push(RuleDecision {
                                action: Action::SustainStarted,
                                at,
                                value: Some(value),
                                reason: format!(
                                    "{}; acting if it holds for {} s",
                                    rule.reason(value, want),
                                    rule.sustain_s
                                ),
                                switch: None,
                            });
                        }
                    }
                }
                out.extend(self.fire_due(rule, at));
            }
            // Back in the dead band, or on the side the device already is.
            _ => {
                if let Some(p) = self.pending.take() {
                    out.push(RuleDecision {
                        action: Action::SustainCancelled,
                        at,
                        value: Some(value),
                        reason: format!(
                            "rule {}: {} {value:.2} no longer {} (crossing at {:.2} did not hold)",
                            rule.id,
                            rule.metric.short_name(),
                            if p.on {
                                format!("> {}", rule.on_above)
                            } else {
                                format!("< {}", rule.off_below)
                            },
                            p.value
                        ),
                        switch: None,
                    });
                }
            }
        }
        out
    }

    /// Fires whatever timer is due at `now`: staleness, a sustained
    /// crossing, or a switch held back by a minimum time.
    pub fn tick(&mut self, rule: &ThresholdRule, now: UnixMs) -> Vec<RuleDecision> {
        if let Some(deadline) = self.stale_deadline(rule) {
            if now >= deadline {
                self.stale = true;
                self.pending = None;
                let switch = rule
                    .stale_action
                    .switch()
                    .filter(|on| Some(*on) != self.output);
                if let Some(on) = switch {
                    self.output = Some(on);
                    self.switched_at = Some(now);
                }
                return vec![RuleDecision {
                    action: Action::Stale,
                    at: now,
                    value: None,
                    reason: format!(
                        "rule {}: no {} from {} for {} s; fail-safe: {}",
                        rule.id,
                        rule.metric.short_name(),
                        rule.source,
                        rule.stale_after_s,
                        match rule.stale_action.switch() {
                            None => "leave the device as it is".to_owned(),
                            Some(on) => format!("switch {}", if on { "on" } else { "off" }),
                        }
                    ),
                    switch,
                }];
            }
        }
        self.fire_due(rule, now)
    }

    /// The earliest time [`RuleState::tick`] has something to do.
    pub fn next_due(&self, rule: &ThresholdRule) -> Option<UnixMs> {
        let pending = self
            .pending
            .as_ref()
            .filter(|_| !self.stale)
            .map(|p| (p.since + ThresholdRule::ms(rule.sustain_s)).max(self.hold_until(rule)));
        match (pending, self.stale_deadline(rule)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn stale_deadline(&self, rule: &ThresholdRule) -> Option<UnixMs> {
        (rule.stale_after_s > 0 && !self.stale).then(|| {
            self.last_reading_at.unwrap_or(self.started_at) + ThresholdRule::ms(rule.stale_after_s)
        })
    }

    /// Until when the minimum on/off time keeps the device as it is.
    fn hold_until(&self, rule: &ThresholdRule) -> UnixMs {
        match (self.output, self.switched_at) {
            (Some(true), Some(t)) => t + ThresholdRule::ms(rule.min_on_s),
            (Some(false), Some(t)) => t + ThresholdRule::ms(rule.min_off_s),
            _ => UnixMs::MIN,
        }
    }

    fn fire_due(&mut self, rule: &ThresholdRule, now: UnixMs) -> Vec<RuleDecision> {
        let hold_until = self.hold_until(rule);
        let last_value = self.last_value;
        let Some(p) = self.pending.as_mut().filter(|_| !self.stale) else {
            return Vec::new();
        };
        if now < p.since + ThresholdRule::ms(rule.sustain_s) {
            return Vec::new();
        }
        let value = last_value.unwrap_or(p.value);
        if now < hold_until {
            if p.held {
                return Vec::new();
            }
            p.held = true;
            return vec![RuleDecision {
                action: Action::Held,
                at: now,
                value: Some(value),
                reason: format!(
                    "{}; held until the minimum {} time ends in {} s",
                    rule.reason(value, p.on),
                    if p.on { "off" } else { "on" },
                    (hold_until - now + 999) / 1000
                ),
                switch: None,
            }];
        }
        let on = p.on;
        self.pending = None;
        self.output = Some(on);
        self.switched_at = Some(now);
        vec![RuleDecision {
            action: if on {
                Action::SwitchOn
            } else {
                Action::SwitchOff
            },
            at: now,
            value: Some(value),
            reason: rule.reason(value, on),
            switch: Some(on),
        }]
    }
}

/// What `rule` would have decided over readings `(time, value)` taken
/// between `start` and `end` (oldest first), timers included. Pure: a dry run.
pub fn replay(
    rule: &ThresholdRule,
    start: UnixMs,
    readings: impl IntoIterator<Item = (UnixMs, f64)>,
    end: UnixMs,
) -> Vec<RuleDecision> {
    let mut state = RuleState::new(start);
    let mut out = Vec::new();
    let run_timers_until = |state: &mut RuleState, out: &mut Vec<RuleDecision>, until| {
        // Each tick at its due time moves the state on; the bound is a guard.
        for _ in 0..16 {
            match state.next_due(rule) {
                Some(due) if due <= until => out.extend(state.tick(rule, due)),
                _ => break,
            }
        }
    };
    for (at, value) in readings {
        run_timers_until(&mut state, &mut out, at);
        out.extend(state.observe(rule, value, at));
    }
    run_timers_until(&mut state, &mut out, end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(on_above: f64, off_below: f64) -> ThresholdRule {
        ThresholdRule {
            id: RuleId::parse("r1", "id").unwrap(),
            home_id: HomeId::parse("h", "home_id").unwrap(),
            name: "fan above 25".into(),
            source: DeviceId::parse("sensor", "s").unwrap(),
            metric: Metric::TemperatureCelsius,
            target: DeviceId::parse("fan", "t").unwrap(),
            on_above,
            off_below,
            enabled: true,
            min_on_s: 0,
            min_off_s: 0,
            sustain_s: 0,
            stale_after_s: 0,
            stale_action: StaleAction::Leave,
        }
    }

    /// Feeds `(time, value)` readings and returns the actions with their times.
    fn run(r: &ThresholdRule, s: &mut RuleState, readings: &[(i64, f64)]) -> Vec<(i64, Action)> {
        readings
            .iter()
            .flat_map(|&(t, v)| s.observe(r, v, t))
            .map(|d| (d.at, d.action))
            .collect()
    }

    #[test]
    fn without_timing_the_first_crossing_switches_at_once_and_only_once() {
        let r = rule(25.0, 24.0);
        let mut s = RuleState::new(0);
        assert_eq!(
            run(
                &r,
                &mut s,
                &[(1, 24.5), (2, 25.5), (3, 26.0), (4, 24.5), (5, 23.0)]
            ),
            vec![(2, Action::SwitchOn), (5, Action::SwitchOff)]
        );
    }

    #[test]
    fn a_sustained_crossing_acts_when_the_sustain_time_is_up_even_without_a_reading() {
        let r = ThresholdRule {
            sustain_s: 10,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        assert_eq!(
            run(&r, &mut s, &[(1_000, 26.0), (5_000, 26.5)]),
            vec![(1_000, Action::SustainStarted)]
        );
        assert_eq!(s.next_due(&r), Some(11_000));
        assert!(s.tick(&r, 10_999).is_empty());
        let fired = s.tick(&r, 11_000);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].action, fired[0].switch, fired[0].value),
            (Action::SwitchOn, Some(true), Some(26.5))
        );
        assert!(s.tick(&r, 20_000).is_empty(), "fires once");
    }

    #[test]
    fn a_crossing_that_does_not_hold_is_cancelled() {
        let r = ThresholdRule {
            sustain_s: 10,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        assert_eq!(
            run(&r, &mut s, &[(1_000, 26.0), (4_000, 24.5), (20_000, 24.6)]),
            vec![
                (1_000, Action::SustainStarted),
                (4_000, Action::SustainCancelled)
            ]
        );
        assert_eq!(s.output, None);
    }

    #[test]
    fn a_persisted_state_resumes_its_sustain_timer() {
        // What a restart does: the state is stored, then read back later.
        let r = ThresholdRule {
            sustain_s: 10,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        s.observe(&r, 26.0, 1_000);
        let mut restored = s.clone();
        let fired = restored.tick(&r, 12_000);
        assert_eq!(
            fired.iter().map(|d| d.action).collect::<Vec<_>>(),
            vec![Action::SwitchOn]
        );
        assert_eq!(fired[0].at, 12_000);
    }

    #[test]
    fn minimum_on_time_holds_the_off_switch_until_it_ends() {
        let r = ThresholdRule {
            min_on_s: 60,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        assert_eq!(
            run(&r, &mut s, &[(1_000, 26.0), (10_000, 23.0), (20_000, 22.0)]),
            vec![(1_000, Action::SwitchOn), (10_000, Action::Held)]
        );
        assert_eq!(s.next_due(&r), Some(61_000));
        let fired = s.tick(&r, 61_000);
        assert_eq!(
            (fired[0].action, fired[0].value),
            (Action::SwitchOff, Some(22.0))
        );
    }

    #[test]
    fn a_held_switch_is_dropped_when_the_value_returns() {
        let r = ThresholdRule {
            min_off_s: 60,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        s.observe(&r, 23.0, 1_000);
        assert_eq!(
            run(&r, &mut s, &[(2_000, 26.0), (3_000, 24.5)]),
            vec![(2_000, Action::Held), (3_000, Action::SustainCancelled)]
        );
        assert!(s.tick(&r, 100_000).is_empty());
    }

    #[test]
    fn a_silent_sensor_goes_stale_once_and_the_fail_safe_switches() {
        let r = ThresholdRule {
            stale_after_s: 30,
            stale_action: StaleAction::Off,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        s.observe(&r, 26.0, 1_000);
        assert_eq!(s.next_due(&r), Some(31_000));
        let d = s.tick(&r, 31_000);
        assert_eq!((d[0].action, d[0].switch), (Action::Stale, Some(false)));
        assert!(s.tick(&r, 90_000).is_empty(), "stale once");
        // Back, still hot: the rule switches on again as a new decision.
        assert_eq!(
            run(&r, &mut s, &[(95_000, 26.0)]),
            vec![(95_000, Action::SwitchOn)]
        );
    }

    #[test]
    fn coming_back_from_stale_is_not_a_crossing_by_itself() {
        let r = ThresholdRule {
            stale_after_s: 30,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(0);
        s.observe(&r, 26.0, 1_000);
        assert_eq!(s.tick(&r, 31_000)[0].switch, None, "leave as is");
        assert!(
            run(&r, &mut s, &[(60_000, 26.0)]).is_empty(),
            "still on: nothing to do"
        );
        assert!(!s.stale);
    }

    #[test]
    fn staleness_counts_from_the_start_when_no_reading_ever_came() {
        let r = ThresholdRule {
            stale_after_s: 5,
            stale_action: StaleAction::On,
            ..rule(25.0, 24.0)
        };
        let mut s = RuleState::new(100);
        assert!(s.tick(&r, 5_099).is_empty());
        assert_eq!(s.tick(&r, 5_100)[0].switch, Some(true));
    }

    #[test]
    fn rejects_bad_durations_naming_the_field() {
        let r = ThresholdRule {
            sustain_s: MAX_DURATION_S + 1,
            ..rule(25.0, 24.0)
        };
        assert_eq!(
            r.validate(),
            Err(RuleError::Duration {
                field: "sustain_seconds",
                value: i64::from(MAX_DURATION_S) + 1
            })
        );
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rule.sustain_seconds"));
        let r = ThresholdRule {
            stale_action: StaleAction::Off,
            ..rule(25.0, 24.0)
        };
        assert_eq!(r.validate(), Err(RuleError::StaleActionWithoutStaleAfter));
    }

    #[test]
    fn replay_includes_timers_between_and_after_readings() {
        let r = ThresholdRule {
            sustain_s: 10,
            stale_after_s: 60,
            stale_action: StaleAction::Off,
            ..rule(25.0, 24.0)
        };
        let d = replay(&r, 0, [(1_000, 26.0), (5_000, 26.2)], 200_000);
        let got: Vec<_> = d.iter().map(|d| (d.at, d.action, d.switch)).collect();
        assert_eq!(
            got,
            vec![
                (1_000, Action::SustainStarted, None),
                (11_000, Action::SwitchOn, Some(true)),
                (65_000, Action::Stale, Some(false)),
            ]
        );
    }

    #[test]
    fn actions_and_stale_actions_round_trip_through_their_names() {
        use Action::*;
        for a in [
            SwitchOn,
            SwitchOff,
            SustainStarted,
            SustainCancelled,
            Held,
            Stale,
        ] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        for a in [StaleAction::Leave, StaleAction::Off, StaleAction::On] {
            assert_eq!(StaleAction::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn switches_on_above_and_off_below_with_a_dead_band_between() {
        let r = rule(25.0, 24.0);
        assert_eq!(r.decide(25.1), Some(true));
        assert_eq!(r.decide(25.0), None, "at the threshold is not above it");
        assert_eq!(r.decide(24.5), None);
        assert_eq!(r.decide(23.9), Some(false));
    }

    #[test]
    fn equal_thresholds_are_a_plain_threshold() {
        let r = rule(25.0, 25.0);
        assert_eq!(r.decide(25.01), Some(true));
        assert_eq!(r.decide(24.99), Some(false));
    }

    #[test]
    fn rejects_off_threshold_above_on_threshold_and_missing_metric() {
        assert_eq!(
            rule(24.0, 25.0).validate(),
            Err(RuleError::OffAboveOn {
                on_above: 24.0,
                off_below: 25.0
            })
        );
        assert_eq!(rule(f64::NAN, 1.0).validate(), Err(RuleError::NotFinite));
        assert_eq!(
            ThresholdRule {
                metric: Metric::Unspecified,
                ..rule(25.0, 24.0)
            }
            .validate(),
            Err(RuleError::NoMetric)
        );
        assert_eq!(rule(25.0, 24.0).validate(), Ok(()));
    }

    #[test]
    fn reasons_name_the_rule_value_and_threshold() {
        assert_eq!(
            rule(25.0, 24.0).reason(25.4, true),
            "rule r1: temperature_celsius 25.40 > 25"
        );
        assert_eq!(
            rule(25.0, 24.0).reason(23.0, false),
            "rule r1: temperature_celsius 23.00 < 24"
        );
    }
}
