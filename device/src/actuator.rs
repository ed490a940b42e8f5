//! Whether an actuator applies a desired state: only a newer version than the
//! one it applied, and never one past its expiry (a fan must not switch on an
//! hour late because a command waited in a queue).

use hearth_proto::v1::DesiredState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// Not newer than what was applied (a redelivery or a reordering).
    Old,
    Expired,
}

/// Decides what to do with `desired`, having applied `applied_version`.
pub fn judge(desired: &DesiredState, applied_version: u64, now: i64) -> Verdict {
    if desired.version <= applied_version {
        Verdict::Old
    } else if desired.expires_unix_ms != 0 && now > desired.expires_unix_ms {
        Verdict::Expired
    } else {
        Verdict::Apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(version: u64, expires_unix_ms: i64) -> DesiredState {
        DesiredState {
            version,
            on: true,
            issued_unix_ms: 0,
            expires_unix_ms,
        }
    }

    #[test]
    fn applies_only_newer_versions() {
        assert_eq!(judge(&desired(3, 0), 2, 10), Verdict::Apply);
        assert_eq!(judge(&desired(2, 0), 2, 10), Verdict::Old);
        assert_eq!(judge(&desired(1, 0), 2, 10), Verdict::Old);
    }

    #[test]
    fn never_applies_an_expired_command() {
        assert_eq!(judge(&desired(3, 100), 2, 100), Verdict::Apply);
        assert_eq!(judge(&desired(3, 100), 2, 101), Verdict::Expired);
    }
}
