//! The devices' side of TLS and logins, with the real binaries: the agent
//! over `mqtts://` and the gateway over `https://`, each trusting a CA the
//! test makes; and the gateway sending with an API token once Hearth
//! requires logins.

use std::time::Duration;

use hearth_proto::v1::{
    auth_service_client::AuthServiceClient, telemetry_service_client::TelemetryServiceClient,
    CreateApiTokenRequest, DeviceKind, ListReadingsRequest, LoginRequest, Metric, Reading,
    ReadingBatch, RegisterDeviceRequest, Role,
};
use hearth_runtime::test_ca::TestCa;
use hearth_tests::{unique, Backend, TempDir, TestAgent, TestApp, TestGateway};
use prost::Message as _;
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

fn batch(home: &str, sensor: &str, seq: u64) -> ReadingBatch {
    ReadingBatch {
        home_id: home.into(),
        device_id: sensor.into(),
        seq,
        time_unix_ms: hearth_agent::unix_ms_now() - 1_000 + seq as i64,
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: 21.0,
        }],
        ..Default::default()
    }
}

/// Sends `sensor`'s batches 1..=n to the gateway, unsigned (it has no keys
/// file and listens on loopback).
async fn send_unsigned(gateway: &TestGateway, home: &str, sensor: &str, n: u64) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 1..=n {
        let datagram = batch(home, sensor, seq).encode_to_vec();
        socket.send_to(&datagram, gateway.udp).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_over_mqtts_and_the_gateway_over_https_reach_storage() {
    let dir = TempDir::new();
    let files = TestCa::new().write(&dir.0);
    let app = TestApp::spawn_with_tls(&files, &[("HEARTH_DEMO", "false")]).await;
    assert!(app.mqtt_url.starts_with("mqtts://"), "{}", app.mqtt_url);
    let (by_mqtt, by_udp) = (unique("s-mqtt"), unique("s-udp"));
    let home = app
        .home_with(&[
            (by_mqtt.as_str(), DeviceKind::Sensor),
            (by_udp.as_str(), DeviceKind::Sensor),
        ])
        .await;

    // The agent binary, as a Pi runs it, over mqtts:// with the CA file.
    let state = TempDir::new();
    let mut env = TestAgent::mqtt_env(&app, &home, &by_mqtt);
    env.extend([
        ("HEARTH_AGENT_INTERVAL_MS", "50"),
        ("HEARTH_AGENT_TEMPERATURE", "steady:22.5"),
        ("HEARTH_AGENT_STATE_DIR", state.0.to_str().unwrap()),
    ]);
    let agent = TestAgent::spawn(&env).await;

    // The gateway binary, to the backend's https:// URL with the CA file.
    let data = TempDir::new();
    let ca = files.ca.display().to_string();
    let gateway = TestGateway::spawn_with(
        &app.grpc_url(),
        &data,
        "127.0.0.1:0",
        &[("HEARTH_GATEWAY_CLOUD_CA_FILE", ca.as_str())],
    )
    .await;
    send_unsigned(&gateway, &home, &by_udp, 20).await;
    gateway.wait_for_queued(0).await;

    for _ in 0..200 {
        let (mqtt, udp) = (
            app.stored_readings(&by_mqtt).await,
            app.stored_readings(&by_udp).await,
        );
        if mqtt.len() >= 9 && udp.len() == 20 {
            assert!(mqtt
                .iter()
                .all(|r| r.value == 22.5 || r.metric != Metric::TemperatureCelsius as i32));
            assert!(agent.terminate().success(), "the agent stops cleanly");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "readings missing; agent:\n{}\ngateway:\n{}\nhearth:\n{}",
        agent.logs(),
        gateway.logs(),
        app.logs()
    );
}

type Authed = InterceptedService<
    Channel,
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>,
>;

/// `channel` with `authorization: Bearer token` on every call.
fn bearer(channel: Channel, token: &str) -> Authed {
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    InterceptedService::new(
        channel,
        Box::new(move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", value.clone());
            Ok(r)
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sends_with_its_api_token_once_logins_are_required() {
    let secrets = TempDir::new();
    let password_file = secrets.0.join("admin-password");
    std::fs::write(&password_file, "correct horse battery").unwrap();
    let home = unique("home");
    let admin = format!("admin@{home}");
    let password_file = password_file.display().to_string();
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[
            ("HEARTH_DEMO", "false"),
            ("HEARTH_ADMIN", admin.as_str()),
            ("HEARTH_ADMIN_PASSWORD_FILE", password_file.as_str()),
        ],
    )
    .await;
    let channel = hearth_runtime::tls::grpc_channel(&app.grpc_url(), None).unwrap();
    let session = AuthServiceClient::new(channel.clone())
        .login(LoginRequest {
            username: "admin".into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let sensor = unique("s");
    hearth_proto::v1::device_service_client::DeviceServiceClient::new(bearer(
        channel.clone(),
        &session,
    ))
    .register_device(RegisterDeviceRequest {
        home_id: home.clone(),
        id: sensor.clone(),
        kind: DeviceKind::Sensor as i32,
        name: String::new(),
    })
    .await
    .unwrap();
    let token = AuthServiceClient::new(bearer(channel.clone(), &session))
        .create_api_token(CreateApiTokenRequest {
            name: "lan-gateway".into(),
            home_ids: vec![home.clone()],
            role: Role::Ingest as i32,
            // The sensor behind it, as a gateway's token should be.
            device_ids: vec![sensor.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .token;

    // Without the token the backend refuses every call: nothing leaves the
    // queue, and the gateway says why.
    let data = TempDir::new();
    let gateway = TestGateway::spawn_to(&app.grpc_url(), &data, "127.0.0.1:0").await;
    send_unsigned(&gateway, &home, &sensor, 5).await;
    gateway
        .wait_for_log("the backend refuses the gateway's login", 1)
        .await;
    gateway.wait_for_queued(5).await;
    assert!(gateway.terminate().success());

    // With it, the same queue is delivered.
    let gateway = TestGateway::spawn_with(
        &app.grpc_url(),
        &data,
        "127.0.0.1:0",
        &[("HEARTH_GATEWAY_CLOUD_TOKEN", token.as_str())],
    )
    .await;
    gateway.wait_for_queued(0).await;
    let stored = TelemetryServiceClient::new(bearer(channel, &session))
        .list_readings(ListReadingsRequest {
            device_id: sensor.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .readings;
    assert_eq!(stored.len(), 5, "{}", gateway.logs());
}
