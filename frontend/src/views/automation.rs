//! Automation of a home: its threshold rules (list, create, edit, enable and
//! disable, delete), a dry run of a rule or a draft over a chosen range drawn
//! on the chart of its sensor, and the log of what the rules decided.

use std::time::Duration;

use futures::future::LocalBoxFuture;
use gloo_timers::future::sleep;
use hearth_proto::v1::{
    Decision, DecisionAction, Device, DeviceKind, GetSeriesResponse, Metric, Rule, StaleAction,
};
use leptos::{prelude::*, task::spawn_local};

use super::{
    alert,
    chart::{Chart, Mark, Overlay},
    home::HomeState,
    loaded::{table, Column, Loaded, Loader, Shown},
    sensor_page::CustomRange,
};
use crate::{
    api::{self, ApiError},
    browser,
    chart::{Bucket, Geometry, Plot},
    display::{self, SENSOR_METRICS},
    number,
    range::{self, Range, Window},
    rules::{on_spans, RuleDraft},
    tasks::spawn_scoped,
};

/// Decisions listed, and how often the list is refreshed.
const DECISIONS: u32 = 50;
const DECISIONS_EVERY: Duration = Duration::from_secs(5);

/// The automation page of `home`.
#[component]
pub fn AutomationPage(home: HomeState) -> impl IntoView {
    let home_id = home.home_id.get_value();
    let changed = RwSignal::new(0u32);
    let editing = RwSignal::new(None::<RuleDraft>);
    let dry_rule = RwSignal::new(None::<Rule>);
    let failure = RwSignal::new(None::<String>);

    let new_rule = move |_| {
        let devices = home.devices.get_untracked().unwrap_or_default();
        let first = |kinds: &[DeviceKind]| {
            devices
                .iter()
                .find(|d| kinds.contains(&d.kind()))
                .map(|d| d.id.clone())
                .unwrap_or_default()
        };
        editing.set(Some(RuleDraft {
            source_device_id: first(&[DeviceKind::Sensor]),
            target_device_id: first(&[DeviceKind::Fan, DeviceKind::Light]),
            ..Default::default()
        }));
    };
    let actions = RuleActions {
        changed,
        editing,
        dry_rule,
        failure,
    };
    let rules = Loader::new(move || {
        changed.track();
        let home_id = home_id.clone();
        async move {
            let answer = api::list_rules(&home_id).await;
            Shown::of("the rules", answer, move |list: &Vec<Rule>| {
                if list.is_empty() {
                    return view! { <p class="hint">"No rules yet."</p> }.into_any();
                }
                list.iter()
                    .map(|rule| view! { <RuleCard rule=rule.clone() home actions /> })
                    .collect_view()
                    .into_any()
            })
        }
    });

    view! {
        <section id="rules" class="panel" aria-labelledby="rules-title">
            <div class="panel-head">
                <h3 id="rules-title">"Rules"</h3>
                {move || home.controls.get().edit_rules.then(|| view! {
                    <button id="new-rule" aria-label="Create a new rule" on:click=new_rule>"New rule"</button>
                })}
            </div>
            {move || failure.get().map(alert)}
            <Loaded loader=rules loading="Loading rules…" />
        </section>
        {move || editing.get().is_some().then(|| view! { <RuleForm home actions /> })}
        <DryRunPanel rule=dry_rule home />
        <Decisions home />
    }
}

/// What a rule card or the form can do to the page.
#[derive(Clone, Copy)]
struct RuleActions {
    /// Bumped to reload the rules.
    changed: RwSignal<u32>,
    editing: RwSignal<Option<RuleDraft>>,
    dry_rule: RwSignal<Option<Rule>>,
    failure: RwSignal<Option<String>>,
}

impl RuleActions {
    /// Runs `call`, then reloads the rules or shows why it failed.
    fn run(
        self,
        what: &'static str,
        call: impl std::future::Future<Output = Result<(), ApiError>> + 'static,
    ) {
        self.run_boxed(what, Box::pin(call));
    }

    // Why boxed: one copy of this for every kind of call.
    fn run_boxed(self, what: &'static str, call: LocalBoxFuture<'static, Result<(), ApiError>>) {
        spawn_local(async move {
            match call.await {
                Ok(()) => {
                    self.failure.set(None);
                    self.changed.update(|n| *n += 1);
                }
                Err(e) => self.failure.set(Some(format!("Could not {what}: {e}."))),
            }
        });
    }
}

