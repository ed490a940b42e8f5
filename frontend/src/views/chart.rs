//! An SVG chart of one metric: min–max band and avg line (a downsampled
//! series) or a live line, with value and time labels, threshold levels, and
//! shaded spans and markers (a dry run's switches). The geometry comes from
//! `crate::chart`; the SVG stretches to its box, the labels are HTML laid
//! over it, so text stays crisp and readable at any width.

use leptos::prelude::*;

use crate::{
    browser,
    chart::{Geometry, HEIGHT, WIDTH},
    number::fixed,
    range::Window,
};

/// An SVG coordinate as an attribute: one decimal is finer than a pixel.
fn coordinate(value: f64) -> String {
    fixed(value, 1)
}

/// A moment marked on a chart: a switch on (`true`) or off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    pub time_unix_ms: i64,
    pub on: bool,
}

/// Extras drawn over the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// `[from, to)` stretches to shade, Unix ms.
    pub spans: Vec<(i64, i64)>,
    pub marks: Vec<Mark>,
}

/// A chart of `geometry` over `window`; `label` names it for screen readers.
#[component]
pub fn Chart(
    geometry: Signal<Geometry>,
    window: Signal<Window>,
    #[prop(into)] label: Signal<String>,
    #[prop(optional, into)] overlay: Signal<Overlay>,
    /// The number format of value labels, e.g. one decimal.
    #[prop(default = 1)]
    decimals: u32,
) -> impl IntoView {
    // Why one closure for all of it: the live chart's geometry changes every
    // second, so each part would be redrawn anyway; one closure is one piece
    // of reactive plumbing in the wasm module, not nine.
    let content = move || {
        let range_ms = window.with(|w| w.duration_ms());
        let g = geometry.get();
        overlay.with(|o| content(&g, o, range_ms, decimals))
    };
    view! {
        <figure class="chart" role="img" aria-label=move || label.get()>
            {content}
        </figure>
    }
}

/// The plot of `g` with `overlay` between its value and time labels, for a
/// window `range_ms` long, values to `decimals` decimals.
fn content(g: &Geometry, overlay: &Overlay, range_ms: i64, decimals: u32) -> impl IntoView {
    let view_box = format!("0 0 {} {}", fixed(WIDTH, 0), fixed(HEIGHT, 0));
    let value_labels = g
        .value_ticks
        .iter()
        .map(|t| {
            let style = format!("top:{}%", fixed(t.percent, 2));
            view! { <span class="y-label" style=style>{fixed(t.value, decimals)}</span> }
        })
        .collect_view();
    let time_labels = g
        .time_ticks
        .iter()
        .map(|t| {
            let style = format!("left:{}%", fixed(t.percent, 2));
            let text = browser::tick_label(t.value as i64, range_ms);
            view! { <span class="x-label" style=style>{text}</span> }
        })
        .collect_view();
    view! {
        <div class="plot-area">
            <div class="y-axis" aria-hidden="true">{value_labels}</div>
            <div class="plot">
                <svg viewBox=view_box preserveAspectRatio="none" aria-hidden="true">
                    {drawing(g, overlay)}
                </svg>
                {g.empty.then(|| view! { <p class="chart-empty">"No readings in this range"</p> })}
            </div>
        </div>
        <div class="x-axis" aria-hidden="true">{time_labels}</div>
    }
}

/// The SVG of `g` with `overlay`: grid, shaded spans, min–max band,
/// threshold levels, line, and marks, bottom to top.
fn drawing(g: &Geometry, overlay: &Overlay) -> impl IntoView {
    let grid = g
        .value_ticks
        .iter()
        .map(|t| {
            let y = coordinate(t.percent * HEIGHT / 100.0);
            view! { <line class="grid" x1="0" x2=coordinate(WIDTH) y1=y.clone() y2=y vector-effect="non-scaling-stroke" /> }
        })
        .collect_view();
    let spans = overlay
        .spans
        .iter()
        .map(|&(from, to)| {
            let (x0, x1) = (g.x(from).max(0.0), g.x(to).min(WIDTH));
            view! { <rect class="span-on" x=coordinate(x0) y="0" width=coordinate((x1 - x0).max(0.0)) height=coordinate(HEIGHT) /> }
        })
        .collect_view();
    let levels = g
        .levels
        .iter()
        .map(|&y| {
            let y = coordinate(y);
            view! { <line class="level" x1="0" x2=coordinate(WIDTH) y1=y.clone() y2=y vector-effect="non-scaling-stroke" /> }
        })
        .collect_view();
    let marks = overlay
        .marks
        .iter()
        .map(|m| {
            let x = coordinate(g.x(m.time_unix_ms));
            let class = if m.on { "mark on" } else { "mark off" };
            view! { <line class=class x1=x.clone() x2=x y1="0" y2=coordinate(HEIGHT) vector-effect="non-scaling-stroke" /> }
        })
        .collect_view();
    view! {
        {grid}
        {spans}
        <path class="band" d=g.band.clone() />
        {levels}
        <path class="line" d=g.line.clone() vector-effect="non-scaling-stroke" />
        {marks}
    }
}
