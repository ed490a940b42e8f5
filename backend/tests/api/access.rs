//! Who may call what: every RPC of the API (both streams included), called
//! as each role of home X, as a user of home Y, as an API token, with no
//! token, an expired one and a revoked one, and each answer checked against
//! the access table (`hearth_domain::access::decision`). It fails when a new
//! RPC is added without an entry here, and when the server and the table
//! disagree.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use futures::future::BoxFuture;
use hearth_backend::domain::{
    access::{decision, Decision},
    Role,
};
use hearth_proto::v1::{
    self, auth_service_client::AuthServiceClient,
    automation_service_client::AutomationServiceClient, device_service_client::DeviceServiceClient,
    telemetry_service_client::TelemetryServiceClient,
};
use prost::Message as _;
use tonic::{Code, Request, Status};

use crate::helpers::{spawn_app_with, TestApp};

pub(crate) const PASSWORD: &str = "a long enough password";
const X: &str = "home-x";
const Y: &str = "home-y";
const SENSOR_X: &str = "sensor-x";
const FAN_X: &str = "fan-x";
const FAN_Y: &str = "fan-y";

/// What a call gets: the app's address, a token, and the home owner's
/// token for preparing what the call needs (a rule to delete, say).
#[derive(Clone)]
struct Ctx {
    url: String,
    token: Option<String>,
    root: String,
    unique: Arc<AtomicU32>,
}

impl Ctx {
    fn req<T>(&self, message: T) -> Request<T> {
        with_token(message, self.token.as_deref())
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.unique.fetch_add(1, Ordering::Relaxed))
    }

    async fn auth(&self) -> AuthServiceClient<tonic::transport::Channel> {
        AuthServiceClient::connect(self.url.clone()).await.unwrap()
    }
    async fn devices(&self) -> DeviceServiceClient<tonic::transport::Channel> {
        DeviceServiceClient::connect(self.url.clone())
            .await
            .unwrap()
    }
    async fn telemetry(&self) -> TelemetryServiceClient<tonic::transport::Channel> {
        TelemetryServiceClient::connect(self.url.clone())
            .await
            .unwrap()
    }
    async fn automation(&self) -> AutomationServiceClient<tonic::transport::Channel> {
        AutomationServiceClient::connect(self.url.clone())
            .await
            .unwrap()
    }

    /// A rule of home X made by its owner, for calls that need one.
    async fn root_rule(&self) -> v1::Rule {
        self.automation()
            .await
            .create_rule(with_token(
                v1::CreateRuleRequest {
                    rule: Some(rule(String::new())),
                },
                Some(&self.root),
            ))
            .await
            .unwrap()
            .into_inner()
    }
}

pub(crate) fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn rule(id: String) -> v1::Rule {
    v1::Rule {
        id,
        home_id: X.into(),
        name: String::new(),
        source_device_id: SENSOR_X.into(),
        metric: v1::Metric::TemperatureCelsius as i32,
        target_device_id: FAN_X.into(),
        on_above: 25.0,
        off_below: 24.0,
        enabled: true,
        ..Default::default()
    }
}

type Call = Box<dyn Fn(Ctx) -> BoxFuture<'static, Result<(), Status>> + Send + Sync>;

fn call<F, Fut>(f: F) -> Call
where
    F: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    Box::new(move |ctx| Box::pin(f(ctx)))
}

