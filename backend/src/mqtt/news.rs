//! News between replicas. Each replica publishes the readings it stored and
//! the devices it changed ([`Publisher::stored`](super::Publisher::stored),
//! [`Publisher::device_changed`](super::Publisher::device_changed)), and
//! [`run`] takes the others' into its own live channels, so every replica's
//! `WatchReadings` and `WatchDevices` streams show every change, whichever
//! replica stored it. Only with an external broker: the embedded one has
//! one replica by construction.
//!
//! The same connection watches the broker's own drop counter
//! ([`BROKER_DROPPED`], Mosquitto's `$SYS`): a broker drops a message past a
//! session's queue limit without telling anyone, so Hearth counts increases
//! (`hearth_broker_dropped_total`) and logs each one.

use std::{sync::Arc, time::Duration};

use hearth_proto::{
    topics::{News, Topics, BROKER_DROPPED},
    v1::{Metric, ReplicaCommit, ReplicaDeviceChanged},
};
use hearth_runtime::Backoff;
use prost::Message as _;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{
    core::Core,
    domain::{DeviceId, HomeId, Reading},
    ingest::{StoredBatch, StoredCommit},
};

/// Between attempts to reach a broker that went away.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Takes the other replicas' news into `core`'s live channels until
/// `shutdown`. `replica` is this replica's name, whose own news it skips.
pub async fn run(
    url: String,
    topics: Topics,
    replica: String,
    core: Arc<Core>,
    shutdown: CancellationToken,
) {
    let client_id = format!("hearth-backend-{replica}-news");
    let options = match hearth_runtime::mqtt::options(&url, &client_id, None) {
        Ok(options) => options,
        Err(e) => {
            warn!(error = %e, "no news from the other replicas");
            return;
        }
    };
    // Why a clean session: news is for live views; after a gap the views
    // have history, and nobody needs a backlog replayed.
    let (client, mut events) = hearth_runtime::mqtt::client(options, 64);
    let mut failures = 0u32;
    let mut dropped = DropWatch::default();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                subscribe(&client, &topics).await;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == BROKER_DROPPED => {
                let total = std::str::from_utf8(&publish.payload)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                if let Some(more) = total.and_then(|t| dropped.seen(t)) {
                    core.metrics.broker_dropped.inc_by(more);
                    warn!(
                        dropped = more,
                        "the MQTT broker dropped messages (for some client, maybe Hearth): \
                         a session's queue limit was passed; readings may be lost"
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                take(&topics, &replica, &core, &publish).await;
            }
            Ok(_) => {}
            Err(e) => {
                if failures == 0 {
                    warn!(error = %e, "lost the broker for news from the other replicas");
                }
                failures += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = RECONNECT.wait(failures - 1) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

/// Increases of the broker's drop counter: its first value is the baseline
/// (drops before this replica watched are not its to count); a smaller value
/// means the broker restarted, and counts from zero again.
#[derive(Debug, Default)]
struct DropWatch {
    last: Option<u64>,
}

impl DropWatch {
    /// The increase since the last value, if any.
    fn seen(&mut self, total: u64) -> Option<u64> {
        let more = match self.last {
            None => 0,
            Some(last) if total < last => total,
            Some(last) => total - last,
        };
        self.last = Some(total);
        (more > 0).then_some(more)
    }
}

async fn subscribe(client: &AsyncClient, topics: &Topics) {
    // Why QoS 0: the counter is a running total; a missed update is made up
    // by the next one. Brokers without it (rumqttd) never answer.
    if let Err(e) = client.subscribe(BROKER_DROPPED, QoS::AtMostOnce).await {
        warn!(error = %e, "could not watch the broker's drop counter");
    }
    for news in News::ALL {
        if let Err(e) = client
            .subscribe(topics.all_replica_news(news), QoS::AtLeastOnce)
            .await
        {
            warn!(error = %e, "could not subscribe to the other replicas' news");
        }
    }
}

/// Hands one message of news to the live channels, unless it is this
/// replica's own or malformed (logged with its topic).
async fn take(topics: &Topics, replica: &str, core: &Core, publish: &Publish) {
    let Some((from, news)) = topics.parse_replica_news(&publish.topic) else {
        return;
    };
    if from == replica {
        return;
    }
    let taken = match news {
        News::Stored => decode_commit(&publish.payload).map(|commit| {
            // No receivers is fine: nobody is watching.
            let _ = core.stored.send(Arc::new(commit));
        }),
        News::Devices => match decode_device(&publish.payload) {
            Ok(id) => match core.storage.get_device(&id).await {
                Ok(Some(device)) => {
                    core.control.announce(device);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(format!("reading device {id}: {e}")),
            },
            Err(e) => Err(e),
        },
    };
    if let Err(reason) = taken {
        warn!(topic = publish.topic, %reason, "news from another replica dropped");
    }
}

fn decode_commit(payload: &[u8]) -> Result<StoredCommit, String> {
    let commit = ReplicaCommit::decode(payload).map_err(|e| e.to_string())?;
    commit
        .batches
        .into_iter()
        .map(|b| {
            let home_id = HomeId::parse(&b.home_id, "home_id").map_err(|e| e.to_string())?;
            let readings = b
                .readings
                .into_iter()
                .map(|r| {
                    Ok(Reading {
                        device_id: DeviceId::parse(&r.device_id, "device_id")
                            .map_err(|e| e.to_string())?,
                        metric: match Metric::try_from(r.metric) {
                            Ok(Metric::Unspecified) | Err(_) => return Err("bad metric".into()),
                            Ok(m) => m,
                        },
                        seq: r.seq,
                        time: r.time_unix_ms,
                        value: r.value,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(StoredBatch { home_id, readings })
        })
        .collect()
}

fn decode_device(payload: &[u8]) -> Result<DeviceId, String> {
    let changed = ReplicaDeviceChanged::decode(payload).map_err(|e| e.to_string())?;
    DeviceId::parse(&changed.device_id, "device_id").map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::{ReplicaBatch, StoredReading};

    use super::*;

    #[test]
    fn a_commit_survives_the_trip_between_replicas() {
        let message = ReplicaCommit {
            batches: vec![ReplicaBatch {
                home_id: "h1".into(),
                readings: vec![StoredReading {
                    device_id: "s1".into(),
                    metric: Metric::HumidityPercent as i32,
                    value: 41.5,
                    time_unix_ms: 1_800_000_000_000,
                    seq: 7,
                }],
            }],
        };
        let commit = decode_commit(&message.encode_to_vec()).unwrap();
        assert_eq!(commit.len(), 1);
        assert_eq!(commit[0].home_id.as_str(), "h1");
        let r = &commit[0].readings[0];
        assert_eq!(
            (r.device_id.as_str(), r.metric, r.seq, r.time, r.value),
            ("s1", Metric::HumidityPercent, 7, 1_800_000_000_000, 41.5)
        );
    }

    #[test]
    fn broker_drops_count_from_the_first_value_and_across_a_broker_restart() {
        let mut watch = DropWatch::default();
        assert_eq!(watch.seen(700), None, "the baseline");
        assert_eq!(watch.seen(700), None);
        assert_eq!(watch.seen(721), Some(21));
        assert_eq!(watch.seen(5), Some(5), "the broker restarted");
        assert_eq!(watch.seen(5), None);
    }

    #[test]
    fn malformed_news_is_refused() {
        assert!(decode_commit(b"\xff\xff").is_err());
        let bad_metric = ReplicaCommit {
            batches: vec![ReplicaBatch {
                home_id: "h1".into(),
                readings: vec![StoredReading {
                    device_id: "s1".into(),
                    ..Default::default()
                }],
            }],
        };
        assert!(decode_commit(&bad_metric.encode_to_vec()).is_err());
        let bad_id = ReplicaDeviceChanged {
            device_id: "no spaces".into(),
        };
        assert!(decode_device(&bad_id.encode_to_vec()).is_err());
    }
}
