//! Every call the app makes to the backend: the generated `hearth.v1` gRPC
//! clients over gRPC-web (fetch) to the origin that served the page, each
//! call carrying the session's token (`auth`), and [`ApiError`], the one
//! error type the views show.

use std::task::{Context, Poll};

use hearth_proto::v1::{
    auth_service_client::AuthServiceClient, automation_service_client::AutomationServiceClient,
    device_service_client::DeviceServiceClient, telemetry_service_client::TelemetryServiceClient,
    Caller, Command, CreateRuleRequest, Decision, DeleteRuleRequest, Delivery, Device,
    DryRunRequest, DryRunResponse, ExportReadingsRequest, ExportReadingsResponse,
    GetDeliveryRequest, GetSeriesRequest, GetSeriesResponse, Home, ListCommandsRequest,
    ListDecisionsRequest, ListDevicesRequest, ListHomesRequest, ListReadingsRequest,
    ListReadingsResponse, ListRulesRequest, LoginRequest, LogoutRequest, Metric, Mode,
    RenewRequest, Rule, Session, SetModeRequest, UpdateRuleRequest, WatchDevicesRequest,
    WatchDevicesResponse, WatchReadingsRequest, WatchReadingsResponse, WhoAmIRequest,
};
use http::{header::AUTHORIZATION, HeaderValue};
use tonic::{body::Body, Code, Status, Streaming};
use tonic_web_wasm_client::Client;
use tower_service::Service;

use crate::auth;

/// Why a call failed, by what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The backend did not answer (down, restarting, network gone): retry later.
    #[error("cannot reach Hearth ({0})")]
    Unreachable(String),
    /// The home or device is gone: pick another.
    #[error("{0}")]
    NotFound(String),
    /// The backend refused the request as given: change it.
    #[error("rejected: {0}")]
    InvalidArgument(String),
    /// No session, or not one the backend takes (wrong password, expired,
    /// revoked): log in.
    #[error("{0}")]
    Unauthenticated(String),
    /// Signed in, but the role in this home does not allow it: ask an admin.
    #[error("not allowed: {0}")]
    PermissionDenied(String),
    /// The backend does not offer this call (an older Hearth): upgrade it.
    #[error("this Hearth server does not offer it yet ({0})")]
    Unimplemented(String),
    /// The backend answered with an error of its own.
    #[error("Hearth failed: {0}")]
    Failed(String),
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let detail = match status.message() {
            "" => status.code().description().to_owned(),
            message => message.to_owned(),
        };
        match status.code() {
            // Why Unknown: tonic reports a failed fetch (connection refused,
            // offline) as Unknown, and so an HTTP error without gRPC status.
            Code::Unavailable | Code::Unknown | Code::DeadlineExceeded => Self::Unreachable(detail),
            Code::NotFound => Self::NotFound(detail),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Self::InvalidArgument(detail)
            }
            Code::Unimplemented => Self::Unimplemented(detail),
            Code::Unauthenticated => {
                // Why here: every call's failure passes through this one
                // place, so no view needs to tell the app that the session
                // ended.
                auth::refused();
                Self::Unauthenticated(detail)
            }
            Code::PermissionDenied => Self::PermissionDenied(detail),
            _ => Self::Failed(detail),
        }
    }
}

impl ApiError {
    /// Whether asking again later can help (the backend was away), as
    /// opposed to an answer that will not change.
    ///
    /// Why Unauthenticated counts: a stream reopened with the token a
    /// renewal just replaced is refused, and works again with the new one;
    /// a session that really ended takes the page away (`auth`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Failed(_) | Self::Unauthenticated(_)
        )
    }
}

// ---- devices -------------------------------------------------------------

/// Every home, for the home picker.
pub async fn list_homes() -> Result<Vec<Home>, ApiError> {
    let response = devices()?.list_homes(ListHomesRequest {}).await?;
    Ok(response.into_inner().homes)
}

/// The devices of `home_id`, with their mode, state and presence.
pub async fn list_devices(home_id: &str) -> Result<Vec<Device>, ApiError> {
    let request = ListDevicesRequest {
        home_id: home_id.to_owned(),
    };
    Ok(devices()?.list_devices(request).await?.into_inner().devices)
}

/// Switches an actuator ON or OFF, or hands it to its rules (AUTO); returns
/// the device as the backend now has it. `override_seconds` (ON/OFF of a
/// device with rules) hands it back to AUTO after that long; 0: never.
pub async fn set_mode(
    device_id: &str,
    mode: Mode,
    override_seconds: u32,
) -> Result<Device, ApiError> {
    let request = SetModeRequest {
        device_id: device_id.to_owned(),
        mode: mode as i32,
        // Why empty: the backend records the signed-in caller, whatever
        // the request says.
        requested_by: String::new(),
        override_seconds,
    };
    Ok(devices()?.set_mode(request).await?.into_inner())
}

