//! The automation page of the demo home on a desktop window: a threshold
//! rule created through the form, listed, dry-run over the last hour with
//! its switches drawn on the sensor's chart, then disabled and enabled again.

use fantoccini::{Client, Locator};
use hearth_proto::v1::{ListRulesRequest, Metric, Rule};
use hearth_tests::{
    browser::{screenshot, wait_for_text, Driver, Screen},
    TestApp,
};

use super::{click, count, spawn_app, BROWSER, WAIT};

/// The rule the test types into the form. Why these thresholds: the demo
/// sensor swings between 22 and 27 °C, so its first reading is already above
/// 20 °C and any stretch of its history switches the light on: the dry run has
/// something to draw however soon the test gets there.
const NAME: &str = "Light above 20";
const ON_ABOVE: &str = "20";
const OFF_BELOW: &str = "19.5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_is_created_dry_run_and_switched_off_and_on() {
    let _turn = BROWSER.lock().await;
    let app = spawn_app(true).await;
    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    let step = |n: &str| format!("automation-desktop-{n}");

    client
        .goto(&format!("http://{}/homes/demo/automation", app.http))
        .await
        .expect("opening the automation page");
    // The demo's own rule is listed before anything is created.
    wait_for_text(
        &client,
        r#"article.rule[data-rule="demo-fan-above-25"]"#,
        WAIT,
        |t| t.contains("Fan on above 25 °C") && t.contains("enabled"),
    )
    .await;

    fill_the_new_rule_form(&client).await;
    screenshot(&client, &step("1-form")).await;
    click(&client, r##"#rule-form button[type="submit"]"##).await;

    let rule = wait_for_rule(&app, |r| r.name == NAME).await;
    assert_eq!(
        (rule.source_device_id.as_str(), rule.metric()),
        ("demo-sensor", Metric::TemperatureCelsius)
    );
    assert_eq!(rule.target_device_id, "demo-light");
    assert_eq!((rule.on_above, rule.off_below), (20.0, 19.5));
    assert!(rule.enabled, "a new rule starts enabled");
    let card = format!(r#"article.rule[data-rule="{}"]"#, rule.id);
    let listed = wait_for_text(&client, &card, WAIT, |t| t.contains(NAME)).await;
    assert!(
        listed.contains("rises above 20 °C") && listed.contains("Living room light"),
        "{listed}"
    );
    let form_gone = client.find(Locator::Css("#rule-form")).await.is_err();
    assert!(form_gone, "the form closes once the rule is saved");
    screenshot(&client, &step("2-listed")).await;

    click(&client, &format!(r#"{card} button[data-action="dry-run"]"#)).await;
    click(&client, r##"#dry-run button[data-range="1 h"]"##).await;
    let summary = wait_for_text(&client, "#dry-run .dry-summary", WAIT, |t| {
        t.contains("readings evaluated") && !t.starts_with("0 readings")
    })
    .await;
    assert!(
        switch_ons(&summary) >= 1,
        "above 20 °C the light switches on: {summary}"
    );
    let chart = "#dry-run figure.chart";
    let label = client
        .find(Locator::Css(chart))
        .await
        .expect("the dry run's chart")
        .attr("aria-label")
        .await
        .expect("its label");
    assert!(
        label.is_some_and(|l| l.contains(NAME) && l.contains("temperature")),
        "the chart is the sensor's temperature under the rule"
    );
    assert!(count(&client, &format!("{chart} line.mark.on")).await >= 1);
    assert!(count(&client, &format!("{chart} rect.span-on")).await >= 1);
    assert_eq!(
        count(&client, &format!("{chart} line.level")).await,
        2,
        "both thresholds drawn"
    );
    let line = client
        .find(Locator::Css(&format!("{chart} path.line")))
        .await
        .expect("the average line")
        .attr("d")
        .await
        .expect("its path");
    assert!(line.is_some_and(|d| d.starts_with('M')), "readings drawn");
    screenshot(&client, &step("3-dry-run")).await;

    let toggle = format!(r#"{card} button[data-action="toggle"]"#);
    click(&client, &toggle).await;
    wait_for_text(&client, &format!("{card} .badge"), WAIT, |t| {
        t == "disabled"
    })
    .await;
    assert_eq!(pressed(&client, &toggle).await, "false");
    assert!(
        !wait_for_rule(&app, |r| r.id == rule.id && !r.enabled)
            .await
            .enabled
    );
    screenshot(&client, &step("4-disabled")).await;

    click(&client, &toggle).await;
    wait_for_text(&client, &format!("{card} .badge"), WAIT, |t| t == "enabled").await;
    assert_eq!(pressed(&client, &toggle).await, "true");
    assert!(
        wait_for_rule(&app, |r| r.id == rule.id && r.enabled)
            .await
            .enabled
    );
    screenshot(&client, &step("5-enabled")).await;
    client.close().await.expect("closing the session");
}

/// Opens the form for a new rule and types [`NAME`]: the demo sensor's
/// temperature switching the demo light.
async fn fill_the_new_rule_form(client: &Client) {
    click(client, "#new-rule").await;
    let form = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#rule-form form"))
        .await
        .expect("the rule form");
    for (field, value) in [
        ("Name", NAME),
        ("On above", ON_ABOVE),
        ("Off below", OFF_BELOW),
    ] {
        let input = form
            .find(Locator::Css(&format!(r#"input[aria-label="{field}"]"#)))
            .await
            .unwrap_or_else(|e| panic!("no field {field}: {e}"));
        input.clear().await.expect("clearing a field");
        input.send_keys(value).await.expect("typing into a field");
    }
    for (select, value) in [
        ("Sensor the rule reads", "demo-sensor"),
        ("Device the rule switches", "demo-light"),
    ] {
        // Why wait for the option: the devices arrive with the home's stream.
        client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!(
                r#"select[aria-label="{select}"] option[value="{value}"]"#
            )))
            .await
            .unwrap_or_else(|e| panic!("{value} is not offered in {select}: {e}"));
        form.find(Locator::Css(&format!(r#"select[aria-label="{select}"]"#)))
            .await
            .expect("the select")
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing {value} in {select}: {e}"));
    }
}

/// Waits until the demo home has a rule that `check` accepts.
async fn wait_for_rule(app: &TestApp, check: impl Fn(&Rule) -> bool) -> Rule {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut api = app.automation().await;
    loop {
        let rules = api
            .list_rules(ListRulesRequest {
                home_id: "demo".into(),
            })
            .await
            .expect("ListRules")
            .into_inner()
            .rules;
        if let Some(rule) = rules.iter().find(|r| check(r)) {
            return rule.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such rule; the demo home has {rules:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The switch-ons a dry run's summary counts: `… readings evaluated: 1 switch-ons, …`.
fn switch_ons(summary: &str) -> u32 {
    let (before, _) = summary
        .split_once(" switch-ons")
        .unwrap_or_else(|| panic!("no switch-ons in {summary:?}"));
    let count = before.rsplit(' ').next().unwrap_or_default();
    count
        .parse()
        .unwrap_or_else(|_| panic!("no count of switch-ons in {summary:?}"))
}

async fn pressed(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .attr("aria-pressed")
        .await
        .expect("aria-pressed")
        .unwrap_or_default()
}
