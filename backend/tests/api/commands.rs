//! Commands to devices through the API, and what becomes of them.

use hearth_proto::v1::{CommandState, GetDeviceRequest, ListCommandsRequest, Mode, SetModeRequest};

use crate::helpers::{eventually, spawn_app, SimDevice, TestApp, FAN};

fn set_on() -> SetModeRequest {
    SetModeRequest {
        device_id: FAN.into(),
        mode: Mode::On as i32,
        requested_by: "alice".into(),
        override_seconds: 0,
    }
}

async fn newest_command_state(app: &TestApp) -> CommandState {
    let commands = app
        .devices()
        .await
        .list_commands(ListCommandsRequest {
            device_id: FAN.into(),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .commands;
    commands[0].state()
}

#[tokio::test]
async fn set_mode_is_applied_and_acknowledged_by_the_device() {
    let app = spawn_app().await;
    app.home_with_a_fan().await;
    let mut fan = SimDevice::connect(&app, FAN).await;
    fan.online(FAN).await;
    eventually("the fan to be online", || async {
        let device = app
            .devices()
            .await
            .get_device(GetDeviceRequest { id: FAN.into() })
            .await
            .unwrap()
            .into_inner();
        device.online.then_some(())
    })
    .await;

    let device = app
        .devices()
        .await
        .set_mode(set_on())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(device.desired.map(|d| (d.version, d.on)), Some((1, true)));

    let desired = fan.next_desired().await;
    assert_eq!((desired.version, desired.on), (1, true));
    assert_eq!(
        desired.expires_unix_ms,
        desired.issued_unix_ms + app.command_ttl_ms
    );
    fan.apply(FAN, &desired).await;

    let device = eventually("the command to be applied", || async {
        let device = app
            .devices()
            .await
            .get_device(GetDeviceRequest { id: FAN.into() })
            .await
            .unwrap()
            .into_inner();
        let applied = device
            .last_command
            .as_ref()
            .is_some_and(|c| c.state() == CommandState::Applied);
        applied.then_some(device)
    })
    .await;
    assert_eq!(
        device.reported.map(|r| (r.applied_version, r.on)),
        Some((1, true))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_command_for_an_offline_device_expires_when_the_clock_passes_its_ttl() {
    let app = spawn_app().await;
    app.home_with_a_fan().await;
    app.devices().await.set_mode(set_on()).await.unwrap();
    assert_eq!(newest_command_state(&app).await, CommandState::Requested);

    app.clock.advance(app.command_ttl_ms);
    eventually("the command to expire", || async {
        (newest_command_state(&app).await == CommandState::Expired).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_device_back_online_after_its_command_expired_gets_it_again_as_a_new_version() {
    let app = spawn_app().await;
    app.home_with_a_fan().await;
    app.devices().await.set_mode(set_on()).await.unwrap();
    app.clock.advance(app.command_ttl_ms);
    eventually("the command to expire", || async {
        (newest_command_state(&app).await == CommandState::Expired).then_some(())
    })
    .await;

    let mut fan = SimDevice::connect(&app, FAN).await;
    fan.online(FAN).await;
    let desired = fan.next_desired().await;
    assert_eq!((desired.version, desired.on), (2, true));
    assert_eq!(desired.issued_unix_ms, app.clock.now());
    app.stop().await;
}
