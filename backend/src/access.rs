//! Who is calling: passwords, sessions, API tokens, and the gate every API
//! request passes before its handler.
//!
//! Two modes, chosen at start ([`Access::start`]):
//! - **open**: no user exists yet and every listener is on loopback. Whoever
//!   reaches the port owns the machine anyway, so the zero-setup embedded
//!   run needs no login. It ends the moment the first user is created.
//! - **required**: every API call but `Login` carries
//!   `authorization: Bearer <token>`, and handlers answer only about the
//!   homes the caller has a role in ([`crate::domain::access`]).
//!
//! Hearth keeps only hashes: argon2id for passwords, SHA-256 for tokens
//! (256 random bits each, which need no slow hash). A validated token is
//! cached for [`CACHE_MS`], so a call costs no database round trip; a
//! revocation or role change takes effect at once on the replica that made
//! it and within [`CACHE_MS`] on the others.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use base64::Engine as _;
use futures::future::BoxFuture;
use hearth_runtime::Clock;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{info, warn};

use crate::{
    domain::{
        access::{decision, is_api, is_stream},
        Caller, Decision, Denied, DeviceScope, Grant, Home, HomeId, Role, TokenName, UnixMs,
        Username,
    },
    limits::{Limits, SlotBody},
    settings::FirstAdmin,
    storage::{ApiTokenInfo, AuditEvent, Storage, StorageError},
};

/// How long a validated token is trusted without asking the database.
pub const CACHE_MS: i64 = 5_000;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Prefixes that tell a session token from an API token at a glance (and
/// to secret scanners).
const SESSION_PREFIX: &str = "hs_";
const API_PREFIX: &str = "ht_";

/// A request's caller, as the gate found it; handlers read it from the
/// request's extensions ([`caller`]).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Arc<Caller>,
    /// The hash of the session token presented, for Renew and Logout.
    pub session: Option<String>,
}

/// A new session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub expires_at: UnixMs,
    pub caller: Caller,
}

struct Cached {
    auth: Authenticated,
    until: UnixMs,
    /// The user or token it belongs to, to drop it when they change.
    owner: String,
}

pub struct Access {
    storage: Arc<dyn Storage>,
    clock: Clock,
    open: AtomicBool,
    session_ttl_ms: i64,
    cache: Mutex<HashMap<String, Cached>>,
    limits: Limits,
    /// Open broker connections of each API token, by name
    /// ([`Access::watch_api_token`]).
    live_tokens: Mutex<HashMap<String, Vec<CancellationToken>>>,
}

/// The hex SHA-256 of a token: what the database holds and is looked up by.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secret` looks like an API token (`ht_…`), not a session token
/// or a device's secret.
pub fn is_api_token(secret: &str) -> bool {
    secret.starts_with(API_PREFIX)
}

/// A new secret: `prefix` and 32 random bytes, URL-safe base64.
pub(crate) fn new_token(prefix: &str) -> String {
    let secret: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

/// Hashes a password with argon2id and a fresh salt (slow on purpose: run
/// it off the async threads).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a new password; the error names the field.
pub fn check_password(password: &str, field: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "{field} is shorter than {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > 1024 {
        return Err(format!("{field} is longer than 1024 bytes"));
    }
    Ok(())
}

/// A password hash nobody's password matches, checked when the user does
/// not exist so a wrong name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_token("")).expect("hashing a decoy password"))
}

/// The unauthenticated answer for every token that does not work, whatever
/// the reason (unknown, expired, revoked), so a caller learns nothing else.
fn bad_token() -> Status {
    Status::unauthenticated("the token is unknown, expired or revoked; log in again")
}

