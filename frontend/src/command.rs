//! Where an actuator's latest command stands: sent and waiting for the
//! device, acknowledged (with the measured round trip), or failed (expired or
//! replaced). Read from `Device.last_command`; from the desired and reported
//! versions when the backend does not send that yet.

use hearth_proto::v1::{self as pb, Device};

use crate::display;

/// The state of `device`'s latest command, as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing has been asked of the device yet.
    NoCommand,
    /// Version `version` (switch to `on`) was issued; the device has not
    /// reported applying it.
    Pending { version: u64, on: bool },
    /// The device applied it; `round_trip_us` from request to acknowledgement
    /// (`None` when not measured).
    Acknowledged {
        version: u64,
        on: bool,
        round_trip_us: Option<u64>,
    },
    /// Its time to live passed before the device applied it.
    Expired { version: u64, on: bool },
    /// A newer command replaced it before the device applied it.
    Superseded { version: u64 },
}

impl Progress {
    /// The state of `device`'s latest command at `now_unix_ms`.
    pub fn of(device: &Device, now_unix_ms: i64) -> Self {
        match &device.last_command {
            Some(command) if command.state() != pb::CommandState::Unspecified => {
                Self::of_command(command, device, now_unix_ms)
            }
            _ => Self::of_versions(device, now_unix_ms),
        }
    }

    fn of_command(command: &pb::Command, device: &Device, now_unix_ms: i64) -> Self {
        let (version, on) = (command.version, command.on);
        match command.state() {
            pb::CommandState::Applied => Self::Acknowledged {
                version,
                on,
                round_trip_us: (command.round_trip_us > 0).then_some(command.round_trip_us),
            },
            pb::CommandState::Expired => Self::Expired { version, on },
            pb::CommandState::Superseded => Self::Superseded { version },
            // Why look at `reported` too: the device stream may bring the
            // acknowledgement before the command's own update.
            _ if applied(device) == Some(version) => Self::Acknowledged {
                version,
                on,
                round_trip_us: None,
            },
            _ if past(command.expires_unix_ms, now_unix_ms) => Self::Expired { version, on },
            _ => Self::Pending { version, on },
        }
    }

    fn of_versions(device: &Device, now_unix_ms: i64) -> Self {
        let Some(desired) = device.desired.as_ref() else {
            return Self::NoCommand;
        };
        let (version, on) = (desired.version, desired.on);
        if applied(device) == Some(version) {
            let measured = device.acknowledged_unix_ms - desired.issued_unix_ms;
            let round_trip_us =
                (desired.issued_unix_ms > 0 && measured >= 0).then(|| measured as u64 * 1000);
            Self::Acknowledged {
                version,
                on,
                round_trip_us,
            }
        } else if past(desired.expires_unix_ms, now_unix_ms) {
            Self::Expired { version, on }
        } else {
            Self::Pending { version, on }
        }
    }

    pub fn is_pending(self) -> bool {
        matches!(self, Self::Pending { .. })
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Self::Expired { .. } | Self::Superseded { .. })
    }

    /// A sentence for the status line: `ON acknowledged in 182 ms`.
    pub fn describe(self) -> String {
        let word = |on: bool| if on { "ON" } else { "OFF" };
        match self {
            Self::NoCommand => "No command sent yet".into(),
            Self::Pending { on, .. } => format!("{} pending — waiting for the device", word(on)),
            Self::Acknowledged {
                on,
                round_trip_us: Some(us),
                ..
            } => format!("{} acknowledged in {}", word(on), display::round_trip(us)),
            Self::Acknowledged { on, .. } => format!("{} acknowledged", word(on)),
            Self::Expired { on, .. } => format!(
                "Failed: the device did not apply {} before the command expired",
                word(on)
            ),
            Self::Superseded { .. } => "Replaced by a newer command before it was applied".into(),
        }
    }
}

/// Whether `held` is further along than `incoming`, another copy of the same
/// device: a newer desired version, a newer command, the same command further
/// in its lifecycle, or a later report. Why: copies come by two roads, an
/// RPC's answer and the device stream, and the answer to SetMode can land
/// after the stream brought the device's acknowledgement; taking it then
/// would show the command as pending again, for good.
pub fn is_ahead(held: &Device, incoming: &Device) -> bool {
    lifecycle_position(held) > lifecycle_position(incoming)
}

/// Where a copy of a device stands; every field only grows over time.
fn lifecycle_position(device: &Device) -> (u64, u64, u8, u64, i64) {
    let command = device.last_command.as_ref();
    let stage = command.map_or(0, |c| match c.state() {
        pb::CommandState::Unspecified => 0,
        pb::CommandState::Requested => 1,
        pb::CommandState::Published => 2,
        pb::CommandState::Applied | pb::CommandState::Expired | pb::CommandState::Superseded => 3,
    });
    (
        device.desired.as_ref().map_or(0, |d| d.version),
        command.map_or(0, |c| c.version),
        stage,
        applied(device).unwrap_or(0),
        device.reported.as_ref().map_or(0, |r| r.time_unix_ms),
    )
}

fn applied(device: &Device) -> Option<u64> {
    device.reported.as_ref().map(|r| r.applied_version)
}

