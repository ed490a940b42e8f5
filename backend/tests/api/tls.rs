//! TLS on both of the app's listeners (HEARTH_TLS_CERT_FILE): gRPC and the
//! embedded broker, with a CA the test makes, and a certificate renewed
//! while the app runs.

use hearth_proto::v1::{
    device_service_client::DeviceServiceClient, GetDeviceRequest, Mode, SetModeRequest,
};
use hearth_runtime::test_ca::TestCa;
use rumqttc::{ConnectReturnCode, Event, Packet};

use crate::helpers::*;

/// Whether an MQTT client reaches a CONNACK of success at `url`.
async fn mqtt_connects(url: &str) -> bool {
    let id = format!("probe-{:08x}", rand::random::<u32>());
    let options = hearth_runtime::mqtt::options(url, &id, None).unwrap();
    let (_client, mut events) = hearth_runtime::mqtt::client(options, 8);
    let connected = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return ack.code == ConnectReturnCode::Success
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    });
    connected.await.unwrap_or(false)
}

/// Whether a gRPC call on `channel` gets an answer.
async fn answers(channel: tonic::transport::Channel) -> bool {
    hearth_proto::v1::device_service_client::DeviceServiceClient::new(channel)
        .list_homes(hearth_proto::v1::ListHomesRequest::default())
        .await
        .is_ok()
}

/// Whether a gRPC call in plain text gets an answer from `addr`.
async fn plain_grpc_answers(addr: &str) -> bool {
    match tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
    {
        Ok(channel) => answers(channel).await,
        Err(_) => false,
    }
}

/// Waits until `FAN`, read through `devices`, is as `check` wants.
async fn wait_for_fan(
    devices: &DeviceServiceClient<tonic::transport::Channel>,
    what: &str,
    check: impl Fn(&hearth_proto::v1::Device) -> bool,
) {
    eventually(&format!("the fan {what}"), || {
        let mut devices = devices.clone();
        let check = &check;
        async move {
            let fan = devices
                .get_device(GetDeviceRequest { id: FAN.into() })
                .await
                .ok()?
                .into_inner();
            check(&fan).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_command_goes_over_tls_from_the_api_to_the_device_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::new().write(dir.path());
    let app = spawn_app_with_tls(&files).await;
    assert!(app.mqtt_url.starts_with("mqtts://"), "{}", app.mqtt_url);

    // gRPC over TLS (the app's clients trust the test's CA)…
    app.home_with_a_fan().await;
    // …and the device over mqtts://, through the guard.
    let mut fan = SimDevice::connect(&app, FAN).await;
    fan.online(FAN).await;
    let mut devices = app.devices().await;
    wait_for_fan(&devices, "online over TLS", |fan| fan.online).await;
    devices
        .set_mode(SetModeRequest {
            device_id: FAN.into(),
            mode: Mode::On as i32,
            ..SetModeRequest::default()
        })
        .await
        .unwrap();
    let desired = fan.next_desired().await;
    assert!(desired.on);
    fan.apply(FAN, &desired).await;
    wait_for_fan(&devices, "reporting ON over TLS", |fan| {
        fan.reported.as_ref().is_some_and(|r| r.on)
    })
    .await;

    // Nothing is served in plain text on either port.
    assert!(!plain_grpc_answers(app.addr()).await);
    let plain_mqtt = app
        .mqtt_url
        .replacen("mqtts://", "mqtt://", 1)
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert!(!mqtt_connects(&plain_mqtt).await);
    app.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::new().write(dir.path());
    let app = spawn_app_with_tls(&files).await;
    assert!(answers(tls_channel(app.addr(), &files.ca)).await);

    // Renewed by another CA, so each client trusts exactly one of the two.
    // Written as a renewal tool does: new files, renamed over the old.
    let second = TestCa::new();
    let renewed = second.write(&dir.path().join("renewed"));
    std::fs::rename(&renewed.cert, &files.cert).unwrap();
    std::fs::rename(&renewed.key, &files.key).unwrap();

    let addr = app.addr().to_owned();
    eventually("the renewed certificate served", || {
        let (addr, ca) = (addr.clone(), renewed.ca.clone());
        async move { answers(tls_channel(&addr, &ca)).await.then_some(()) }
    })
    .await;
    assert!(
        !answers(tls_channel(app.addr(), &files.ca)).await,
        "the old certificate is no longer served"
    );
    let mqtt = app.mqtt_url.split('?').next().unwrap().to_owned();
    assert!(mqtt_connects(&format!("{mqtt}?ca_file={}", renewed.ca.display())).await);
    assert!(!mqtt_connects(&format!("{mqtt}?ca_file={}", files.ca.display())).await);
    app.stop().await;
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_is_refused_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.write(dir.path());
    let other = ca.write(&dir.path().join("other"));
    let vars = std::collections::HashMap::from([
        ("HEARTH_LISTEN", "127.0.0.1:0".to_owned()),
        ("HEARTH_MQTT_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "HEARTH_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("h.db").display()),
        ),
        ("HEARTH_DEMO", "false".to_owned()),
        ("HEARTH_TLS_CERT_FILE", files.cert.display().to_string()),
        ("HEARTH_TLS_KEY_FILE", other.key.display().to_string()),
    ]);
    let settings =
        hearth_backend::settings::Settings::from_lookup(|n| vars.get(n).cloned()).unwrap();
    let e = hearth_backend::app::App::build(settings)
        .await
        .err()
        .unwrap();
    let e = format!("{e:#}");
    assert!(
        e.contains("HEARTH_TLS_CERT_FILE") && e.contains("is not the key of the certificate"),
        "{e}"
    );
}