impl Access {
    /// Decides the mode: open if no user exists and `loopback_only`; an
    /// error naming what to do if no user exists and a listener is not on
    /// loopback.
    pub async fn start(
        storage: Arc<dyn Storage>,
        clock: Clock,
        session_ttl_ms: i64,
        loopback_only: bool,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let users = storage.count_users().await?;
        let open = users == 0;
        if open && !loopback_only {
            anyhow::bail!(
                "no user exists, and HEARTH_LISTEN or HEARTH_MQTT_LISTEN is not on loopback: \
                 anyone who can reach it could switch this home's devices. Create the first \
                 admin with `hearth admin create-user NAME --home HOME` (same HEARTH_DATABASE_URL), \
                 or listen on 127.0.0.1"
            );
        }
        match open {
            true => warn!(
                "no users yet: the API is open to anyone who can reach this machine's loopback \
                 interface; create one with `hearth admin create-user` to require logins"
            ),
            false => info!(users, "logins required"),
        }
        Ok(Self {
            storage,
            clock,
            open: AtomicBool::new(open),
            session_ttl_ms,
            cache: Mutex::default(),
            limits,
            live_tokens: Mutex::default(),
        })
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Who presents `authorization` (the metadata's value, if any).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, Status> {
        if self.is_open() {
            return Ok(Authenticated {
                caller: Arc::new(Caller::Open),
                session: None,
            });
        }
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "authorization: this call needs `authorization: Bearer <token>` metadata \
                     (log in, or use an API token)",
                )
            })?;
        self.resolve(token).await
    }

    /// The API token `token` (`ht_…`) as a caller, in either mode: how the
    /// broker's guard checks a token given as an MQTT password. An error
    /// for one that is unknown, revoked or not an API token.
    pub async fn api_token_caller(&self, token: &str) -> Result<Arc<Caller>, Status> {
        if !token.starts_with(API_PREFIX) {
            return Err(bad_token());
        }
        Ok(self.resolve(token).await?.caller)
    }

    /// A token's connections to the embedded broker: cancelled when the
    /// token is revoked.
    pub fn watch_api_token(&self, name: &str) -> CancellationToken {
        let connection = CancellationToken::new();
        let mut live = self.live_tokens.lock().expect("live tokens");
        let connections = live.entry(name.to_owned()).or_default();
        connections.retain(|c| !c.is_cancelled());
        connections.push(connection.clone());
        connection
    }

    /// Who a session or API token stands for, from the cache or the database.
    async fn resolve(&self, token: &str) -> Result<Authenticated, Status> {
        let hash = token_hash(token);
        let now = self.clock.now();
        if let Some(hit) = self.cache.lock().expect("access cache").get(&hash) {
            if hit.until > now {
                return Ok(hit.auth.clone());
            }
        }
        let (auth, owner, until) = if token.starts_with(SESSION_PREFIX) {
            let (user, expires_at) = self
                .storage
                .session_user(&hash, now)
                .await
                .map_err(Status::from)?
                .ok_or_else(bad_token)?;
            let grants = self
                .storage
                .user_grants(&user)
                .await
                .map_err(Status::from)?;
            let auth = Authenticated {
                caller: Arc::new(Caller::User {
                    name: user.to_string(),
                    grants,
                }),
                session: Some(hash.clone()),
            };
            (auth, user.to_string(), expires_at.min(now + CACHE_MS))
        } else if token.starts_with(API_PREFIX) {
            let info = self
                .storage
                .api_token(&hash)
                .await
                .map_err(Status::from)?
                .ok_or_else(bad_token)?;
            let auth = Authenticated {
                caller: Arc::new(Caller::Token {
                    name: info.name.to_string(),
                    grants: info.grants,
                    devices: info.devices,
                }),
                session: None,
            };
            (auth, format!("token:{}", info.name), now + CACHE_MS)
        } else {
            return Err(bad_token());
        };
        self.cache.lock().expect("access cache").insert(
            hash,
            Cached {
                auth: auth.clone(),
                until,
                owner,
            },
        );
        Ok(auth)
    }

    /// Forgets cached callers of `owner` (a user name or `token:<name>`).
    fn forget(&self, owner: &str) {
        self.cache
            .lock()
            .expect("access cache")
            .retain(|_, c| c.owner != owner);
    }

    /// A session for `username` if `password` is theirs.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, Status> {
        let wrong = || Status::unauthenticated("wrong username or password");
        let user = Username::parse(username, "username").ok();
        let stored = match &user {
            Some(u) => self.storage.password_hash(u).await.map_err(Status::from)?,
            None => None,
        };
        let password = password.to_owned();
        let matched = stored.is_some();
        let hash = stored.unwrap_or_else(|| decoy_hash().to_owned());
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|_| Status::internal("internal error"))?;
        let (Some(user), true, true) = (user, matched, ok) else {
            warn!(username, "failed login");
            self.audit(username, "login", None, username, false).await;
            return Err(wrong());
        };
        info!(username = %user, "login");
        self.audit(user.as_str(), "login", None, user.as_str(), true)
            .await;
        self.new_session(&user).await
    }

    async fn new_session(&self, user: &Username) -> Result<Session, Status> {
        let token = new_token(SESSION_PREFIX);
        let expires_at = self.clock.now() + self.session_ttl_ms;
        self.storage
            .create_session(&token_hash(&token), user, expires_at)
            .await?;
        let grants = self.storage.user_grants(user).await?;
        Ok(Session {
            token,
            expires_at,
            caller: Caller::User {
                name: user.to_string(),
                grants,
            },
        })
    }

    /// A fresh session for the caller's; the presented one stops working.
    pub async fn renew(&self, auth: &Authenticated) -> Result<Session, Status> {
        let (Caller::User { name, .. }, Some(old)) = (auth.caller.as_ref(), &auth.session) else {
            return Err(Status::failed_precondition(
                "only a session token (from Login) can be renewed",
            ));
        };
        let user = Username::parse(name, "username").map_err(|_| bad_token())?;
        let session = self.new_session(&user).await?;
        self.end_session(old).await?;
        Ok(session)
    }

    pub async fn end_session(&self, hash: &str) -> Result<(), Status> {
        self.storage.delete_session(hash).await?;
        self.cache.lock().expect("access cache").remove(hash);
        Ok(())
    }

    /// A new user with `role` in `home`, or that role for an existing user
    /// (when `password` is empty). Ends open mode.
    pub async fn create_user(
        &self,
        user: &Username,
        password: &str,
        home: &HomeId,
        role: Role,
    ) -> Result<Vec<Grant>, Status> {
        if !password.is_empty() {
            check_password(password, "password").map_err(Status::invalid_argument)?;
            let password = password.to_owned();
            let hash = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|_| Status::internal("internal error"))?
                .map_err(|e| {
                    warn!(error = %e, "hashing a password");
                    Status::internal("internal error")
                })?;
            self.storage
                .create_user(user, &hash, self.clock.now())
                .await?;
            if self.open.swap(false, Ordering::Relaxed) {
                info!(user = %user, "the first user exists: logins are required from now on");
            }
        }
        self.set_membership(user, home, Some(role)).await
    }

    pub async fn set_membership(
        &self,
        user: &Username,
        home: &HomeId,
        role: Option<Role>,
    ) -> Result<Vec<Grant>, Status> {
        self.storage
            .set_membership(user, home, role)
            .await
            .map_err(|e| match e {
                StorageError::NotFound(_) => {
                    Status::not_found(format!("username: user {user} not found"))
                }
                other => other.into(),
            })?;
        self.forget(user.as_str());
        Ok(self.storage.user_grants(user).await?)
    }

    /// A new API token with `grants`, limited to `devices`, made by `by`;
    /// the secret is returned once and only its hash kept.
    pub async fn create_api_token(
        &self,
        name: TokenName,
        grants: Vec<Grant>,
        devices: DeviceScope,
        by: &Caller,
    ) -> Result<(String, ApiTokenInfo), Status> {
        let token = new_token(API_PREFIX);
        let info = ApiTokenInfo {
            name,
            grants,
            devices,
            created_at: self.clock.now(),
            created_by: by.name(),
        };
        self.storage
            .create_api_token(&token_hash(&token), &info)
            .await?;
        info!(token = %info.name, by = %info.created_by, "API token created");
        Ok((token, info))
    }

    pub async fn revoke_api_token(&self, name: &TokenName) -> Result<(), Status> {
        self.storage.delete_api_token(name).await?;
        self.forget(&format!("token:{name}"));
        let live = self
            .live_tokens
            .lock()
            .expect("live tokens")
            .remove(name.as_str());
        for connection in live.into_iter().flatten() {
            connection.cancel();
        }
        info!(token = %name, "API token revoked");
        Ok(())
    }

    /// Writes a line of the audit log. Why it never fails the call: the
    /// change it records is made; a failure to record it is logged.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        home: Option<&HomeId>,
        target: &str,
        ok: bool,
    ) {
        let event = AuditEvent {
            at: self.clock.now(),
            home: home.cloned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: if ok { "ok" } else { "refused" }.to_owned(),
        };
        if let Err(e) = self.storage.record_audit(&event).await {
            warn!(error = %e, action, target, "could not write the audit log");
        }
    }

    /// A user's cached grants changed (e.g. they created a home).
    pub fn grants_changed(&self, user: &str) {
        self.forget(user);
    }
}

