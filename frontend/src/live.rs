//! The live feed of a home's readings: keeps a `WatchReadings` stream open,
//! folds what arrives into [`LatestReadings`], and reconnects with backoff
//! when the backend goes away (a restart, a dropped connection).

use std::time::Duration;

use gloo_timers::future::sleep;
use leptos::prelude::*;

use crate::{
    api::{self, ApiError},
    readings::LatestReadings,
};

/// The state of the live feed, for the indicator next to the devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveStatus {
    Connecting,
    Live,
    /// The stream failed or ended; the next attempt comes after a pause.
    Reconnecting {
        reason: String,
    },
    /// The backend refused the stream for good, e.g. for an unknown home.
    Refused {
        reason: String,
    },
}

/// Follows `home_id`'s readings for as long as the calling task runs.
pub async fn follow(
    home_id: String,
    latest: RwSignal<LatestReadings>,
    status: RwSignal<LiveStatus>,
) {
    let mut failures = 0;
    loop {
        let reason = match stream_into(&home_id, latest, status).await {
            Ok(()) => "the stream ended".to_owned(),
            // Why stop: asking again cannot make an unknown home exist.
            Err(error @ (ApiError::NotFound(_) | ApiError::InvalidArgument(_))) => {
                status.set(LiveStatus::Refused {
                    reason: error.to_string(),
                });
                return;
            }
            Err(error) => error.to_string(),
        };
        // Why: a stream that got going resets the backoff, so a backend that
        // restarts once a day is followed again within a second.
        if status.get_untracked() == LiveStatus::Live {
            failures = 0;
        }
        status.set(LiveStatus::Reconnecting { reason });
        sleep(retry_delay(failures)).await;
        failures += 1;
    }
}

async fn stream_into(
    home_id: &str,
    latest: RwSignal<LatestReadings>,
    status: RwSignal<LiveStatus>,
) -> Result<(), ApiError> {
    let mut stream = api::watch_readings(home_id).await?;
    status.set(LiveStatus::Live);
    while let Some(readings) = stream.next().await? {
        latest.update(|held| held.apply(&readings));
    }
    Ok(())
}

/// 1 s after the first failure, doubling up to 16 s.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.min(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_sixteen_seconds() {
        let delays: Vec<u64> = (0..7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
    }
}
