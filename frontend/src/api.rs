//! Every call the app makes to the backend: the generated `hearth.v1` gRPC
//! clients over gRPC-web (fetch) to the origin that served the page, and
//! [`ApiError`], the one error type the views show.

use hearth_proto::v1::{
    device_service_client::DeviceServiceClient, telemetry_service_client::TelemetryServiceClient,
    Device, Home, ListDevicesRequest, ListHomesRequest, ListReadingsRequest, ListReadingsResponse,
    Mode, SetModeRequest, StoredReading, WatchReadingsRequest, WatchReadingsResponse,
};
use tonic::{Code, Status, Streaming};
use tonic_web_wasm_client::Client;

/// Recorded as `requested_by` with every command this app sends.
const REQUESTED_BY: &str = "web";

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
            _ => Self::Failed(detail),
        }
    }
}

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
/// the device as the backend now has it.
pub async fn set_mode(device_id: &str, mode: Mode) -> Result<Device, ApiError> {
    let request = SetModeRequest {
        device_id: device_id.to_owned(),
        mode: mode as i32,
        requested_by: REQUESTED_BY.into(),
    };
    Ok(devices()?.set_mode(request).await?.into_inner())
}

/// One page of `device_id`'s stored readings of every metric, newest first;
/// `page_token` "" asks for the newest page.
pub async fn list_readings(
    device_id: &str,
    page_size: u32,
    page_token: &str,
) -> Result<ListReadingsResponse, ApiError> {
    let request = ListReadingsRequest {
        device_id: device_id.to_owned(),
        page_size,
        page_token: page_token.to_owned(),
        ..Default::default()
    };
    Ok(telemetry()?.list_readings(request).await?.into_inner())
}

/// Opens the live stream of every reading stored for `home_id`.
pub async fn watch_readings(home_id: &str) -> Result<ReadingStream, ApiError> {
    let request = WatchReadingsRequest {
        home_id: home_id.to_owned(),
        device_ids: Vec::new(),
    };
    Ok(ReadingStream(
        telemetry()?.watch_readings(request).await?.into_inner(),
    ))
}

/// An open `WatchReadings` stream.
pub struct ReadingStream(Streaming<WatchReadingsResponse>);

impl ReadingStream {
    /// The next readings as they are stored; `None` once the backend ends the
    /// stream. Batches the backend skipped for a slow reader are not signalled:
    /// the next message brings newer values anyway.
    pub async fn next(&mut self) -> Result<Option<Vec<StoredReading>>, ApiError> {
        Ok(self.0.message().await?.map(|message| message.readings))
    }
}

fn devices() -> Result<DeviceServiceClient<Client>, ApiError> {
    Ok(DeviceServiceClient::new(Client::new(origin()?)))
}

fn telemetry() -> Result<TelemetryServiceClient<Client>, ApiError> {
    Ok(TelemetryServiceClient::new(Client::new(origin()?)))
}

/// The backend serves the app and the API on one port, so the API lives at
/// the page's own origin.
fn origin() -> Result<String, ApiError> {
    web_sys::window()
        .and_then(|window| window.location().origin().ok())
        .ok_or_else(|| ApiError::Unreachable("the page has no origin".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_means_hearth_is_unreachable() {
        let error = ApiError::from(Status::unknown("JS API error: TypeError: Failed to fetch"));
        assert_eq!(
            error.to_string(),
            "cannot reach Hearth (JS API error: TypeError: Failed to fetch)"
        );
        assert!(matches!(
            ApiError::from(Status::unavailable("")),
            ApiError::Unreachable(_)
        ));
    }

    #[test]
    fn statuses_map_to_what_the_user_can_do() {
        assert_eq!(
            ApiError::from(Status::not_found("device x")),
            ApiError::NotFound("device x".into())
        );
        assert!(matches!(
            ApiError::from(Status::invalid_argument("mode")),
            ApiError::InvalidArgument(_)
        ));
        assert!(matches!(
            ApiError::from(Status::internal("internal")),
            ApiError::Failed(_)
        ));
    }

    #[test]
    fn an_empty_status_message_is_replaced_by_its_code() {
        assert_eq!(
            ApiError::from(Status::internal("")),
            ApiError::Failed("Internal error".into())
        );
    }
}