/// Creates `admin` (and its home, if missing) unless a user exists: how a
/// cluster gets its first admin from a Secret (HEARTH_ADMIN,
/// HEARTH_ADMIN_PASSWORD_FILE). Replicas starting together may race; the
/// loser finds the rows there.
pub async fn ensure_first_admin(
    storage: &Arc<dyn Storage>,
    admin: &FirstAdmin,
    clock: &Clock,
) -> anyhow::Result<()> {
    if storage.count_users().await? > 0 {
        info!("HEARTH_ADMIN is ignored: users exist already");
        return Ok(());
    }
    let home = HomeId::parse(&admin.home, "HEARTH_ADMIN")?;
    let user = Username::parse(&admin.username, "HEARTH_ADMIN")?;
    add_user(storage, &user, &admin.password, &home, Role::Admin, clock).await?;
    info!(user = %user, home = %home, "created the first admin (HEARTH_ADMIN)");
    Ok(())
}

/// Creates `user` (unless the name exists: then only the role changes) with
/// `role` in `home`, creating the home if missing. What `hearth admin
/// create-user` and HEARTH_ADMIN do, straight on the database.
pub async fn add_user(
    storage: &Arc<dyn Storage>,
    user: &Username,
    password: &str,
    home: &HomeId,
    role: Role,
    clock: &Clock,
) -> anyhow::Result<()> {
    check_password(password, "the password").map_err(anyhow::Error::msg)?;
    let exists = storage.list_homes().await?.iter().any(|h| &h.id == home);
    if !exists {
        let created = storage
            .create_home(&Home {
                name: home.to_string(),
                id: home.clone(),
                created_at: clock.now(),
            })
            .await;
        ignore_conflict(created)?;
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
    ignore_conflict(storage.create_user(user, &hash, clock.now()).await)?;
    ignore_conflict(storage.set_membership(user, home, Some(role)).await)?;
    Ok(())
}

fn ignore_conflict(r: Result<(), StorageError>) -> Result<(), StorageError> {
    match r {
        Err(StorageError::Conflict(_)) => Ok(()),
        other => other,
    }
}

/// The caller the gate put on `request`. Why an error and not a panic when
/// missing: a service mounted without the gate must fail closed.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Authenticated, Status> {
    request
        .extensions()
        .get::<Authenticated>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("authorization: no caller"))
}

