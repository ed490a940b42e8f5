//! `hearth.v1.TelemetryService`.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt as _};
use hearth_proto::v1::{
    telemetry_service_server::TelemetryService, Delivery, DeliveryFigures, DeliveryHour,
    ExportReadingsRequest, ExportReadingsResponse, GetDeliveryRequest, GetSeriesRequest,
    GetSeriesResponse, IngestBatchRequest, IngestBatchResponse, ListReadingsRequest,
    ListReadingsResponse, Metric, RejectedBatch, RunAccount, SeriesPoint, WatchReadingsRequest,
    WatchReadingsResponse,
};
use tokio::sync::oneshot;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tonic::{Request, Response, Status};

use super::{
    convert, scope,
    status::{invalid, invalid_id},
};
use crate::{
    access::caller,
    core::Core,
    delivery::delivery,
    domain::{
        access::Caller,
        delivery::{range, sent, Figures, RangeError},
        export::{append_csv_rows, CSV_HEADER},
        series::plan,
        validate_batch, Denied, DeviceId, DeviceKind, HomeId, Role, UnixMs,
    },
    ingest::{Done, IngestItem},
    storage::{ReadingCursor, ReadingOrder, ReadingQuery},
};

/// Most batches in one IngestBatch call.
const MAX_BATCHES_PER_CALL: usize = 10_000;
const DEFAULT_PAGE_SIZE: u32 = 100;
const DEFAULT_POINTS: u32 = 300;
const MAX_POINTS: u32 = 2_000;
const MAX_PAGE_SIZE: u32 = 1_000;
/// Readings read from storage per exported chunk.
const EXPORT_PAGE_SIZE: u32 = 1_000;
/// How far back a resuming `WatchReadings` may ask: a reconnect's gap, not
/// history (which ListReadings and ExportReadings page through).
const REPLAY_REACH_MS: i64 = 3_600_000;
/// Readings read from storage per replayed message.
const REPLAY_PAGE_SIZE: u32 = 1_000;

pub struct TelemetryApi {
    core: Arc<Core>,
}

