//! Commands and rules that hold up: the command lifecycle, offline devices,
//! expiry, manual overrides, rule timing across restarts, the stale
//! fail-safe, the decisions log, dry runs, live device streams, and two
//! replicas with one killed.

use std::time::Duration;

use hearth_proto::{
    topics::Channel,
    v1::{
        CommandState, CreateRuleRequest, DecisionAction, DesiredState, DeviceKind, DryRunRequest,
        ListDecisionsRequest, Metric, Mode, Reading, ReadingBatch, Rule, SetModeRequest,
        StaleAction, UpdateRuleRequest, WatchDevicesRequest,
    },
};
use hearth_tests::{both, spawn_actuator, unique, Backend, DeviceConnection, TestApp};
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic::Code;

use hearth_agent::hardware::Output as _;

const WAIT: Duration = Duration::from_secs(20);

fn temperature(seq: u64, value: f64) -> ReadingBatch {
    ReadingBatch {
        seq,
        time_unix_ms: hearth_agent::unix_ms_now(),
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value,
        }],
        ..Default::default()
    }
}

fn set(device: &str, mode: Mode) -> SetModeRequest {
    SetModeRequest {
        device_id: device.into(),
        mode: mode as i32,
        requested_by: "test".into(),
        ..Default::default()
    }
}

/// A home with a sensor and a fan in AUTO under a rule `rule` (defaults:
/// on above 25, off below 24); returns (home, sensor, fan, rule id).
async fn auto_fan(app: &TestApp, rule: Rule) -> (String, String, String, String) {
    let (sensor, fan) = (unique("sensor"), unique("fan"));
    let home = app
        .home_with(&[(&sensor, DeviceKind::Sensor), (&fan, DeviceKind::Fan)])
        .await;
    let created = app
        .automation()
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
                ..rule
            }),
        })
        .await
        .expect("CreateRule")
        .into_inner();
    app.devices()
        .await
        .set_mode(set(&fan, Mode::Auto))
        .await
        .expect("SetMode AUTO");
    (home, sensor, fan, created.id)
}

async fn decisions(app: &TestApp, rule: &str) -> Vec<hearth_proto::v1::Decision> {
    app.automation()
        .await
        .list_decisions(ListDecisionsRequest {
            rule_id: rule.into(),
            limit: 500,
            ..Default::default()
        })
        .await
        .expect("ListDecisions")
        .into_inner()
        .decisions
}

async fn a_device_offline_while_three_commands_were_issued_gets_only_the_latest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let light = unique("light");
    let home = app.home_with(&[(&light, DeviceKind::Light)]).await;
    let mut api = app.devices().await;
    for mode in [Mode::On, Mode::Off, Mode::On] {
        api.set_mode(set(&light, mode)).await.unwrap();
    }
    let waiting = app.commands(&light).await;
    assert_eq!(
        waiting
            .iter()
            .map(|c| (c.version, c.state()))
            .collect::<Vec<_>>(),
        [
            (3, CommandState::Requested),
            (2, CommandState::Superseded),
            (1, CommandState::Superseded)
        ],
        "nothing is published to an offline device"
    );

    let (output, _agent) = spawn_actuator(&app, &home, &light);
    // The report is stored just before its command is closed: wait for both.
    let device = app
        .wait_for_device(&light, WAIT, |d| {
            d.reported.as_ref().is_some_and(|r| r.applied_version == 3)
                && d.last_command
                    .as_ref()
                    .is_some_and(|c| c.state() == CommandState::Applied)
        })
        .await;
    assert!(output.is_on());
    let applied = device.last_command.expect("its command");
    assert_eq!(applied.version, 3);
    assert!(applied.published_unix_ms >= applied.requested_unix_ms);
    assert!(applied.applied_unix_ms >= applied.published_unix_ms);
    assert!(applied.round_trip_us > 0);
    let history = app.commands(&light).await;
    assert!(
        history[1..].iter().all(|c| c.published_unix_ms == 0),
        "the superseded commands were never sent: {history:?}"
    );
}
both!(a_device_offline_while_three_commands_were_issued_gets_only_the_latest);