/// The status for a caller denied `what` (e.g. `device fan-1`): a home the
/// caller has no role in answers exactly as a missing thing does.
pub fn denied(what: impl std::fmt::Display, field: &str, d: Denied) -> Status {
    match d {
        Denied::NotFound => Status::not_found(format!("{what} not found")),
        Denied::Forbidden { role, need } => Status::permission_denied(format!(
            "{field}: a {role} of {what}'s home may not do this (it needs {need})"
        )),
    }
}

/// Checks `caller` has `need` in `home`, answering about `what`.
pub fn require(
    caller: &Caller,
    home: &HomeId,
    need: Role,
    what: impl std::fmt::Display,
    field: &str,
) -> Result<(), Status> {
    caller
        .require(home, need)
        .map_err(|d| denied(what, field, d))
}

/// The name a caller's limits are kept under; none in open mode, where no
/// caller can be told from another.
fn limited_as(caller: &Caller) -> Option<String> {
    match caller {
        Caller::Open => None,
        Caller::User { name, .. } => Some(format!("user {name}")),
        Caller::Token { name, .. } => Some(format!("token {name}")),
    }
}

/// The tower layer that authenticates every call to Hearth's API, refuses
/// methods [`decision`] has no entry for, and applies each caller's limits
/// (`limits.rs`).
#[derive(Clone)]
pub struct GateLayer {
    access: Arc<Access>,
}

impl GateLayer {
    pub fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            access: self.access.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    access: Arc<Access>,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Gate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Why clone and swap: the clone may not be ready; the one polled
        // ready is the one to call (tower's guidance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let access = self.access.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let mut stream_slot = None;
            if is_api(&path) {
                let Some(decision) = decision(&path) else {
                    return Ok(Status::permission_denied(format!(
                        "{path}: Hearth has no access decision for this method"
                    ))
                    .into_http());
                };
                if decision != Decision::Public {
                    let header = request
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let auth = match access.authenticate(header).await {
                        Ok(auth) => auth,
                        Err(status) => return Ok(status.into_http()),
                    };
                    if let Some(who) = limited_as(&auth.caller) {
                        let admitted = access.limits.admit(&who, access.clock.now());
                        let slot = match admitted {
                            Ok(()) if is_stream(&path) => access.limits.open_stream(&who).map(Some),
                            Ok(()) => Ok(None),
                            Err(status) => Err(status),
                        };
                        match slot {
                            Ok(s) => stream_slot = s,
                            Err(status) => return Ok(status.into_http()),
                        }
                    }
                    request.extensions_mut().insert(auth);
                }
            }
            let response = inner.call(request).await?;
            Ok(match stream_slot {
                Some(slot) => {
                    response.map(|body| tonic::body::Body::new(SlotBody { body, _slot: slot }))
                }
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed_to_hex() {
        let (a, b) = (new_token(API_PREFIX), new_token(API_PREFIX));
        assert_ne!(a, b);
        assert!(a.starts_with("ht_") && a.len() > 40);
        let h = token_hash(&a);
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(h, token_hash(&b));
    }

    #[test]
    fn short_passwords_are_refused_naming_the_field() {
        assert_eq!(
            check_password("short", "password"),
            Err("password is shorter than 12 characters".into())
        );
        assert!(check_password("long enough pass", "password").is_ok());
    }
}
