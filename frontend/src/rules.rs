//! A threshold rule as the form edits it ([`RuleDraft`]: what the fields
//! hold, checked into a `Rule` with a message naming the field at fault), and
//! the stretches a dry run says the device would have been on. Pure, tested
//! natively.

use hearth_proto::v1::{Decision, DecisionAction, Metric, Rule, StaleAction};

/// The rule form's fields, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    /// Empty for a rule not saved yet.
    pub id: String,
    pub name: String,
    pub source_device_id: String,
    pub metric: Metric,
    pub target_device_id: String,
    pub on_above: String,
    pub off_below: String,
    pub min_on_seconds: String,
    pub min_off_seconds: String,
    pub sustain_seconds: String,
    pub stale_after_seconds: String,
    pub stale_action: StaleAction,
    pub enabled: bool,
}

impl Default for RuleDraft {
    /// The paper's rule: a fan on above 25 °C, off below 24.5 °C.
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            source_device_id: String::new(),
            metric: Metric::TemperatureCelsius,
            target_device_id: String::new(),
            on_above: "25".into(),
            off_below: "24.5".into(),
            min_on_seconds: "0".into(),
            min_off_seconds: "0".into(),
            sustain_seconds: "0".into(),
            stale_after_seconds: "0".into(),
            stale_action: StaleAction::Unspecified,
            enabled: true,
        }
    }
}

impl From<&Rule> for RuleDraft {
    fn from(rule: &Rule) -> Self {
        Self {
            id: rule.id.clone(),
            name: rule.name.clone(),
            source_device_id: rule.source_device_id.clone(),
            metric: rule.metric(),
            target_device_id: rule.target_device_id.clone(),
            on_above: crate::number::trimmed(rule.on_above),
            off_below: crate::number::trimmed(rule.off_below),
            min_on_seconds: rule.min_on_seconds.to_string(),
            min_off_seconds: rule.min_off_seconds.to_string(),
            sustain_seconds: rule.sustain_seconds.to_string(),
            stale_after_seconds: rule.stale_after_seconds.to_string(),
            stale_action: rule.stale_action(),
            enabled: rule.enabled,
        }
    }
}

impl RuleDraft {
    /// The rule of `home_id` these fields describe, or what is wrong with them.
    pub fn to_rule(&self, home_id: &str) -> Result<Rule, String> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err("Name: give the rule a name.".into());
        }
        if self.source_device_id.is_empty() {
            return Err("Sensor: choose the sensor the rule reads.".into());
        }
        if self.metric == Metric::Unspecified {
            return Err("Metric: choose what the rule reads.".into());
        }
        if self.target_device_id.is_empty() {
            return Err("Device: choose the fan or light the rule switches.".into());
        }
        let on_above = number("On above", &self.on_above)?;
        let off_below = number("Off below", &self.off_below)?;
        if off_below > on_above {
            return Err(format!(
                "Off below: must not be above \"on above\" ({}), or the device would flap.",
                crate::number::trimmed(on_above)
            ));
        }
        Ok(Rule {
            id: self.id.clone(),
            home_id: home_id.to_owned(),
            name: name.to_owned(),
            source_device_id: self.source_device_id.clone(),
            metric: self.metric as i32,
            target_device_id: self.target_device_id.clone(),
            on_above,
            off_below,
            enabled: self.enabled,
            min_on_seconds: seconds("Minimum on", &self.min_on_seconds)?,
            min_off_seconds: seconds("Minimum off", &self.min_off_seconds)?,
            sustain_seconds: seconds("Sustain", &self.sustain_seconds)?,
            stale_after_seconds: seconds("Stale after", &self.stale_after_seconds)?,
            stale_action: self.stale_action as i32,
        })
    }
}

fn number(field: &str, text: &str) -> Result<f64, String> {
    crate::number::parse(text.trim())
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{field}: enter a number, e.g. 25 or 24.5."))
}

fn seconds(field: &str, text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u32>()
        .map_err(|_| format!("{field}: enter whole seconds (0 for none)."))
}