/// A command sent while its device is coming online reaches it: the device's
/// "online" and the command race, twenty times at once. Before the command's
/// path read the presence again after storing the command, a device whose
/// "online" was handled between the two saw no command and got none until
/// it next reconnected.
async fn a_command_sent_as_its_device_comes_online_reaches_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fans: Vec<String> = (0..20).map(|_| unique("fan")).collect();
    let kinds: Vec<(&str, DeviceKind)> =
        fans.iter().map(|f| (f.as_str(), DeviceKind::Fan)).collect();
    let home = app.home_with(&kinds).await;
    let mut agents = Vec::new();
    let mut calls = Vec::new();
    for fan in &fans {
        agents.push(spawn_actuator(&app, &home, fan));
        let mut api = app.devices().await;
        let request = set(fan, Mode::On);
        calls.push(tokio::spawn(async move { api.set_mode(request).await }));
    }
    for call in calls {
        call.await.expect("the call's task").expect("SetMode");
    }
    for (fan, (output, _agent)) in fans.iter().zip(&agents) {
        app.wait_for_device(fan, WAIT, |d| {
            d.reported.as_ref().is_some_and(|r| r.applied_version == 1)
        })
        .await;
        assert!(output.is_on(), "{fan} is on");
    }
}
both!(a_command_sent_as_its_device_comes_online_reaches_it);

async fn an_expired_command_is_not_applied_and_a_returning_device_gets_a_fresh_one(
    backend: Backend,
) {
    let app = TestApp::spawn_with(
        backend,
        &[("HEARTH_DEMO", "false"), ("HEARTH_COMMAND_TTL_MS", "500")],
    )
    .await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;
    let mut api = app.devices().await;
    api.set_mode(set(&fan, Mode::On)).await.unwrap();
    // The engine sweeps expired commands on its tick.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.commands(&fan).await[0].state() != CommandState::Expired {
        assert!(tokio::time::Instant::now() < deadline, "v1 never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (output, _agent) = spawn_actuator(&app, &home, &fan);
    let back = app
        .wait_for_device(&fan, WAIT, |d| {
            d.reported.as_ref().is_some_and(|r| r.applied_version == 2)
        })
        .await;
    assert!(output.is_on());
    let fresh = back.last_command.expect("the reissued command");
    assert_eq!(fresh.requested_by, "resend");
    assert!(fresh.reason.contains("v1 expired"), "{}", fresh.reason);
    assert_eq!(app.commands(&fan).await[1].state(), CommandState::Expired);

    // A stale message that sat in a queue: newer version, but past its
    // time-to-live. The agent must drop it; if it applied it, it would also
    // ignore the real v3 below (not newer than 100).
    let mut sneaky: DeviceConnection = app.connect_as_device("queue").await;
    let topic = app
        .topics
        .device(&home, &fan, Channel::Desired)
        .expect("topic");
    let now = hearth_agent::unix_ms_now();
    sneaky
        .publish(
            &topic,
            DesiredState {
                version: 100,
                on: false,
                issued_unix_ms: now - 3_600_000,
                expires_unix_ms: now - 3_540_000,
            }
            .encode_to_vec(),
        )
        .await;
    api.set_mode(set(&fan, Mode::Off)).await.unwrap();
    app.wait_for_device(&fan, WAIT, |d| {
        d.reported
            .as_ref()
            .is_some_and(|r| r.applied_version == 3 && !r.on)
    })
    .await;
    assert_eq!(app.metric("hearth_reports_rejected_total").await, 0.0);
}
both!(an_expired_command_is_not_applied_and_a_returning_device_gets_a_fresh_one);

async fn a_restart_in_the_middle_of_a_sustain_window_acts_once_at_the_right_time(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let (home, sensor, fan, rule) = auto_fan(
        &app,
        Rule {
            sustain_seconds: 3,
            ..Default::default()
        },
    )
    .await;
    let mut device = app.connect_as_device(&sensor).await;
    let crossed_at = hearth_agent::unix_ms_now();
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(1, 27.0))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !decisions(&app, &rule)
        .await
        .iter()
        .any(|d| d.action() == DecisionAction::SustainStarted)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sustain never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(device);
    app.restart().await;

    let on = app
        .wait_for_device(&fan, WAIT, |d| d.desired.as_ref().is_some_and(|d| d.on))
        .await;
    let issued = on.desired.unwrap().issued_unix_ms;
    assert!(
        issued >= crossed_at + 3_000,
        "acted {} ms after the crossing, before the sustain time",
        issued - crossed_at
    );
    // Give a second engine pass the chance to act twice, then count.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let switches: Vec<_> = decisions(&app, &rule)
        .await
        .into_iter()
        .filter(|d| d.action() == DecisionAction::SwitchOn)
        .collect();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(switches[0].command_version, 1);
    assert_eq!(app.commands(&fan).await.len(), 1);
}
both!(a_restart_in_the_middle_of_a_sustain_window_acts_once_at_the_right_time);

