//! Counters, gauges and histograms of what the backend did, rendered for
//! Prometheus at `/metrics`.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
};

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

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed upper bounds (cumulative, as Prometheus wants).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus +Inf.
    buckets: Vec<AtomicU64>,
    /// Sum in millionths of the unit, so it stays an integer.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observes a duration given in microseconds, in seconds.
    pub fn observe_us(&self, us: u64) {
        self.observe(us as f64 / 1e6);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_sum {sum}\n{name}_count {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// Seconds, from 100 µs to 10 s.
const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
/// Readings per commit.
const BATCH_BOUNDS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0];

#[derive(Debug)]
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            mqtt_rejected: Counter::default(),
            batches_rejected: Counter::default(),
            readings_stored: Counter::default(),
            readings_duplicate: Counter::default(),
            ingest_commits: Counter::default(),
            ingest_commit_failures: Counter::default(),
            commands_published: Counter::default(),
            commands_acknowledged: Counter::default(),
            reports_rejected: Counter::default(),
            rule_actions: Counter::default(),
            commands_expired: Counter::default(),
            command_round_trip: Histogram::new(LATENCY_BOUNDS),
            ingest_commit_seconds: Histogram::new(LATENCY_BOUNDS),
            ingest_batch_readings: Histogram::new(BATCH_BOUNDS),
            ingest_queue_depth: Gauge::default(),
            automation_leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let counters: [(&str, &str, &Counter); 11] = [
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
            (
                "hearth_commands_expired_total",
                "Commands whose time-to-live passed unapplied",
                &self.commands_expired,
            ),
        ];
        let mut out = String::new();
        for (name, help, counter) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                counter.get()
            ));
        }
        for (name, help, gauge) in [
            (
                "hearth_ingest_queue_depth",
                "Reading batches waiting for the ingest writer",
                &self.ingest_queue_depth,
            ),
            (
                "hearth_automation_leader",
                "1 while this replica runs the automation rules",
                &self.automation_leader,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                gauge.get()
            );
        }
        self.command_round_trip.render(
            &mut out,
            "hearth_command_round_trip_seconds",
            "Command requested to its acknowledgement stored",
        );
        self.ingest_commit_seconds.render(
            &mut out,
            "hearth_ingest_commit_seconds",
            "Ingest transaction commit time",
        );
        self.ingest_batch_readings.render(
            &mut out,
            "hearth_ingest_batch_readings",
            "Readings per ingest transaction",
        );
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
        let counter_lines = text
            .lines()
            .filter(|l| l.split(' ').next().is_some_and(|n| n.ends_with("_total")))
            .count();
        assert_eq!(counter_lines, 11);
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        m.command_round_trip.observe_us(700);
        m.command_round_trip.observe_us(3_000);
        m.command_round_trip.observe(100.0);
        let text = m.render();
        for line in [
            "hearth_command_round_trip_seconds_bucket{le=\"0.0005\"} 0",
            "hearth_command_round_trip_seconds_bucket{le=\"0.001\"} 1",
            "hearth_command_round_trip_seconds_bucket{le=\"0.005\"} 2",
            "hearth_command_round_trip_seconds_bucket{le=\"10\"} 2",
            "hearth_command_round_trip_seconds_bucket{le=\"+Inf\"} 3",
            "hearth_command_round_trip_seconds_count 3",
            "hearth_command_round_trip_seconds_sum 100.0037",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
