//! The gateway's Prometheus endpoint: `GET /metrics`, a `prometheus-client`
//! registry (see `hearth_runtime::metrics`) served by axum.
//!
//! The counters are [`Counters`], which the gateway's tasks increment. The
//! queue's figures (batches, readings, bytes, and the age of the oldest
//! unsent batch, by that batch's own timestamp) are gauges set at scrape
//! time, since reading them takes the queue's lock and a read from disk.

use std::sync::{atomic::AtomicU64, Arc, Mutex};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use hearth_runtime::{
    metrics::{encode, Gauge, Registry, CONTENT_TYPE},
    unix_ms_now,
};
use tokio::net::TcpListener;
use tracing::warn;

use crate::{Backlog, Counters, DropReason};

/// Where the figures come from.
#[derive(Clone)]
pub struct Sources {
    pub queue: Arc<Mutex<Backlog>>,
    pub counters: Arc<Counters>,
    pub max_queue_bytes: u64,
}

/// The registry of every gateway metric, and the queue's gauges in it.
pub struct Exporter {
    registry: Registry,
    queue: Arc<Mutex<Backlog>>,
    queue_batches: Gauge,
    queue_readings: Gauge,
    queue_bytes: Gauge,
    oldest_unsent_age_seconds: Gauge<f64, AtomicU64>,
}

