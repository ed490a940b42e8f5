//! A sensor's page: its latest values, a chart per chosen metric (live, or
//! the last hour / 24 hours / 7 days / a custom range from the downsampled
//! series), and its history table.

use hearth_proto::v1::{Device, GetSeriesResponse, Metric, WatchReadingsResponse};
use leptos::prelude::*;

use super::{
    alert,
    chart::Chart,
    history::History,
    home::HomeState,
    loaded::{Loaded, Loader, Shown},
    sensor::SensorReadings,
};
use crate::{
    api, browser,
    chart::{Bucket, Geometry, LivePoints, Plot, Point},
    display::{self, SENSOR_METRICS},
    live::{self, Connectivity, LiveStatus},
    range::{self, Range, Window},
    tasks::spawn_scoped,
};

/// Live points kept per metric: ten minutes at one reading a second.
const LIVE_CAPACITY: usize = 600;
/// How far before the newest point held a resumed stream starts: readings
/// of one batch commit together, but batches of a device can commit out of
/// their time order (a gateway's backlog, ingest's batching).
const RESUME_MARGIN_MS: i64 = 10_000;

/// The live points of each charted metric.
// Why a list, not a map: there are three metrics at most, and a hash map
// would add its own code to the wasm module.
#[derive(Default)]
struct LiveMap(Vec<(Metric, LivePoints)>);

