//! Server streams that stay open: [`follow`] keeps one stream going,
//! reconnecting with backoff when the backend goes away (a restart, a dropped
//! connection), and reports each stream's state to [`Connectivity`], which the
//! app shows as one "disconnected — reconnecting" banner.

use std::{future::Future, time::Duration};

use gloo_timers::future::sleep;
use leptos::prelude::*;

use crate::api::{ApiError, Stream};

/// The state of one followed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveStatus {
    Connecting,
    Live,
    /// The stream failed or ended; attempt `attempt` comes after `retry_in`.
    Reconnecting {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// The backend refused the stream for good (an unknown home, a call this
    /// server does not offer).
    Refused {
        reason: String,
    },
}

/// Which streams of the page are disconnected, for the banner. Provided as
/// context by the app root.
#[derive(Debug, Clone, Copy)]
pub struct Connectivity {
    down: RwSignal<Vec<(u64, String)>>,
    next_id: StoredValue<u64>,
}

impl Connectivity {
    pub fn new() -> Self {
        Self {
            down: RwSignal::new(Vec::new()),
            next_id: StoredValue::new(0),
        }
    }

    /// The app's, from context (so only while a view is being built, not
    /// inside a spawned task).
    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// Why the first disconnected stream is down; `None` when all are up.
    pub fn problem(&self) -> Option<String> {
        self.down
            .with(|down| down.first().map(|(_, why)| why.clone()))
    }

    fn register(&self) -> u64 {
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        id
    }

    fn set_down(&self, stream: u64, reason: Option<String>) {
        // Why try_: the page that owned the stream may be gone already.
        self.down.try_update(|down| {
            down.retain(|(id, _)| *id != stream);
            if let Some(reason) = reason {
                down.push((stream, reason));
            }
        });
    }
}

impl Default for Connectivity {
    fn default() -> Self {
        Self::new()
    }
}

/// Clears a stream's entry in [`Connectivity`] when its task is dropped
/// (the view that followed it went away).
struct Registration {
    connectivity: Connectivity,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connectivity.set_down(self.id, None);
    }
}

/// Keeps the stream that `open` opens going for as long as the calling task
/// runs, handing each message to `on_message` (with `true` for the first
/// message after each (re)connect, which for snapshot-first streams replaces
/// what was held), and telling `connectivity` while it is down. Returns only
/// when the backend refuses the stream for good, with why, so the caller can
/// fall back.
pub async fn follow<T, Fut>(
    open: impl Fn() -> Fut,
    mut on_message: impl FnMut(T, bool),
    status: RwSignal<LiveStatus>,
    connectivity: Connectivity,
) -> ApiError
where
    Fut: Future<Output = Result<Stream<T>, ApiError>>,
{
    let registration = Registration {
        connectivity,
        id: connectivity.register(),
    };
    let mut failures = 0;
    loop {
        let mut reached = false;
        let outcome = async {
            let mut stream = open().await?;
            status.set(LiveStatus::Live);
            registration.connectivity.set_down(registration.id, None);
            let mut first = true;
            while let Some(message) = stream.next().await? {
                reached = true;
                on_message(message, first);
                first = false;
            }
            Ok::<_, ApiError>(())
        }
        .await;
        let reason = match outcome {
            Ok(()) => "the stream ended".to_owned(),
            // Why stop: asking again cannot make an unknown home exist.
            Err(error) if !error.is_transient() => {
                status.set(LiveStatus::Refused {
                    reason: error.to_string(),
                });
                return error;
            }
            Err(error) => error.to_string(),
        };
        // Why: a stream that got going resets the backoff, so a backend that
        // restarts once a day is followed again within a second.
        if reached || status.get_untracked() == LiveStatus::Live {
            failures = 0;
        }
        let retry_in = retry_delay(failures);
        failures += 1;
        registration
            .connectivity
            .set_down(registration.id, Some(reason.clone()));
        status.set(LiveStatus::Reconnecting {
            reason,
            attempt: failures,
            retry_in,
        });
        sleep(retry_in).await;
    }
}

/// 1 s after the first failure, doubling up to 16 s.
pub fn retry_delay(failures: u32) -> Duration {
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