impl Exporter {
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::default();
        let c = &sources.counters;
        for (name, help, counter) in [
            (
                "hearth_gateway_datagrams_received",
                "UDP datagrams received, valid or not",
                &c.received,
            ),
            (
                "hearth_gateway_accepted_batches",
                "Reading batches (datagrams) appended to the durable queue",
                &c.accepted_batches,
            ),
            (
                "hearth_gateway_accepted_readings",
                "Readings in the batches appended to the durable queue",
                &c.accepted_readings,
            ),
            (
                "hearth_gateway_forwarded_batches",
                "Reading batches the backend stored",
                &c.forwarded_batches,
            ),
            (
                "hearth_gateway_forwarded_readings",
                "Readings the backend stored",
                &c.forwarded_readings,
            ),
            (
                "hearth_gateway_accepted_accounts",
                "Sensors' run accounts (what a run sent) appended to the durable queue",
                &c.accepted_accounts,
            ),
            (
                "hearth_gateway_forwarded_accounts",
                "Sensors' run accounts the backend recorded",
                &c.forwarded_accounts,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        // Why every reason now: a reason never seen is then a 0, not absent.
        for reason in DropReason::ALL {
            let _ = c.dropped.0.get_or_create(&reason.as_label());
        }
        registry.register(
            "hearth_gateway_dropped",
            "Datagrams or batches dropped, by reason",
            c.dropped.0.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let queue_batches = gauge(
            &mut registry,
            "hearth_gateway_queue_batches",
            "Records in the queue (reading batches, and sensors' run accounts), not yet forwarded",
        );
        let queue_readings = gauge(
            &mut registry,
            "hearth_gateway_queue_readings",
            "Readings in the queue, not yet stored by the backend",
        );
        let queue_bytes = gauge(
            &mut registry,
            "hearth_gateway_queue_bytes",
            "Bytes the queue holds (records and their headers)",
        );
        gauge(
            &mut registry,
            "hearth_gateway_queue_limit_bytes",
            "The queue's byte bound; when reached, new datagrams are dropped (queue_full)",
        )
        .set(i64::try_from(sources.max_queue_bytes).unwrap_or(i64::MAX));
        let oldest_unsent_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "hearth_gateway_oldest_unsent_age_seconds",
            "Age of the oldest batch in the queue, by its own timestamp; 0 when empty",
            oldest_unsent_age_seconds.clone(),
        );
        Self {
            registry,
            queue: sources.queue,
            queue_batches,
            queue_readings,
            queue_bytes,
            oldest_unsent_age_seconds,
        }
    }

    /// Reads the queue's figures at `now_ms` (Unix ms), then encodes every
    /// metric. Blocking: it takes the queue's lock and reads from disk.
    pub fn scrape(&self, now_ms: i64) -> std::io::Result<String> {
        let (batches, bytes, readings, oldest) = {
            let backlog = self.queue.lock().expect("queue lock");
            let (batches, bytes) = backlog.queue.depth();
            (batches, bytes, backlog.readings, backlog.oldest_unix_ms()?)
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.queue_batches.set(gauge(batches));
        self.queue_readings.set(gauge(readings));
        self.queue_bytes.set(gauge(bytes));
        // Why clamped: a sensor whose clock is ahead would make it negative.
        self.oldest_unsent_age_seconds
            .set(oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0));
        Ok(encode(&self.registry))
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, then
/// waits for the requests under way.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(exporter);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || exporter.scrape(unix_ms_now())).await {
        Ok(Ok(text)) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => {
            warn!(error = %e, "reading the queue for /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal\n").into_response()
        }
        Err(e) => {
            warn!(error = %e, "the /metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A queue in a fresh directory holding one batch of two readings taken
    /// 90 s ago, and counters with something counted.
    fn sources(name: &str) -> (Sources, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("hearth-metrics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut queue = crate::queue::DiskQueue::open(&dir, 1 << 20).unwrap();
        let batch = hearth_proto::v1::ReadingBatch {
            device_id: "s1".into(),
            time_unix_ms: unix_ms_now() - 90_000,
            readings: vec![Default::default(), Default::default()],
            ..Default::default()
        };
        queue.append(&batch.encode_to_vec()).unwrap().unwrap();
        queue.sync().unwrap();
        let counters = Counters::default();
        counters.received.inc_by(12);
        counters.accepted_batches.inc_by(9);
        counters.accepted_readings.inc_by(27);
        counters.forwarded_batches.inc_by(4);
        counters.forwarded_readings.inc_by(12);
        counters.accepted_accounts.inc_by(2);
        counters.forwarded_accounts.inc_by(1);
        for _ in 0..3 {
            counters.dropped.add(DropReason::RateLimited);
        }
        counters.dropped.add(DropReason::Oversize);
        counters.dropped.add(DropReason::BadSignature);
        counters.dropped.add(DropReason::BadSignature);
        let sources = Sources {
            queue: Arc::new(Mutex::new(Backlog::new(queue).unwrap())),
            counters: Arc::new(counters),
            max_queue_bytes: 1 << 20,
        };
        (sources, dir)
    }

    #[test]
    fn a_scrape_shows_every_counter_and_the_queue_as_it_is() {
        let (sources, dir) = sources("scrape");
        let text = Exporter::new(sources).scrape(unix_ms_now()).unwrap();
        for line in [
            "# TYPE hearth_gateway_accepted_batches counter",
            "hearth_gateway_datagrams_received_total 12",
            "hearth_gateway_accepted_batches_total 9",
            "hearth_gateway_accepted_readings_total 27",
            "hearth_gateway_forwarded_batches_total 4",
            "hearth_gateway_forwarded_readings_total 12",
            "hearth_gateway_accepted_accounts_total 2",
            "hearth_gateway_forwarded_accounts_total 1",
            "# TYPE hearth_gateway_queue_readings gauge",
            "hearth_gateway_queue_batches 1",
            "hearth_gateway_queue_readings 2",
            "hearth_gateway_queue_limit_bytes 1048576",
            "hearth_gateway_dropped_total{reason=\"malformed\"} 0",
            "hearth_gateway_dropped_total{reason=\"oversize\"} 1",
            "hearth_gateway_dropped_total{reason=\"unnamed\"} 0",
            "hearth_gateway_dropped_total{reason=\"rate_limited\"} 3",
            "hearth_gateway_dropped_total{reason=\"queue_full\"} 0",
            "hearth_gateway_dropped_total{reason=\"rejected_by_backend\"} 0",
            "hearth_gateway_dropped_total{reason=\"corrupt\"} 0",
            "hearth_gateway_dropped_total{reason=\"unsigned\"} 0",
            "hearth_gateway_dropped_total{reason=\"unknown_device\"} 0",
            "hearth_gateway_dropped_total{reason=\"bad_signature\"} 2",
            "hearth_gateway_dropped_total{reason=\"replay\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE")).count(),
            13,
            "one TYPE per metric family"
        );
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("hearth_gateway_oldest_unsent_age_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((90.0..120.0).contains(&age), "{age}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_refuses_other_requests_and_stops_when_told() {
        let (sources, dir) = sources("serve");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Exporter::new(sources)),
            async move {
                let _ = stopped.await;
            },
        ));

        let ok = request(addr, "GET", "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("content-type: {CONTENT_TYPE}")),
            "{ok}"
        );
        assert!(
            ok.contains("\nhearth_gateway_queue_readings 2\n"),
            "readings counted from the queue at start: {ok}"
        );
        let missing = request(addr, "GET", "/").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = request(addr, "POST", "/metrics").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");

        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the server stops when told")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
