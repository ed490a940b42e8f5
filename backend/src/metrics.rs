//! What the backend counts, registered once in a `prometheus-client`
//! registry and served at `/metrics` (see `hearth_runtime::metrics`).

use hearth_runtime::metrics::{
    encode, Counter, Family, Gauge, Histogram, Metric, Registry, LATENCY_SECONDS,
};

/// The `home` label: per home, never per device, so the series stay few.
pub type HomeLabel = [(&'static str, String); 1];

/// Readings per commit.
const BATCH_BOUNDS: [f64; 7] = [1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// MQTT messages dropped for a bad topic or payload.
    pub mqtt_rejected: Counter,
    /// Reading batches rejected by validation or for an unknown device.
    pub batches_rejected: Counter,
    /// Readings newly stored.
    pub readings_stored: Counter,
    /// Readings received again and not stored twice, and readings stored
    /// after a higher number of their metric (each filled a gap), per home
    /// (`domain::delivery::arrivals`).
    pub readings_duplicate: Family<HomeLabel, Counter>,
    pub readings_late: Family<HomeLabel, Counter>,
    /// Ingest commits, and their failures (each retried).
    pub ingest_commits: Counter,
    pub ingest_commit_failures: Counter,
    /// Desired states published, and reports acknowledging them.
    pub commands_published: Counter,
    pub commands_acknowledged: Counter,
    /// Reports naming a version never sent.
    pub reports_rejected: Counter,
    /// Rule decisions that changed a desired state.
    pub rule_actions: Counter,
    /// Commands whose time-to-live passed before the device applied them.
    pub commands_expired: Counter,
    /// SetMode or rule decision to the device's acknowledgement stored.
    pub command_round_trip: Histogram,
    /// Time to commit one ingest transaction, and its size.
    pub ingest_commit_seconds: Histogram,
    pub ingest_batch_readings: Histogram,
    /// Items waiting in the ingest queue.
    pub ingest_queue_depth: Gauge,
    /// 1 while this replica holds the automation lease.
    pub automation_leader: Gauge,
    /// This replica's broker connections that are lost (0 when all is well).
    pub mqtt_lanes_down: Gauge,
    /// Messages the broker says it dropped (all clients), since this replica
    /// started watching.
    pub broker_dropped: Counter,
    /// Readings sensors sent, by their sequence numbers, and of those the
    /// ones never stored (`delivery::run_audit`), per home.
    pub readings_expected: Family<HomeLabel, Counter>,
    pub readings_missing: Family<HomeLabel, Counter>,
    /// Device messages dropped for coming faster than the device's rate.
    pub device_messages_throttled: Counter,
    /// API calls refused by a caller's limits (`limits.rs`), by reason.
    pub requests_refused: Family<crate::limits::ReasonLabel, Counter>,
    /// What the embedded broker's guard refused (`mqtt::guard`), by reason
    /// (`BrokerRefusal::as_str`): connections, publishes, subscriptions.
    pub mqtt_refused: Family<MqttRefusedLabel, Counter>,
}

/// The `reason` label of `hearth_mqtt_refused_total`.
pub type MqttRefusedLabel = [(&'static str, &'static str); 1];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let counter = Counter::default;
        let gauge = Gauge::default;
        Self {
            mqtt_rejected: registered(
                r,
                "hearth_mqtt_rejected",
                "MQTT messages dropped for a bad topic or payload",
                counter(),
            ),
            batches_rejected: registered(
                r,
                "hearth_batches_rejected",
                "Reading batches rejected",
                counter(),
            ),
            readings_stored: registered(r, "hearth_readings_stored", "Readings stored", counter()),
            readings_duplicate: registered(
                r,
                "hearth_readings_duplicate",
                "Readings received again and not stored twice",
                Family::default(),
            ),
            readings_late: registered(
                r,
                "hearth_readings_late",
                "Readings stored after a higher number of their device's metric: each filled a gap",
                Family::default(),
            ),
            ingest_commits: registered(
                r,
                "hearth_ingest_commits",
                "Ingest transactions committed",
                counter(),
            ),
            ingest_commit_failures: registered(
                r,
                "hearth_ingest_commit_failures",
                "Ingest transactions that failed and were retried",
                counter(),
            ),
            commands_published: registered(
                r,
                "hearth_commands_published",
                "Desired states published to devices",
                counter(),
            ),
            commands_acknowledged: registered(
                r,
                "hearth_commands_acknowledged",
                "Desired states acknowledged by devices",
                counter(),
            ),
            reports_rejected: registered(
                r,
                "hearth_reports_rejected",
                "Reported states naming a version never sent",
                counter(),
            ),
            rule_actions: registered(
                r,
                "hearth_rule_actions",
                "Rule decisions that switched a device",
                counter(),
            ),
            commands_expired: registered(
                r,
                "hearth_commands_expired",
                "Commands whose time-to-live passed unapplied",
                counter(),
            ),
            command_round_trip: registered(
                r,
                "hearth_command_round_trip_seconds",
                "Command requested to its acknowledgement stored",
                Histogram::new(LATENCY_SECONDS),
            ),
            ingest_commit_seconds: registered(
                r,
                "hearth_ingest_commit_seconds",
                "Ingest transaction commit time",
                Histogram::new(LATENCY_SECONDS),
            ),
            ingest_batch_readings: registered(
                r,
                "hearth_ingest_batch_readings",
                "Readings per ingest transaction",
                Histogram::new(BATCH_BOUNDS),
            ),
            ingest_queue_depth: registered(
                r,
                "hearth_ingest_queue_depth",
                "Reading batches waiting for the ingest writer",
                gauge(),
            ),
            automation_leader: registered(
                r,
                "hearth_automation_leader",
                "1 while this replica runs the automation rules",
                gauge(),
            ),
            broker_dropped: registered(
                r,
                "hearth_broker_dropped",
                "Messages the broker reports it dropped (all its clients), seen by this replica",
                counter(),
            ),
            readings_expected: registered(
                r,
                "hearth_readings_expected",
                "Readings sensors sent, by their sequence numbers (counted by the delivery lease holder)",
                Family::default(),
            ),
            readings_missing: registered(
                r,
                "hearth_readings_missing",
                "Readings sensors sent that were never stored (counted by the delivery lease holder)",
                Family::default(),
            ),
            device_messages_throttled: registered(
                r,
                "hearth_device_messages_throttled",
                "Device messages dropped for exceeding HEARTH_DEVICE_MESSAGES_PER_SECOND",
                counter(),
            ),
            requests_refused: registered(
                r,
                "hearth_requests_refused",
                "API calls refused by a caller's limits: rate or streams",
                Family::default(),
            ),
            mqtt_lanes_down: registered(
                r,
                "hearth_mqtt_lanes_down",
                "Broker connections of this replica that are lost",
                gauge(),
            ),
            mqtt_refused: {
                let family: Family<MqttRefusedLabel, Counter> = Family::default();
                // Why every reason at 0: an alert on a rate needs the series
                // before the first refusal.
                for reason in crate::domain::BrokerRefusal::ALL {
                    let _ = family.get_or_create(&[("reason", reason.as_str())]);
                }
                registered(
                    r,
                    "hearth_mqtt_refused",
                    "MQTT connections, publishes and subscriptions the embedded broker's guard refused",
                    family,
                )
            },
            registry,
        }
    }
}