async fn a_silent_sensor_triggers_the_fail_safe_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (home, sensor, fan, rule) = auto_fan(
        &app,
        Rule {
            stale_after_seconds: 3,
            stale_action: StaleAction::Off as i32,
            ..Default::default()
        },
    )
    .await;
    let (output, _agent) = spawn_actuator(&app, &home, &fan);
    let mut device = app.connect_as_device(&sensor).await;
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(1, 28.0))
        .await;
    app.wait_for_device(&fan, WAIT, |d| d.reported.as_ref().is_some_and(|r| r.on))
        .await;
    // Nothing more from the sensor: after 3 s the fail-safe switches off.
    let off = app
        .wait_for_device(&fan, WAIT, |d| {
            d.reported
                .as_ref()
                .is_some_and(|r| !r.on && r.applied_version == 2)
        })
        .await;
    assert!(
        off.desired_reason.contains("fail-safe"),
        "{}",
        off.desired_reason
    );
    assert!(!output.is_on());
    let stale: Vec<_> = decisions(&app, &rule)
        .await
        .into_iter()
        .filter(|d| d.action() == DecisionAction::Stale)
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].command_version, 2);

    // Back, still hot: the rule switches on again as a decision of its own.
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(2, 28.0))
        .await;
    app.wait_for_device(&fan, WAIT, |d| {
        d.reported
            .as_ref()
            .is_some_and(|r| r.on && r.applied_version == 3)
    })
    .await;
}
both!(a_silent_sensor_triggers_the_fail_safe_once);

