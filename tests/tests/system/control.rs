//! Switching devices: SetMode → desired state published → the agent applies
//! it → the acknowledgement is recorded; and AUTO driven by a rule.

use std::time::Duration;

use hearth_agent::hardware::Output as _;
use hearth_proto::{
    topics::Channel,
    v1::{
        CommandState, CreateRuleRequest, DeviceKind, DeviceStatus, Metric, Mode, Reading,
        ReadingBatch, Rule, SetModeRequest,
    },
};
use hearth_tests::{both, spawn_actuator, unique, Backend};
use prost::Message as _;

const WAIT: Duration = Duration::from_secs(20);

async fn switching_a_fan_is_applied_and_acknowledged(backend: Backend) {
    let app = hearth_tests::TestApp::spawn(backend).await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;
    let (output, _agent) = spawn_actuator(&app, &home, &fan);
    app.wait_for_device(&fan, WAIT, |d| d.online).await;

    let mut api = app.devices().await;
    let on = api
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::On as i32,
            requested_by: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on.mode, Mode::On as i32);
    let desired = on.desired.expect("a desired state");
    assert_eq!((desired.version, desired.on), (1, true));
    // Who asked is the caller (`api` in open mode), whatever the request
    // claims (`requested_by: "test"` above).
    assert_eq!(on.desired_reason, "api: SetMode ON");

    let acked = app
        .wait_for_device(&fan, WAIT, |d| {
            d.reported.as_ref().is_some_and(|r| r.applied_version == 1)
        })
        .await;
    assert!(acked.reported.unwrap().on);
    assert!(
        acked.acknowledged_unix_ms >= desired.issued_unix_ms,
        "{acked:?}"
    );
    assert!(output.is_on(), "the simulated fan's output is on");

    let off = api
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::Off as i32,
            requested_by: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        off.desired.as_ref().map(|d| (d.version, d.on)),
        Some((2, false))
    );
    assert_eq!(off.desired_reason, "api: SetMode OFF");
    app.wait_for_device(&fan, WAIT, |d| {
        d.reported
            .as_ref()
            .is_some_and(|r| r.applied_version == 2 && !r.on)
    })
    .await;
    assert!(!output.is_on());

    // The same mode again makes no new version.
    let again = api
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::Off as i32,
            requested_by: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.desired.map(|d| d.version), Some(2));

    // Each command's lifecycle, with its times in order and its round trip.
    let commands = app.commands(&fan).await;
    assert_eq!(commands.len(), 2);
    for c in &commands {
        assert_eq!(c.state(), CommandState::Applied, "{c:?}");
        assert!(
            c.requested_unix_ms <= c.published_unix_ms && c.published_unix_ms <= c.applied_unix_ms,
            "requested ≤ published ≤ applied: {c:?}"
        );
        assert!(c.round_trip_us > 0, "{c:?}");
    }
}
both!(switching_a_fan_is_applied_and_acknowledged);

