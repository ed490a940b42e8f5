//! Prometheus metrics through `prometheus-client`: each binary registers its
//! metrics in one [`Registry`] and serves [`encode`]'s text at `/metrics`.

pub use prometheus_client::{
    encoding::text::encode as encode_into,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

/// The content type of [`encode`]'s text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The text exposition of every metric in `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Why ignore: writing to a String cannot fail.
    let _ = encode_into(&mut text, registry);
    text
}

/// Histogram buckets for durations in seconds, from 100 µs to 10 s.
pub const LATENCY_SECONDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// A GET route answering `registry`'s text, for the binary's axum router.
#[cfg(feature = "http")]
pub fn route<S: Clone + Send + Sync + 'static>(
    registry: std::sync::Arc<Registry>,
) -> axum::routing::MethodRouter<S> {
    axum::routing::get(move || {
        let registry = registry.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                encode(&registry),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_gauges_and_histograms() {
        let mut registry = Registry::default();
        let stored = Counter::<u64>::default();
        let depth = Gauge::<i64>::default();
        let commit = Histogram::new(LATENCY_SECONDS);
        registry.register("hearth_readings_stored", "Readings stored", stored.clone());
        registry.register("hearth_queue_depth", "Queue depth", depth.clone());
        registry.register("hearth_commit_seconds", "Commit time", commit.clone());
        stored.inc_by(42);
        depth.set(7);
        commit.observe(0.0007);
        let text = encode(&registry);
        for line in [
            "# TYPE hearth_readings_stored counter",
            "hearth_readings_stored_total 42",
            "hearth_queue_depth 7",
            "hearth_commit_seconds_bucket{le=\"0.0005\"} 0",
            "hearth_commit_seconds_bucket{le=\"0.001\"} 1",
            "hearth_commit_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
