//! A login's session and what it lets the user do, as plain data: when to
//! renew the token, when it is dead, how it is kept in `sessionStorage`, and
//! which controls a role in a home shows. No browser I/O here (that is
//! `auth`), so all of it is tested natively.

use hearth_proto::v1::{Caller, Role};

/// A session token from `Login` or `Renew`, and its lifetime on this
/// browser's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    /// When the app received it, Unix ms (browser clock).
    pub received_at_ms: i64,
    /// When the backend stops taking it, Unix ms.
    pub expires_at_ms: i64,
}

/// How soon to try a renewal again after one that found no backend.
pub const RENEW_RETRY_MS: i64 = 10_000;

impl Session {
    /// When to ask for a fresh token: two thirds into its life, which leaves
    /// a third for retries while the backend is away.
    ///
    /// Why from `received_at_ms` rather than the backend's clock: the app
    /// has only its own, and a lifetime measured on one clock is right even
    /// when the two disagree by minutes.
    pub fn renew_at_ms(&self) -> i64 {
        let life = (self.expires_at_ms - self.received_at_ms).max(0);
        self.received_at_ms + life * 2 / 3
    }

    /// Whether the backend no longer takes the token at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// How long to wait at `now_ms` before the next renewal attempt, after
    /// `failures` attempts in a row found no backend.
    pub fn renew_in_ms(&self, now_ms: i64, failures: u32) -> i64 {
        let due = (self.renew_at_ms() - now_ms).max(0);
        if failures == 0 {
            due
        } else {
            due.max(RENEW_RETRY_MS)
        }
    }

    /// The form kept in `sessionStorage`: `received:expires:token`.
    pub fn stored(&self) -> String {
        format!(
            "{}:{}:{}",
            self.received_at_ms, self.expires_at_ms, self.token
        )
    }

    /// A session from its [`stored`](Self::stored) form; `None` for anything
    /// else (an older app's value, or one edited by hand).
    pub fn from_stored(stored: &str) -> Option<Self> {
        let mut parts = stored.splitn(3, ':');
        let received_at_ms = parts.next()?.parse().ok()?;
        let expires_at_ms = parts.next()?.parse().ok()?;
        let token = parts.next().filter(|t| !t.is_empty())?.to_owned();
        Some(Self {
            token,
            received_at_ms,
            expires_at_ms,
        })
    }
}

/// What the caller may do, from `WhoAmI` (or a login's `Caller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No users exist yet (loopback only): everything, no login.
    Open,
    /// A signed-in user and their role in each of their homes.
    Member {
        name: String,
        grants: Vec<(String, Role)>,
    },
}

impl Access {
    pub fn of(caller: &Caller) -> Self {
        if caller.open {
            return Self::Open;
        }
        Self::Member {
            name: caller.name.clone(),
            grants: caller
                .grants
                .iter()
                .map(|g| (g.home_id.clone(), g.role()))
                .collect(),
        }
    }

    /// The signed-in user's name; `None` in open mode.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Open => None,
            Self::Member { name, .. } => Some(name),
        }
    }

    /// The caller's role in `home_id` (the highest of its grants there);
    /// admin everywhere in open mode.
    pub fn role_in(&self, home_id: &str) -> Option<Role> {
        match self {
            Self::Open => Some(Role::Admin),
            Self::Member { grants, .. } => grants
                .iter()
                .filter(|(home, role)| {
                    // Ingest is a gateway's: it shows and switches nothing.
                    home == home_id && !matches!(role, Role::Unspecified | Role::Ingest)
                })
                .map(|(_, role)| *role)
                .max(),
        }
    }

    /// The controls of `home_id` the caller may use.
    pub fn controls(&self, home_id: &str) -> Controls {
        Controls::of(self.role_in(home_id))
    }
}

/// Which controls a home's pages show. The backend refuses the calls behind
/// the hidden ones anyway (`decision` in the domain's `access`); hiding them
/// spares the user buttons that can only fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Controls {
    /// ON / OFF / AUTO and overrides (SetMode): operators and admins.
    pub switch: bool,
    /// Creating, editing, enabling and deleting rules: admins.
    pub edit_rules: bool,
}