/// A command its device never answers still shows when it went out: the
/// publish time, which otherwise travels with the acknowledgement, is
/// stored on its own.
async fn an_unanswered_command_is_recorded_as_published(backend: Backend) {
    let app = hearth_tests::TestApp::spawn(backend).await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;
    // A device that says it is online and then never reports.
    let mut silent = app.connect_as_device(&fan).await;
    let status = app
        .topics
        .device(&home, &fan, Channel::Status)
        .expect("topic");
    let online = DeviceStatus {
        online: true,
        time_unix_ms: hearth_agent::unix_ms_now(),
        agent: "test".into(),
        ..DeviceStatus::default()
    };
    silent.publish(&status, online.encode_to_vec()).await;
    app.wait_for_device(&fan, WAIT, |d| d.online).await;

    let on = app
        .devices()
        .await
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::On as i32,
            requested_by: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sent = on.last_command.expect("the command");
    assert_eq!(sent.state(), CommandState::Published);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = app.commands(&fan).await;
        if stored[0].state() == CommandState::Published {
            assert_eq!(stored[0].published_unix_ms, sent.published_unix_ms);
            assert_eq!(stored[0].round_trip_us, 0);
            break;
        }
        assert_eq!(stored[0].state(), CommandState::Requested);
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored as published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
both!(an_unanswered_command_is_recorded_as_published);

async fn a_device_that_comes_online_gets_its_current_desired_state(backend: Backend) {
    let app = hearth_tests::TestApp::spawn(backend).await;
    let light = unique("light");
    let home = app.home_with(&[(&light, DeviceKind::Light)]).await;
    let mut api = app.devices().await;
    // Switched while no agent runs: stored, published to nobody.
    api.set_mode(SetModeRequest {
        device_id: light.clone(),
        mode: Mode::On as i32,
        requested_by: String::new(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (output, _agent) = spawn_actuator(&app, &home, &light);
    app.wait_for_device(&light, WAIT, |d| {
        d.reported
            .as_ref()
            .is_some_and(|r| r.applied_version == 1 && r.on)
    })
    .await;
    assert!(output.is_on());
}
both!(a_device_that_comes_online_gets_its_current_desired_state);

async fn in_auto_a_rule_switches_the_fan_above_25_degrees(backend: Backend) {
    let app = hearth_tests::TestApp::spawn(backend).await;
    let (sensor, fan) = (unique("sensor"), unique("fan"));
    let home = app
        .home_with(&[(&sensor, DeviceKind::Sensor), (&fan, DeviceKind::Fan)])
        .await;
    app.automation()
        .await
        .create_rule(CreateRuleRequest {
            rule: Some(Rule {
                home_id: home.clone(),
                source_device_id: sensor.clone(),
                metric: Metric::TemperatureCelsius as i32,
                target_device_id: fan.clone(),
                on_above: 25.0,
                off_below: 24.0,
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .expect("CreateRule");
    let (output, _agent) = spawn_actuator(&app, &home, &fan);
    app.wait_for_device(&fan, WAIT, |d| d.online).await;
    let mut api = app.devices().await;
    let mut device = app.connect_as_device(&sensor).await;
    let temperature = |seq: u64, value: f64| ReadingBatch {
        seq,
        time_unix_ms: hearth_agent::unix_ms_now(),
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value,
        }],
        ..Default::default()
    };

    // Not in AUTO yet: a hot reading changes nothing.
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(1, 30.0))
        .await;
    api.set_mode(SetModeRequest {
        device_id: fan.clone(),
        mode: Mode::Off as i32,
        requested_by: String::new(),
        ..Default::default()
    })
    .await
    .unwrap();
    app.wait_for_device(&fan, WAIT, |d| {
        d.reported.as_ref().is_some_and(|r| r.applied_version == 1)
    })
    .await;

    api.set_mode(SetModeRequest {
        device_id: fan.clone(),
        mode: Mode::Auto as i32,
        requested_by: String::new(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Back in AUTO, the rule takes the fan to what the last reading (30 °C)
    // asks for, without waiting for another crossing.
    let resumed = app
        .wait_for_device(&fan, WAIT, |d| {
            d.reported
                .as_ref()
                .is_some_and(|r| r.on && r.applied_version == 2)
        })
        .await;
    // Either the rule resumes its decision, or it evaluates the 30 °C reading
    // only now (readings are evaluated on the engine's next pass).
    assert!(
        resumed.desired_reason.contains("back in AUTO")
            || resumed.desired_reason.contains("30.00 > 25"),
        "{}",
        resumed.desired_reason
    );
    assert!(output.is_on());

    // Inside the dead band nothing changes; below it the fan goes off, and
    // above 25 on again.
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(2, 24.5))
        .await;
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(3, 23.0))
        .await;
    let off = app
        .wait_for_device(&fan, WAIT, |d| {
            d.reported
                .as_ref()
                .is_some_and(|r| !r.on && r.applied_version == 3)
        })
        .await;
    assert_eq!(off.mode, Mode::Auto as i32);
    assert!(
        off.desired_reason.contains("23.00 < 24"),
        "{}",
        off.desired_reason
    );
    assert!(!output.is_on());
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(4, 25.5))
        .await;
    let on = app
        .wait_for_device(&fan, WAIT, |d| {
            d.reported
                .as_ref()
                .is_some_and(|r| r.on && r.applied_version == 4)
        })
        .await;
    assert!(
        on.desired_reason.contains("25.50 > 25"),
        "{}",
        on.desired_reason
    );
    let command = on.last_command.expect("the command behind it");
    assert!(command.requested_by.starts_with("rule:"), "{command:?}");
    assert!(output.is_on());
}
both!(in_auto_a_rule_switches_the_fan_above_25_degrees);
