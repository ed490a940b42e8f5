//! The gateway's Prometheus endpoint: `GET /metrics` in the text exposition
//! format, over a deliberately tiny HTTP/1.1 server (one request per
//! connection, `Connection: close`). Why by hand: a scrape is one GET, and
//! the gateway runs on small boxes where an HTTP stack is most of a binary.
//!
//! The figures are read at scrape time: counters from [`Counters`], the
//! queue's depth (batches, readings, bytes) and the age of its oldest unsent
//! batch, by that batch's own timestamp.

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tracing::{debug, warn};

use crate::{Backlog, Counters, DropReason};

/// Scrapes served at once; more connections wait in the listen backlog.
const MAX_CONNECTIONS: usize = 8;
/// A request head larger than this is refused.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the figures come from.
#[derive(Clone)]
pub struct Sources {
    pub queue: Arc<Mutex<Backlog>>,
    pub counters: Arc<Counters>,
    pub max_queue_bytes: u64,
}

/// The figures of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub received: u64,
    pub accepted_batches: u64,
    pub accepted_readings: u64,
    pub forwarded_batches: u64,
    pub forwarded_readings: u64,
    pub dropped: Vec<(DropReason, u64)>,
    pub queue_batches: u64,
    pub queue_readings: u64,
    pub queue_bytes: u64,
    pub queue_limit_bytes: u64,
    /// Seconds since the oldest unsent batch was taken (0 when none is).
    pub oldest_unsent_age_seconds: f64,
}

impl Sources {
    /// Reads every figure, at `now_ms` (Unix ms).
    pub fn snapshot(&self, now_ms: i64) -> std::io::Result<Snapshot> {
        let (queue_batches, queue_bytes, queue_readings, oldest) = {
            let backlog = self.queue.lock().expect("queue lock");
            let (batches, bytes) = backlog.queue.depth();
            (batches, bytes, backlog.readings, backlog.oldest_unix_ms()?)
        };
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let counters = &self.counters;
        Ok(Snapshot {
            received: c(&counters.received),
            accepted_batches: c(&counters.accepted_batches),
            accepted_readings: c(&counters.accepted_readings),
            forwarded_batches: c(&counters.forwarded_batches),
            forwarded_readings: c(&counters.forwarded_readings),
            dropped: DropReason::ALL
                .iter()
                .map(|&reason| (reason, counters.dropped.get(reason)))
                .collect(),
            queue_batches,
            queue_readings,
            queue_bytes,
            queue_limit_bytes: self.max_queue_bytes,
            // Why clamped: a sensor whose clock is ahead would make it negative.
            oldest_unsent_age_seconds: oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0),
        })
    }
}

/// The snapshot in Prometheus's text format.
pub fn render(s: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "hearth_gateway_datagrams_received_total",
        "counter",
        "UDP datagrams received, valid or not.",
        &s.received,
    );
    metric(
        "hearth_gateway_accepted_batches_total",
        "counter",
        "Reading batches (datagrams) appended to the durable queue.",
        &s.accepted_batches,
    );
    metric(
        "hearth_gateway_accepted_readings_total",
        "counter",
        "Readings in the batches appended to the durable queue.",
        &s.accepted_readings,
    );
    metric(
        "hearth_gateway_forwarded_batches_total",
        "counter",
        "Reading batches the backend stored.",
        &s.forwarded_batches,
    );
    metric(
        "hearth_gateway_forwarded_readings_total",
        "counter",
        "Readings the backend stored.",
        &s.forwarded_readings,
    );
    metric(
        "hearth_gateway_queue_batches",
        "gauge",
        "Reading batches in the queue, not yet stored by the backend.",
        &s.queue_batches,
    );
    metric(
        "hearth_gateway_queue_readings",
        "gauge",
        "Readings in the queue, not yet stored by the backend.",
        &s.queue_readings,
    );
    metric(
        "hearth_gateway_queue_bytes",
        "gauge",
        "Bytes the queue holds (records and their headers).",
        &s.queue_bytes,
    );
    metric(
        "hearth_gateway_queue_limit_bytes",
        "gauge",
        "The queue's byte bound; when reached, new datagrams are dropped (queue_full).",
        &s.queue_limit_bytes,
    );
    metric(
        "hearth_gateway_oldest_unsent_age_seconds",
        "gauge",
        "Age of the oldest batch in the queue, by its own timestamp; 0 when empty.",
        &s.oldest_unsent_age_seconds,
    );
    let name = "hearth_gateway_dropped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Datagrams or batches dropped, by reason.\n# TYPE {name} counter"
    );
    for (reason, count) in &s.dropped {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {count}", reason.label());
    }
    out
}

