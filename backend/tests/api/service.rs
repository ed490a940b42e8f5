//! The app as a service: health, errors a caller can act on, shutdown.

use hearth_proto::v1::{DeviceKind, GetDeviceRequest, Mode, RegisterDeviceRequest, SetModeRequest};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::helpers::{spawn_app, FAN, HOME};

#[tokio::test]
async fn the_device_service_reports_serving_on_grpc_health() {
    let app = spawn_app().await;
    let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "hearth.v1.DeviceService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_device_is_not_found() {
    let app = spawn_app().await;
    let status = app
        .devices()
        .await
        .get_device(GetDeviceRequest { id: FAN.into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn registering_a_device_in_an_unknown_home_is_not_found() {
    let app = spawn_app().await;
    let status = app
        .devices()
        .await
        .register_device(RegisterDeviceRequest {
            home_id: HOME.into(),
            id: FAN.into(),
            kind: DeviceKind::Fan as i32,
            name: "Fan".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn switching_a_sensor_is_an_invalid_argument() {
    let app = spawn_app().await;
    app.home_with_a_fan().await;
    let mut devices = app.devices().await;
    devices
        .register_device(RegisterDeviceRequest {
            home_id: HOME.into(),
            id: "sensor".into(),
            kind: DeviceKind::Sensor as i32,
            name: "Sensor".into(),
        })
        .await
        .unwrap();
    let status = devices
        .set_mode(SetModeRequest {
            device_id: "sensor".into(),
            mode: Mode::On as i32,
            ..SetModeRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("device_id:"),
        "names the field: {status:?}"
    );
    app.stop().await;
}
