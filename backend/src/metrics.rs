//! Counters of what the backend did, rendered for Prometheus at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// MQTT messages dropped for a bad topic or payload.
    pub mqtt_rejected: Counter,
    /// Reading batches rejected by validation or for an unknown device.
    pub batches_rejected: Counter,
    /// Readings newly stored.
    pub readings_stored: Counter,
    /// Readings received again and not stored twice.
    pub readings_duplicate: Counter,
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
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "hearth_mqtt_rejected_total",
                "MQTT messages dropped for a bad topic or payload",
                &self.mqtt_rejected,
            ),
            (
                "hearth_batches_rejected_total",
                "Reading batches rejected",
                &self.batches_rejected,
            ),
            (
                "hearth_readings_stored_total",
                "Readings stored",
                &self.readings_stored,
            ),
            (
                "hearth_readings_duplicate_total",
                "Readings received again and not stored twice",
                &self.readings_duplicate,
            ),
            (
                "hearth_ingest_commits_total",
                "Ingest transactions committed",
                &self.ingest_commits,
            ),
            (
                "hearth_ingest_commit_failures_total",
                "Ingest transactions that failed and were retried",
                &self.ingest_commit_failures,
            ),
            (
                "hearth_commands_published_total",
                "Desired states published to devices",
                &self.commands_published,
            ),
            (
                "hearth_commands_acknowledged_total",
                "Desired states acknowledged by devices",
                &self.commands_acknowledged,
            ),
            (
                "hearth_reports_rejected_total",
                "Reported states naming a version never sent",
                &self.reports_rejected,
            ),
            (
                "hearth_rule_actions_total",
                "Rule decisions that switched a device",
                &self.rule_actions,
            ),
        ];
        let mut out = String::new();
        for (name, help, counter) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                counter.get()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_in_prometheus_text_format() {
        let m = Metrics::default();
        m.mqtt_rejected.inc();
        m.readings_stored.add(41);
        m.readings_stored.inc();
        let text = m.render();
        assert!(
            text.contains(
                "# TYPE hearth_mqtt_rejected_total counter\nhearth_mqtt_rejected_total 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nhearth_readings_stored_total 42\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 10);
    }
}