/// The stretches `[from, to)` of `[start, end)` in which a device switched by
/// `decisions` (oldest first) of a rule with fail-safe `stale` is on,
/// starting from `on_at_start`.
pub fn on_spans(
    decisions: &[Decision],
    (start, end): (i64, i64),
    on_at_start: bool,
    stale: StaleAction,
) -> Vec<(i64, i64)> {
    let mut spans = Vec::new();
    let mut on_since = on_at_start.then_some(start);
    for decision in decisions {
        let switch_on = match (decision.action(), stale) {
            (DecisionAction::SwitchOn, _) | (DecisionAction::Stale, StaleAction::On) => true,
            (DecisionAction::SwitchOff, _) | (DecisionAction::Stale, StaleAction::Off) => false,
            _ => continue,
        };
        let at = decision.time_unix_ms.clamp(start, end);
        match (switch_on, on_since) {
            (true, None) => on_since = Some(at),
            (false, Some(since)) => {
                if at > since {
                    spans.push((since, at));
                }
                on_since = None;
            }
            _ => {}
        }
    }
    if let Some(since) = on_since {
        if end > since {
            spans.push((since, end));
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> RuleDraft {
        RuleDraft {
            name: " Fan above 25 ".into(),
            source_device_id: "s1".into(),
            target_device_id: "fan".into(),
            min_on_seconds: "60".into(),
            sustain_seconds: "".into(),
            stale_after_seconds: "300".into(),
            stale_action: StaleAction::Off,
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_draft_becomes_a_rule_of_the_home() {
        let rule = valid().to_rule("h1").expect("valid");
        assert_eq!(rule.home_id, "h1");
        assert_eq!(rule.name, "Fan above 25");
        assert_eq!((rule.on_above, rule.off_below), (25.0, 24.5));
        assert_eq!(rule.min_on_seconds, 60);
        assert_eq!(rule.sustain_seconds, 0);
        assert_eq!(rule.stale_after_seconds, 300);
        assert_eq!(rule.stale_action(), StaleAction::Off);
        assert!(rule.enabled);
    }

    #[test]
    fn a_rule_survives_the_round_trip_through_the_form() {
        let rule = valid().to_rule("h1").expect("valid");
        assert_eq!(RuleDraft::from(&rule).to_rule("h1"), Ok(rule));
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let mut draft = valid();
        draft.on_above = "hot".into();
        assert!(draft.to_rule("h").unwrap_err().starts_with("On above:"));

        let mut draft = valid();
        draft.off_below = "26".into();
        assert!(draft.to_rule("h").unwrap_err().starts_with("Off below:"));

        let mut draft = valid();
        draft.min_off_seconds = "-5".into();
        assert!(draft.to_rule("h").unwrap_err().starts_with("Minimum off:"));

        let mut draft = valid();
        draft.target_device_id.clear();
        assert!(draft.to_rule("h").unwrap_err().starts_with("Device:"));

        let mut draft = valid();
        draft.name = "  ".into();
        assert!(draft.to_rule("h").unwrap_err().starts_with("Name:"));
    }

    fn decision(action: DecisionAction, time_unix_ms: i64) -> Decision {
        Decision {
            action: action as i32,
            time_unix_ms,
            ..Default::default()
        }
    }

    #[test]
    fn on_spans_run_from_each_switch_on_to_the_next_switch_off() {
        let decisions = [
            decision(DecisionAction::SwitchOn, 10),
            decision(DecisionAction::Held, 15),
            decision(DecisionAction::SwitchOff, 20),
            decision(DecisionAction::SwitchOn, 40),
        ];
        let off = StaleAction::Off;
        assert_eq!(
            on_spans(&decisions, (0, 100), false, off),
            [(10, 20), (40, 100)]
        );
        assert_eq!(
            on_spans(
                &[decision(DecisionAction::SwitchOff, 30)],
                (0, 100),
                true,
                off
            ),
            [(0, 30)]
        );
        assert!(on_spans(&[], (0, 100), false, off).is_empty());
    }

    #[test]
    fn a_stale_sensor_applies_the_rules_fail_safe() {
        let decisions = [
            decision(DecisionAction::SwitchOn, 10),
            decision(DecisionAction::Stale, 50),
        ];
        assert_eq!(
            on_spans(&decisions, (0, 100), false, StaleAction::Off),
            [(10, 50)]
        );
        assert_eq!(
            on_spans(&decisions, (0, 100), false, StaleAction::Unspecified),
            [(10, 100)]
        );
    }
}