impl Controls {
    /// What `role` may use; nothing without a role.
    pub fn of(role: Option<Role>) -> Self {
        let at_least = |need: Role| role.is_some_and(|r| r >= need);
        Self {
            switch: at_least(Role::Operator),
            edit_rules: at_least(Role::Admin),
        }
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::Grant;

    use super::*;

    const MINUTE: i64 = 60_000;

    fn session(received_at_ms: i64, expires_at_ms: i64) -> Session {
        Session {
            token: "hs_abc".into(),
            received_at_ms,
            expires_at_ms,
        }
    }

    fn member(grants: &[(&str, Role)]) -> Access {
        Access::of(&Caller {
            name: "ann".into(),
            grants: grants
                .iter()
                .map(|(home, role)| Grant {
                    home_id: (*home).into(),
                    role: *role as i32,
                })
                .collect(),
            open: false,
        })
    }

    #[test]
    fn a_session_is_renewed_two_thirds_into_its_life() {
        let s = session(1_000_000, 1_000_000 + 15 * MINUTE);
        assert_eq!(s.renew_at_ms(), 1_000_000 + 10 * MINUTE);
        assert_eq!(s.renew_in_ms(1_000_000, 0), 10 * MINUTE);
        assert_eq!(s.renew_in_ms(1_000_000 + 11 * MINUTE, 0), 0);
    }

    #[test]
    fn a_failed_renewal_is_retried_after_a_pause_not_at_once() {
        let s = session(0, 15 * MINUTE);
        assert_eq!(s.renew_in_ms(11 * MINUTE, 1), RENEW_RETRY_MS);
        assert_eq!(s.renew_in_ms(0, 3), 10 * MINUTE);
    }

    #[test]
    fn a_session_expired_on_arrival_is_renewed_at_once() {
        // The browser's clock is ahead of the backend's.
        let s = session(2_000, 1_000);
        assert_eq!(s.renew_at_ms(), 2_000);
        assert_eq!(s.renew_in_ms(2_000, 0), 0);
    }

    #[test]
    fn a_session_is_dead_from_its_expiry_on() {
        let s = session(0, 15 * MINUTE);
        assert!(!s.is_expired(15 * MINUTE - 1));
        assert!(s.is_expired(15 * MINUTE));
    }

    #[test]
    fn a_stored_session_comes_back_as_it_was() {
        let s = session(1_700_000_000_000, 1_700_000_900_000);
        assert_eq!(Session::from_stored(&s.stored()), Some(s));
    }

    #[test]
    fn a_stored_value_that_is_not_a_session_is_ignored() {
        for bad in ["", "hs_abc", "1:2", "1:2:", "x:2:hs_abc", "1:y:hs_abc"] {
            assert_eq!(Session::from_stored(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_viewer_sees_a_home_without_its_controls() {
        let ann = member(&[("x", Role::Viewer)]);
        assert_eq!(ann.role_in("x"), Some(Role::Viewer));
        assert_eq!(ann.controls("x"), Controls::default());
    }

    #[test]
    fn an_operator_switches_devices_but_does_not_edit_rules() {
        let controls = member(&[("x", Role::Operator)]).controls("x");
        assert!(controls.switch);
        assert!(!controls.edit_rules);
    }

    #[test]
    fn an_admin_and_open_mode_have_every_control() {
        let all = Controls {
            switch: true,
            edit_rules: true,
        };
        assert_eq!(member(&[("x", Role::Admin)]).controls("x"), all);
        assert_eq!(Access::Open.controls("any"), all);
        assert_eq!(Access::Open.name(), None);
    }

    #[test]
    fn the_highest_role_in_the_home_counts_and_other_homes_give_none() {
        let ann = member(&[
            ("x", Role::Viewer),
            ("x", Role::Admin),
            ("y", Role::Operator),
        ]);
        assert_eq!(ann.role_in("x"), Some(Role::Admin));
        assert_eq!(ann.role_in("z"), None);
        assert_eq!(ann.controls("z"), Controls::default());
        assert_eq!(ann.name(), Some("ann"));
    }
}