fn device_label(home: HomeState, id: &str) -> String {
    home.devices.with_untracked(|devices| {
        devices
            .iter()
            .flatten()
            .find(|d| d.id == id)
            .map_or_else(|| id.to_owned(), |d| display::device_name(d).to_owned())
    })
}

/// One rule with its switches.
#[component]
fn RuleCard(rule: Rule, home: HomeState, actions: RuleActions) -> impl IntoView {
    let metric = display::metric_noun(rule.metric());
    let unit = display::unit(rule.metric()).unwrap_or("");
    let summary = format!(
        "When the {metric} of {} rises above {} {unit}, switch {} on; below {} {unit}, off.",
        device_label(home, &rule.source_device_id),
        number::trimmed(rule.on_above),
        device_label(home, &rule.target_device_id),
        number::trimmed(rule.off_below),
    );
    let mut details = Vec::new();
    if rule.min_on_seconds > 0 {
        details.push(format!(
            "on at least {}",
            display::seconds(rule.min_on_seconds.into())
        ));
    }
    if rule.min_off_seconds > 0 {
        details.push(format!(
            "off at least {}",
            display::seconds(rule.min_off_seconds.into())
        ));
    }
    if rule.sustain_seconds > 0 {
        details.push(format!(
            "crossing must hold {}",
            display::seconds(rule.sustain_seconds.into())
        ));
    }
    if rule.stale_after_seconds > 0 {
        details.push(format!(
            "no reading for {}: {}",
            display::seconds(rule.stale_after_seconds.into()),
            display::stale_action(rule.stale_action())
        ));
    }
    let enabled = rule.enabled;
    // Only admins change rules; everyone in the home may dry-run them.
    let editable = home.controls.get_untracked().edit_rules;
    let name = rule.name.clone();
    let toggle = {
        let rule = rule.clone();
        move |_| {
            let rule = Rule {
                enabled: !rule.enabled,
                ..rule.clone()
            };
            actions.run(
                if rule.enabled {
                    "enable the rule"
                } else {
                    "disable the rule"
                },
                async move { api::update_rule(rule).await.map(drop) },
            );
        }
    };
    let edit = {
        let rule = rule.clone();
        move |_| actions.editing.set(Some(RuleDraft::from(&rule)))
    };
    let dry = {
        let rule = rule.clone();
        move |_| actions.dry_rule.set(Some(rule.clone()))
    };
    let delete = {
        let id = rule.id.clone();
        move |_| {
            let id = id.clone();
            actions.run(
                "delete the rule",
                async move { api::delete_rule(&id).await },
            );
        }
    };
    view! {
        <article class="rule" class:disabled=!enabled data-rule=rule.id.clone()>
            <div class="rule-head">
                <h4>{rule.name.clone()}</h4>
                <span class="badge">{if enabled { "enabled" } else { "disabled" }}</span>
            </div>
            <p>{summary}</p>
            {(!details.is_empty()).then(|| view! { <p class="hint">{details.join(" · ")}</p> })}
            <div class="rule-buttons">
                {editable.then(|| view! {
                    <button data-action="toggle" aria-pressed=enabled.to_string() aria-label=format!("Rule {name} enabled") on:click=toggle>
                        {if enabled { "Enabled" } else { "Disabled" }}
                    </button>
                    <button data-action="edit" aria-label=format!("Edit rule {name}") on:click=edit>"Edit"</button>
                })}
                <button data-action="dry-run" aria-label=format!("Dry run rule {name}") on:click=dry>"Dry run"</button>
                {editable.then(|| view! {
                    <button data-action="delete" aria-label=format!("Delete rule {name}") on:click=delete>"Delete"</button>
                })}
            </div>
        </article>
    }
}