/// Serves `/metrics` on `listener` until an accept error.
pub async fn serve(listener: TcpListener, sources: Sources) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = permits.clone().acquire_owned().await?;
        let (stream, from) = listener.accept().await?;
        let sources = sources.clone();
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &sources).await {
                debug!(%from, error = %e, "metrics request failed");
            }
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn respond(mut stream: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let complete = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_REQUEST {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(true)
    })
    .await
    .unwrap_or(Ok(false))?;
    let request_line = String::from_utf8_lossy(&head);
    let mut parts = request_line.lines().next().unwrap_or("").split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_owned())
    } else if path != "/metrics" {
        (
            "404 Not Found",
            "text/plain",
            "only /metrics is here\n".to_owned(),
        )
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_owned(),
        )
    } else {
        let sources = sources.clone();
        let snapshot =
            tokio::task::spawn_blocking(move || sources.snapshot(crate::unix_ms_now())).await;
        match snapshot {
            Ok(Ok(snapshot)) => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snapshot),
            ),
            Ok(Err(e)) => {
                warn!(error = %e, "reading the queue for /metrics failed");
                (
                    "500 Internal Server Error",
                    "text/plain",
                    "internal\n".to_owned(),
                )
            }
            Err(e) => return Err(std::io::Error::other(e)),
        }
    };
    let body = if method == "HEAD" { "" } else { body.as_str() };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            received: 12,
            accepted_batches: 9,
            accepted_readings: 27,
            forwarded_batches: 4,
            forwarded_readings: 12,
            dropped: DropReason::ALL.iter().map(|&r| (r, r as u64)).collect(),
            queue_batches: 5,
            queue_readings: 15,
            queue_bytes: 420,
            queue_limit_bytes: 1 << 20,
            oldest_unsent_age_seconds: 1.5,
        }
    }

    #[test]
    fn renders_every_figure_in_the_text_format() {
        let text = render(&snapshot());
        for line in [
            "# TYPE hearth_gateway_accepted_batches_total counter",
            "hearth_gateway_datagrams_received_total 12",
            "hearth_gateway_accepted_batches_total 9",
            "hearth_gateway_accepted_readings_total 27",
            "hearth_gateway_forwarded_batches_total 4",
            "hearth_gateway_forwarded_readings_total 12",
            "# TYPE hearth_gateway_queue_readings gauge",
            "hearth_gateway_queue_batches 5",
            "hearth_gateway_queue_readings 15",
            "hearth_gateway_queue_bytes 420",
            "hearth_gateway_queue_limit_bytes 1048576",
            "hearth_gateway_oldest_unsent_age_seconds 1.5",
            "hearth_gateway_dropped_total{reason=\"malformed\"} 0",
            "hearth_gateway_dropped_total{reason=\"oversize\"} 1",
            "hearth_gateway_dropped_total{reason=\"unnamed\"} 2",
            "hearth_gateway_dropped_total{reason=\"rate_limited\"} 3",
            "hearth_gateway_dropped_total{reason=\"queue_full\"} 4",
            "hearth_gateway_dropped_total{reason=\"rejected_by_backend\"} 5",
            "hearth_gateway_dropped_total{reason=\"corrupt\"} 6",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE")).count(),
            11,
            "one TYPE per metric family"
        );
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_other_requests() {
        let dir = std::env::temp_dir().join(format!("hearth-metrics-{}", std::process::id()));
        let mut queue = crate::queue::DiskQueue::open(&dir, 1 << 20).unwrap();
        let batch = hearth_proto::v1::ReadingBatch {
            device_id: "s1".into(),
            time_unix_ms: crate::unix_ms_now() - 90_000,
            readings: vec![Default::default(), Default::default()],
            ..Default::default()
        };
        queue.append(&batch.encode_to_vec()).unwrap().unwrap();
        queue.sync().unwrap();
        let sources = Sources {
            queue: Arc::new(Mutex::new(Backlog::new(queue).unwrap())),
            counters: Arc::new(Counters::default()),
            max_queue_bytes: 1 << 20,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, sources));

        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\nhearth_gateway_queue_batches 1\n"), "{ok}");
        assert!(
            ok.contains("\nhearth_gateway_queue_readings 2\n"),
            "readings counted from the queue at start: {ok}"
        );
        let age: f64 = ok
            .lines()
            .find_map(|l| l.strip_prefix("hearth_gateway_oldest_unsent_age_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((90.0..120.0).contains(&age), "{age}");
        let missing = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let mut cut = TcpStream::connect(addr).await.unwrap();
        cut.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        cut.shutdown().await.unwrap();
        let mut response = String::new();
        cut.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
