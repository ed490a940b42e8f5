//! Devices' MQTT credentials on the embedded broker: what the guard in front
//! of rumqttd lets each client do, as a device (or an impostor) sees it.

use hearth_proto::{
    topics::{token_username, Channel, TOKEN_USERNAME},
    v1::{self, DeviceStatus, Metric, MqttCredential, ReadingBatch},
};
use prost::Message as _;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Packet, QoS,
    SubscribeReasonCode,
};

use crate::{
    access::{login, with_token, PASSWORD},
    helpers::{eventually, spawn_app, spawn_app_with, TestApp, PATIENCE},
};

const HOME: &str = "home-y";
const A: &str = "sensor-a";
const B: &str = "sensor-b";

/// An app with logins required (root administers `HOME`), sensors A and B
/// registered; root's token and each sensor's credential.
async fn app_with_two_sensors() -> (TestApp, String, MqttCredential, MqttCredential) {
    let app = spawn_app_with(&[
        ("HEARTH_ADMIN", "root@home-y"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        // Waiting for a reading to be stored polls faster than a user may.
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
    ])
    .await;
    let root = login(&app, "root").await;
    let a = register(&app, &root, HOME, A, v1::DeviceKind::Sensor, "").await;
    let b = register(&app, &root, HOME, B, v1::DeviceKind::Sensor, "").await;
    (app, root, a, b)
}

/// An admin (`token`) registers device `id` in `home`: its credential.
pub(crate) async fn register(
    app: &TestApp,
    token: &str,
    home: &str,
    id: &str,
    kind: v1::DeviceKind,
    name: &str,
) -> MqttCredential {
    app.devices()
        .await
        .register_device(with_token(
            v1::RegisterDeviceRequest {
                home_id: home.into(),
                id: id.into(),
                kind: kind as i32,
                name: name.into(),
            },
            Some(token),
        ))
        .await
        .expect("RegisterDevice")
        .into_inner()
        .mqtt_credential
        .expect("a new device's credential")
}

/// An API token for `homes` with `role`, made by their admin `token`.
pub(crate) async fn api_token(
    app: &TestApp,
    token: &str,
    name: &str,
    homes: &[&str],
    role: v1::Role,
) -> String {
    app.auth()
        .await
        .create_api_token(with_token(
            v1::CreateApiTokenRequest {
                name: name.into(),
                home_ids: homes.iter().map(|h| h.to_string()).collect(),
                role: role as i32,
                ..Default::default()
            },
            Some(token),
        ))
        .await
        .expect("CreateApiToken")
        .into_inner()
        .token
}

/// An admin (`token`) creates the home `id`.
pub(crate) async fn create_home(app: &TestApp, token: &str, id: &str) {
    app.devices()
        .await
        .create_home(with_token(
            v1::CreateHomeRequest {
                id: id.into(),
                name: id.into(),
            },
            Some(token),
        ))
        .await
        .expect("CreateHome");
}

/// Connects as `client_id` with `login` (username, password); the broker's
/// answer: the connection, or the CONNACK code it was refused with.
async fn connect(
    app: &TestApp,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let mut options = hearth_runtime::mqtt::options(&app.mqtt_url, client_id, None).unwrap();
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut events) = hearth_runtime::mqtt::client(options, 16);
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("connecting: {e}"),
            }
        }
    })
    .await
    .expect("an answer to CONNECT");
    answer.map(|()| (client, events))
}

async fn connect_as(app: &TestApp, login: &MqttCredential) -> (AsyncClient, EventLoop) {
    connect(
        app,
        &login.client_id,
        Some((&login.username, &login.password)),
    )
    .await
    .unwrap_or_else(|code| panic!("{} is refused: {code:?}", login.username))
}

/// Publishes at QoS 1 and waits for the PUBACK: the guard acknowledges
/// what it refuses too, as Mosquitto does for MQTT 3.1.1.
async fn publish_acked(
    client: &AsyncClient,
    events: &mut EventLoop,
    topic: &str,
    retain: bool,
    payload: Vec<u8>,
) {
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .unwrap();
    assert!(
        matches!(next_packet(events).await, Packet::PubAck(_)),
        "a PUBACK for {topic}"
    );
}