#[tokio::test]
async fn a_manual_override_returns_to_auto_when_it_ends() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (home, sensor, fan, _) = auto_fan(&app, Rule::default()).await;
    let mut device = app.connect_as_device(&sensor).await;
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(1, 28.0))
        .await;
    app.wait_for_device(&fan, WAIT, |d| d.desired.as_ref().is_some_and(|d| d.on))
        .await;

    let mut api = app.devices().await;
    let overridden = api
        .set_mode(SetModeRequest {
            override_seconds: 1,
            ..set(&fan, Mode::Off)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overridden.mode, Mode::Off as i32);
    assert!(overridden.override_expires_unix_ms > 0);
    // Hot readings during the override change nothing: the user decides.
    device
        .publish_readings(&app.topics, &home, &sensor, &temperature(2, 29.0))
        .await;
    let back = app
        .wait_for_device(&fan, WAIT, |d| d.mode == Mode::Auto as i32)
        .await;
    assert_eq!(back.override_expires_unix_ms, 0);
    let resumed = app
        .wait_for_device(&fan, WAIT, |d| d.desired.as_ref().is_some_and(|d| d.on))
        .await;
    assert_eq!(
        resumed.desired.unwrap().version,
        3,
        "on, override off, on again"
    );

    let bad = api
        .set_mode(SetModeRequest {
            override_seconds: 5,
            ..set(&fan, Mode::Auto)
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("override_seconds"),
        "{}",
        bad.message()
    );
}

#[tokio::test]
async fn rules_are_edited_dry_run_and_checked_field_by_field() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (home, sensor, fan, rule_id) = auto_fan(&app, Rule::default()).await;
    let mut device = app.connect_as_device(&sensor).await;
    let start = hearth_agent::unix_ms_now() - 1;
    for (seq, value) in [(1, 24.5), (2, 26.0), (3, 25.0), (4, 23.0)] {
        device
            .publish_readings(&app.topics, &home, &sensor, &temperature(seq, value))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.wait_for_device(&fan, WAIT, |d| {
        d.desired.as_ref().is_some_and(|d| d.version == 2 && !d.on)
    })
    .await;

    let mut automation = app.automation().await;
    let rule = Rule {
        id: String::new(),
        home_id: home.clone(),
        source_device_id: sensor.clone(),
        metric: Metric::TemperatureCelsius as i32,
        target_device_id: fan.clone(),
        on_above: 25.5,
        off_below: 24.8,
        enabled: true,
        ..Default::default()
    };
    let dry = automation
        .dry_run(DryRunRequest {
            rule: Some(rule.clone()),
            start_unix_ms: start,
            end_unix_ms: 0,
        })
        .await
        .expect("DryRun")
        .into_inner();
    assert_eq!(dry.readings, 4);
    // 24.5 is below the new off threshold: the first reading sets it off.
    assert_eq!(
        dry.decisions.iter().map(|d| d.action()).collect::<Vec<_>>(),
        [
            DecisionAction::SwitchOff,
            DecisionAction::SwitchOn,
            DecisionAction::SwitchOff
        ]
    );
    assert!(dry.decisions.iter().all(|d| d.command_version == 0));
    assert_eq!(
        app.commands(&fan).await.len(),
        2,
        "a dry run switches nothing"
    );

    let updated = automation
        .update_rule(UpdateRuleRequest {
            rule: Some(Rule {
                id: rule_id.clone(),
                enabled: false,
                min_on_seconds: 60,
                ..rule.clone()
            }),
        })
        .await
        .expect("UpdateRule")
        .into_inner();
    assert!(!updated.enabled);
    assert_eq!(updated.min_on_seconds, 60);

    let logged = automation
        .list_decisions(ListDecisionsRequest {
            home_id: home.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decisions;
    assert_eq!(
        logged.iter().map(|d| d.action()).collect::<Vec<_>>(),
        [DecisionAction::SwitchOff, DecisionAction::SwitchOn],
        "newest first"
    );
    assert!((logged[1].value - 26.0).abs() < 1e-9);

    for (bad, field) in [
        (
            Rule {
                off_below: 30.0,
                ..rule.clone()
            },
            "rule.off_below",
        ),
        (
            Rule {
                target_device_id: sensor.clone(),
                ..rule.clone()
            },
            "rule.target_device_id",
        ),
        (
            Rule {
                sustain_seconds: 10_000_000,
                ..rule.clone()
            },
            "rule.sustain_seconds",
        ),
        (
            Rule {
                stale_action: StaleAction::Off as i32,
                ..rule.clone()
            },
            "rule.stale_action",
        ),
        (
            Rule {
                metric: Metric::Unspecified as i32,
                ..rule.clone()
            },
            "rule.metric",
        ),
    ] {
        let e = automation
            .create_rule(CreateRuleRequest { rule: Some(bad) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let e = automation
        .create_rule(CreateRuleRequest {
            rule: Some(Rule {
                source_device_id: "no-such-device".into(),
                ..rule.clone()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = automation
        .update_rule(UpdateRuleRequest {
            rule: Some(Rule {
                id: "no-such-rule".into(),
                ..rule
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn watch_devices_streams_every_change_of_a_home() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;
    let mut stream = app
        .devices()
        .await
        .watch_devices(WatchDevicesRequest {
            home_id: home.clone(),
        })
        .await
        .expect("WatchDevices")
        .into_inner();
    let first = stream.next().await.expect("a snapshot").unwrap();
    assert_eq!(first.devices.len(), 1);
    assert!(!first.devices[0].online);

    let (_output, _agent) = spawn_actuator(&app, &home, &fan);
    app.devices()
        .await
        .set_mode(set(&fan, Mode::On))
        .await
        .unwrap();
    let acknowledged = tokio::time::timeout(WAIT, async {
        while let Some(Ok(update)) = stream.next().await {
            let d = &update.devices[0];
            if d.reported.as_ref().is_some_and(|r| r.applied_version == 1) {
                return d.clone();
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("the acknowledgement streamed");
    assert!(acknowledged.online);
    assert_eq!(
        acknowledged.last_command.map(|c| c.state()),
        Some(CommandState::Applied)
    );

    let missing = app
        .devices()
        .await
        .watch_devices(WatchDevicesRequest {
            home_id: "no-such-home".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

/// Two replicas on one database and broker: one runs the rules; killed with
/// SIGKILL, the other takes over, and every crossing makes exactly one
/// command.
#[tokio::test]
async fn two_replicas_one_killed_every_crossing_switches_exactly_once() {
    // Why no replica names: a named replica's persistent session would hold
    // its share of messages while it is dead, and this one does not return.
    let a = TestApp::spawn(Backend::External).await;
    let (home, sensor, fan, rule) = auto_fan(&a, Rule::default()).await;
    let b = a.spawn_replica(None).await;
    let (_output, _agent) = spawn_actuator(&b, &home, &fan);
    let mut device = b.connect_as_device(&sensor).await;

    // Which one leads? Kill it after the first crossing.
    let deadline = tokio::time::Instant::now() + WAIT;
    let a_leads = loop {
        match (
            a.metric("hearth_automation_leader").await,
            b.metric("hearth_automation_leader").await,
        ) {
            (1.0, _) => break true,
            (_, 1.0) => break false,
            _ => {
                assert!(tokio::time::Instant::now() < deadline, "no leader");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    device
        .publish_readings(&b.topics, &home, &sensor, &temperature(1, 27.0))
        .await;
    b.wait_for_device(&fan, WAIT, |d| d.desired.as_ref().is_some_and(|d| d.on))
        .await;
    let (mut leader, survivor) = if a_leads { (a, b) } else { (b, a) };
    leader.kill9();

    // Crossings while and after the survivor takes over the lease.
    for (seq, value) in [(2, 23.0), (3, 27.5), (4, 22.5)] {
        device
            .publish_readings(&survivor.topics, &home, &sensor, &temperature(seq, value))
            .await;
        let want_on = value > 25.0;
        survivor
            .wait_for_device(&fan, WAIT, |d| {
                d.desired.as_ref().is_some_and(|d| d.on == want_on)
            })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // Exactly one command per crossing, all from the rule, in order.
    let sent: Vec<_> = survivor
        .commands(&fan)
        .await
        .into_iter()
        .rev()
        .map(|c| (c.version, c.on, c.requested_by))
        .collect();
    let by_rule = format!("rule:{rule}");
    assert_eq!(
        sent,
        [
            (1, true, by_rule.clone()),
            (2, false, by_rule.clone()),
            (3, true, by_rule.clone()),
            (4, false, by_rule.clone())
        ]
    );
    // The log names each command. (A leader killed between sending a command
    // and logging it leaves its successor to log the same decision without
    // a command, since the device was already asked.)
    let logged: Vec<_> = decisions(&survivor, &rule)
        .await
        .into_iter()
        .rev()
        .filter(|d| d.command_version > 0)
        .map(|d| d.command_version)
        .collect();
    assert!(
        logged.windows(2).all(|w| w[0] < w[1]) && logged.iter().all(|v| (1..=4).contains(v)),
        "{logged:?}"
    );
    assert!(logged.ends_with(&[2, 3, 4]), "{logged:?}");
    assert_eq!(survivor.metric("hearth_automation_leader").await, 1.0);
}