/// The form creating or editing the rule in `actions.editing`.
#[component]
fn RuleForm(home: HomeState, actions: RuleActions) -> impl IntoView {
    let draft = RwSignal::new(actions.editing.get_untracked().unwrap_or_default());
    let problem = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let is_new = draft.with_untracked(|d| d.id.is_empty());
    let home_id = home.home_id.get_value();

    let devices = move |kinds: &'static [DeviceKind]| {
        home.devices.with(|devices| {
            devices
                .iter()
                .flatten()
                .filter(|d| kinds.contains(&d.kind()))
                .map(|d: &Device| (d.id.clone(), display::device_name(d).to_owned()))
                .collect::<Vec<_>>()
        })
    };
    let device_options = move |kinds: &'static [DeviceKind], chosen: fn(&RuleDraft) -> &String| {
        move || {
            devices(kinds)
                .into_iter()
                .map(|(id, name)| {
                    let selected = draft.with(|d| chosen(d) == &id);
                    view! { <option value=id selected=selected>{name}</option> }
                })
                .collect_view()
        }
    };

    let save = {
        let home_id = home_id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let rule = match draft.with_untracked(|d| d.to_rule(&home_id)) {
                Ok(rule) => rule,
                Err(why) => return problem.set(Some(why)),
            };
            problem.set(None);
            saving.set(true);
            spawn_local(async move {
                let saved = if rule.id.is_empty() {
                    api::create_rule(rule).await
                } else {
                    api::update_rule(rule).await
                };
                saving.set(false);
                match saved {
                    Ok(_) => {
                        actions.editing.set(None);
                        actions.changed.update(|n| *n += 1);
                    }
                    Err(e) => problem.set(Some(format!("Could not save the rule: {e}."))),
                }
            });
        }
    };
    let dry_run = move |_| match draft.with_untracked(|d| d.to_rule(&home_id)) {
        Ok(rule) => {
            problem.set(None);
            actions.dry_rule.set(Some(rule));
        }
        Err(why) => problem.set(Some(why)),
    };

    let metric_options = SENSOR_METRICS
        .into_iter()
        .map(|m| {
            let selected = move || draft.with(|d| d.metric == m);
            view! { <option value=(m as i32).to_string() selected=selected>{display::metric_name(m)}</option> }
        })
        .collect_view();
    let stale_options = [StaleAction::Unspecified, StaleAction::Off, StaleAction::On]
        .into_iter()
        .map(|a| {
            let selected = move || draft.with(|d| d.stale_action == a);
            view! { <option value=(a as i32).to_string() selected=selected>{display::stale_action(a)}</option> }
        })
        .collect_view();

    view! {
        <section id="rule-form" class="panel" aria-labelledby="rule-form-title">
            <h3 id="rule-form-title">{if is_new { "New rule" } else { "Edit rule" }}</h3>
            <form class="rule-form" on:submit=save>
                {text_field(draft, "Name", "text", |d| &d.name, |d, v| d.name = v)}
                <label>
                    <span>"Sensor"</span>
                    <select aria-label="Sensor the rule reads" on:change=move |ev| draft.update(|d| d.source_device_id = event_target_value(&ev))>
                        <option value="">"—"</option>
                        {device_options(&[DeviceKind::Sensor], |d| &d.source_device_id)}
                    </select>
                </label>
                <label>
                    <span>"Metric"</span>
                    <select aria-label="Metric the rule reads" on:change=move |ev| {
                        let value = event_target_value(&ev).parse().unwrap_or(0);
                        draft.update(|d| d.metric = Metric::try_from(value).unwrap_or(Metric::Unspecified));
                    }>
                        {metric_options}
                    </select>
                </label>
                <label>
                    <span>"Device"</span>
                    <select aria-label="Device the rule switches" on:change=move |ev| draft.update(|d| d.target_device_id = event_target_value(&ev))>
                        <option value="">"—"</option>
                        {device_options(&[DeviceKind::Fan, DeviceKind::Light], |d| &d.target_device_id)}
                    </select>
                </label>
                {text_field(draft, "On above", "number", |d| &d.on_above, |d, v| d.on_above = v)}
                {text_field(draft, "Off below", "number", |d| &d.off_below, |d, v| d.off_below = v)}
                {text_field(draft, "Minimum on (s)", "number", |d| &d.min_on_seconds, |d, v| d.min_on_seconds = v)}
                {text_field(draft, "Minimum off (s)", "number", |d| &d.min_off_seconds, |d, v| d.min_off_seconds = v)}
                {text_field(draft, "Sustain (s)", "number", |d| &d.sustain_seconds, |d, v| d.sustain_seconds = v)}
                {text_field(draft, "Stale after (s)", "number", |d| &d.stale_after_seconds, |d, v| d.stale_after_seconds = v)}
                <label>
                    <span>"When stale"</span>
                    <select aria-label="What the rule does when its sensor goes silent" on:change=move |ev| {
                        let value = event_target_value(&ev).parse().unwrap_or(0);
                        draft.update(|d| d.stale_action = StaleAction::try_from(value).unwrap_or(StaleAction::Unspecified));
                    }>
                        {stale_options}
                    </select>
                </label>
                <label class="check">
                    <input type="checkbox" aria-label="Rule enabled" prop:checked=move || draft.with(|d| d.enabled) on:change=move |ev| draft.update(|d| d.enabled = event_target_checked(&ev)) />
                    "Enabled"
                </label>
                {move || problem.get().map(alert)}
                <div class="form-buttons">
                    <button type="submit" aria-label="Save the rule" disabled=move || saving.get()>"Save"</button>
                    <button type="button" aria-label="Dry run this draft" on:click=dry_run>"Dry run"</button>
                    <button type="button" aria-label="Cancel editing" on:click=move |_| actions.editing.set(None)>"Cancel"</button>
                </div>
            </form>
        </section>
    }
}

