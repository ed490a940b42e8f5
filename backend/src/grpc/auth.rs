//! `hearth.v1.AuthService`: logins, sessions, users and API tokens.

use std::sync::Arc;

use hearth_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::{
    scope,
    status::{invalid, invalid_id},
};
use crate::{
    access::{self, caller, require, Access},
    core::Core,
    domain::{Caller, DeviceId, DeviceScope, Grant, HomeId, Role, TokenName, Username},
    storage::ApiTokenInfo,
};

/// Most homes one API token may reach.
const MAX_TOKEN_HOMES: usize = 64;
/// Most devices one API token may be limited to (a gateway's sensors).
const MAX_TOKEN_DEVICES: usize = 1024;
/// Most audit events in one answer, and the default.
const MAX_AUDIT: u32 = 500;
const DEFAULT_AUDIT: u32 = 50;

pub struct AuthApi {
    core: Arc<Core>,
}

impl AuthApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn access(&self) -> &Access {
        &self.core.access
    }

    /// The devices a new token is limited to: each a device of one of its
    /// homes, and only for an ingest token (the other roles answer
    /// listings and streams per home, which a device limit would not
    /// narrow).
    async fn token_devices(
        &self,
        ids: &[String],
        role: Role,
        grants: &[Grant],
    ) -> Result<DeviceScope, Status> {
        if ids.is_empty() {
            return Ok(DeviceScope::All);
        }
        if role != Role::Ingest {
            return Err(invalid(
                "device_ids",
                format!("can limit only an ingest token, not a {role} token"),
            ));
        }
        if ids.len() > MAX_TOKEN_DEVICES {
            return Err(invalid(
                "device_ids",
                format!("has more than {MAX_TOKEN_DEVICES} devices"),
            ));
        }
        let mut devices: Vec<DeviceId> = Vec::with_capacity(ids.len());
        for id in ids {
            let device = DeviceId::parse(id, "device_ids").map_err(invalid_id)?;
            let home = self
                .core
                .directory
                .lookup(&device)
                .await?
                .map(|k| k.home_id);
            // Why one answer for a missing device and another home's: the
            // admin may not learn what another home holds.
            if !home.is_some_and(|h| grants.iter().any(|g| g.home == h)) {
                return Err(invalid(
                    "device_ids",
                    format!("names {device}, which is not a device of the token's homes"),
                ));
            }
            if !devices.contains(&device) {
                devices.push(device);
            }
        }
        Ok(DeviceScope::from_list(devices))
    }
}

pub fn role_to_proto(role: Role) -> v1::Role {
    match role {
        Role::Ingest => v1::Role::Ingest,
        Role::Viewer => v1::Role::Viewer,
        Role::Operator => v1::Role::Operator,
        Role::Admin => v1::Role::Admin,
    }
}

/// `None` for ROLE_UNSPECIFIED; an error naming `field` for unknown values.
fn role_from_proto(value: i32, field: &str) -> Result<Option<Role>, Status> {
    match v1::Role::try_from(value) {
        Ok(v1::Role::Unspecified) => Ok(None),
        Ok(v1::Role::Ingest) => Ok(Some(Role::Ingest)),
        Ok(v1::Role::Viewer) => Ok(Some(Role::Viewer)),
        Ok(v1::Role::Operator) => Ok(Some(Role::Operator)),
        Ok(v1::Role::Admin) => Ok(Some(Role::Admin)),
        Err(_) => Err(invalid(field, format!("{value} is not a Role"))),
    }
}

fn required_role(value: i32, field: &str) -> Result<Role, Status> {
    role_from_proto(value, field)?.ok_or_else(|| invalid(field, "must be set"))
}

/// A person's role: ingest is for a gateway's API token, not for a login.
fn member_role(role: Option<Role>, field: &str) -> Result<Option<Role>, Status> {
    match role {
        Some(Role::Ingest) => Err(invalid(
            field,
            "ROLE_INGEST is for a gateway's API token, not for a user",
        )),
        other => Ok(other),
    }
}

fn grants_to_proto(grants: &[Grant]) -> Vec<v1::Grant> {
    grants
        .iter()
        .map(|g| v1::Grant {
            home_id: g.home.to_string(),
            role: role_to_proto(g.role) as i32,
        })
        .collect()
}

