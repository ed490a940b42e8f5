//! The API surface: bad requests, gRPC-web over HTTP/1.1 (the browser's way),
//! reflection and health.

use futures::StreamExt as _;
use hearth_proto::v1::{
    device_service_client::DeviceServiceClient, CreateHomeRequest, CreateRuleRequest, DeviceKind,
    GetDeviceRequest, ListDevicesRequest, ListReadingsRequest, Metric, Mode, RegisterDeviceRequest,
    Rule, SetModeRequest,
};
use hearth_tests::{both, unique, Backend, TestApp};
use tonic::Code;

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(field),
        "message {:?} should name {field}",
        status.message()
    );
}

async fn bad_requests_name_the_field_and_unknown_devices_are_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (sensor, fan) = (unique("sensor"), unique("fan"));
    let home = app
        .home_with(&[(&sensor, DeviceKind::Sensor), (&fan, DeviceKind::Fan)])
        .await;
    let mut devices = app.devices().await;

    assert_invalid(
        devices
            .create_home(CreateHomeRequest {
                id: "bad/id".into(),
                name: String::new(),
            })
            .await,
        "id",
    );
    assert_eq!(
        devices
            .create_home(CreateHomeRequest {
                id: home.clone(),
                name: String::new()
            })
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    assert_invalid(
        devices
            .register_device(RegisterDeviceRequest {
                home_id: home.clone(),
                id: unique("x"),
                kind: 0,
                name: String::new(),
            })
            .await,
        "kind",
    );
    let orphan = devices
        .register_device(RegisterDeviceRequest {
            home_id: unique("nohome"),
            id: unique("x"),
            kind: DeviceKind::Fan as i32,
            name: String::new(),
        })
        .await;
    assert_eq!(orphan.unwrap_err().code(), Code::NotFound);
    assert_invalid(
        devices
            .set_mode(SetModeRequest {
                device_id: String::new(),
                mode: Mode::On as i32,
                requested_by: String::new(),
                ..Default::default()
            })
            .await,
        "device_id",
    );
    assert_invalid(
        devices
            .set_mode(SetModeRequest {
                device_id: fan.clone(),
                mode: 0,
                requested_by: String::new(),
                ..Default::default()
            })
            .await,
        "mode",
    );
    assert_invalid(
        devices
            .set_mode(SetModeRequest {
                device_id: fan.clone(),
                mode: 42,
                requested_by: String::new(),
                ..Default::default()
            })
            .await,
        "mode",
    );
    assert_invalid(
        devices
            .set_mode(SetModeRequest {
                device_id: sensor.clone(),
                mode: Mode::On as i32,
                requested_by: String::new(),
                ..Default::default()
            })
            .await,
        "device_id",
    );
    let unknown = devices
        .set_mode(SetModeRequest {
            device_id: unique("ghost"),
            mode: Mode::On as i32,
            requested_by: String::new(),
            ..Default::default()
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        devices
            .get_device(GetDeviceRequest {
                id: unique("ghost")
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let mut telemetry = app.telemetry().await;
    assert_invalid(
        telemetry
            .list_readings(ListReadingsRequest {
                device_id: sensor.clone(),
                page_size: 5000,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    assert_invalid(
        telemetry
            .list_readings(ListReadingsRequest {
                device_id: sensor.clone(),
                page_token: "nope".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
    assert_invalid(
        telemetry
            .list_readings(ListReadingsRequest {
                device_id: sensor.clone(),
                metric: 77,
                ..Default::default()
            })
            .await,
        "metric",
    );

    let mut automation = app.automation().await;
    let rule = Rule {
        home_id: home.clone(),
        source_device_id: sensor.clone(),
        metric: Metric::TemperatureCelsius as i32,
        target_device_id: fan.clone(),
        on_above: 25.0,
        off_below: 24.0,
        enabled: true,
        ..Default::default()
    };
    assert_invalid(
        automation
            .create_rule(CreateRuleRequest { rule: None })
            .await,
        "rule",
    );
    assert_invalid(
        automation
            .create_rule(CreateRuleRequest {
                rule: Some(Rule {
                    off_below: 26.0,
                    ..rule.clone()
                }),
            })
            .await,
        "rule.off_below",
    );
    assert_invalid(
        automation
            .create_rule(CreateRuleRequest {
                rule: Some(Rule {
                    target_device_id: sensor.clone(),
                    ..rule.clone()
                }),
            })
            .await,
        "rule.target_device_id",
    );
    assert_invalid(
        automation
            .create_rule(CreateRuleRequest {
                rule: Some(Rule {
                    metric: 0,
                    ..rule.clone()
                }),
            })
            .await,
        "rule.metric",
    );
    let missing = automation
        .create_rule(CreateRuleRequest {
            rule: Some(Rule {
                source_device_id: unique("ghost"),
                ..rule.clone()
            }),
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let created = automation
        .create_rule(CreateRuleRequest { rule: Some(rule) })
        .await
        .expect("a valid rule")
        .into_inner();
    assert!(created.id.starts_with("rule-"), "{created:?}");
}
both!(bad_requests_name_the_field_and_unknown_devices_are_not_found);

/// The browser's path: gRPC-web over HTTP/1.1 through tonic-web's client layer.
#[tokio::test]
async fn grpc_web_over_http1_lists_and_switches_devices() {
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[
            ("HEARTH_DEMO", "false"),
            ("HEARTH_CORS_ORIGINS", "http://example.test"),
        ],
    )
    .await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;

    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let service = tower_layer(http1);
    let mut client = DeviceServiceClient::with_origin(service, app.grpc_url().parse().unwrap());
    let listed = client
        .list_devices(ListDevicesRequest {
            home_id: home.clone(),
        })
        .await
        .expect("ListDevices over gRPC-web")
        .into_inner();
    assert_eq!(
        listed
            .devices
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        [fan.as_str()]
    );
    let switched = client
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::On as i32,
            requested_by: "browser".into(),
            ..Default::default()
        })
        .await
        .expect("SetMode over gRPC-web")
        .into_inner();
    assert_eq!(switched.desired.map(|d| (d.version, d.on)), Some((1, true)));
    let err = client
        .get_device(GetDeviceRequest {
            id: unique("ghost"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "statuses survive the gRPC-web trailers"
    );

    // A raw request, as a browser sends it: HTTP/1.1, grpc-web content type,
    // CORS from a listed origin.
    let text = raw_grpc_web_list(&app, &home, "http://example.test").await;
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("content-type: application/grpc-web+proto"),
        "{text}"
    );
    assert!(
        text.contains("access-control-allow-origin: http://example.test"),
        "{text}"
    );
    assert!(
        text.contains("grpc-status:0"),
        "trailers in the body: {text}"
    );
    assert!(text.contains(&fan), "{text}");
    // A page of any other origin gets nothing its browser lets it read.
    let text = raw_grpc_web_list(&app, &home, "http://evil.test").await;
    assert!(!text.contains("access-control-allow-origin"), "{text}");
}

/// `ListDevices` of `home` as a browser page of `origin` sends it; the
/// response's head and body, lowercased.
async fn raw_grpc_web_list(app: &TestApp, home: &str, origin: &str) -> String {
    use prost::Message as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = ListDevicesRequest {
        home_id: home.into(),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend((body.len() as u32).to_be_bytes());
    framed.extend(body);
    let mut stream = tokio::net::TcpStream::connect(app.http).await.unwrap();
    let head = format!(
        "POST /hearth.v1.DeviceService/ListDevices HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.http,
        framed.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&framed).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).to_lowercase()
}

/// The web app's pages carry a Content-Security-Policy (own origin, no
/// framing), nosniff and no-referrer.
#[tokio::test]
async fn the_web_app_is_served_with_security_headers() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let text = hearth_tests::http_get_with(app.http, "/", &[])
        .await
        .to_lowercase();
    for header in [
        "content-security-policy: default-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "x-frame-options: deny",
    ] {
        assert!(text.contains(header), "{header} missing:\n{text}");
    }
}

fn tower_layer<S>(inner: S) -> tonic_web::GrpcWebClientService<S> {
    tonic_web::GrpcWebClientService::new(inner)
}

#[tokio::test]
async fn reflection_lists_the_three_services_and_health_says_serving() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let app = TestApp::spawn(Backend::Embedded).await;
    let channel = tonic::transport::Channel::from_shared(app.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "hearth.v1.TelemetryService",
        "hearth.v1.DeviceService",
        "hearth.v1.AutomationService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }

    {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, ServerReflectionRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "hearth.v1.DeviceService".into(),
            )),
        };
        let mut responses = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        assert!(
            format!("{response:?}").contains("FileDescriptorResponse"),
            "{response:?}"
        );
    }

    let mut health = HealthClient::new(channel);
    for service in [
        "",
        "hearth.v1.DeviceService",
        "hearth.v1.TelemetryService",
        "hearth.v1.AutomationService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

/// An operator can hide the API's shape and the metrics from whoever reaches
/// the port: reflection is then unimplemented and `/metrics` says nothing,
/// while the API itself still answers.
#[tokio::test]
async fn reflection_and_metrics_can_be_turned_off() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[
            ("HEARTH_DEMO", "false"),
            ("HEARTH_REFLECTION", "false"),
            ("HEARTH_METRICS", "false"),
        ],
    )
    .await;
    let channel = tonic::transport::Channel::from_shared(app.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let refused = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect_err("reflection is off");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    assert!(!app.metrics().await.contains("hearth_readings_stored"));
    let home = app.home_with(&[(&unique("fan"), DeviceKind::Fan)]).await;
    assert!(!home.is_empty(), "the API still answers");
}