fn text_field(
    draft: RwSignal<RuleDraft>,
    label: &'static str,
    kind: &'static str,
    get: fn(&RuleDraft) -> &String,
    set: fn(&mut RuleDraft, String),
) -> impl IntoView {
    view! {
        <label>
            <span>{label}</span>
            <input
                type=kind
                step=(kind == "number").then_some("any")
                aria-label=label
                // Why not reactive: writing the draft back while the user
                // types would replace "19." (a number field reads it as "")
                // and lose the point; a new form is built per rule edited.
                prop:value=draft.with_untracked(|d| get(d).clone())
                on:input=move |ev| draft.update(|d| set(d, event_target_value(&ev)))
            />
        </label>
    }
}

/// What the rule in `rule` would have done over a chosen range, on the chart
/// of its sensor.
#[component]
fn DryRunPanel(rule: RwSignal<Option<Rule>>, home: HomeState) -> impl IntoView {
    let range = RwSignal::new(Range::Day);
    let fixed = RwSignal::new(Range::Day.window(browser::now_unix_ms()));
    let presets = range::PRESETS
        .into_iter()
        .filter(|(r, _)| *r != Range::Live)
        .map(|(preset, label)| {
            let pressed = move || range.with(|r| *r == preset).to_string();
            view! {
                <button aria-pressed=pressed aria-label=format!("Dry run over the last {label}") data-range=label on:click=move |_| {
                    fixed.set(preset.window(browser::now_unix_ms()));
                    range.set(preset);
                }>
                    {label}
                </button>
            }
        })
        .collect_view();
    let outcome = StoredValue::new_local(Loader::new(move || {
        let (rule, window) = (rule.get(), fixed.get());
        async move {
            let Some(rule) = rule else {
                return Shown::nothing();
            };
            let run = api::dry_run(rule.clone(), window.start_unix_ms, window.end_unix_ms);
            let series = api::get_series(
                &rule.source_device_id,
                rule.metric(),
                window.start_unix_ms,
                window.end_unix_ms,
                range::MAX_POINTS,
            );
            let (run, series) = futures::join!(run, series);
            Shown::new(move || dry_run_view(home, &rule, window, &run, &series))
        }
    }));
    // Why only with a rule chosen: "Running…" would otherwise flash up on
    // every visit.
    let chosen = Memo::new(move |_| rule.with(Option::is_some));
    view! {
        <section id="dry-run" class="panel" aria-labelledby="dry-run-title">
            <h3 id="dry-run-title">"Dry run"</h3>
            {move || match rule.get() {
                None => view! { <p class="hint">"Choose “Dry run” on a rule or a draft to see when it would have switched."</p> }.into_any(),
                Some(r) => view! { <p>"Rule " <strong>{r.name}</strong> " over the chosen range; nothing is switched."</p> }.into_any(),
            }}
            <div class="chart-controls">
                <div class="ranges" role="group" aria-label="Dry run range">{presets}</div>
                <CustomRange range fixed />
            </div>
            {move || {
                chosen
                    .get()
                    .then(|| view! { <Loaded loader=outcome.get_value() loading="Running the dry run…" /> })
            }}
        </section>
    }
}

