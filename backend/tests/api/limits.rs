//! Each user or API token's limits: a request rate and a cap on open
//! streams, refused with RESOURCE_EXHAUSTED naming the setting and counted
//! in `/metrics`; other callers are not held back.

use hearth_proto::v1::{
    auth_service_client::AuthServiceClient, device_service_client::DeviceServiceClient,
    CreateApiTokenRequest, ListHomesRequest, Role, WatchDevicesRequest,
};
use tonic::{transport::Channel, Code};

use crate::{
    access::{login, with_token, PASSWORD},
    helpers::{spawn_app_with, TestApp, HOME},
};

async fn app_with_root(limits: &[(&'static str, &str)]) -> (TestApp, String) {
    let admin = format!("root@{HOME}");
    let mut settings = vec![
        ("HEARTH_ADMIN", admin.as_str()),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
    ];
    settings.extend_from_slice(limits);
    let app = spawn_app_with(&settings).await;
    let root = login(&app, "root").await;
    (app, root)
}

async fn list_homes(devices: &mut DeviceServiceClient<Channel>, token: &str) -> Code {
    match devices
        .list_homes(with_token(ListHomesRequest {}, Some(token)))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => {
            assert!(
                status.code() != Code::ResourceExhausted
                    || status.message().contains("HEARTH_REQUESTS_PER_SECOND"),
                "{status:?}"
            );
            status.code()
        }
    }
}

async fn refused(app: &TestApp, reason: &str) -> f64 {
    let text = app.metrics().await;
    let series = format!("hearth_requests_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

/// `/metrics` over a plain HTTP/1 request (no extra client crate).
#[tokio::test]
async fn a_caller_past_its_rate_is_refused_and_others_are_not() {
    let (app, root) = app_with_root(&[
        ("HEARTH_REQUESTS_PER_SECOND", "1"),
        ("HEARTH_REQUEST_BURST", "5"),
    ])
    .await;
    let script = AuthServiceClient::connect(app.url.clone())
        .await
        .unwrap()
        .create_api_token(with_token(
            CreateApiTokenRequest {
                name: "script".into(),
                home_ids: vec![HOME.into()],
                role: Role::Viewer as i32,
                ..Default::default()
            },
            Some(&root),
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    // The app's clock stands still here: no refill, the burst is all.
    let mut devices = app.devices().await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(list_homes(&mut devices, &root).await);
    }
    let mut expected = vec![Code::Ok; 4];
    expected.extend([Code::ResourceExhausted; 4]);
    assert_eq!(codes, expected, "the burst of 5, one spent on the token");
    assert_eq!(refused(&app, "rate").await, 4.0);
    // Another caller (the token) is not held back.
    assert_eq!(list_homes(&mut devices, &script).await, Code::Ok);
    app.stop().await;
}

#[tokio::test]
async fn a_caller_holds_at_most_its_streams_and_a_closed_one_frees_its_slot() {
    let (app, root) = app_with_root(&[("HEARTH_STREAMS_PER_CALLER", "2")]).await;
    let mut devices = app.devices().await;
    let watch = || {
        with_token(
            WatchDevicesRequest {
                home_id: HOME.into(),
            },
            Some(&root),
        )
    };
    let first = devices.watch_devices(watch()).await.unwrap().into_inner();
    let _second = devices.watch_devices(watch()).await.unwrap().into_inner();
    let third = devices.watch_devices(watch()).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert!(
        third.message().contains("HEARTH_STREAMS_PER_CALLER"),
        "{third:?}"
    );
    assert_eq!(refused(&app, "streams").await, 1.0);
    // Unary calls still pass.
    assert_eq!(list_homes(&mut devices, &root).await, Code::Ok);

    drop(first);
    // The server sees the stream end when the client resets it; give it a moment.
    let reopened = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match devices.watch_devices(watch()).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(reopened.is_ok(), "a closed stream frees its slot");
    app.stop().await;
}
