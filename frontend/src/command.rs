//! Whether an actuator has carried out the latest command: the backend bumps
//! `DesiredState.version` for each ON/OFF, and the device echoes the version
//! it applied in `ReportedState.applied_version`.

use hearth_proto::v1::Device;

/// Where the latest desired state of an actuator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    /// Nothing has been asked of the device yet.
    NoCommand,
    /// Version `desired` was issued; the device has not reported applying it.
    Pending { desired: u64 },
    /// The device reported applying version `desired`.
    Acknowledged { desired: u64 },
}

impl CommandState {
    /// The state of `device`'s latest command.
    pub fn of(device: &Device) -> Self {
        let Some(desired) = device.desired.as_ref() else {
            return Self::NoCommand;
        };
        let applied = device.reported.as_ref().map(|r| r.applied_version);
        if applied == Some(desired.version) {
            Self::Acknowledged {
                desired: desired.version,
            }
        } else {
            Self::Pending {
                desired: desired.version,
            }
        }
    }

    /// One word for a badge: `acknowledged`, `pending`, `no command`.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCommand => "no command",
            Self::Pending { .. } => "pending",
            Self::Acknowledged { .. } => "acknowledged",
        }
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::{DesiredState, ReportedState};

    use super::*;

    fn device(desired: Option<u64>, applied: Option<u64>) -> Device {
        Device {
            desired: desired.map(|version| DesiredState {
                version,
                on: true,
                ..Default::default()
            }),
            reported: applied.map(|applied_version| ReportedState {
                applied_version,
                on: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn acknowledged_when_the_device_applied_the_desired_version() {
        assert_eq!(
            CommandState::of(&device(Some(4), Some(4))),
            CommandState::Acknowledged { desired: 4 }
        );
        assert_eq!(
            CommandState::of(&device(Some(4), Some(4))).label(),
            "acknowledged"
        );
    }

    #[test]
    fn pending_until_the_device_reports_that_version() {
        assert_eq!(
            CommandState::of(&device(Some(5), Some(4))),
            CommandState::Pending { desired: 5 }
        );
        assert_eq!(
            CommandState::of(&device(Some(1), None)),
            CommandState::Pending { desired: 1 }
        );
        assert_eq!(CommandState::of(&device(Some(1), None)).label(), "pending");
    }

    #[test]
    fn no_command_before_anything_was_desired() {
        assert_eq!(
            CommandState::of(&device(None, Some(0))),
            CommandState::NoCommand
        );
    }
}