/// The next packet the broker sends.
async fn next_packet(events: &mut EventLoop) -> Packet {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Incoming(p) = events.poll().await.expect("the connection holds") {
                return p;
            }
        }
    })
    .await
    .expect("a packet from the broker")
}

fn batch(device: &str, seq: u64) -> Vec<u8> {
    ReadingBatch {
        home_id: HOME.into(),
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

async fn stored(app: &TestApp, token: &str, device: &str) -> usize {
    app.telemetry()
        .await
        .list_readings(with_token(
            v1::ListReadingsRequest {
                device_id: device.into(),
                ..Default::default()
            },
            Some(token),
        ))
        .await
        .expect("ListReadings")
        .into_inner()
        .readings
        .len()
}

/// An admin (`token`) rotates `device`'s credential: the new one.
async fn rotate(app: &TestApp, token: &str, device: &str) -> MqttCredential {
    app.devices()
        .await
        .rotate_device_credential(with_token(
            v1::RotateDeviceCredentialRequest {
                device_id: device.into(),
            },
            Some(token),
        ))
        .await
        .expect("RotateDeviceCredential")
        .into_inner()
        .mqtt_credential
        .expect("the new credential")
}

async fn refused(app: &TestApp, reason: &str) -> f64 {
    let text = app.metrics().await;
    let line = format!("hearth_mqtt_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or_else(|| panic!("{line} in /metrics"))
}

#[tokio::test]
async fn a_device_reaches_only_its_own_topics_on_the_embedded_broker() {
    let (app, root, a, _b) = app_with_two_sensors().await;
    let (client, mut events) = connect_as(&app, &a).await;
    let topic = |device, channel| app.topics.device(HOME, device, channel).unwrap();

    // Subscribing to everything, or to another device's desired state: 0x80.
    for filter in ["#".to_owned(), topic(B, Channel::Desired)] {
        client.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
        let Packet::SubAck(ack) = next_packet(&mut events).await else {
            panic!("a SUBACK for {filter}");
        };
        assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure], "{filter}");
    }
    client
        .subscribe(topic(A, Channel::Desired), QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(ack) = next_packet(&mut events).await else {
        panic!("a SUBACK");
    };
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    // B's readings, a retained desired state, and a retained reading of its
    // own: acknowledged as Mosquitto does for MQTT 3.1.1, and dropped.
    for (t, payload, retain) in [
        (topic(B, Channel::Readings), batch(B, 1), false),
        (topic(A, Channel::Desired), vec![1, 2, 3], true),
        (topic(A, Channel::Readings), batch(A, 1), true),
    ] {
        publish_acked(&client, &mut events, &t, retain, payload).await;
    }
    // Its own readings are stored.
    publish_acked(
        &client,
        &mut events,
        &topic(A, Channel::Readings),
        false,
        batch(A, 2),
    )
    .await;
    eventually("A's own reading stored", || async {
        (stored(&app, &root, A).await == 1).then_some(())
    })
    .await;
    assert_eq!(stored(&app, &root, B).await, 0, "nothing stored for B");
    assert_eq!(refused(&app, "subscribe").await, 2.0);
    assert_eq!(refused(&app, "publish").await, 2.0);
    assert_eq!(refused(&app, "retain").await, 1.0);

    // The home's admins read the refusals in its audit log.
    let events = audit_of_home(&app, &root).await;
    let b_readings = topic(B, Channel::Readings);
    assert!(
        events.iter().any(|e| e.action == "mqtt.refused"
            && e.actor == A
            && e.target == format!("publish: {b_readings}")),
        "{events:?}"
    );
}

#[tokio::test]
async fn wrong_revoked_rotated_or_borrowed_logins_are_refused() {
    let (app, root, a, b) = app_with_two_sensors().await;
    // A wrong password, another device's password, no login at all.
    for (client_id, login) in [
        (a.client_id.as_str(), Some((A, "hd_wrong"))),
        (a.client_id.as_str(), Some((A, b.password.as_str()))),
        ("anybody", None),
    ] {
        assert_eq!(
            connect(&app, client_id, login).await.err(),
            Some(ConnectReturnCode::BadUserNamePassword),
            "{client_id} {login:?}"
        );
    }
    // A's own login under a replica's client id, or under B's.
    for client_id in ["hearth-backend-x-readings", b.client_id.as_str()] {
        assert_eq!(
            connect(&app, client_id, Some((A, &a.password))).await.err(),
            Some(ConnectReturnCode::BadClientId),
            "{client_id}"
        );
    }
    assert_eq!(refused(&app, "credential").await, 3.0);
    assert_eq!(refused(&app, "client_id").await, 2.0);

    // Rotation: the open connection is closed, the old password refused,
    // the new one works.
    let (_client, mut events) = connect_as(&app, &a).await;
    let rotated = rotate(&app, &root, A).await;
    assert_ne!(rotated.password, a.password);
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            if events.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection with the old password is closed"
    );
    assert_eq!(
        connect(&app, &a.client_id, Some((A, &a.password)))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    let _ = connect_as(&app, &rotated).await;

    // Revocation: the password stops working.
    app.devices()
        .await
        .revoke_device_credential(with_token(
            v1::RevokeDeviceCredentialRequest {
                device_id: A.into(),
            },
            Some(&root),
        ))
        .await
        .expect("RevokeDeviceCredential");
    assert_eq!(
        connect(&app, &a.client_id, Some((A, &rotated.password)))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
}

#[tokio::test]
async fn in_open_mode_anonymous_devices_connect_but_never_as_hearth() {
    let app = spawn_app().await;
    let readings = app.topics.device("h", "d", Channel::Readings).unwrap();
    let desired = app.topics.device("h", "d", Channel::Desired).unwrap();
    let (client, mut events) = connect(&app, "tool-1", None)
        .await
        .expect("anonymous in open mode");
    publish_acked(&client, &mut events, &desired, false, vec![1]).await;
    publish_acked(&client, &mut events, &readings, true, vec![1]).await;
    assert_eq!(refused(&app, "publish").await, 1.0);
    assert_eq!(refused(&app, "retain").await, 1.0);
    assert_eq!(
        connect(&app, "hearth-backend-x-control", None).await.err(),
        Some(ConnectReturnCode::BadClientId)
    );

    // The first user ends open mode: the anonymous connection is closed at
    // its next packet, and a new one is refused.
    app.home_with_a_fan().await;
    crate::access::create_first_user(&app).await;
    client
        .publish(&readings, QoS::AtLeastOnce, false, vec![1])
        .await
        .unwrap();
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            if events.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the anonymous connection is closed");
    assert_eq!(
        connect(&app, "tool-2", None).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
}

#[tokio::test]
async fn a_last_will_on_another_devices_topic_is_refused() {
    let (app, _root, a, _b) = app_with_two_sensors().await;
    let mut options = hearth_runtime::mqtt::options(&app.mqtt_url, &a.client_id, None).unwrap();
    options.set_credentials(a.username.as_str(), a.password.as_str());
    options.set_last_will(rumqttc::LastWill::new(
        app.topics.device(HOME, B, Channel::Status).unwrap(),
        vec![0],
        QoS::AtLeastOnce,
        false,
    ));
    let (_client, mut events) = hearth_runtime::mqtt::client(options, 16);
    let answer = tokio::time::timeout(PATIENCE, events.poll())
        .await
        .expect("an answer to CONNECT");
    assert!(
        matches!(
            answer,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::NotAuthorized
            ))
        ),
        "{answer:?}"
    );
    assert_eq!(refused(&app, "publish").await, 1.0);
}

/// The guard reads MQTT 3.1.1 (as rumqttd behind it speaks): an MQTT 5
/// CONNECT, even with a device's right login, is answered "unacceptable
/// protocol version" and the connection closed, never passed on unread.
#[tokio::test]
async fn an_mqtt_5_client_is_refused_by_protocol_version_whatever_its_login() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (app, _root, a, _b) = app_with_two_sensors().await;
    let string = |s: &str| [&(s.len() as u16).to_be_bytes()[..], s.as_bytes()].concat();
    // Protocol "MQTT" level 5, username + password + clean start, keep-alive
    // 60 s, no properties; then the client id and the login.
    let mut body = [&string("MQTT")[..], &[5, 0xC2, 0, 60, 0]].concat();
    for field in [&a.client_id, &a.username, &a.password] {
        body.extend(string(field));
    }
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend(body);
    let address = app.mqtt_url.trim_start_matches("mqtt://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(&connect).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer, then the connection closed")
        .unwrap();
    assert_eq!(
        answer,
        [0x20, 2, 0, 1],
        "CONNACK: unacceptable protocol version"
    );
    // The same login over MQTT 3.1.1 is taken.
    connect_as(&app, &a).await;
}

/// `device`'s delivery figures (GetDelivery) over the last ten minutes and
/// the next minute of real time (the agent's readings carry real time).
async fn delivery(app: &TestApp, token: &str, device: &str) -> v1::DeliveryFigures {
    let now = hearth_runtime::clock::unix_ms_now();
    app.telemetry()
        .await
        .get_delivery(with_token(
            v1::GetDeliveryRequest {
                device_id: device.into(),
                start_unix_ms: now - 600_000,
                end_unix_ms: now + 60_000,
            },
            Some(token),
        ))
        .await
        .expect("GetDelivery")
        .into_inner()
        .total
        .expect("total figures")
}

/// An admin rotates a sensor's credential while the agent sends 20 batches
/// (60 readings) a second: the old password stops working at once; the agent, which read
/// its password from a file, reads the file again when its login is refused
/// and goes on once the new password is there, without a restart; and every
/// reading sent arrives, once.
#[tokio::test]
async fn a_credential_rotated_under_load_loses_and_doubles_nothing() {
    use hearth_device::{
        mqtt::{Credentials, DeviceLink, LinkOptions},
        sensor::{run_sensor_with, SensorPlan},
        sim::{SimulatedSensors, Waveform},
    };

    let (app, root, a, _b) = app_with_two_sensors().await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("mqtt-password");
    std::fs::write(&password_file, format!("{}\n", a.password)).unwrap();
    let link = DeviceLink {
        broker_url: app.mqtt_url.clone(),
        topics: app.topics.clone(),
        home_id: HOME.into(),
        device_id: A.into(),
    };
    let options = LinkOptions::default()
        .with_credentials(Credentials::new(A, &a.password))
        .with_password_file(password_file.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn({
        let stop = stop.clone();
        async move {
            let sensors =
                SimulatedSensors::new(hearth_runtime::clock::unix_ms_now(), Waveform::Steady(21.5));
            let plan = SensorPlan::mqtt(std::time::Duration::from_millis(50));
            run_sensor_with(link, &options, sensors, &plan, stop.cancelled_owned()).await
        }
    });
    eventually("readings sent with the first password", || async {
        (delivery(&app, &root, A).await.stored >= 90).then_some(())
    })
    .await;

    let rotated = rotate(&app, &root, A).await;
    let at_rotation = delivery(&app, &root, A).await.stored;
    // The operator puts the new password in place a moment later; until
    // then the agent's logins are refused and it keeps what it reads.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::fs::write(&password_file, format!("{}\n", rotated.password)).unwrap();
    eventually("readings sent with the new password", || async {
        (delivery(&app, &root, A).await.stored >= at_rotation + 90).then_some(())
    })
    .await;
    stop.cancel();
    agent.await.unwrap().expect("the agent stops cleanly");

    assert_eq!(
        connect(&app, &a.client_id, Some((A, &a.password)))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "the old password no longer works"
    );
    // What was in flight when the connection was closed is sent again on
    // the new session; every sequence number is stored once.
    let mut figures = delivery(&app, &root, A).await;
    for _ in 0..100 {
        if figures.missing == 0 && figures.stored == figures.expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        figures = delivery(&app, &root, A).await;
    }
    assert_eq!(
        (figures.missing, figures.stored),
        (0, figures.expected),
        "every reading sent is stored: {figures:?}"
    );
    assert_eq!(figures.restarts, 0, "{figures:?}");
    assert!(figures.stored >= at_rotation + 90, "{figures:?}");
}

/// Waits until `events`' connection is closed by the broker.
async fn closed(events: &mut EventLoop) -> bool {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if events.poll().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok()
}

async fn set_mode(app: &TestApp, token: &str, device: &str, mode: v1::Mode) {
    app.devices()
        .await
        .set_mode(with_token(
            v1::SetModeRequest {
                device_id: device.into(),
                mode: mode as i32,
                ..Default::default()
            },
            Some(token),
        ))
        .await
        .expect("SetMode");
}

/// A LAN gateway's MQTT bridge logs in to the embedded broker with its
/// ingest token: it relays its home's readings and status (stored) and
/// hears its home's desired states, and nothing of another home reaches it
/// or is taken from it.
#[tokio::test]
async fn an_ingest_token_bridges_its_homes_devices_and_nothing_else() {
    const OTHER: &str = "home-z";
    const FAN_Y: &str = "fan-y";
    const FAN_Z: &str = "fan-z";
    let (app, root, _a, _b) = app_with_two_sensors().await;
    register(&app, &root, HOME, FAN_Y, v1::DeviceKind::Fan, "").await;
    create_home(&app, &root, OTHER).await;
    let fan_z = register(&app, &root, OTHER, FAN_Z, v1::DeviceKind::Fan, "").await;
    // A sensor of the other home, so a reading of it would be stored.
    register(&app, &root, OTHER, "sensor-z", v1::DeviceKind::Sensor, "").await;
    let token = api_token(&app, &root, "lan-gateway", &[HOME], v1::Role::Ingest).await;
    let topic = |home, device, channel| app.topics.device(home, device, channel).unwrap();

    // Neither a replica's nor a device's client id.
    for client_id in ["hearth-backend-x-readings", "hearth-agent-sensor-a"] {
        assert_eq!(
            connect(&app, client_id, Some((TOKEN_USERNAME, &token)))
                .await
                .err(),
            Some(ConnectReturnCode::BadClientId),
            "{client_id}"
        );
    }
    let (client, mut events) = connect(
        &app,
        "hearth-gateway-cloud-00000001",
        Some((TOKEN_USERNAME, &token)),
    )
    .await
    .expect("the ingest token logs in");

    // What the gateway's bridge subscribes to is granted; more is not.
    for (filter, granted) in [
        (app.topics.all_devices(Channel::Desired), true),
        (app.topics.all_devices(Channel::Readings), false),
        ("#".to_owned(), false),
    ] {
        client.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
        let Packet::SubAck(ack) = next_packet(&mut events).await else {
            panic!("a SUBACK for {filter}");
        };
        let expected = match granted {
            true => SubscribeReasonCode::Success(QoS::AtLeastOnce),
            false => SubscribeReasonCode::Failure,
        };
        assert_eq!(ack.return_codes, [expected], "{filter}");
    }

    // Another home's reading, a desired state, a retained reading: dropped.
    for (t, payload, retain) in [
        (
            topic(OTHER, "sensor-z", Channel::Readings),
            batch("sensor-z", 1),
            false,
        ),
        (topic(HOME, A, Channel::Desired), vec![1, 2, 3], false),
        (topic(HOME, A, Channel::Readings), batch(A, 1), true),
    ] {
        publish_acked(&client, &mut events, &t, retain, payload).await;
    }
    // Its home's readings are stored, whichever device.
    for (device, seq) in [(A, 2), (B, 1)] {
        publish_acked(
            &client,
            &mut events,
            &topic(HOME, device, Channel::Readings),
            false,
            batch(device, seq),
        )
        .await;
    }
    eventually("the home's readings stored", || async {
        (stored(&app, &root, A).await == 1 && stored(&app, &root, B).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        stored(&app, &root, "sensor-z").await,
        0,
        "nothing for another home"
    );
    assert_eq!(refused(&app, "subscribe").await, 2.0);
    assert_eq!(refused(&app, "publish").await, 2.0);
    assert_eq!(refused(&app, "retain").await, 1.0);
    assert_eq!(refused(&app, "client_id").await, 2.0);

    // Its home's fan comes online through it; the other home's by itself.
    // Both are switched, the other home's first: only its own home's
    // desired state reaches the gateway.
    let online = DeviceStatus {
        online: true,
        ..Default::default()
    }
    .encode_to_vec();
    publish_acked(
        &client,
        &mut events,
        &topic(HOME, FAN_Y, Channel::Status),
        false,
        online.clone(),
    )
    .await;
    let (z, mut z_events) = connect_as(&app, &fan_z).await;
    publish_acked(
        &z,
        &mut z_events,
        &topic(OTHER, FAN_Z, Channel::Status),
        false,
        online,
    )
    .await;
    let devices_online = || async {
        let mut devices = app.devices().await;
        let mut all = true;
        for id in [FAN_Y, FAN_Z] {
            let device = devices
                .get_device(with_token(
                    v1::GetDeviceRequest { id: id.into() },
                    Some(&root),
                ))
                .await
                .expect("GetDevice")
                .into_inner();
            all &= device.online;
        }
        all.then_some(())
    };
    eventually("both fans online", devices_online).await;
    set_mode(&app, &root, FAN_Z, v1::Mode::On).await;
    set_mode(&app, &root, FAN_Y, v1::Mode::On).await;
    let Packet::Publish(desired) = next_packet(&mut events).await else {
        panic!("a desired state for the gateway");
    };
    assert_eq!(desired.topic, topic(HOME, FAN_Y, Channel::Desired));
}

#[tokio::test]
async fn a_revoked_or_unknown_token_is_refused_and_its_connections_closed() {
    let (app, root, _a, _b) = app_with_two_sensors().await;
    let token = api_token(&app, &root, "lan-gateway", &[HOME], v1::Role::Ingest).await;
    let (_client, mut events) = connect(&app, "gateway-1", Some((TOKEN_USERNAME, &token)))
        .await
        .expect("the token logs in");
    app.auth()
        .await
        .revoke_api_token(with_token(
            v1::RevokeApiTokenRequest {
                name: "lan-gateway".into(),
            },
            Some(&root),
        ))
        .await
        .expect("RevokeApiToken");
    assert!(closed(&mut events).await, "its open connection is closed");
    for password in [token.as_str(), "ht_unknown", root.as_str()] {
        assert_eq!(
            connect(&app, "gateway-1", Some((TOKEN_USERNAME, password)))
                .await
                .err(),
            Some(ConnectReturnCode::BadUserNamePassword),
            "{password}"
        );
    }
    assert_eq!(refused(&app, "credential").await, 3.0);
}

/// The newest audit events of `HOME`, as its admin `token` reads them.
async fn audit_of_home(app: &TestApp, token: &str) -> Vec<v1::AuditEvent> {
    app.auth()
        .await
        .list_audit_events(with_token(
            v1::ListAuditEventsRequest {
                home_id: HOME.into(),
                limit: 50,
            },
            Some(token),
        ))
        .await
        .expect("ListAuditEvents")
        .into_inner()
        .events
}

/// A gateway's token limited to the devices behind it: over the API and on
/// the broker it speaks for those and for no other device of its home, and
/// what it tried is in the home's audit log.
#[tokio::test]
async fn a_gateways_token_limited_to_its_devices_speaks_for_those_alone() {
    let (app, root, _a, _b) = app_with_two_sensors().await;
    let create = |name: &str, role: v1::Role, devices: &[&str]| {
        let request = with_token(
            v1::CreateApiTokenRequest {
                name: name.into(),
                home_ids: vec![HOME.into()],
                role: role as i32,
                device_ids: devices.iter().map(|d| d.to_string()).collect(),
            },
            Some(&root),
        );
        let app = &app;
        async move { app.auth().await.create_api_token(request).await }
    };

    // Only an ingest token is limited to devices, and only to its homes'.
    for (role, devices) in [
        (v1::Role::Viewer, &[A][..]),
        (v1::Role::Ingest, &["sensor-nowhere"][..]),
        (v1::Role::Ingest, &["Not An Id"][..]),
    ] {
        let status = create("refused", role, devices).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("device_ids"), "{status:?}");
    }
    let created = create("shed-gateway", v1::Role::Ingest, &[A])
        .await
        .expect("CreateApiToken")
        .into_inner();
    assert_eq!(created.info.unwrap().device_ids, [A]);
    let listed = app
        .auth()
        .await
        .list_api_tokens(with_token(
            v1::ListApiTokensRequest {
                home_id: HOME.into(),
            },
            Some(&root),
        ))
        .await
        .expect("ListApiTokens")
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].device_ids, [A], "the limit is kept");
    let token = created.token;

    // Over the API: its device's batch is taken; B is unknown to it.
    let ingest = |device: &str, seq| {
        let request = with_token(
            v1::IngestBatchRequest {
                batches: vec![ReadingBatch::decode(&batch(device, seq)[..]).unwrap()],
                ..Default::default()
            },
            Some(&token),
        );
        let app = &app;
        async move {
            app.telemetry()
                .await
                .ingest_batch(request)
                .await
                .expect("IngestBatch")
                .into_inner()
        }
    };
    assert_eq!(ingest(A, 1).await.accepted, 1);
    let answer = ingest(B, 1).await;
    assert_eq!(answer.accepted, 0);
    assert_eq!(
        answer.rejected[0].reason,
        format!("unknown device {B}"),
        "answered as a device that does not exist"
    );

    // On the broker, under the name of its own login as on Mosquitto
    // (another token's name is refused): B's topics are refused, A's
    // readings stored.
    assert_eq!(
        connect(
            &app,
            "hearth-gateway-cloud-00000002",
            Some((&token_username("other-gateway"), &token)),
        )
        .await
        .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    let (client, mut events) = connect(
        &app,
        "hearth-gateway-cloud-00000002",
        Some((&token_username("shed-gateway"), &token)),
    )
    .await
    .expect("the token logs in");
    let readings = |device| app.topics.device(HOME, device, Channel::Readings).unwrap();
    for (device, seq) in [(B, 2), (A, 2)] {
        publish_acked(
            &client,
            &mut events,
            &readings(device),
            false,
            batch(device, seq),
        )
        .await;
    }
    let b_desired = app.topics.device(HOME, B, Channel::Desired).unwrap();
    client
        .subscribe(&b_desired, QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(ack) = next_packet(&mut events).await else {
        panic!("a SUBACK");
    };
    assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure]);
    eventually("A's readings stored", || async {
        (stored(&app, &root, A).await == 2).then_some(())
    })
    .await;
    assert_eq!(stored(&app, &root, B).await, 0, "nothing stored for B");
    assert_eq!(refused(&app, "publish").await, 1.0);
    assert_eq!(refused(&app, "subscribe").await, 1.0);

    // The home's admins read what the token tried.
    let events = audit_of_home(&app, &root).await;
    for target in [
        format!("publish: {}", readings(B)),
        format!("subscribe: {b_desired}"),
    ] {
        assert!(
            events.iter().any(|e| e.action == "mqtt.refused"
                && e.actor == "token:shed-gateway"
                && e.target == target),
            "{target} in {events:?}"
        );
    }
}