/// Whether expiry time `expires_unix_ms` (0: never) has passed.
fn past(expires_unix_ms: i64, now_unix_ms: i64) -> bool {
    expires_unix_ms != 0 && now_unix_ms >= expires_unix_ms
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::{Command, CommandState, DesiredState, ReportedState};

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn device(desired: Option<u64>, applied: Option<u64>) -> Device {
        Device {
            desired: desired.map(|version| DesiredState {
                version,
                on: true,
                issued_unix_ms: NOW - 500,
                expires_unix_ms: 0,
            }),
            reported: applied.map(|applied_version| ReportedState {
                applied_version,
                on: true,
                ..Default::default()
            }),
            acknowledged_unix_ms: NOW - 300,
            ..Default::default()
        }
    }

    #[test]
    fn a_late_answer_does_not_undo_a_streamed_acknowledgement() {
        // The SetMode answer: command 7 published, not yet reported.
        let answer = with_command(
            device(Some(7), Some(6)),
            CommandState::Published,
            NOW + 5_000,
        );
        // The stream, first: the device applied it.
        let mut acknowledged =
            with_command(device(Some(7), Some(7)), CommandState::Applied, NOW + 5_000);
        acknowledged
            .reported
            .as_mut()
            .expect("reported")
            .time_unix_ms = NOW;
        assert!(is_ahead(&acknowledged, &answer));
        assert!(
            !is_ahead(&answer, &acknowledged),
            "the acknowledgement replaces the answer"
        );
        assert!(
            !is_ahead(&answer, &answer),
            "an equal copy replaces the held one"
        );
    }

    #[test]
    fn a_newer_command_or_report_is_never_held_back() {
        let old = with_command(device(Some(7), Some(7)), CommandState::Applied, NOW);
        let mut newer = with_command(device(Some(8), Some(7)), CommandState::Requested, NOW);
        newer.last_command.as_mut().expect("command").version = 8;
        assert!(!is_ahead(&old, &newer), "a newer desired version wins");
        let mut reported_later = old.clone();
        reported_later
            .reported
            .as_mut()
            .expect("reported")
            .time_unix_ms = NOW + 1;
        assert!(!is_ahead(&old, &reported_later), "a later report wins");
    }

    fn with_command(mut device: Device, state: CommandState, expires_unix_ms: i64) -> Device {
        device.last_command = Some(Command {
            version: 7,
            on: false,
            state: state as i32,
            expires_unix_ms,
            round_trip_us: if state == CommandState::Applied {
                182_000
            } else {
                0
            },
            ..Default::default()
        });
        device
    }

    #[test]
    fn an_applied_command_shows_its_round_trip() {
        let progress = Progress::of(
            &with_command(device(None, None), CommandState::Applied, 0),
            NOW,
        );
        assert_eq!(
            progress,
            Progress::Acknowledged {
                version: 7,
                on: false,
                round_trip_us: Some(182_000)
            }
        );
        assert_eq!(progress.describe(), "OFF acknowledged in 182 ms");
    }

    #[test]
    fn a_published_command_is_pending_until_it_expires() {
        let published = with_command(device(None, None), CommandState::Published, NOW + 1);
        assert_eq!(
            Progress::of(&published, NOW),
            Progress::Pending {
                version: 7,
                on: false
            }
        );
        assert!(Progress::of(&published, NOW).is_pending());
        let late = Progress::of(&published, NOW + 1);
        assert_eq!(
            late,
            Progress::Expired {
                version: 7,
                on: false
            }
        );
        assert!(late.is_failure());
        assert!(late.describe().starts_with("Failed"));
    }

    #[test]
    fn the_backend_saying_expired_is_a_failure_at_once() {
        let expired = with_command(device(None, None), CommandState::Expired, 0);
        assert_eq!(
            Progress::of(&expired, NOW),
            Progress::Expired {
                version: 7,
                on: false
            }
        );
        let superseded = with_command(device(None, None), CommandState::Superseded, 0);
        assert!(Progress::of(&superseded, NOW).is_failure());
    }

    #[test]
    fn a_report_of_the_version_acknowledges_a_command_not_yet_updated() {
        let reported = with_command(device(None, Some(7)), CommandState::Published, 0);
        assert_eq!(
            Progress::of(&reported, NOW),
            Progress::Acknowledged {
                version: 7,
                on: false,
                round_trip_us: None
            }
        );
    }

    #[test]
    fn without_a_command_record_the_versions_decide() {
        assert_eq!(
            Progress::of(&device(Some(4), Some(4)), NOW),
            Progress::Acknowledged {
                version: 4,
                on: true,
                round_trip_us: Some(200_000)
            }
        );
        assert_eq!(
            Progress::of(&device(Some(5), Some(4)), NOW),
            Progress::Pending {
                version: 5,
                on: true
            }
        );
        assert_eq!(
            Progress::of(&device(Some(1), None), NOW),
            Progress::Pending {
                version: 1,
                on: true
            }
        );
    }

    #[test]
    fn no_command_before_anything_was_desired() {
        assert_eq!(
            Progress::of(&device(None, Some(0)), NOW),
            Progress::NoCommand
        );
        assert_eq!(Progress::NoCommand.describe(), "No command sent yet");
    }
}
