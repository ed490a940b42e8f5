//! Devices' MQTT credentials on Mosquitto with the dynamic security plugin,
//! which `hearth` manages (HEARTH_MQTT_DYNSEC_ADMIN): a Mosquitto of the
//! test's own, on a port of its own, with the plugin loaded.

use std::time::Duration;

use hearth_proto::{
    topics::{token_client_id, token_username, Channel},
    v1::{
        self, CreateApiTokenRequest, CreateHomeRequest, DesiredState, DeviceKind, Metric,
        MqttCredential, ReadingBatch, RegisterDeviceRequest,
    },
};
use hearth_tests::{
    mqtt_connect, next_packet, unique, Backend, PrivateBroker, TempDir, TestAgent, TestApp,
    TestGateway,
};
use prost::Message as _;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, Packet, QoS, SubscribeReasonCode};

const PATIENCE: Duration = Duration::from_secs(10);
const ADMIN: &str = "hearth-admin";

struct Setup {
    app: TestApp,
    home: String,
    broker: PrivateBroker,
    /// The dynamic security admin's.
    password: String,
    _dir: TempDir,
}

async fn hearth_on_dynsec_mosquitto() -> Setup {
    hearth_on_dynsec_mosquitto_with(&[]).await
}

/// [`hearth_on_dynsec_mosquitto`] with more settings.
async fn hearth_on_dynsec_mosquitto_with(extra: &[(&str, &str)]) -> Setup {
    let dir = TempDir::new();
    let password = format!("pw-{:016x}", rand::random::<u64>());
    let broker = PrivateBroker::start_with_dynsec(&dir, ADMIN, &password).await;
    let url = broker.url();
    let mut settings = vec![
        ("HEARTH_DEMO", "false"),
        ("HEARTH_MQTT_URL", url.as_str()),
        ("HEARTH_MQTT_DYNSEC_ADMIN", ADMIN),
        ("HEARTH_MQTT_DYNSEC_PASSWORD", &password),
    ];
    settings.extend_from_slice(extra);
    let app = TestApp::spawn_with(Backend::External, &settings).await;
    let home = unique("home");
    create_home(&app, &home).await;
    Setup {
        app,
        home,
        broker,
        password,
        _dir: dir,
    }
}

async fn create_home(app: &TestApp, id: &str) {
    app.devices()
        .await
        .create_home(CreateHomeRequest {
            id: id.into(),
            name: String::new(),
        })
        .await
        .expect("CreateHome");
}

impl Setup {
    async fn register(&self, id: &str, kind: DeviceKind) -> MqttCredential {
        self.register_in(&self.home, id, kind).await
    }

    async fn register_in(&self, home: &str, id: &str, kind: DeviceKind) -> MqttCredential {
        self.app
            .devices()
            .await
            .register_device(RegisterDeviceRequest {
                home_id: home.into(),
                id: id.into(),
                kind: kind as i32,
                name: String::new(),
            })
            .await
            .expect("RegisterDevice")
            .into_inner()
            .mqtt_credential
            .expect("a new device's credential")
    }

    /// A new ingest token `name` of the home, limited to `devices`: its secret.
    async fn ingest_token(&self, name: &str, devices: &[&str]) -> String {
        self.token(name, v1::Role::Ingest, devices).await
    }

    /// A new API token `name` of the home with `role`: its secret.
    async fn token(&self, name: &str, role: v1::Role, devices: &[&str]) -> String {
        self.app
            .auth()
            .await
            .create_api_token(CreateApiTokenRequest {
                name: name.into(),
                home_ids: vec![self.home.clone()],
                role: role as i32,
                device_ids: devices.iter().map(|d| d.to_string()).collect(),
            })
            .await
            .expect("CreateApiToken")
            .into_inner()
            .token
    }

    /// `RevokeApiToken` for token `name`, as the home's owner.
    async fn revoke_token(&self, name: &str) {
        self.app
            .auth()
            .await
            .revoke_api_token(v1::RevokeApiTokenRequest { name: name.into() })
            .await
            .expect("RevokeApiToken");
    }