impl LiveMap {
    fn get(&self, metric: Metric) -> Option<&LivePoints> {
        self.0
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, points)| points)
    }

    /// The time of the newest point of any metric.
    fn newest(&self) -> Option<i64> {
        self.0
            .iter()
            .filter_map(|(_, points)| points.latest())
            .map(|p| p.time_unix_ms)
            .max()
    }

    /// The points of `metric`, new and empty if it has none yet.
    fn points(&mut self, metric: Metric) -> &mut LivePoints {
        let i = match self.0.iter().position(|(m, _)| *m == metric) {
            Some(i) => i,
            None => {
                self.0.push((metric, LivePoints::new(LIVE_CAPACITY)));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

/// The page of sensor `device`.
#[component]
pub fn SensorPage(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let device_id = device.with_untracked(|d| d.id.clone());
    let name = move || device.with(|d| display::device_name(d).to_owned());
    let range = RwSignal::new(Range::Live);
    // The window of a chosen preset or custom range, fixed when chosen.
    let fixed = RwSignal::new(Range::Live.window(browser::now_unix_ms()));
    let metrics = RwSignal::new(vec![Metric::TemperatureCelsius]);
    let live = RwSignal::new(LiveMap::default());

    let choose = move |chosen: Range| {
        fixed.set(chosen.window(browser::now_unix_ms()));
        range.set(chosen);
    };
    let window = Signal::derive(move || match range.get() {
        Range::Live => Range::Live.window(home.now.get()),
        _ => fixed.get(),
    });

    let presets = range::PRESETS
        .into_iter()
        .map(|(preset, label)| {
            let pressed = move || range.with(|r| *r == preset).to_string();
            let aria = format!("Show {}", if preset == Range::Live { "live readings".to_owned() } else { format!("the last {label}") });
            view! {
                <button aria-pressed=pressed aria-label=aria data-range=label on:click=move |_| choose(preset)>
                    {label}
                </button>
            }
        })
        .collect_view();
    let metric_boxes = SENSOR_METRICS
        .into_iter()
        .map(|metric| {
            let checked = move || metrics.with(|m| m.contains(&metric));
            let toggle = move |_| {
                metrics.update(|m| {
                    if let Some(i) = m.iter().position(|x| *x == metric) {
                        m.remove(i);
                    } else {
                        m.push(metric);
                        m.sort_by_key(|x| SENSOR_METRICS.iter().position(|y| y == x));
                    }
                })
            };
            view! {
                <label class="check">
                    <input type="checkbox" prop:checked=checked on:change=toggle aria-label=format!("Chart {}", display::metric_noun(metric)) />
                    {display::metric_name(metric)}
                </label>
            }
        })
        .collect_view();

    let feed = {
        let device_id = device_id.clone();
        move || {
            (range.get() == Range::Live).then(|| {
                let chosen = metrics.get();
                let home_id = home.home_id.get_value();
                view! { <LiveFeed home_id device_id=device_id.clone() metrics=chosen live /> }
            })
        }
    };
    let charts = {
        let device_id = device_id.clone();
        move || {
            metrics
                .get()
                .into_iter()
                .map(|metric| {
                    let device_id = device_id.clone();
                    match range.get() {
                        Range::Live => view! { <LiveChart metric live window /> }.into_any(),
                        _ => view! { <SeriesChart device_id metric window=fixed /> }.into_any(),
                    }
                })
                .collect_view()
        }
    };

    view! {
        <article class="device-page">
            <h2 class="page-title">{name} " " <span class="kind">"sensor"</span></h2>
            <div class="panel">
                <SensorReadings device home />
            </div>
            <section class="panel" aria-labelledby="chart-title">
                <h3 id="chart-title">"Charts"</h3>
                <div class="chart-controls">
                    <div class="ranges" role="group" aria-label="Time range">{presets}</div>
                    <CustomRange range fixed />
                    <div class="metric-choice" role="group" aria-label="Metrics">{metric_boxes}</div>
                </div>
                {feed}
                {move || metrics.with(Vec::is_empty).then(|| view! { <p class="hint">"Choose a metric to chart."</p> })}
                <div class="charts">{charts}</div>
            </section>
            {move || {
                let (id, name) = device.with(|d| (d.id.clone(), display::device_name(d).to_owned()));
                view! { <History device_id=id name window /> }
            }}
        </article>
    }
}

/// Start and end fields for a custom range.
#[component]
pub fn CustomRange(range: RwSignal<Range>, fixed: RwSignal<Window>) -> impl IntoView {
    let now = browser::now_unix_ms();
    let start = RwSignal::new(browser::datetime_local(now - range::DAY));
    let end = RwSignal::new(browser::datetime_local(now));
    let problem = RwSignal::new(None::<String>);
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let now = browser::now_unix_ms();
        match Range::custom(
            browser::parse_datetime_local(&start.get_untracked()),
            browser::parse_datetime_local(&end.get_untracked()),
            now,
        ) {
            Ok(custom) => {
                problem.set(None);
                fixed.set(custom.window(now));
                range.set(custom);
            }
            Err(why) => problem.set(Some(why)),
        }
    };
    view! {
        <form class="custom-range" on:submit=apply>
            <label>"From " <input type="datetime-local" aria-label="Custom range start" prop:value=move || start.get() on:input=move |ev| start.set(event_target_value(&ev)) /></label>
            <label>"to " <input type="datetime-local" aria-label="Custom range end" prop:value=move || end.get() on:input=move |ev| end.set(event_target_value(&ev)) /></label>
            <button type="submit" aria-label="Show the custom range" aria-pressed=move || matches!(range.get(), Range::Custom { .. }).to_string()>"Custom"</button>
        </form>
        {move || problem.get().map(alert)}
    }
}

/// Keeps `live` fed with `metrics` of `device_id`: the last ten minutes from
/// storage, then the filtered live stream.
#[component]
fn LiveFeed(
    home_id: String,
    device_id: String,
    metrics: Vec<Metric>,
    live: RwSignal<LiveMap>,
) -> impl IntoView {
    let status = RwSignal::new(LiveStatus::Connecting);
    let connectivity = Connectivity::get();
    let start = browser::now_unix_ms() - range::LIVE_MS;
    for &metric in &metrics {
        let device_id = device_id.clone();
        spawn_scoped(async move {
            if let Ok(page) =
                api::list_readings(&device_id, metric, start, LIVE_CAPACITY as u32, "").await
            {
                live.update(|map| {
                    let points = map.points(metric);
                    for r in page.readings {
                        points.push(Point {
                            time_unix_ms: r.time_unix_ms,
                            value: r.value,
                        });
                    }
                });
            }
        });
    }
    spawn_scoped({
        let (open_device, open_metrics) = (device_id.clone(), metrics.clone());
        async move {
            live::follow(
                move || {
                    let (home_id, device_id, metrics) =
                        (home_id.clone(), open_device.clone(), open_metrics.clone());
                    // A reconnect resumes from the newest point held, less a
                    // margin for readings committed out of order; the chart
                    // ignores the ones it has.
                    let since = live
                        .with_untracked(LiveMap::newest)
                        .map_or(0, |newest| {
                            (newest - RESUME_MARGIN_MS)
                                .max(browser::now_unix_ms() - range::LIVE_MS)
                        });
                    async move {
                        api::watch_readings(&home_id, vec![device_id], &metrics, since).await
                    }
                },
                {
                    move |message: WatchReadingsResponse, _| {
                        let start = browser::now_unix_ms() - range::LIVE_MS;
                        live.update(|map| {
                            // Why filter here too: a server may ignore the filters.
                            for r in message.readings.iter().filter(|r| {
                                r.device_id == device_id && metrics.contains(&r.metric())
                            }) {
                                let points = map.points(r.metric());
                                points.push(Point {
                                    time_unix_ms: r.time_unix_ms,
                                    value: r.value,
                                });
                                points.trim(start);
                            }
                        });
                    }
                },
                status,
                connectivity,
            )
            .await;
        }
    });
    move || match status.get() {
        LiveStatus::Refused { reason } => Some(alert(format!("No live readings: {reason}."))),
        _ => None,
    }
}

/// The live line of `metric`, moving with the clock.
#[component]
fn LiveChart(metric: Metric, live: RwSignal<LiveMap>, window: Signal<Window>) -> impl IntoView {
    let geometry = Signal::derive(move || {
        let points = live.with(|map| map.get(metric).map(LivePoints::to_vec).unwrap_or_default());
        let window = window.get();
        let plot = Plot {
            points: &points,
            gap_ms: range::LIVE_GAP_MS,
            ..Default::default()
        };
        Geometry::of(&plot, window, browser::utc_offset_ms(window.end_unix_ms))
    });
    let latest = move || {
        live.with(|map| map.get(metric).and_then(LivePoints::latest))
            .map(|p| display::reading(metric, p.value))
            .unwrap_or_else(|| "—".into())
    };
    let label = format!(
        "Live {} chart, last 10 minutes",
        display::metric_noun(metric)
    );
    view! {
        <div class="chart-block" data-chart=metric.short_name()>
            <p class="chart-title">
                <span>{display::metric_name(metric)} " · live"</span>
                <span class="chart-latest">{latest}</span>
            </p>
            <Chart geometry window label />
        </div>
    }
}

/// `metric` over `window` from the downsampled series.
#[component]
fn SeriesChart(device_id: String, metric: Metric, window: RwSignal<Window>) -> impl IntoView {
    let series = Loader::new(move || {
        let (device_id, w) = (device_id.clone(), window.get());
        async move {
            let answer = api::get_series(
                &device_id,
                metric,
                w.start_unix_ms,
                w.end_unix_ms,
                range::MAX_POINTS,
            )
            .await;
            let what = format!("the {} series", display::metric_noun(metric));
            Shown::of(&what, answer, move |series| series_chart(metric, w, series))
        }
    });
    view! {
        <div class="chart-block" data-chart=metric.short_name()>
            <p class="chart-title"><span>{display::metric_name(metric)}</span></p>
            <Loaded loader=series loading="Loading…" loading_class="hint chart-loading" />
        </div>
    }
}

fn series_chart(metric: Metric, window: Window, series: &GetSeriesResponse) -> AnyView {
    let buckets = Bucket::of_series(series);
    let plot = Plot {
        buckets: &buckets,
        gap_ms: range::series_gap(series.bucket_ms),
        ..Default::default()
    };
    let geometry = Geometry::of(&plot, window, browser::utc_offset_ms(window.end_unix_ms));
    let caption = format!(
        "avg line, min–max band; {} buckets of {}",
        buckets.len(),
        display::seconds((series.bucket_ms / 1000) as u64)
    );
    let label = format!("{} chart, {caption}", display::metric_name(metric));
    view! {
        <Chart geometry=Signal::stored(geometry) window=Signal::stored(window) label />
        <p class="caption">{caption}</p>
    }
    .into_any()
}
