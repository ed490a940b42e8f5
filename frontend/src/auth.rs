//! Who uses the app: the [`Gate`] the views follow (checking, in, or a login
//! needed), the session token every call carries (in memory, mirrored in
//! this tab's sessionStorage), its renewal, and logging in and out.
//!
//! The decisions (when to renew, what a role may do) are in `session`; this
//! module holds them together with the browser and the network.

use std::{
    cell::{Cell, RefCell},
    time::Duration,
};

use gloo_timers::future::sleep;
use leptos::{prelude::*, task::spawn_local};

use crate::{
    api::{self, ApiError},
    browser,
    session::{Access, Controls, Session},
};

/// How soon to ask again who the app runs as when the backend did not answer.
const CHECK_RETRY: Duration = Duration::from_secs(2);

/// Shown on the login page when the backend stopped taking the session.
const ENDED: &str = "Your session has ended. Log in again.";

thread_local! {
    /// The current session; `None` in open mode or signed out.
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    /// The app's gate once it runs, for [`refused`].
    static GATE: Cell<Option<RwSignal<Gate>>> = const { Cell::new(None) };
    /// Whether [`refused`] is asking the backend already.
    static VERIFYING: Cell<bool> = const { Cell::new(false) };
}

/// What the app may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Asking the backend who the app runs as; why the last try failed.
    Checking(Option<String>),
    /// Open mode, or a signed-in user.
    In(Access),
    /// A login is needed; why, when a session just ended.
    Out(Option<&'static str>),
}

/// The gate, provided as context by the app.
#[derive(Debug, Clone, Copy)]
pub struct Auth(RwSignal<Gate>);

impl Auth {
    /// Takes the session this tab kept, if any, and asks the backend who
    /// that is (WhoAmI), or whether no login is needed (open mode).
    pub fn start() -> Self {
        let kept = browser::stored_session()
            .as_deref()
            .and_then(Session::from_stored)
            .filter(|s| !s.is_expired(browser::now_unix_ms()));
        SESSION.with_borrow_mut(|held| *held = kept);
        let gate = RwSignal::new(Gate::Checking(None));
        GATE.set(Some(gate));
        let auth = Self(gate);
        spawn_local(auth.check());
        auth
    }

    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// The gate (tracked).
    pub fn gate(&self) -> Gate {
        self.0.get()
    }

    /// The signed-in user's name; `None` in open mode or signed out (tracked).
    pub fn user(&self) -> Option<String> {
        self.0.with(|gate| match gate {
            Gate::In(access) => access.name().map(str::to_owned),
            _ => None,
        })
    }

    /// The controls of `home_id` the caller may use (tracked).
    pub fn controls(&self, home_id: &str) -> Controls {
        self.0.with(|gate| match gate {
            Gate::In(access) => access.controls(home_id),
            _ => Controls::default(),
        })
    }

    async fn check(self) {
        loop {
            let had_token = token().is_some();
            match api::who_am_i().await {
                Ok(caller) => {
                    let access = Access::of(&caller);
                    if access == Access::Open {
                        keep(None);
                    }
                    self.0.set(Gate::In(access));
                    return;
                }
                // Why again: a kept token the backend no longer takes
                // (restarted with a fresh database, say) may hide open mode.
                Err(ApiError::Unauthenticated(_)) if had_token => keep(None),
                Err(ApiError::Unauthenticated(_)) => {
                    self.0.set(Gate::Out(None));
                    return;
                }
                Err(e) => {
                    self.0.set(Gate::Checking(Some(e.to_string())));
                    sleep(CHECK_RETRY).await;
                }
            }
        }
    }

    /// Logs in; the error says why not (a wrong password: the backend's
    /// "wrong username or password").
    pub async fn log_in(self, username: String, password: String) -> Result<(), ApiError> {
        let session = api::login(username, password).await?;
        self.accept(session);
        Ok(())
    }

    /// Ends the session here at once and at the backend as soon as it answers.
    pub fn log_out(self) {
        let ended = token();
        self.0.set(Gate::Out(None));
        spawn_local(async move {
            // Why ignore a failure: the token is forgotten here either way,
            // and the backend's copy expires on its own.
            let _ = api::logout().await;
            // Why compare: a new login may have landed meanwhile.
            if token() == ended {
                keep(None);
            }
        });
    }

    /// Renews the session two thirds into its life, for as long as the view
    /// that runs it is on screen; retries while the backend is away, and
    /// signs out once the session expired.
    pub async fn keep_renewed(self) {
        let mut failures = 0;
        loop {
            let Some(session) = current() else {
                return;
            };
            let wait = session.renew_in_ms(browser::now_unix_ms(), failures);
            sleep(Duration::from_millis(wait as u64)).await;
            if current().is_some_and(|s| s.is_expired(browser::now_unix_ms())) {
                self.end();
                return;
            }
            match api::renew().await {
                Ok(session) => {
                    failures = 0;
                    self.accept(session);
                }
                // `refused` has taken it from here.
                Err(ApiError::Unauthenticated(_)) => return,
                Err(_) => failures += 1,
            }
        }
    }

    fn accept(self, session: hearth_proto::v1::Session) {
        keep(Some(Session {
            token: session.token,
            received_at_ms: browser::now_unix_ms(),
            expires_at_ms: session.expires_at_ms,
        }));
        let access = Gate::In(Access::of(&session.caller.unwrap_or_default()));
        // Why compare: a renewal that changes nothing must not rebuild the
        // page (and reopen its streams).
        if self.0.with_untracked(|gate| *gate != access) {
            self.0.set(access);
        }
    }

    fn end(self) {
        keep(None);
        self.0.set(Gate::Out(Some(ENDED)));
    }
}

/// The current session token, for the `authorization` header.
pub fn token() -> Option<String> {
    SESSION.with_borrow(|held| held.as_ref().map(|s| s.token.clone()))
}

/// Told by `api` that the backend refused a call as unauthenticated. Asks
/// WhoAmI with the current token before signing out.
///
/// Why ask first: a call sent with the token a renewal just replaced is
/// refused too, while the new token works.
pub fn refused() {
    let Some(gate) = GATE.get() else {
        return;
    };
    let signed_in = gate.with_untracked(|g| matches!(g, Gate::In(_)));
    if !signed_in || VERIFYING.get() {
        return;
    }
    VERIFYING.set(true);
    spawn_local(async move {
        let answer = api::who_am_i().await;
        VERIFYING.set(false);
        if matches!(answer, Err(ApiError::Unauthenticated(_))) {
            Auth(gate).end();
        }
    });
}

fn current() -> Option<Session> {
    SESSION.with_borrow(Clone::clone)
}

/// Holds `session` in memory and in this tab's sessionStorage; `None`
/// forgets it in both.
fn keep(session: Option<Session>) {
    browser::store_session(session.as_ref().map(Session::stored).as_deref());
    SESSION.with_borrow_mut(|held| *held = session);
}