    /// `SetMode` ON for `device`, as the home's owner.
    async fn switch_on(&self, device: &str) {
        self.app
            .devices()
            .await
            .set_mode(v1::SetModeRequest {
                device_id: device.into(),
                mode: v1::Mode::On as i32,
                ..Default::default()
            })
            .await
            .expect("SetMode");
    }

    fn topic(&self, device: &str, channel: Channel) -> String {
        self.app
            .topics
            .device(&self.home, device, channel)
            .expect("a valid topic")
    }
}

/// Connects to `app`'s broker as `client_id` with `login`; the connection,
/// or the CONNACK code it was refused with.
async fn connect(
    app: &TestApp,
    client_id: &str,
    login: (&str, &str),
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    mqtt_connect(&app.mqtt_url, client_id, Some(login)).await
}

async fn connect_as(app: &TestApp, login: &MqttCredential) -> (AsyncClient, EventLoop) {
    connect(app, &login.client_id, (&login.username, &login.password))
        .await
        .unwrap_or_else(|code| panic!("{} is refused: {code:?}", login.username))
}

/// Mosquitto refuses a bad login with "not authorised" or "bad username or
/// password", depending on the reason.
fn is_refused(answer: Result<(AsyncClient, EventLoop), ConnectReturnCode>) -> bool {
    matches!(
        answer.err(),
        Some(ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword)
    )
}

/// Publishes `payload` on `topic` at QoS 1 and expects the broker's PUBACK.
async fn publish_acked(
    client: &AsyncClient,
    events: &mut EventLoop,
    topic: String,
    payload: Vec<u8>,
) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    assert!(matches!(next_packet(events).await, Packet::PubAck(_)));
}

/// Announces `device` online (Hearth sends commands to a device it knows
/// is online) on `client`, and expects the broker's PUBACK.
async fn say_online(s: &Setup, client: &AsyncClient, events: &mut EventLoop, device: &str) {
    let online = v1::DeviceStatus {
        online: true,
        ..Default::default()
    };
    publish_acked(
        client,
        events,
        s.topic(device, Channel::Status),
        online.encode_to_vec(),
    )
    .await;
}

