//! The Home Assistant bridge, seen from a client that speaks MQTT discovery
//! as Home Assistant does: it subscribes to the discovery prefix, reads the
//! configs, follows the state topics they name, and switches the fan on
//! through its command topic; in open mode, and logged in with an operator's
//! API token once logins are required.

use std::collections::HashMap;

use hearth_proto::{
    topics::TOKEN_USERNAME,
    v1::{
        self, CommandState, GetDeviceRequest, IngestBatchRequest, ListCommandsRequest, Metric,
        Mode, Reading, ReadingBatch,
    },
};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    access::{login, with_token, PASSWORD},
    broker_logins::{api_token, create_home, register},
    helpers::{spawn_app_with, SimDevice, TestApp, FAN, HOME, PATIENCE, SENSOR},
};

/// A client doing what Home Assistant's MQTT integration does with
/// discovery: every message it has seen, newest per topic.
struct HomeAssistant {
    client: AsyncClient,
    messages: mpsc::Receiver<(String, String, bool)>,
    /// topic → (payload, retained)
    seen: HashMap<String, (String, bool)>,
    _events: JoinHandle<()>,
}

impl HomeAssistant {
    /// Connects (with an API token, if given, as the password) and
    /// subscribes as Home Assistant does: its birth and last will on
    /// `{discovery}/status`, the configs under the discovery prefix.
    async fn connect(app: &TestApp, discovery_prefix: &str, token: Option<&str>) -> Self {
        let mut options = hearth_runtime::mqtt::options(
            &app.mqtt_url,
            &format!("home-assistant-{:08x}", rand::random::<u32>()),
            None,
        )
        .unwrap();
        let status = format!("{discovery_prefix}/status");
        options.set_last_will(rumqttc::LastWill::new(
            &status,
            "offline",
            QoS::AtLeastOnce,
            false,
        ));
        if let Some(token) = token {
            options.set_credentials(TOKEN_USERNAME, token);
        }
        let (client, mut events) = hearth_runtime::mqtt::client(options, 64);
        client
            .publish(&status, QoS::AtLeastOnce, false, "online")
            .await
            .unwrap();
        for filter in ["+/+/config", "+/+/+/config"] {
            client
                .subscribe(format!("{discovery_prefix}/{filter}"), QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        let (tx, messages) = mpsc::channel(1_024);
        let events = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = String::from_utf8_lossy(&p.payload).into_owned();
                        if tx.send((p.topic, payload, p.retain)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        Self {
            client,
            messages,
            seen: HashMap::new(),
            _events: events,
        }
    }

    /// Reads messages until `found` finds what it wants in what was seen.
    async fn until<T>(
        &mut self,
        what: &str,
        found: impl Fn(&HashMap<String, (String, bool)>) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(t) = found(&self.seen) {
                return t;
            }
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some((topic, payload, retain))) => {
                    self.seen.insert(topic, (payload, retain));
                }
                _ => panic!("gave up waiting for {what}; seen: {:#?}", self.seen),
            }
        }
    }

    /// The entity configs seen, by discovery topic.
    fn configs(seen: &HashMap<String, (String, bool)>) -> HashMap<String, Value> {
        seen.iter()
            .filter(|(topic, (payload, _))| topic.ends_with("/config") && !payload.is_empty())
            .map(|(topic, (payload, _))| {
                let config = serde_json::from_str(payload)
                    .unwrap_or_else(|e| panic!("config on {topic} is not JSON: {e}"));
                (topic.clone(), config)
            })
            .collect()
    }

    /// Subscribes to the topics an entity's config says to read.
    async fn follow(&self, config: &Value) {
        for key in ["state_topic", "availability_topic"] {
            if let Some(topic) = config[key].as_str() {
                self.client
                    .subscribe(topic, QoS::AtLeastOnce)
                    .await
                    .unwrap();
            }
        }
    }
}

/// The config of `component` whose device has `device_name` and whose
/// `device_class` (sensors) is `class`.
fn entity<'c>(
    configs: &'c HashMap<String, Value>,
    component: &str,
    device_name: &str,
    class: Option<&str>,
) -> Option<&'c Value> {
    configs.iter().find_map(|(topic, config)| {
        let matches = topic.split('/').nth(1) == Some(component)
            && config["device"]["name"] == device_name
            && class.is_none_or(|c| config["device_class"] == c);
        matches.then_some(config)
    })
}

fn state<'s>(
    seen: &'s HashMap<String, (String, bool)>,
    config: &Value,
    key: &str,
) -> Option<&'s str> {
    let topic = config[key].as_str()?;
    seen.get(topic).map(|(payload, _)| payload.as_str())
}