/// `metric`, after adding it to `registry` under `name`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Counts one refusal by the broker's guard.
    pub fn mqtt_refused(&self, reason: crate::domain::BrokerRefusal) {
        self.mqtt_refused
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_in_prometheus_text_format() {
        let m = Metrics::default();
        m.mqtt_rejected.inc();
        m.readings_stored.inc_by(41);
        m.readings_stored.inc();
        let text = m.render();
        assert!(
            text.contains("# TYPE hearth_mqtt_rejected counter\nhearth_mqtt_rejected_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nhearth_readings_stored_total 42\n"),
            "{text}"
        );
        let counter_lines = text
            .lines()
            .filter(|l| l.split(' ').next().is_some_and(|n| n.ends_with("_total")))
            .count();
        // Every plain counter; a family (per home, per reason) shows only
        // the labels it has counted...
        assert_eq!(counter_lines, 12);
        // ...but for the guard's refusals, every reason from the start.
        let refusals = text
            .lines()
            .filter(|l| l.starts_with("hearth_mqtt_refused_total{reason="))
            .count();
        assert_eq!(refusals, crate::domain::BrokerRefusal::ALL.len());
        assert!(
            text.contains("\nhearth_mqtt_refused_total{reason=\"subscribe\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn late_and_duplicate_readings_are_counted_per_home() {
        let m = Metrics::default();
        let home = |h: &str| [("home", h.to_owned())];
        m.readings_late.get_or_create(&home("a")).inc_by(3);
        m.readings_duplicate.get_or_create(&home("b")).inc();
        let text = m.render();
        for line in [
            "hearth_readings_late_total{home=\"a\"} 3",
            "hearth_readings_duplicate_total{home=\"b\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        m.command_round_trip.observe(0.0007);
        m.command_round_trip.observe(0.003);
        m.command_round_trip.observe(100.0);
        let text = m.render();
        for line in [
            "hearth_command_round_trip_seconds_bucket{le=\"0.0005\"} 0",
            "hearth_command_round_trip_seconds_bucket{le=\"0.001\"} 1",
            "hearth_command_round_trip_seconds_bucket{le=\"0.005\"} 2",
            "hearth_command_round_trip_seconds_bucket{le=\"10.0\"} 2",
            "hearth_command_round_trip_seconds_bucket{le=\"+Inf\"} 3",
            "hearth_command_round_trip_seconds_count 3",
            "hearth_command_round_trip_seconds_sum 100.0037",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