impl TelemetryApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The sensor a batch or run account names (`device_id`, and `home_id`
    /// if not empty), if `caller` may write for it; otherwise why not, in
    /// the words a device that does not exist gets where the caller may not
    /// see it.
    async fn ingest_target(
        &self,
        caller: &Caller,
        device_id: &str,
        home_id: &str,
    ) -> Result<(HomeId, DeviceId), String> {
        let device_id = DeviceId::parse(device_id, "device_id").map_err(|e| e.to_string())?;
        let known = self
            .core
            .directory
            .lookup(&device_id)
            .await
            .map_err(|e| e.to_string())?;
        let known = known
            .filter(|k| caller.role_in(&k.home_id).is_some() && caller.covers(&device_id))
            .ok_or_else(|| format!("unknown device {device_id}"))?;
        if let Err(Denied::Forbidden { role, need }) = caller.require(&known.home_id, Role::Ingest)
        {
            return Err(format!(
                "device {device_id}: a {role} of its home may not write readings (it needs {need} or admin)"
            ));
        }
        if !home_id.is_empty() && home_id != known.home_id.as_str() {
            return Err(format!(
                "device {device_id} belongs to home {}, not {home_id}",
                known.home_id
            ));
        }
        if known.kind != DeviceKind::Sensor {
            return Err(format!(
                "device {device_id} is a {}, not a sensor",
                known.kind.as_str()
            ));
        }
        Ok((known.home_id, device_id))
    }

    /// Records what sensors said their runs sent; the rejected by index.
    async fn record_accounts(
        &self,
        caller: &Caller,
        accounts: &[RunAccount],
    ) -> (u32, Vec<RejectedBatch>) {
        let now = self.core.clock.now();
        let mut accepted = 0;
        let mut rejected = Vec::new();
        for (index, account) in accounts.iter().enumerate() {
            let recorded = async {
                let (_, device_id) = self
                    .ingest_target(caller, &account.device_id, &account.home_id)
                    .await?;
                let said = sent(account.run_start, account.last_seq, &account.metrics)
                    .map_err(|e| format!("device {device_id}: {e}"))?;
                if let Some(said) = said {
                    self.core
                        .storage
                        .record_sent(&device_id, &said, now)
                        .await
                        .map_err(|e| format!("device {device_id}: {e}"))?;
                }
                self.core.directory.seen(&device_id, now);
                Ok::<_, String>(())
            };
            match recorded.await {
                Ok(()) => accepted += 1,
                Err(reason) => {
                    self.core.metrics.batches_rejected.inc();
                    rejected.push(RejectedBatch {
                        index: index as u32,
                        reason,
                    });
                }
            }
        }
        (accepted, rejected)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchReadingsResponse, Status>> + Send>>;
type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportReadingsResponse, Status>> + Send>>;

/// `[start, end)` of a history request, Unix ms, 0 meaning unbounded.
fn time_range(
    start_unix_ms: i64,
    end_unix_ms: i64,
) -> Result<(Option<UnixMs>, Option<UnixMs>), Status> {
    if start_unix_ms < 0 || end_unix_ms < 0 {
        return Err(invalid(
            "start_unix_ms",
            "and end_unix_ms must not be negative",
        ));
    }
    if end_unix_ms != 0 && start_unix_ms > end_unix_ms {
        return Err(invalid("start_unix_ms", "must not be after end_unix_ms"));
    }
    Ok((
        (start_unix_ms != 0).then_some(start_unix_ms),
        (end_unix_ms != 0).then_some(end_unix_ms),
    ))
}

/// The replay of a resuming `WatchReadings`: `devices`' stored readings
/// taken at or after `since` (of `metrics`, all if empty), a page per
/// message, device after device, oldest first.
fn replay(
    core: Arc<Core>,
    devices: Vec<DeviceId>,
    metrics: Vec<Metric>,
    since: UnixMs,
) -> impl Stream<Item = Result<WatchReadingsResponse, Status>> + Send {
    // Why one query for every metric unless one is asked for: a device has
    // at most a few, and the index serves (device, time) either way.
    let only = match metrics.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let pages = devices.into_iter().map(move |device_id| ReadingQuery {
        device_id,
        metric: only,
        start: Some(since),
        end: None,
        cursor: None,
        limit: REPLAY_PAGE_SIZE,
        order: ReadingOrder::OldestFirst,
    });
    futures::stream::unfold(
        (core, pages, None::<ReadingQuery>),
        move |(core, mut pages, mut next)| {
            let metrics = metrics.clone();
            async move {
                loop {
                    let mut query = next.take().or_else(|| pages.next())?;
                    let page = match core.storage.list_readings(&query).await {
                        Ok(page) => page,
                        Err(e) => return Some((Err(Status::from(e)), (core, pages, None))),
                    };
                    if page.len() == query.limit as usize {
                        query.cursor = page.last().map(ReadingCursor::of);
                        next = Some(query);
                    }
                    let readings: Vec<_> = page
                        .iter()
                        .filter(|r| metrics.is_empty() || metrics.contains(&r.metric))
                        .map(convert::reading)
                        .collect();
                    if !readings.is_empty() {
                        let message = WatchReadingsResponse {
                            readings,
                            replayed: true,
                            ..Default::default()
                        };
                        return Some((Ok(message), (core, pages, next)));
                    }
                }
            }
        },
    )
}

#[tonic::async_trait]
impl TelemetryService for TelemetryApi {
    async fn ingest_batch(
        &self,
        request: Request<IngestBatchRequest>,
    ) -> Result<Response<IngestBatchResponse>, Status> {
        let auth = caller(&request)?;
        let IngestBatchRequest { batches, accounts } = request.into_inner();
        for (field, entries) in [("batches", batches.len()), ("accounts", accounts.len())] {
            if entries > MAX_BATCHES_PER_CALL {
                return Err(invalid(
                    field,
                    format!("has {entries} entries, at most {MAX_BATCHES_PER_CALL} allowed"),
                ));
            }
        }
        let now = self.core.clock.now();
        let mut rejected = Vec::new();
        let mut pending = Vec::new();
        for (index, batch) in batches.iter().enumerate() {
            let checked = async {
                let (home_id, device_id) = self
                    .ingest_target(&auth.caller, &batch.device_id, &batch.home_id)
                    .await?;
                let readings = validate_batch(&device_id, batch, now).map_err(|e| e.to_string())?;
                Ok::<_, String>((home_id, device_id, readings))
            };
            match checked.await {
                Ok((home_id, device_id, readings)) => {
                    self.core.directory.seen(&device_id, now);
                    let (tx, rx) = oneshot::channel();
                    self.core
                        .ingest
                        .submit(IngestItem {
                            home_id,
                            readings,
                            run_start: batch.run_start,
                            done: Done::Grpc(tx),
                        })
                        .await
                        .map_err(Status::unavailable)?;
                    pending.push((index, rx));
                }
                Err(reason) => {
                    self.core.metrics.batches_rejected.inc();
                    rejected.push(RejectedBatch {
                        index: index as u32,
                        reason,
                    });
                }
            }
        }
        let mut accepted = 0;
        for (index, rx) in pending {
            match rx.await {
                Ok(Ok(_)) => accepted += 1,
                Ok(Err(reason)) => rejected.push(RejectedBatch {
                    index: index as u32,
                    reason,
                }),
                Err(_) => {
                    return Err(Status::unavailable(
                        "ingest stopped before storing the batch; retry",
                    ))
                }
            }
        }
        rejected.sort_by_key(|r| r.index);
        // After the batches are stored: an account then counts as missing
        // only what did not come with them.
        let (accounts_accepted, rejected_accounts) =
            self.record_accounts(&auth.caller, &accounts).await;
        Ok(Response::new(IngestBatchResponse {
            accepted,
            rejected,
            accounts_accepted,
            rejected_accounts,
        }))
    }

    async fn list_readings(
        &self,
        request: Request<ListReadingsRequest>,
    ) -> Result<Response<ListReadingsResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let device_id = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let metric = convert::metric_filter(r.metric, "metric")?;
        let limit = match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(invalid(
                    "page_size",
                    format!("{n} is above the maximum of {MAX_PAGE_SIZE}"),
                ))
            }
            n => n,
        };
        let before = match r.page_token.as_str() {
            "" => None,
            token => Some(
                ReadingCursor::from_token(token)
                    .ok_or_else(|| invalid("page_token", "is not a token this server issued"))?,
            ),
        };
        let (start, end) = time_range(r.start_unix_ms, r.end_unix_ms)?;
        scope::device(
            &self.core,
            &auth.caller,
            &device_id,
            Role::Viewer,
            "device_id",
        )
        .await?;
        let query = ReadingQuery {
            device_id,
            metric,
            start,
            end,
            cursor: before,
            limit: limit + 1,
            order: ReadingOrder::NewestFirst,
        };
        let mut readings = self.core.storage.list_readings(&query).await?;
        let next_page_token = if readings.len() > limit as usize {
            readings.truncate(limit as usize);
            readings
                .last()
                .map(|r| ReadingCursor::of(r).to_token())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListReadingsResponse {
            readings: readings.iter().map(convert::reading).collect(),
            next_page_token,
        }))
    }

    type ExportReadingsStream = ExportStream;

    async fn export_readings(
        &self,
        request: Request<ExportReadingsRequest>,
    ) -> Result<Response<Self::ExportReadingsStream>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let device_id = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let metric = convert::metric_filter(r.metric, "metric")?;
        let (start, end) = time_range(r.start_unix_ms, r.end_unix_ms)?;
        // A device of a home the caller has no role in is as missing as one
        // that does not exist (every role may read).
        let known = self.core.directory.lookup(&device_id).await?;
        if !known.is_some_and(|k| auth.caller.sees(&k.home_id)) {
            return Err(Status::not_found(format!(
                "device_id {device_id}: no such device"
            )));
        }
        let first = ReadingQuery {
            device_id,
            metric,
            start,
            end,
            cursor: None,
            limit: EXPORT_PAGE_SIZE,
            order: ReadingOrder::OldestFirst,
        };
        let (storage, closing) = (self.core.storage.clone(), self.core.closing.clone());
        // Why unfold: the next page is read only when the client has taken
        // the previous chunk, so memory holds one page however long the
        // range, and a client that goes away stops the reading.
        let chunks = futures::stream::unfold(Some(first), move |state| {
            let (storage, closing) = (storage.clone(), closing.clone());
            async move {
                let mut query = state?;
                // Why an error, not a quiet end: a cut-off export must not
                // pass for a whole one.
                if closing.is_cancelled() {
                    let status = Status::unavailable("the server is shutting down; export again");
                    return Some((Err(status), None));
                }
                let page = match storage.list_readings(&query).await {
                    Ok(page) => page,
                    Err(e) => return Some((Err(Status::from(e)), None)),
                };
                let mut csv = match query.cursor {
                    None => String::from(CSV_HEADER),
                    Some(_) => String::new(),
                };
                append_csv_rows(&mut csv, &page);
                let next = (page.len() == query.limit as usize).then(|| {
                    query.cursor = page.last().map(ReadingCursor::of);
                    query
                });
                let chunk = ExportReadingsResponse {
                    csv: csv.into_bytes(),
                };
                Some((Ok(chunk), next))
            }
        })
        // A range that ends on a page boundary reads one empty page last.
        .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(c) if c.csv.is_empty())));
        Ok(Response::new(Box::pin(chunks)))
    }

    type WatchReadingsStream = WatchStream;

    async fn watch_readings(
        &self,
        request: Request<WatchReadingsRequest>,
    ) -> Result<Response<Self::WatchReadingsStream>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let home_id = HomeId::parse(&r.home_id, "home_id").map_err(invalid_id)?;
        let devices = r
            .device_ids
            .iter()
            .map(|d| DeviceId::parse(d, "device_ids"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid_id)?;
        let metrics = r
            .metrics
            .iter()
            .map(|m| {
                convert::metric_filter(*m, "metrics")?
                    .ok_or_else(|| invalid("metrics", "must not contain METRIC_UNSPECIFIED"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A time ahead of this replica's clock replays nothing: a client's
        // clock may run ahead, and that is no reason to refuse it.
        let since = r.since_unix_ms;
        if since < 0 {
            return Err(invalid("since_unix_ms", "must not be negative"));
        }
        if since != 0 && since < self.core.clock.now() - REPLAY_REACH_MS {
            return Err(invalid(
                "since_unix_ms",
                "must be within the last hour; older readings come from ListReadings or ExportReadings",
            ));
        }
        scope::home(&self.core, &auth.caller, &home_id, Role::Viewer, "home_id").await?;
        // Why a broadcast receiver per subscriber: it is bounded, and a slow
        // subscriber only loses its own messages (reported as `skipped`).
        // Subscribed before the replay reads storage, so no commit falls
        // between the two.
        let live = self.core.stored.subscribe();
        let replay = if since == 0 {
            None
        } else {
            // Why from the home's list even when devices are named: a named
            // device of another home must replay nothing, as live shows it
            // nothing.
            let replayed = self
                .core
                .storage
                .list_devices(Some(&home_id))
                .await?
                .into_iter()
                .map(|d| d.id)
                .filter(|id| devices.is_empty() || devices.contains(id))
                .collect();
            Some(replay(self.core.clone(), replayed, metrics.clone(), since))
        };
        let live = BroadcastStream::new(live).filter_map(move |item| {
            let message = match item {
                Ok(commit) => {
                    let readings: Vec<_> = commit
                        .iter()
                        .filter(|b| b.home_id == home_id)
                        .flat_map(|b| &b.readings)
                        .filter(|r| devices.is_empty() || devices.contains(&r.device_id))
                        .filter(|r| metrics.is_empty() || metrics.contains(&r.metric))
                        .map(convert::reading)
                        .collect();
                    (!readings.is_empty()).then_some(WatchReadingsResponse {
                        readings,
                        ..Default::default()
                    })
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(WatchReadingsResponse {
                    skipped: n,
                    ..Default::default()
                }),
            };
            futures::future::ready(message.map(Ok))
        });
        let stream: WatchStream = match replay {
            Some(replay) => Box::pin(replay.chain(live)),
            None => Box::pin(live),
        };
        Ok(Response::new(Box::pin(
            stream.take_until(self.core.closing.clone().cancelled_owned()),
        )))
    }

    async fn get_series(
        &self,
        request: Request<GetSeriesRequest>,
    ) -> Result<Response<GetSeriesResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let device = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let metric = convert::metric_filter(r.metric, "metric")?
            .ok_or_else(|| invalid("metric", "must be set"))?;
        let end = match r.end_unix_ms {
            0 => self.core.clock.now(),
            end => end,
        };
        if r.start_unix_ms <= 0 || r.start_unix_ms >= end {
            return Err(invalid(
                "start_unix_ms",
                "must be set and before end_unix_ms",
            ));
        }
        let max_points = match r.max_points {
            0 => DEFAULT_POINTS,
            n if n <= MAX_POINTS => n,
            n => {
                return Err(invalid(
                    "max_points",
                    format!("is {n}, at most {MAX_POINTS}"),
                ))
            }
        };
        scope::device(&self.core, &auth.caller, &device, Role::Viewer, "device_id").await?;
        let plan = plan(r.start_unix_ms, end, max_points);
        let points = self.core.storage.series(&device, metric, &plan).await?;
        Ok(Response::new(GetSeriesResponse {
            bucket_ms: plan.bucket_ms,
            resolution: plan.resolution.as_str().to_owned(),
            points: points
                .iter()
                .map(|p| SeriesPoint {
                    start_unix_ms: p.start,
                    min: p.min,
                    avg: p.sum / p.count.max(1) as f64,
                    max: p.max,
                    count: p.count,
                })
                .collect(),
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<Delivery>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let device = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let (from, to) =
            range(r.start_unix_ms, r.end_unix_ms, self.core.clock.now()).map_err(|e| match e {
                RangeError::Backwards => invalid("start_unix_ms", e.to_string()),
                RangeError::TooLong => invalid("end_unix_ms", e.to_string()),
            })?;
        scope::device(&self.core, &auth.caller, &device, Role::Viewer, "device_id").await?;
        let found = delivery(self.core.storage.as_ref(), &device, from, to).await?;
        let figures = |f: Figures| DeliveryFigures {
            expected: f.expected,
            stored: f.stored,
            missing: f.missing(),
            restarts: f.restarts,
            late: f.late,
            duplicates: f.duplicates,
        };
        Ok(Response::new(Delivery {
            device_id: device.to_string(),
            total: Some(figures(found.total)),
            last_loss_unix_ms: found.last_loss().unwrap_or(0),
            hours: found
                .hours
                .iter()
                .map(|&(hour, f)| DeliveryHour {
                    start_unix_ms: hour,
                    figures: Some(figures(f)),
                })
                .collect(),
        }))
    }
}