/// What Home Assistant does once `HOME` has the fan (online, as `fan`)
/// and the sensor: a reading of the sensor is sent (by `token`'s caller, an
/// admin, or in open mode), Home Assistant (`ha`) discovers the entities,
/// reads their states and switches the fan on, which Hearth records as a
/// command from Home Assistant. The configs seen, and the fan's.
async fn discover_and_switch_the_fan(
    app: &TestApp,
    ha: &mut HomeAssistant,
    fan: &mut SimDevice,
    token: Option<&str>,
) -> (HashMap<String, Value>, Value) {
    let mut telemetry = app.telemetry().await;
    let accepted = telemetry
        .ingest_batch(with_token(
            IngestBatchRequest {
                batches: vec![ReadingBatch {
                    home_id: HOME.into(),
                    device_id: SENSOR.into(),
                    seq: 1,
                    time_unix_ms: app.clock.now(),
                    readings: [
                        (Metric::TemperatureCelsius, 21.5),
                        (Metric::HumidityPercent, 45.0),
                        (Metric::PressureHpa, 1013.25),
                    ]
                    .into_iter()
                    .map(|(metric, value)| Reading {
                        metric: metric as i32,
                        value,
                    })
                    .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .accepted;
    assert_eq!(accepted, 1);

    // The entities, as Home Assistant discovers them.
    let configs = ha
        .until("the fan, its mode and three sensors", |seen| {
            let configs = HomeAssistant::configs(seen);
            let complete = entity(&configs, "fan", "Fan", None).is_some()
                && entity(&configs, "select", "Fan", None).is_some()
                && ["temperature", "humidity", "atmospheric_pressure"]
                    .iter()
                    .all(|c| entity(&configs, "sensor", "Living room", Some(c)).is_some());
            complete.then_some(configs)
        })
        .await;
    let units: Vec<(&str, &str)> = ["temperature", "humidity", "atmospheric_pressure"]
        .iter()
        .map(|class| {
            let config = entity(&configs, "sensor", "Living room", Some(class)).unwrap();
            assert_eq!(config["state_class"], "measurement", "{config}");
            (*class, config["unit_of_measurement"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        units,
        [
            ("temperature", "°C"),
            ("humidity", "%"),
            ("atmospheric_pressure", "hPa")
        ]
    );
    let mut unique_ids: Vec<&str> = configs
        .values()
        .map(|c| {
            c["unique_id"]
                .as_str()
                .expect("every entity has a unique_id")
        })
        .collect();
    unique_ids.sort();
    unique_ids.dedup();
    assert_eq!(unique_ids.len(), configs.len(), "unique ids are unique");
    let fan_config = entity(&configs, "fan", "Fan", None).unwrap().clone();

    // States, read where the configs say.
    for config in configs.values() {
        ha.follow(config).await;
    }
    let temperature = entity(&configs, "sensor", "Living room", Some("temperature"))
        .unwrap()
        .clone();
    let pressure = entity(
        &configs,
        "sensor",
        "Living room",
        Some("atmospheric_pressure"),
    )
    .unwrap()
    .clone();
    ha.until("the sensor's values and the fan online", |seen| {
        (state(seen, &temperature, "state_topic") == Some("21.5")
            && state(seen, &pressure, "state_topic") == Some("1013.25")
            && state(seen, &fan_config, "availability_topic") == Some("online"))
        .then_some(())
    })
    .await;

    // Switch the fan on from Home Assistant: through Hearth to the device.
    let command_topic = fan_config["command_topic"].as_str().unwrap();
    ha.client
        .publish(command_topic, QoS::AtLeastOnce, false, "ON")
        .await
        .unwrap();
    let desired = fan.next_desired().await;
    assert!(desired.on, "the device is asked to switch on");
    fan.apply(FAN, &desired).await;
    ha.until("the fan's state ON", |seen| {
        (state(seen, &fan_config, "state_topic") == Some("ON")).then_some(())
    })
    .await;

    let mut devices = app.devices().await;
    let commands = devices
        .list_commands(with_token(
            ListCommandsRequest {
                device_id: FAN.into(),
                limit: 10,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .commands;
    let newest = &commands[0];
    assert_eq!(newest.requested_by, "home-assistant");
    assert_eq!(newest.version, desired.version);
    assert!(newest.on);
    assert_eq!(newest.state(), CommandState::Applied, "{newest:?}");
    let device = devices
        .get_device(with_token(GetDeviceRequest { id: FAN.into() }, token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(device.mode(), Mode::On, "a manual ON, as SetMode makes");
    (configs, fan_config)
}

#[tokio::test]
async fn home_assistant_sees_the_home_and_switches_the_fan_through_hearth() {
    let discovery = format!("ha-{:08x}", rand::random::<u32>());
    let app = spawn_app_with(&[
        ("HEARTH_HOME_ASSISTANT", "true"),
        ("HEARTH_HOME_ASSISTANT_PREFIX", &discovery),
    ])
    .await;
    let mut ha = HomeAssistant::connect(&app, &discovery, None).await;
    let topics = app.topics.home_assistant(&discovery).unwrap();
    // Configs left on the broker: of a device no longer listed, and of the
    // fan as an earlier version announced it (under the node every home
    // shared), whose entity would otherwise stay twice. Another
    // deployment's config, whose node looks like one of this one's homes,
    // is not Hearth's to clear.
    let gone = topics.config(HOME, "light", "home_gone");
    let moved = format!("{discovery}/fan/{}/{HOME}_{FAN}/config", topics.node());
    let foreign = topics.config("x", "light", "x_lamp");
    for (topic, availability) in [
        (&gone, topics.availability(HOME, "gone")),
        (&moved, topics.availability(HOME, FAN)),
        (
            &foreign,
            "elsewhere/hearth/ha/x/lamp/availability".to_owned(),
        ),
    ] {
        let config = serde_json::json!({"name": null, "unique_id": topic,
            "command_topic": "x/set", "availability_topic": availability});
        ha.client
            .publish(topic.clone(), QoS::AtLeastOnce, true, config.to_string())
            .await
            .unwrap();
    }

    app.home_with_a_fan().await;
    app.add_sensor("Living room").await;
    let mut fan = SimDevice::connect(&app, FAN).await;
    fan.online(FAN).await;
    let (configs, fan_config) = discover_and_switch_the_fan(&app, &mut ha, &mut fan, None).await;
    // (The planted config's removal is awaited only now: the bridge clears
    // it on its next comparison, which may come after the other configs.)

    for stale in [&gone, &moved] {
        ha.until("the stale configs cleared", |seen| {
            seen.get(stale)
                .filter(|(payload, _)| payload.is_empty())
                .map(|_| ())
        })
        .await;
    }
    assert!(
        ha.seen.get(&foreign).is_some_and(|(p, _)| !p.is_empty()),
        "another deployment's config stays"
    );

    // Home Assistant restarting finds everything retained.
    let fan_topic = configs
        .iter()
        .find(|(_, c)| **c == fan_config)
        .map(|(topic, _)| topic.clone())
        .unwrap();
    let mut restarted = HomeAssistant::connect(&app, &discovery, None).await;
    restarted.follow(&fan_config).await;
    restarted
        .until("the fan's config and state, retained", |seen| {
            let config = seen.get(&fan_topic).is_some_and(|(payload, retained)| {
                *retained && serde_json::from_str::<Value>(payload).ok() == Some(fan_config.clone())
            });
            let on = seen
                .get(fan_config["state_topic"].as_str().unwrap())
                .is_some_and(|(payload, retained)| *retained && payload == "ON");
            (config && on).then_some(())
        })
        .await;
    app.stop().await;
}

/// With logins required, Home Assistant logs in to the embedded broker with
/// an operator's API token for its home: it does all it does in open mode,
/// and sees nothing of another home.
#[tokio::test]
async fn home_assistant_logs_in_with_an_operator_token_and_sees_only_its_home() {
    let discovery = format!("ha-{:08x}", rand::random::<u32>());
    let app = spawn_app_with(&[
        ("HEARTH_HOME_ASSISTANT", "true"),
        ("HEARTH_HOME_ASSISTANT_PREFIX", &discovery),
        ("HEARTH_ADMIN", "root@home"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
    ])
    .await;
    let root = login(&app, "root").await;
    let fan_login = register(&app, &root, HOME, FAN, v1::DeviceKind::Fan, "Fan").await;
    register(
        &app,
        &root,
        HOME,
        SENSOR,
        v1::DeviceKind::Sensor,
        "Living room",
    )
    .await;
    // Another home, whose configs' topics start as the first home's do
    // (`home_2_their-fan`).
    create_home(&app, &root, "home_2").await;
    register(
        &app,
        &root,
        "home_2",
        "their-fan",
        v1::DeviceKind::Fan,
        "Their fan",
    )
    .await;
    let token = api_token(&app, &root, "home-assistant", &[HOME], v1::Role::Operator).await;
    let mut fan = SimDevice::connect_with(&app, FAN, Some(&fan_login)).await;
    fan.online(FAN).await;

    let mut ha = HomeAssistant::connect(&app, &discovery, Some(&token)).await;
    discover_and_switch_the_fan(&app, &mut ha, &mut fan, Some(&root)).await;
    // Every config was sent before the fan's state ON, which was read.
    let names: Vec<Value> = HomeAssistant::configs(&ha.seen)
        .values()
        .map(|c| c["device"]["name"].clone())
        .collect();
    assert!(
        names.iter().all(|n| *n == "Fan" || *n == "Living room"),
        "only its home's devices: {names:?}"
    );
    app.stop().await;
}