/// Every RPC, by its path, called about home X's things.
fn calls() -> Vec<(&'static str, Call)> {
    vec![
        (
            "/hearth.v1.AuthService/Login",
            call(|c| async move {
                let r = v1::LoginRequest {
                    username: "viewer-x".into(),
                    password: PASSWORD.into(),
                };
                c.auth().await.login(c.req(r)).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/Renew",
            call(|c| async move {
                let r = c.req(v1::RenewRequest {});
                c.auth().await.renew(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/Logout",
            call(|c| async move {
                let r = c.req(v1::LogoutRequest {});
                c.auth().await.logout(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/WhoAmI",
            call(|c| async move {
                let r = c.req(v1::WhoAmIRequest {});
                c.auth().await.who_am_i(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/CreateUser",
            call(|c| async move {
                let r = c.req(v1::CreateUserRequest {
                    username: c.unique("new-user"),
                    password: PASSWORD.into(),
                    home_id: X.into(),
                    role: v1::Role::Viewer as i32,
                });
                c.auth().await.create_user(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/SetMembership",
            call(|c| async move {
                let r = c.req(v1::SetMembershipRequest {
                    username: "viewer-x".into(),
                    home_id: X.into(),
                    role: v1::Role::Viewer as i32,
                });
                c.auth().await.set_membership(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/CreateApiToken",
            call(|c| async move {
                let r = c.req(v1::CreateApiTokenRequest {
                    name: c.unique("script"),
                    home_ids: vec![X.into()],
                    role: v1::Role::Viewer as i32,
                    ..Default::default()
                });
                c.auth().await.create_api_token(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/ListApiTokens",
            call(|c| async move {
                let r = c.req(v1::ListApiTokensRequest { home_id: X.into() });
                c.auth().await.list_api_tokens(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/RevokeApiToken",
            call(|c| async move {
                let name = c.unique("doomed");
                let made = with_token(
                    v1::CreateApiTokenRequest {
                        name: name.clone(),
                        home_ids: vec![X.into()],
                        role: v1::Role::Viewer as i32,
                        ..Default::default()
                    },
                    Some(&c.root),
                );
                c.auth().await.create_api_token(made).await.unwrap();
                let r = c.req(v1::RevokeApiTokenRequest { name });
                c.auth().await.revoke_api_token(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AuthService/ListAuditEvents",
            call(|c| async move {
                let r = c.req(v1::ListAuditEventsRequest {
                    home_id: X.into(),
                    limit: 0,
                });
                c.auth().await.list_audit_events(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/CreateHome",
            call(|c| async move {
                let r = c.req(v1::CreateHomeRequest {
                    id: c.unique("home"),
                    name: String::new(),
                });
                c.devices().await.create_home(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/ListHomes",
            call(|c| async move {
                let r = c.req(v1::ListHomesRequest {});
                c.devices().await.list_homes(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/RegisterDevice",
            call(|c| async move {
                let r = c.req(v1::RegisterDeviceRequest {
                    home_id: X.into(),
                    id: c.unique("light"),
                    kind: v1::DeviceKind::Light as i32,
                    name: String::new(),
                });
                c.devices().await.register_device(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/ListDevices",
            call(|c| async move {
                let r = c.req(v1::ListDevicesRequest { home_id: X.into() });
                c.devices().await.list_devices(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/GetDevice",
            call(|c| async move {
                let r = c.req(v1::GetDeviceRequest { id: FAN_X.into() });
                c.devices().await.get_device(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/SetMode",
            call(|c| async move {
                let r = c.req(v1::SetModeRequest {
                    device_id: FAN_X.into(),
                    mode: v1::Mode::On as i32,
                    ..Default::default()
                });
                c.devices().await.set_mode(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/ListCommands",
            call(|c| async move {
                let r = c.req(v1::ListCommandsRequest {
                    device_id: FAN_X.into(),
                    limit: 0,
                });
                c.devices().await.list_commands(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.DeviceService/WatchDevices",
            call(|c| async move {
                let r = c.req(v1::WatchDevicesRequest { home_id: X.into() });
                let mut stream = c.devices().await.watch_devices(r).await?.into_inner();
                // The first message is the home as it is.
                stream.message().await?.expect("a first message");
                Ok(())
            }),
        ),
        (
            "/hearth.v1.DeviceService/RotateDeviceCredential",
            call(|c| async move {
                let r = c.req(v1::RotateDeviceCredentialRequest {
                    device_id: FAN_X.into(),
                });
                let device = c.devices().await.rotate_device_credential(r).await?;
                // The one answer that shows the secret shows it.
                let login = device.into_inner().mqtt_credential.expect("a credential");
                assert!(login.password.starts_with("hd_") && login.username == FAN_X);
                Ok(())
            }),
        ),
        (
            "/hearth.v1.DeviceService/RevokeDeviceCredential",
            call(|c| async move {
                let r = c.req(v1::RevokeDeviceCredentialRequest {
                    device_id: FAN_X.into(),
                });
                c.devices()
                    .await
                    .revoke_device_credential(r)
                    .await
                    .map(drop)
            }),
        ),
        (
            "/hearth.v1.TelemetryService/IngestBatch",
            call(|c| async move {
                let n = c.unique("seq");
                let seq = n.rsplit('-').next().unwrap().parse().unwrap();
                let r = c.req(v1::IngestBatchRequest {
                    batches: vec![v1::ReadingBatch {
                        home_id: X.into(),
                        device_id: SENSOR_X.into(),
                        seq,
                        time_unix_ms: hearth_runtime::clock::unix_ms_now(),
                        readings: vec![v1::Reading {
                            metric: v1::Metric::TemperatureCelsius as i32,
                            value: 21.5,
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                let answer = c.telemetry().await.ingest_batch(r).await?.into_inner();
                // Why mapped: a batch is refused on its own, inside an OK
                // answer; its reason says which refusal it was.
                match answer.rejected.first() {
                    None => Ok(()),
                    Some(r) if r.reason.starts_with("unknown device") => {
                        Err(Status::not_found(r.reason.clone()))
                    }
                    Some(r) if r.reason.contains("may not") => {
                        Err(Status::permission_denied(r.reason.clone()))
                    }
                    Some(r) => Err(Status::internal(r.reason.clone())),
                }
            }),
        ),
        (
            "/hearth.v1.TelemetryService/ListReadings",
            call(|c| async move {
                let r = c.req(v1::ListReadingsRequest {
                    device_id: SENSOR_X.into(),
                    ..Default::default()
                });
                c.telemetry().await.list_readings(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.TelemetryService/WatchReadings",
            call(|c| async move {
                let r = c.req(v1::WatchReadingsRequest {
                    home_id: X.into(),
                    ..Default::default()
                });
                c.telemetry().await.watch_readings(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.TelemetryService/GetSeries",
            call(|c| async move {
                let r = c.req(v1::GetSeriesRequest {
                    device_id: SENSOR_X.into(),
                    metric: v1::Metric::TemperatureCelsius as i32,
                    start_unix_ms: hearth_runtime::clock::unix_ms_now() - 3_600_000,
                    ..Default::default()
                });
                c.telemetry().await.get_series(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.TelemetryService/ExportReadings",
            call(|c| async move {
                let r = c.req(v1::ExportReadingsRequest {
                    device_id: SENSOR_X.into(),
                    ..Default::default()
                });
                let mut stream = c.telemetry().await.export_readings(r).await?.into_inner();
                // The header comes first, whatever the range holds.
                stream.message().await?.expect("a first chunk");
                Ok(())
            }),
        ),
        (
            "/hearth.v1.TelemetryService/GetDelivery",
            call(|c| async move {
                let r = c.req(v1::GetDeliveryRequest {
                    device_id: SENSOR_X.into(),
                    ..Default::default()
                });
                c.telemetry().await.get_delivery(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AutomationService/CreateRule",
            call(|c| async move {
                let r = c.req(v1::CreateRuleRequest {
                    rule: Some(rule(String::new())),
                });
                c.automation().await.create_rule(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AutomationService/ListRules",
            call(|c| async move {
                let r = c.req(v1::ListRulesRequest { home_id: X.into() });
                c.automation().await.list_rules(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AutomationService/DeleteRule",
            call(|c| async move {
                let id = c.root_rule().await.id;
                let r = c.req(v1::DeleteRuleRequest { id });
                c.automation().await.delete_rule(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AutomationService/UpdateRule",
            call(|c| async move {
                let id = c.root_rule().await.id;
                let r = c.req(v1::UpdateRuleRequest {
                    rule: Some(rule(id)),
                });
                c.automation().await.update_rule(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AutomationService/ListDecisions",
            call(|c| async move {
                let r = c.req(v1::ListDecisionsRequest {
                    home_id: X.into(),
                    ..Default::default()
                });
                c.automation().await.list_decisions(r).await.map(drop)
            }),
        ),
        (
            "/hearth.v1.AutomationService/DryRun",
            call(|c| async move {
                let r = c.req(v1::DryRunRequest {
                    rule: Some(rule(String::new())),
                    start_unix_ms: hearth_runtime::clock::unix_ms_now() - 3_600_000,
                    end_unix_ms: 0,
                });
                c.automation().await.dry_run(r).await.map(drop)
            }),
        ),
    ]
}

#[test]
fn the_gate_knows_every_streaming_method_as_a_stream() {
    let set = prost_types::FileDescriptorSet::decode(hearth_proto::FILE_DESCRIPTOR_SET).unwrap();
    for f in &set.file {
        for s in &f.service {
            for m in &s.method {
                let path = format!("/{}.{}/{}", f.package(), s.name(), m.name());
                assert_eq!(
                    hearth_backend::domain::access::is_stream(&path),
                    m.server_streaming(),
                    "{path}: a stream holds one of its caller's stream slots"
                );
            }
        }
    }
}

/// Every method of Hearth's own services, from the descriptors reflection
/// serves.
fn every_api_method() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(hearth_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.service.iter().flat_map(move |s| {
                let service = format!("{package}.{}", s.name());
                s.method
                    .iter()
                    .map(move |m| format!("/{service}/{}", m.name()))
            })
        })
        .collect()
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A session of a user with this role in X.
    User(Role),
    /// An admin of home Y, with no role in X.
    Stranger,
    /// An API token with operator in X.
    Token,
    /// A gateway's API token: ingest in X.
    Gateway,
    Nobody,
    Expired,
    Revoked,
}

/// The answer the table says `who` gets for `method`.
fn expected(method: &str, who: Who) -> Code {
    let decision = decision(method).unwrap_or_else(|| panic!("{method} has no access decision"));
    if decision == Decision::Public {
        return Code::Ok;
    }
    let role = match who {
        Who::Nobody | Who::Expired | Who::Revoked => return Code::Unauthenticated,
        Who::User(role) => Some(role),
        Who::Stranger => None,
        Who::Token => Some(Role::Operator),
        Who::Gateway => Some(Role::Ingest),
    };
    match decision {
        Decision::Public => Code::Ok,
        Decision::Caller => match (method, who) {
            ("/hearth.v1.DeviceService/CreateHome", Who::Token | Who::Gateway) => {
                Code::PermissionDenied
            }
            ("/hearth.v1.AuthService/Renew", Who::Token | Who::Gateway) => Code::FailedPrecondition,
            _ => Code::Ok,
        },
        Decision::Home(need) => match role {
            None => Code::NotFound,
            Some(role) if role.includes(need) => Code::Ok,
            // A gateway's token sees nothing of the home.
            Some(role) if !role.includes(Role::Viewer) => Code::NotFound,
            Some(_) => Code::PermissionDenied,
        },
    }
}

pub(crate) async fn login(app: &TestApp, user: &str) -> String {
    AuthServiceClient::connect(app.url.clone())
        .await
        .unwrap()
        .login(v1::LoginRequest {
            username: user.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
        .into_inner()
        .token
}

/// Homes X (a sensor and a fan) and Y (a fan), users of each role in X and
/// an admin of Y, all made by `root` (the first admin, of X and Y).
async fn two_homes(app: &TestApp, root: &str) {
    let mut devices = app.devices().await;
    devices
        .create_home(with_token(
            v1::CreateHomeRequest {
                id: X.into(),
                name: String::new(),
            },
            Some(root),
        ))
        .await
        .unwrap();
    for (home, id, kind) in [
        (X, SENSOR_X, v1::DeviceKind::Sensor),
        (X, FAN_X, v1::DeviceKind::Fan),
        (Y, FAN_Y, v1::DeviceKind::Fan),
    ] {
        devices
            .register_device(with_token(
                v1::RegisterDeviceRequest {
                    home_id: home.into(),
                    id: id.into(),
                    kind: kind as i32,
                    name: String::new(),
                },
                Some(root),
            ))
            .await
            .unwrap();
    }
    let mut auth = AuthServiceClient::connect(app.url.clone()).await.unwrap();
    for (user, home, role) in [
        ("admin-x", X, v1::Role::Admin),
        ("operator-x", X, v1::Role::Operator),
        ("viewer-x", X, v1::Role::Viewer),
        ("admin-y", Y, v1::Role::Admin),
    ] {
        auth.create_user(with_token(
            v1::CreateUserRequest {
                username: user.into(),
                password: PASSWORD.into(),
                home_id: home.into(),
                role: role as i32,
            },
            Some(root),
        ))
        .await
        .unwrap();
    }
}

async fn api_token(app: &TestApp, root: &str, name: &str, role: v1::Role) -> String {
    AuthServiceClient::connect(app.url.clone())
        .await
        .unwrap()
        .create_api_token(with_token(
            v1::CreateApiTokenRequest {
                name: name.into(),
                home_ids: vec![X.into()],
                role: role as i32,
                ..Default::default()
            },
            Some(root),
        ))
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test]
async fn every_rpc_answers_each_caller_as_the_access_table_says() {
    let app = spawn_app_with(&[
        ("HEARTH_ADMIN", "root@home-y"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        // This test makes hundreds of calls as each caller; limits.rs has its own.
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
        ("HEARTH_STREAMS_PER_CALLER", "0"),
    ])
    .await;
    let root = login(&app, "root").await;
    two_homes(&app, &root).await;
    // Root made X, so root administers both; a fresh session sees that.
    let root = login(&app, "root").await;

    let table = calls();
    let covered: BTreeSet<String> = table.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        covered,
        every_api_method(),
        "every RPC must be in this test (and have an access decision)"
    );

    let script = api_token(&app, &root, "script", v1::Role::Operator).await;
    let gateway = api_token(&app, &root, "gateway", v1::Role::Ingest).await;
    let revoked = api_token(&app, &root, "revoked", v1::Role::Admin).await;
    AuthServiceClient::connect(app.url.clone())
        .await
        .unwrap()
        .revoke_api_token(with_token(
            v1::RevokeApiTokenRequest {
                name: "revoked".into(),
            },
            Some(&root),
        ))
        .await
        .unwrap();
    let expiring = login(&app, "viewer-x").await;

    let unique = Arc::new(AtomicU32::new(1));
    let mut failures = Vec::new();
    let mut check = |method: &str, who: Who, got: Result<(), Status>| {
        let want = expected(method, who);
        let code = got.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
        if code != want {
            failures.push(format!(
                "{method} as {who:?}: {want:?} expected, got {got:?}"
            ));
        }
    };
    let users = [
        ("admin-x", Who::User(Role::Admin)),
        ("operator-x", Who::User(Role::Operator)),
        ("viewer-x", Who::User(Role::Viewer)),
        ("admin-y", Who::Stranger),
    ];
    for (method, run) in &table {
        for (user, who) in users {
            // A fresh session per call: Renew and Logout end the one used.
            let token = Some(login(&app, user).await);
            let ctx = Ctx {
                url: app.url.clone(),
                token,
                root: root.clone(),
                unique: unique.clone(),
            };
            check(method, who, run(ctx).await);
        }
        for (token, who) in [
            (Some(script.clone()), Who::Token),
            (Some(gateway.clone()), Who::Gateway),
            (None, Who::Nobody),
            (Some(revoked.clone()), Who::Revoked),
            (Some("hs_not-a-token".to_owned()), Who::Nobody),
        ] {
            let ctx = Ctx {
                url: app.url.clone(),
                token,
                root: root.clone(),
                unique: unique.clone(),
            };
            check(method, who, run(ctx).await);
        }
    }

    // Past its lifetime, a session opens nothing. (Last: the clock moves
    // for every session.)
    app.clock.advance(15 * 60_000 + 1);
    let root_again = login(&app, "root").await;
    for (method, run) in &table {
        let ctx = Ctx {
            url: app.url.clone(),
            token: Some(expiring.clone()),
            root: root_again.clone(),
            unique: unique.clone(),
        };
        check(method, Who::Expired, run(ctx).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn another_homes_things_answer_exactly_as_missing_ones() {
    let app = spawn_app_with(&[
        ("HEARTH_ADMIN", "root@home-y"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        // This test makes hundreds of calls as each caller; limits.rs has its own.
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
        ("HEARTH_STREAMS_PER_CALLER", "0"),
    ])
    .await;
    let root = login(&app, "root").await;
    two_homes(&app, &root).await;
    let stranger = login(&app, "admin-y").await;
    let mut devices = app.devices().await;

    let theirs = devices
        .get_device(with_token(
            v1::GetDeviceRequest { id: FAN_X.into() },
            Some(&stranger),
        ))
        .await
        .unwrap_err();
    let missing = devices
        .get_device(with_token(
            v1::GetDeviceRequest { id: "fan-z".into() },
            Some(&stranger),
        ))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), missing.code());
    assert_eq!(theirs.message().replace(FAN_X, "fan-z"), missing.message());

    let homes = devices
        .list_homes(with_token(v1::ListHomesRequest {}, Some(&stranger)))
        .await
        .unwrap()
        .into_inner()
        .homes;
    assert_eq!(
        homes.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        [Y],
        "a user sees only their homes"
    );
    let everything = devices
        .list_devices(with_token(
            v1::ListDevicesRequest {
                home_id: String::new(),
            },
            Some(&stranger),
        ))
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(
        everything.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [FAN_Y]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_command_records_who_asked_whatever_the_request_claims() {
    let app = spawn_app_with(&[
        ("HEARTH_ADMIN", "root@home-y"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        // This test makes hundreds of calls as each caller; limits.rs has its own.
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
        ("HEARTH_STREAMS_PER_CALLER", "0"),
    ])
    .await;
    let root = login(&app, "root").await;
    two_homes(&app, &root).await;
    let operator = login(&app, "operator-x").await;
    let mut devices = app.devices().await;
    let claim = v1::SetModeRequest {
        device_id: FAN_X.into(),
        mode: v1::Mode::On as i32,
        requested_by: "rule:fan-above-25".into(),
        override_seconds: 0,
    };
    let device = devices
        .set_mode(with_token(claim, Some(&operator)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(device.last_command.unwrap().requested_by, "operator-x");
    app.stop().await;
}

/// Creates the first user, `ann`, admin of the test home (which must exist),
/// through the open API.
pub(crate) async fn create_first_user(app: &TestApp) {
    AuthServiceClient::connect(app.url.clone())
        .await
        .unwrap()
        .create_user(v1::CreateUserRequest {
            username: "ann".into(),
            password: PASSWORD.into(),
            home_id: crate::helpers::HOME.into(),
            role: v1::Role::Admin as i32,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn with_no_users_the_api_is_open_and_the_first_user_closes_it() {
    let app = crate::helpers::spawn_app().await;
    let mut auth = AuthServiceClient::connect(app.url.clone()).await.unwrap();
    let me = auth
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(me.open);
    app.home_with_a_fan().await;
    create_first_user(&app).await;
    let refused = app
        .devices()
        .await
        .list_homes(v1::ListHomesRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let token = login(&app, "ann").await;
    let homes = app
        .devices()
        .await
        .list_homes(with_token(v1::ListHomesRequest {}, Some(&token)))
        .await
        .unwrap()
        .into_inner()
        .homes;
    assert_eq!(homes.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = spawn_app_with(&[
        ("HEARTH_ADMIN", "root@home-y"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        // This test makes hundreds of calls as each caller; limits.rs has its own.
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
        ("HEARTH_STREAMS_PER_CALLER", "0"),
    ])
    .await;
    let mut auth = AuthServiceClient::connect(app.url.clone()).await.unwrap();
    let wrong = auth
        .login(v1::LoginRequest {
            username: "root".into(),
            password: "not the password".into(),
        })
        .await
        .unwrap_err();
    let unknown = auth
        .login(v1::LoginRequest {
            username: "nobody".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message())
    );
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_shows_logins_failed_logins_and_changes_to_the_home() {
    let app = spawn_app_with(&[
        ("HEARTH_ADMIN", "root@home-y"),
        ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        // This test makes hundreds of calls as each caller; limits.rs has its own.
        ("HEARTH_REQUESTS_PER_SECOND", "0"),
        ("HEARTH_STREAMS_PER_CALLER", "0"),
    ])
    .await;
    let root = login(&app, "root").await;
    two_homes(&app, &root).await;
    let mut auth = AuthServiceClient::connect(app.url.clone()).await.unwrap();
    auth.login(v1::LoginRequest {
        username: "viewer-x".into(),
        password: "a wrong password".into(),
    })
    .await
    .unwrap_err();
    login(&app, "viewer-x").await;
    api_token(&app, &root, "backup", v1::Role::Viewer).await;

    let events = auth
        .list_audit_events(with_token(
            v1::ListAuditEventsRequest {
                home_id: X.into(),
                limit: 0,
            },
            Some(&root),
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let seen: Vec<(&str, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.target.as_str(),
                e.outcome.as_str(),
            )
        })
        .collect();
    for want in [
        ("root", "token.create", "backup", "ok"),
        ("viewer-x", "login", "viewer-x", "ok"),
        ("viewer-x", "login", "viewer-x", "refused"),
        ("root", "user.create", "viewer-x", "ok"),
        ("root", "device.register", FAN_X, "ok"),
        ("root", "home.create", X, "ok"),
    ] {
        assert!(seen.contains(&want), "{want:?} is not in {seen:#?}");
    }
    assert!(
        !seen
            .iter()
            .any(|(_, _, target, _)| *target == FAN_Y || *target == "admin-y"),
        "home Y's events are not home X's admins' business: {seen:#?}"
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[0].at_unix_ms >= w[1].at_unix_ms),
        "newest first"
    );
    app.stop().await;
}