/// The newest `limit` commands sent to `device_id`, newest first.
pub async fn list_commands(device_id: &str, limit: u32) -> Result<Vec<Command>, ApiError> {
    let request = ListCommandsRequest {
        device_id: device_id.to_owned(),
        limit,
    };
    Ok(devices()?
        .list_commands(request)
        .await?
        .into_inner()
        .commands)
}

/// Opens the stream of `home_id`'s devices: all of them first, then each
/// device again when it changes.
pub async fn watch_devices(home_id: &str) -> Result<Stream<WatchDevicesResponse>, ApiError> {
    let request = WatchDevicesRequest {
        home_id: home_id.to_owned(),
    };
    Ok(Stream(
        devices()?.watch_devices(request).await?.into_inner(),
    ))
}

// ---- telemetry -----------------------------------------------------------

/// One page of `device_id`'s stored readings, newest first: of `metric`
/// (`Unspecified`: every metric), from `start_unix_ms` on (0: all);
/// `page_token` "" asks for the newest page.
pub async fn list_readings(
    device_id: &str,
    metric: Metric,
    start_unix_ms: i64,
    page_size: u32,
    page_token: &str,
) -> Result<ListReadingsResponse, ApiError> {
    let request = ListReadingsRequest {
        device_id: device_id.to_owned(),
        metric: metric as i32,
        start_unix_ms,
        end_unix_ms: 0,
        page_size,
        page_token: page_token.to_owned(),
    };
    Ok(telemetry()?.list_readings(request).await?.into_inner())
}

/// `metric` of `device_id` over `[start, end)` as at most `max_points`
/// min/avg/max buckets, oldest first.
pub async fn get_series(
    device_id: &str,
    metric: Metric,
    start_unix_ms: i64,
    end_unix_ms: i64,
    max_points: u32,
) -> Result<GetSeriesResponse, ApiError> {
    let request = GetSeriesRequest {
        device_id: device_id.to_owned(),
        metric: metric as i32,
        start_unix_ms,
        end_unix_ms,
        max_points,
    };
    Ok(telemetry()?.get_series(request).await?.into_inner())
}

/// How many of the readings `device_id` sent over the last day were stored
/// (from their sequence numbers: a reading lost anywhere counts).
pub async fn get_delivery(device_id: &str) -> Result<Delivery, ApiError> {
    let request = GetDeliveryRequest {
        device_id: device_id.to_owned(),
        start_unix_ms: 0,
        end_unix_ms: 0,
    };
    Ok(telemetry()?.get_delivery(request).await?.into_inner())
}

/// Opens the CSV export of `device_id`'s readings over `[start, end)`, every
/// metric, oldest first: chunks of whole lines, the header first.
pub async fn export_readings(
    device_id: &str,
    start_unix_ms: i64,
    end_unix_ms: i64,
) -> Result<Stream<ExportReadingsResponse>, ApiError> {
    let request = ExportReadingsRequest {
        device_id: device_id.to_owned(),
        metric: Metric::Unspecified as i32,
        start_unix_ms,
        end_unix_ms,
    };
    Ok(Stream(
        telemetry()?.export_readings(request).await?.into_inner(),
    ))
}

/// Opens the live stream of readings stored for `home_id`, of `device_ids`
/// and `metrics` only (empty: all).
/// The home's readings as they are stored; with `since_unix_ms` (not 0),
/// first those taken since then (a resume after a lost stream).
pub async fn watch_readings(
    home_id: &str,
    device_ids: Vec<String>,
    metrics: &[Metric],
    since_unix_ms: i64,
) -> Result<Stream<WatchReadingsResponse>, ApiError> {
    let request = WatchReadingsRequest {
        home_id: home_id.to_owned(),
        device_ids,
        metrics: metrics.iter().map(|&m| m as i32).collect(),
        since_unix_ms,
    };
    Ok(Stream(
        telemetry()?.watch_readings(request).await?.into_inner(),
    ))
}

// ---- automation ----------------------------------------------------------

/// The rules of `home_id`.
pub async fn list_rules(home_id: &str) -> Result<Vec<Rule>, ApiError> {
    let request = ListRulesRequest {
        home_id: home_id.to_owned(),
    };
    Ok(automation()?.list_rules(request).await?.into_inner().rules)
}

/// Stores a new rule (the server picks its id when `rule.id` is empty).
pub async fn create_rule(rule: Rule) -> Result<Rule, ApiError> {
    let request = CreateRuleRequest { rule: Some(rule) };
    Ok(automation()?.create_rule(request).await?.into_inner())
}