fn batch(home: &str, device: &str, seq: u64) -> Vec<u8> {
    ReadingBatch {
        home_id: home.into(),
        device_id: device.into(),
        seq,
        time_unix_ms: hearth_runtime::clock::unix_ms_now(),
        readings: vec![v1::Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: 21.5,
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reaches_only_its_own_topics_on_mosquitto_with_dynamic_security() {
    let s = hearth_on_dynsec_mosquitto().await;
    let (a, b) = (unique("sensor-a"), unique("fan-b"));
    let login_a = s.register(&a, DeviceKind::Sensor).await;
    let login_b = s.register(&b, DeviceKind::Fan).await;
    let (client_a, mut events_a) = connect_as(&s.app, &login_a).await;
    let (client_b, mut events_b) = connect_as(&s.app, &login_b).await;
    client_b
        .subscribe(s.topic(&b, Channel::Desired), QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(ack) = next_packet(&mut events_b).await else {
        panic!("B's SUBACK");
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        "a device subscribes to its own desired state"
    );

    for filter in ["#".to_owned(), s.topic(&b, Channel::Desired)] {
        client_a.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
        let Packet::SubAck(ack) = next_packet(&mut events_a).await else {
            panic!("a SUBACK for {filter}");
        };
        assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure], "{filter}");
    }
    // B's readings and B's desired state from A: acknowledged, dropped.
    for (topic, payload, retain) in [
        (s.topic(&b, Channel::Readings), batch(&s.home, &b, 1), false),
        (s.topic(&b, Channel::Desired), vec![9, 9, 9], true),
    ] {
        client_a
            .publish(&topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
        assert!(
            matches!(next_packet(&mut events_a).await, Packet::PubAck(_)),
            "{topic}"
        );
    }
    // A's own readings are stored, and nothing of B's.
    publish_acked(
        &client_a,
        &mut events_a,
        s.topic(&a, Channel::Readings),
        batch(&s.home, &a, 2),
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.app.stored_readings(&a).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "A's reading stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.app.stored_readings(&b).await.is_empty());

    // What B hears first is Hearth's command, not A's forgery.
    say_online(&s, &client_b, &mut events_b, &b).await;
    s.switch_on(&b).await;
    let p = next_publish(&mut events_b).await;
    let desired = DesiredState::decode(p.payload.as_ref()).expect("Hearth's DesiredState");
    assert!(desired.on && desired.version >= 1, "{desired:?}");
}

/// Dynamic security lets a device publish on its own topics but cannot
/// forbid it to retain there. Hearth's plugin, loaded before it as in
/// deploy/mosquitto-dynsec.conf, refuses the retained publishes (the device
/// gets its PUBACK, as for any refusal in MQTT 3.1.1), and Hearth's own login
/// still retains: Home Assistant's discovery configs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_retain_on_its_own_topics_on_mosquitto_and_hearth_still_can() {
    let s = hearth_on_dynsec_mosquitto_with(&[("HEARTH_HOME_ASSISTANT", "true")]).await;
    let sensor = unique("sensor");
    let login = s.register(&sensor, DeviceKind::Sensor).await;
    let (client, mut events) = connect_as(&s.app, &login).await;
    let online = v1::DeviceStatus {
        online: true,
        ..Default::default()
    };
    let own = [Channel::Readings, Channel::Reported, Channel::Status];
    for (channel, payload) in own.into_iter().zip([
        batch(&s.home, &sensor, 1),
        vec![0x08, 0x01],
        online.encode_to_vec(),
    ]) {
        client
            .publish(s.topic(&sensor, channel), QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
        assert!(
            matches!(next_packet(&mut events).await, Packet::PubAck(_)),
            "{channel:?}"
        );
    }
    // The retained messages a new subscriber gets, until Hearth's config of
    // the sensor is among them. Mosquitto sends them as it takes the
    // SUBSCRIBE, so they are all in before the marker published after it.
    let own_topics: Vec<String> = own.iter().map(|c| s.topic(&sensor, *c)).collect();
    let prefix = s.app.topics.prefix().to_owned();
    let marker = format!("{prefix}/marker");
    let (watcher, mut watcher_events) = connect(&s.app, &unique("watcher"), (ADMIN, &s.password))
        .await
        .expect("Hearth's login");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut received = Vec::new();
        for filter in [format!("{prefix}/#"), "homeassistant/+/+/+/config".into()] {
            watcher.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
            next_suback(&mut watcher_events, &mut received).await;
        }
        watcher
            .publish(&marker, QoS::AtMostOnce, false, "marker")
            .await
            .unwrap();
        loop {
            let p = next_publish(&mut watcher_events).await;
            if p.topic == marker {
                break;
            }
            received.push(p);
        }
        for p in &received {
            assert!(
                !own_topics.contains(&p.topic),
                "the device's retained {} reached a later subscriber",
                p.topic
            );
        }
        // Retained: sent as the subscription was taken, not live.
        if received
            .iter()
            .any(|p| p.retain && p.topic.ends_with("/config") && p.topic.contains(sensor.as_str()))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Hearth's discovery config of the sensor, retained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_rotated_revoked_or_borrowed_logins_are_refused_by_mosquitto() {
    let s = hearth_on_dynsec_mosquitto().await;
    let (a, b) = (unique("sensor-a"), unique("sensor-b"));
    let login_a = s.register(&a, DeviceKind::Sensor).await;
    let login_b = s.register(&b, DeviceKind::Sensor).await;
    assert!(is_refused(
        connect(&s.app, &login_a.client_id, (&a, "hd_wrong")).await
    ));
    assert!(is_refused(
        connect(&s.app, &login_a.client_id, (&a, &login_b.password)).await
    ));
    // A's login under a replica's client id, or under B's.
    for client_id in [
        format!("hearth-backend-{}-readings", unique("r")),
        login_b.client_id.clone(),
    ] {
        assert!(
            is_refused(connect(&s.app, &client_id, (&a, &login_a.password)).await),
            "{client_id}"
        );
    }

    let rotated = s
        .app
        .devices()
        .await
        .rotate_device_credential(v1::RotateDeviceCredentialRequest {
            device_id: a.clone(),
        })
        .await
        .expect("RotateDeviceCredential")
        .into_inner()
        .mqtt_credential
        .expect("the new credential");
    assert!(is_refused(
        connect(&s.app, &login_a.client_id, (&a, &login_a.password)).await
    ));
    let (client, mut events) = connect_as(&s.app, &rotated).await;
    publish_acked(
        &client,
        &mut events,
        s.topic(&a, Channel::Readings),
        batch(&s.home, &a, 1),
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.app.stored_readings(&a).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a reading with the new login stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    s.app
        .devices()
        .await
        .revoke_device_credential(v1::RevokeDeviceCredentialRequest {
            device_id: a.clone(),
        })
        .await
        .expect("RevokeDeviceCredential");
    assert!(is_refused(
        connect(&s.app, &rotated.client_id, (&a, &rotated.password)).await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_puts_back_what_the_broker_lost_of_devices_logins() {
    let mut s = hearth_on_dynsec_mosquitto().await;
    let (a, b) = (unique("sensor-a"), unique("sensor-b"));
    let login_a = s.register(&a, DeviceKind::Sensor).await;
    let _ = s.register(&b, DeviceKind::Sensor).await;
    let (client_a, mut events_a) = connect_as(&s.app, &login_a).await;
    let (kept_gateway, lost_gateway) = (unique("kept-gw"), unique("lost-gw"));
    s.ingest_token(&kept_gateway, &[]).await;
    s.ingest_token(&lost_gateway, &[]).await;
    // The broker loses B's client and role, and a gateway token's client
    // (a restored backup, say).
    for command in [
        vec!["deleteClient", b.as_str()],
        vec!["deleteRole", &format!("hearth-device-{b}")],
        vec!["deleteClient", &token_username(&lost_gateway)],
    ] {
        let status = std::process::Command::new("mosquitto_ctrl")
            .args(["-h", "127.0.0.1", "-p", &s.broker.port.to_string()])
            .args(["-u", ADMIN, "-P", &s.password, "dynsec"])
            .args(&command)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running mosquitto_ctrl");
        assert!(status.success(), "{command:?}");
    }
    s.app.restart().await;
    let logs = s.app.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("the broker had no client") && l.contains(&b))
            && !logs
                .lines()
                .any(|l| l.contains("the broker had no client") && l.contains(&a)),
        "{logs}"
    );
    // A token's login cannot be made again from its hash: the start says so.
    let lost_token = |name: &str| {
        logs.lines()
            .any(|l| l.contains("the broker has no login for this API token") && l.contains(name))
    };
    assert!(
        lost_token(&lost_gateway) && !lost_token(&kept_gateway),
        "{logs}"
    );
    // A's connection went on through the restart (a replica's start changes
    // no device's client, which would make Mosquitto disconnect it).
    publish_acked(
        &client_a,
        &mut events_a,
        s.topic(&a, Channel::Readings),
        batch(&s.home, &a, 1),
    )
    .await;
    // B gets a client back, with a password once rotated.
    let login_b = s
        .app
        .devices()
        .await
        .rotate_device_credential(v1::RotateDeviceCredentialRequest {
            device_id: b.clone(),
        })
        .await
        .expect("RotateDeviceCredential")
        .into_inner()
        .mqtt_credential
        .expect("the new credential");
    let (client, mut events) = connect_as(&s.app, &login_b).await;
    client
        .subscribe(s.topic(&a, Channel::Desired), QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(ack) = next_packet(&mut events).await else {
        panic!("a SUBACK");
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Failure],
        "B's rights came back as B's only"
    );
}

/// Home Assistant on Mosquitto logs in with an operator's API token for its
/// home (README, "Home Assistant"): Hearth makes the login, which receives
/// that home's discovery configs and none of another home's on the same
/// broker, switches the home's fan through Hearth's command path, and can
/// neither read nor switch the other home's devices nor forge a desired
/// state; revoking the token ends the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_logs_in_to_mosquitto_with_a_token_and_sees_its_home_alone() {
    let s = hearth_on_dynsec_mosquitto_with(&[("HEARTH_HOME_ASSISTANT", "true")]).await;
    let (fan, other_fan) = (unique("fan"), unique("their-fan"));
    // The other home's id starts as this one's, so its configs' object ids
    // (`{home}_{device}`) do too.
    let other_home = format!("{}_2", s.home);
    create_home(&s.app, &other_home).await;
    let login = s.register(&fan, DeviceKind::Fan).await;
    s.register_in(&other_home, &other_fan, DeviceKind::Fan)
        .await;
    let (fan_client, mut fan_events) = connect_as(&s.app, &login).await;
    fan_client
        .subscribe(s.topic(&fan, Channel::Desired), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(
        next_packet(&mut fan_events).await,
        Packet::SubAck(_)
    ));
    say_online(&s, &fan_client, &mut fan_events, &fan).await;

    // Both homes' fans are announced on the broker (seen by Hearth's own login).
    let (watcher, mut watcher_events) = connect(&s.app, &unique("watcher"), (ADMIN, &s.password))
        .await
        .expect("the admin's login");
    watcher
        .subscribe("homeassistant/+/+/+/config", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut command_topics = std::collections::HashMap::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while command_topics.len() < 2 {
            if let Packet::Publish(p) = next_packet(&mut watcher_events).await {
                let config: serde_json::Value =
                    serde_json::from_slice(&p.payload).unwrap_or_default();
                let command = config["command_topic"].as_str().unwrap_or_default();
                for device in [&fan, &other_fan] {
                    if p.topic.starts_with("homeassistant/fan/")
                        && command.contains(device.as_str())
                    {
                        command_topics.insert(device.clone(), command.to_owned());
                    }
                }
            }
        }
    })
    .await
    .expect("both fans' discovery configs");
    let (own_command, other_command) = (&command_topics[&fan], &command_topics[&other_fan]);

    let name = unique("home-assistant");
    let token = s.token(&name, v1::Role::Operator, &[]).await;
    let (ha, mut ha_events) = connect(
        &s.app,
        &token_client_id(&name),
        (&token_username(&name), &token),
    )
    .await
    .expect("Home Assistant's login");
    // What Home Assistant subscribes to; another home's entities refused.
    // Retained configs arrive between the acknowledgements: kept for below.
    let mut received = Vec::new();
    let prefix = s.app.topics.prefix().to_owned();
    for (filter, allowed) in [
        ("homeassistant/+/+/config".to_owned(), true),
        ("homeassistant/+/+/+/config".to_owned(), true),
        ("homeassistant/status".to_owned(), true),
        (format!("{prefix}/ha/{}/#", s.home), true),
        (format!("{prefix}/ha/{other_home}/#"), false),
        ("homeassistant/#".to_owned(), false),
    ] {
        ha.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
        let ack = next_suback(&mut ha_events, &mut received).await;
        assert_eq!(
            matches!(ack.return_codes[..], [SubscribeReasonCode::Success(_)]),
            allowed,
            "{filter}: {ack:?}"
        );
    }
    // The configs it receives: its home's fan, nothing of the other home.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
            tokio::time::timeout(Duration::from_millis(200), ha_events.poll()).await
        {
            received.push(p);
        }
    }
    let mut configs = Vec::new();
    for p in &received {
        configs.push(p.topic.clone());
        assert!(
            !p.topic.contains(&other_home) && !p.topic.contains(&other_fan),
            "another home's {}",
            p.topic
        );
        assert!(
            !String::from_utf8_lossy(&p.payload).contains(&other_fan),
            "another home's device in {}",
            p.topic
        );
    }
    assert!(
        configs
            .iter()
            .any(|t| t.starts_with("homeassistant/fan/") && t.contains(&fan)),
        "its home's fan among {configs:?}"
    );

    // A forged desired state and the other home's switch first, then its
    // own switch: the fan hears Hearth's command, the other fan none.
    let forged = DesiredState {
        version: u64::MAX,
        on: true,
        ..Default::default()
    };
    ha.publish(
        s.topic(&fan, Channel::Desired),
        QoS::AtLeastOnce,
        false,
        forged.encode_to_vec(),
    )
    .await
    .unwrap();
    ha.publish(other_command, QoS::AtLeastOnce, false, "ON")
        .await
        .unwrap();
    ha.publish(own_command, QoS::AtLeastOnce, false, "ON")
        .await
        .unwrap();
    let ha_poll = tokio::spawn(async move { while ha_events.poll().await.is_ok() {} });
    let p = next_publish(&mut fan_events).await;
    let desired = DesiredState::decode(p.payload.as_ref()).expect("Hearth's DesiredState");
    assert!(
        desired.on && desired.version < u64::MAX,
        "Hearth's command, not the forgery: {desired:?}"
    );
    let commands = |device: String| async {
        s.app
            .devices()
            .await
            .list_commands(v1::ListCommandsRequest {
                device_id: device,
                ..Default::default()
            })
            .await
            .expect("ListCommands")
            .into_inner()
            .commands
    };
    let own = commands(fan.clone()).await;
    assert_eq!(
        own.first().map(|c| c.requested_by.as_str()),
        Some("home-assistant"),
        "{own:?}"
    );
    assert_eq!(
        commands(other_fan.clone()).await,
        [],
        "the other home's fan"
    );
    ha_poll.abort();

    // Revoked: the login is gone.
    s.revoke_token(&name).await;
    assert!(is_refused(
        connect(
            &s.app,
            &token_client_id(&name),
            (&token_username(&name), &token)
        )
        .await
    ));
}

/// The next SUBACK on `events`; messages before it go to `received`.
async fn next_suback(
    events: &mut EventLoop,
    received: &mut Vec<rumqttc::Publish>,
) -> rumqttc::SubAck {
    loop {
        match next_packet(events).await {
            Packet::SubAck(ack) => return ack,
            Packet::Publish(p) => received.push(p),
            _ => {}
        }
    }
}

/// The next message the broker delivers on `events`.
async fn next_publish(events: &mut EventLoop) -> rumqttc::Publish {
    loop {
        match next_packet(events).await {
            Packet::Publish(p) => return p,
            Packet::PingResp => {}
            other => panic!("a message, not {other:?}"),
        }
    }
}

/// A gateway's ingest token, limited to the devices behind it, gets a login
/// of its own on Mosquitto (`token.{name}`, the token as password, a fixed
/// client id): its devices' readings are stored and another's are not, the
/// bridge's wildcard brings only its devices' desired states, and revoking
/// the token ends the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_token_logs_in_to_mosquitto_for_its_devices_alone() {
    let s = hearth_on_dynsec_mosquitto().await;
    let (sensor, fan) = (unique("shed-sensor"), unique("shed-fan"));
    let (other_sensor, other_fan) = (unique("hall-sensor"), unique("hall-fan"));
    s.register(&sensor, DeviceKind::Sensor).await;
    s.register(&fan, DeviceKind::Fan).await;
    s.register(&other_sensor, DeviceKind::Sensor).await;
    let other_fan_login = s.register(&other_fan, DeviceKind::Fan).await;
    let name = unique("shed-gateway");
    let token = s.ingest_token(&name, &[&sensor, &fan]).await;
    let login = (token_username(&name), token);
    let login = (login.0.as_str(), login.1.as_str());

    // Only under its own client id: not a replica's, not the bare `token`.
    let replica = format!("hearth-backend-{}-readings", unique("r"));
    assert!(is_refused(connect(&s.app, &replica, login).await));
    assert!(is_refused(
        connect(&s.app, &token_client_id(&name), ("token", login.1)).await
    ));
    let (client, mut events) = connect(&s.app, &token_client_id(&name), login)
        .await
        .expect("the token's login");
    client
        .subscribe(s.app.topics.all_devices(Channel::Desired), QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(ack) = next_packet(&mut events).await else {
        panic!("a SUBACK");
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        "the bridge's wildcard"
    );

    // Another device's reading: acknowledged, dropped. Its own: stored.
    for device in [&other_sensor, &sensor] {
        publish_acked(
            &client,
            &mut events,
            s.topic(device, Channel::Readings),
            batch(&s.home, device, 1),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.app.stored_readings(&sensor).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "its sensor's reading stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.app.stored_readings(&other_sensor).await.is_empty());

    // Both fans online, its own through it; the other fan is switched
    // first, yet the first desired state the gateway hears is its fan's.
    say_online(&s, &client, &mut events, &fan).await;
    let (other, mut other_events) = connect_as(&s.app, &other_fan_login).await;
    say_online(&s, &other, &mut other_events, &other_fan).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for device in [&fan, &other_fan] {
        loop {
            let d = s
                .app
                .devices()
                .await
                .get_device(v1::GetDeviceRequest { id: device.clone() })
                .await
                .expect("GetDevice")
                .into_inner();
            if d.online {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{device} online");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for device in [&other_fan, &fan] {
        s.switch_on(device).await;
    }
    let heard = next_publish(&mut events).await;
    assert_eq!(heard.topic, s.topic(&fan, Channel::Desired));

    // Revoked: the login is gone.
    s.revoke_token(&name).await;
    assert!(is_refused(
        connect(&s.app, &token_client_id(&name), login).await
    ));
}

/// The real `hearth-gateway`'s MQTT bridge, logged in to Mosquitto with its
/// token's own login: a fan on the LAN broker is switched from the cloud
/// through it, and its acknowledgement comes back the same way, with
/// logins required on the cloud side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_bridge_logs_in_to_mosquitto_with_its_token() {
    use hearth_agent::hardware::Output as _;
    let s = hearth_on_dynsec_mosquitto().await;
    let fan = unique("shed-fan");
    s.register(&fan, DeviceKind::Fan).await;
    let name = unique("shed-gateway");
    let token = s.ingest_token(&name, &[&fan]).await;
    let lan = PrivateBroker::start().await;
    let cloud = s.app.mqtt_url.replacen(
        "mqtt://",
        &format!("mqtt://{}:{token}@", token_username(&name)),
        1,
    );
    let data = TempDir::new();
    let gateway = TestGateway::spawn_with(
        &s.app.grpc_url(),
        &data,
        "127.0.0.1:0",
        &[
            ("HEARTH_GATEWAY_LAN_MQTT", &lan.url()),
            ("HEARTH_GATEWAY_CLOUD_MQTT", &cloud),
            ("HEARTH_TOPIC_PREFIX", s.app.topics.prefix()),
        ],
    )
    .await;
    // Every filter subscribed (1 down, 2 up), so the fan's first status is relayed.
    gateway.wait_for_log("bridge subscribed", 3).await;
    let (output, _agent) = hearth_tests::spawn_actuator_on(&s.app, &lan.url(), &s.home, &fan);
    s.app
        .wait_for_device(&fan, Duration::from_secs(20), |d| d.online)
        .await;
    s.switch_on(&fan).await;
    s.app
        .wait_for_device(&fan, Duration::from_secs(20), |d| {
            d.reported
                .as_ref()
                .is_some_and(|r| r.applied_version == 1 && r.on)
        })
        .await;
    assert!(
        output.is_on(),
        "the fan on the LAN applied the cloud's command"
    );
}

/// A load test's fleet of simulated sensors, on a broker where each device
/// has its own login: with `HEARTH_AGENT_SIM_LOGINS_FILE` each logs in as
/// itself (one shared login would be refused), and both are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_logs_in_device_by_device_with_its_logins_file() {
    let s = hearth_on_dynsec_mosquitto().await;
    let fleet = unique("load");
    let devices = [0, 1].map(|i| format!("{fleet}-{i}"));
    let mut logins = String::from("# each device's RegisterDevice password\n");
    for device in &devices {
        let login = s.register(device, DeviceKind::Sensor).await;
        logins.push_str(&format!("{} {}\n", login.username, login.password));
    }
    let dir = TempDir::new();
    let file = dir.0.join("fleet-logins");
    std::fs::write(&file, logins).unwrap();
    let mut env = TestAgent::mqtt_env(&s.app, &s.home, &fleet);
    env.extend([
        ("HEARTH_AGENT_SIM_SENSORS", "2"),
        ("HEARTH_AGENT_SIM_LOGINS_FILE", file.to_str().unwrap()),
        ("HEARTH_AGENT_INTERVAL_MS", "100"),
    ]);
    let agent = TestAgent::spawn(&env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for device in &devices {
        while s.app.stored_readings(device).await.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing of {device} stored; agent:\n{}",
                agent.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        !agent.logs().contains("reconnecting"),
        "no connection refused or lost:\n{}",
        agent.logs()
    );
}