fn dry_run_view(
    home: HomeState,
    rule: &Rule,
    window: Window,
    run: &Result<hearth_proto::v1::DryRunResponse, ApiError>,
    series: &Result<GetSeriesResponse, ApiError>,
) -> AnyView {
    let run = match run {
        Ok(run) => run,
        Err(e) => return alert(format!("The dry run failed: {e}.")).into_any(),
    };
    let switches = |action| {
        run.decisions
            .iter()
            .filter(|d| d.action() == action)
            .count()
    };
    let summary = format!(
        "{} readings evaluated: {} switch-ons, {} switch-offs, {} held back.",
        run.readings,
        switches(DecisionAction::SwitchOn),
        switches(DecisionAction::SwitchOff),
        switches(DecisionAction::Held),
    );
    let overlay = Overlay {
        spans: on_spans(
            &run.decisions,
            (window.start_unix_ms, window.end_unix_ms),
            false,
            rule.stale_action(),
        ),
        marks: run
            .decisions
            .iter()
            .filter_map(|d| match d.action() {
                DecisionAction::SwitchOn => Some(Mark {
                    time_unix_ms: d.time_unix_ms,
                    on: true,
                }),
                DecisionAction::SwitchOff => Some(Mark {
                    time_unix_ms: d.time_unix_ms,
                    on: false,
                }),
                _ => None,
            })
            .collect(),
    };
    let chart = match series {
        Ok(series) => {
            let buckets = Bucket::of_series(series);
            let levels = [rule.on_above, rule.off_below];
            let plot = Plot {
                buckets: &buckets,
                gap_ms: range::series_gap(series.bucket_ms),
                levels: &levels,
                ..Default::default()
            };
            let geometry = Geometry::of(&plot, window, browser::utc_offset_ms(window.end_unix_ms));
            let label = format!(
                "Dry run of {} on the {} of {}: {summary}",
                rule.name,
                display::metric_noun(rule.metric()),
                device_label(home, &rule.source_device_id)
            );
            view! {
                <Chart geometry=Signal::stored(geometry) window=Signal::stored(window) label overlay=Signal::stored(overlay) />
                <p class="caption">"Shaded: the device would be on. Dashed: on above " {number::trimmed(rule.on_above)} ", off below " {number::trimmed(rule.off_below)} "."</p>
            }
            .into_any()
        }
        Err(e) => alert(format!("Cannot load the sensor's series: {e}.")).into_any(),
    };
    let newest: Vec<Decision> = run.decisions.iter().rev().take(20).cloned().collect();
    let decisions = decision_table(&newest);
    view! {
        <p class="dry-summary" role="status">{summary}</p>
        {chart}
        {decisions}
    }
    .into_any()
}

/// The decisions log of the home, refreshed every few seconds.
#[component]
fn Decisions(home: HomeState) -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    spawn_scoped(async move {
        loop {
            sleep(DECISIONS_EVERY).await;
            refresh.update(|n| *n += 1);
        }
    });
    let decisions = Loader::new(move || {
        refresh.track();
        let home_id = home.home_id.get_value();
        async move {
            let answer = api::list_decisions(&home_id, DECISIONS).await;
            Shown::of("the decisions", answer, |list| decision_table(list))
        }
    });
    view! {
        <section id="decisions" class="panel" aria-labelledby="decisions-title">
            <h3 id="decisions-title">"Decisions"</h3>
            <Loaded loader=decisions loading="Loading decisions…" />
        </section>
    }
}

const DECISION_COLUMNS: &[Column] = &[
    Column("Time", ""),
    Column("Rule", ""),
    Column("Decision", ""),
    Column("Value", "value"),
    Column("Why", "wrap"),
    Column("Command", ""),
];

/// Decisions newest first as given.
fn decision_table(decisions: &[Decision]) -> AnyView {
    let rows = decisions
        .iter()
        .map(|d| {
            let value = if d.value.is_finite() {
                number::fixed(d.value, 1)
            } else {
                "—".into()
            };
            let command = if d.command_version > 0 {
                format!("v{}", d.command_version)
            } else {
                String::new()
            };
            vec![
                browser::local_time(d.time_unix_ms),
                d.rule_id.clone(),
                display::decision_action(d.action()).to_owned(),
                value,
                d.reason.clone(),
                command,
            ]
        })
        .collect();
    table(
        "readings decisions",
        DECISION_COLUMNS,
        rows,
        "No decisions.",
    )
}