/// Replaces the settings of rule `rule.id`, `enabled` included.
pub async fn update_rule(rule: Rule) -> Result<Rule, ApiError> {
    let request = UpdateRuleRequest { rule: Some(rule) };
    Ok(automation()?.update_rule(request).await?.into_inner())
}

/// Deletes rule `id`.
pub async fn delete_rule(id: &str) -> Result<(), ApiError> {
    let request = DeleteRuleRequest { id: id.to_owned() };
    automation()?.delete_rule(request).await?;
    Ok(())
}

/// The newest `limit` decisions of `home_id`'s rules, newest first.
pub async fn list_decisions(home_id: &str, limit: u32) -> Result<Vec<Decision>, ApiError> {
    let request = ListDecisionsRequest {
        home_id: home_id.to_owned(),
        rule_id: String::new(),
        limit,
    };
    Ok(automation()?
        .list_decisions(request)
        .await?
        .into_inner()
        .decisions)
}

/// What `rule` would have decided over the readings of `[start, end)`.
pub async fn dry_run(
    rule: Rule,
    start_unix_ms: i64,
    end_unix_ms: i64,
) -> Result<DryRunResponse, ApiError> {
    let request = DryRunRequest {
        rule: Some(rule),
        start_unix_ms,
        end_unix_ms,
    };
    Ok(automation()?.dry_run(request).await?.into_inner())
}

// ---- sessions ------------------------------------------------------------

/// A session for `username` and `password`.
pub async fn login(username: String, password: String) -> Result<Session, ApiError> {
    let request = LoginRequest { username, password };
    Ok(sessions()?.login(request).await?.into_inner())
}

/// A fresh session in place of the current one, which stops working.
pub async fn renew() -> Result<Session, ApiError> {
    Ok(sessions()?.renew(RenewRequest {}).await?.into_inner())
}

/// Ends the current session at the backend.
pub async fn logout() -> Result<(), ApiError> {
    sessions()?.logout(LogoutRequest {}).await?;
    Ok(())
}

/// Who the current token (or none, in open mode) is, and its roles.
pub async fn who_am_i() -> Result<Caller, ApiError> {
    Ok(sessions()?.who_am_i(WhoAmIRequest {}).await?.into_inner())
}

// ---- plumbing ------------------------------------------------------------

/// An open server stream.
pub struct Stream<T>(Streaming<T>);

impl<T> Stream<T> {
    /// The next message; `None` once the backend ends the stream.
    pub async fn next(&mut self) -> Result<Option<T>, ApiError> {
        Ok(self.0.message().await?)
    }
}

/// The gRPC-web client with the session's token on every call.
///
/// Why a wrapper that sets the HTTP header rather than tonic's
/// `InterceptedService`: the interceptor converts each request to a
/// `tonic::Request` and back and can answer with a `Status` of its own:
/// 0.8 KiB more of the gzipped app (measured) for one header.
#[derive(Clone)]
struct Channel(Client);

impl Service<http::Request<Body>> for Channel {
    type Response = <Client as Service<http::Request<Body>>>::Response;
    type Error = <Client as Service<http::Request<Body>>>::Error;
    type Future = <Client as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    /// Adds `authorization: Bearer <token>` while there is a session; in
    /// open mode there is none and the request goes as it is.
    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let bearer = auth::token().and_then(|t| HeaderValue::try_from(format!("Bearer {t}")).ok());
        if let Some(bearer) = bearer {
            request.headers_mut().insert(AUTHORIZATION, bearer);
        }
        self.0.call(request)
    }
}

fn channel() -> Result<Channel, ApiError> {
    Ok(Channel(Client::new(origin()?)))
}

fn devices() -> Result<DeviceServiceClient<Channel>, ApiError> {
    Ok(DeviceServiceClient::new(channel()?))
}

fn telemetry() -> Result<TelemetryServiceClient<Channel>, ApiError> {
    Ok(TelemetryServiceClient::new(channel()?))
}

fn automation() -> Result<AutomationServiceClient<Channel>, ApiError> {
    Ok(AutomationServiceClient::new(channel()?))
}

fn sessions() -> Result<AuthServiceClient<Channel>, ApiError> {
    Ok(AuthServiceClient::new(channel()?))
}

/// The backend serves the app and the API on one port, so the API lives at
/// the page's own origin.
fn origin() -> Result<String, ApiError> {
    web_sys::window()
        .and_then(|window| window.location().origin().ok())
        .ok_or_else(|| ApiError::Unreachable("the page has no origin".into()))
}
