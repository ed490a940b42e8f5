//! Threshold rules: switch an actuator on when a sensor metric rises above one
//! value and off when it falls below another (hysteresis, so a reading that
//! hovers at the threshold does not flap the device).

use hearth_proto::v1::Metric;

use super::{DeviceId, HomeId, RuleId};

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
}

impl ThresholdRule {
    /// Checks the thresholds and metric (ids are checked when parsed).
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