pub fn caller_to_proto(caller: &Caller) -> v1::Caller {
    v1::Caller {
        name: caller.name(),
        grants: grants_to_proto(caller.grants()),
        open: matches!(caller, Caller::Open),
    }
}

fn session_to_proto(s: access::Session) -> v1::Session {
    v1::Session {
        token: s.token,
        expires_at_ms: s.expires_at,
        caller: Some(caller_to_proto(&s.caller)),
    }
}

fn token_to_proto(t: &ApiTokenInfo) -> v1::ApiToken {
    v1::ApiToken {
        name: t.name.to_string(),
        grants: grants_to_proto(&t.grants),
        created_at_ms: t.created_at,
        created_by: t.created_by.clone(),
        device_ids: t.devices.as_list().iter().map(|d| d.to_string()).collect(),
    }
}

/// A home the caller administers: NOT_FOUND if it sees no such home.
async fn admin_home(
    core: &Core,
    caller: &Caller,
    id: &str,
    field: &'static str,
) -> Result<HomeId, Status> {
    let home = HomeId::parse(id, field).map_err(invalid_id)?;
    scope::home(core, caller, &home, Role::Admin, field).await?;
    Ok(home)
}

fn user_to_proto(user: &Username, grants: &[Grant]) -> v1::User {
    v1::User {
        username: user.to_string(),
        grants: grants_to_proto(grants),
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(
        &self,
        request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::Session>, Status> {
        let r = request.into_inner();
        if self.access().is_open() {
            return Err(Status::failed_precondition(
                "no users exist yet: the API is open on loopback and needs no login",
            ));
        }
        let session = self.access().login(&r.username, &r.password).await?;
        Ok(Response::new(session_to_proto(session)))
    }

    async fn renew(
        &self,
        request: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::Session>, Status> {
        let auth = caller(&request)?;
        let session = self.access().renew(&auth).await?;
        Ok(Response::new(session_to_proto(session)))
    }

    async fn logout(
        &self,
        request: Request<v1::LogoutRequest>,
    ) -> Result<Response<v1::LogoutResponse>, Status> {
        if let Some(hash) = caller(&request)?.session {
            self.access().end_session(&hash).await?;
        }
        Ok(Response::new(v1::LogoutResponse {}))
    }

    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::Caller>, Status> {
        let auth = caller(&request)?;
        Ok(Response::new(caller_to_proto(&auth.caller)))
    }

    async fn create_user(
        &self,
        request: Request<v1::CreateUserRequest>,
    ) -> Result<Response<v1::User>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let home = admin_home(&self.core, &auth.caller, &r.home_id, "home_id").await?;
        let user = Username::parse(&r.username, "username").map_err(invalid_id)?;
        let role = required_role(r.role, "role")?;
        member_role(Some(role), "role")?;
        let grants = self
            .access()
            .create_user(&user, &r.password, &home, role)
            .await?;
        let action = match r.password.is_empty() {
            true => "membership.set",
            false => "user.create",
        };
        self.access()
            .audit(
                &auth.caller.name(),
                action,
                Some(&home),
                user.as_str(),
                true,
            )
            .await;
        Ok(Response::new(user_to_proto(&user, &grants)))
    }

    async fn set_membership(
        &self,
        request: Request<v1::SetMembershipRequest>,
    ) -> Result<Response<v1::User>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let home = admin_home(&self.core, &auth.caller, &r.home_id, "home_id").await?;
        let user = Username::parse(&r.username, "username").map_err(invalid_id)?;
        let role = member_role(role_from_proto(r.role, "role")?, "role")?;
        let grants = self.access().set_membership(&user, &home, role).await?;
        self.access()
            .audit(
                &auth.caller.name(),
                "membership.set",
                Some(&home),
                user.as_str(),
                true,
            )
            .await;
        Ok(Response::new(user_to_proto(&user, &grants)))
    }

    async fn create_api_token(
        &self,
        request: Request<v1::CreateApiTokenRequest>,
    ) -> Result<Response<v1::CreatedApiToken>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let name = TokenName::parse(&r.name, "name").map_err(invalid_id)?;
        let role = required_role(r.role, "role")?;
        if r.home_ids.is_empty() {
            return Err(invalid("home_ids", "must name at least one home"));
        }
        if r.home_ids.len() > MAX_TOKEN_HOMES {
            return Err(invalid(
                "home_ids",
                format!("has more than {MAX_TOKEN_HOMES} homes"),
            ));
        }
        let mut grants: Vec<Grant> = Vec::with_capacity(r.home_ids.len());
        for id in &r.home_ids {
            let home = admin_home(&self.core, &auth.caller, id, "home_ids").await?;
            if !grants.iter().any(|g| g.home == home) {
                grants.push(Grant { home, role });
            }
        }
        let devices = self.token_devices(&r.device_ids, role, &grants).await?;
        let (token, info) = self
            .access()
            .create_api_token(name, grants, devices, &auth.caller)
            .await?;
        if let Err(e) = self.core.logins.token_created(&info, &token).await {
            // A gateway's token without its broker login would half work.
            let _ = self.access().revoke_api_token(&info.name).await;
            return Err(Status::unavailable(format!(
                "the broker did not take the token's login; nothing was created: {e:#}"
            )));
        }
        for g in &info.grants {
            self.access()
                .audit(
                    &auth.caller.name(),
                    "token.create",
                    Some(&g.home),
                    info.name.as_str(),
                    true,
                )
                .await;
        }
        Ok(Response::new(v1::CreatedApiToken {
            token,
            info: Some(token_to_proto(&info)),
        }))
    }

    async fn list_api_tokens(
        &self,
        request: Request<v1::ListApiTokensRequest>,
    ) -> Result<Response<v1::ListApiTokensResponse>, Status> {
        let auth = caller(&request)?;
        let home = admin_home(
            &self.core,
            &auth.caller,
            &request.get_ref().home_id,
            "home_id",
        )
        .await?;
        let tokens = self.core.storage.list_api_tokens(&home).await?;
        Ok(Response::new(v1::ListApiTokensResponse {
            tokens: tokens.iter().map(token_to_proto).collect(),
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<v1::RevokeApiTokenRequest>,
    ) -> Result<Response<v1::RevokeApiTokenResponse>, Status> {
        let auth = caller(&request)?;
        let name = TokenName::parse(&request.get_ref().name, "name").map_err(invalid_id)?;
        let not_found = || Status::not_found(format!("token {name} not found"));
        let token = self
            .core
            .storage
            .get_api_token(&name)
            .await?
            .ok_or_else(not_found)?;
        // A token reaching a home the caller does not see is not there for
        // it; one the caller sees but does not administer everywhere is
        // refused.
        for g in &token.grants {
            require(
                &auth.caller,
                &g.home,
                Role::Admin,
                format_args!("token {name}"),
                "name",
            )?;
        }
        self.access().revoke_api_token(&name).await?;
        if let Err(e) = self.core.logins.token_revoked(&name).await {
            tracing::warn!(token = %name, error = %e, "could not remove the token's broker login; it may still log in to Mosquitto");
        }
        for g in &token.grants {
            self.access()
                .audit(
                    &auth.caller.name(),
                    "token.revoke",
                    Some(&g.home),
                    name.as_str(),
                    true,
                )
                .await;
        }
        Ok(Response::new(v1::RevokeApiTokenResponse {}))
    }

    async fn list_audit_events(
        &self,
        request: Request<v1::ListAuditEventsRequest>,
    ) -> Result<Response<v1::ListAuditEventsResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let home = admin_home(&self.core, &auth.caller, &r.home_id, "home_id").await?;
        let limit = match r.limit {
            0 => DEFAULT_AUDIT,
            n if n <= MAX_AUDIT => n,
            n => return Err(invalid("limit", format!("is {n}, at most {MAX_AUDIT}"))),
        };
        let events = self.core.storage.list_audit(&home, limit).await?;
        Ok(Response::new(v1::ListAuditEventsResponse {
            events: events
                .into_iter()
                .map(|e| v1::AuditEvent {
                    at_unix_ms: e.at,
                    home_id: e.home.map(|h| h.to_string()).unwrap_or_default(),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome,
                })
                .collect(),
        }))
    }
}
