//! `hearth.v1.DeviceService`.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use hearth_proto::topics::agent_client_id;
use hearth_proto::v1::{
    self, device_service_server::DeviceService, CreateHomeRequest, GetDeviceRequest,
    ListDevicesRequest, ListDevicesResponse, ListHomesRequest, ListHomesResponse,
    RegisterDeviceRequest, SetModeRequest,
};
use tonic::{Request, Response, Status};
use tracing::warn;

use super::{
    convert, scope,
    status::{invalid, invalid_id},
};
use crate::{
    access::caller,
    core::Core,
    domain::{
        rule::MAX_DURATION_S, ActuatorState, Caller, Device, DeviceId, Home, HomeId, Mode, Role,
    },
};

/// Longest accepted display name or requester.
const MAX_NAME_LEN: usize = 255;
/// Most commands in one ListCommands answer, and the default.
const MAX_COMMANDS: u32 = 200;
const DEFAULT_COMMANDS: u32 = 20;

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchDevicesResponse, Status>> + Send>>;

/// How often a `WatchDevices` stream reads its home again. Why at all: the
/// replica that stored a change tells the others after its commit, and one
/// killed in between, or news lost across a broker reconnect, would leave
/// the change unseen here until the device changed again.
const RESYNC: Duration = Duration::from_secs(2);

/// One `WatchDevices` stream after its first message: this replica's
/// changes (and the other replicas', through news) as they come, and the
/// home read again every [`RESYNC`] for what no news brought.
struct DeviceWatch {
    core: Arc<Core>,
    home: HomeId,
    changes: BroadcastStream<Device>,
    resync: tokio::time::Interval,
    /// What the stream last sent of each device, by id ([`resync_key`]).
    sent: HashMap<String, v1::Device>,
}

impl DeviceWatch {
    /// The next message; `None` when the channel closes.
    async fn next(&mut self) -> Option<Result<v1::WatchDevicesResponse, Status>> {
        loop {
            let resynced = tokio::select! {
                change = self.changes.next() => match change? {
                    Ok(d) if d.home_id == self.home => {
                        let d = convert::device(&d, self.core.directory.last_seen(&d));
                        self.sent.insert(d.id.clone(), resync_key(&d));
                        return Some(Ok(v1::WatchDevicesResponse { devices: vec![d] }));
                    }
                    Ok(_) => continue,
                    // Fell behind: read the whole home again now.
                    Err(BroadcastStreamRecvError::Lagged(_)) => self.read_home(true).await,
                },
                _ = self.resync.tick() => self.read_home(false).await,
            };
            match resynced {
                Ok(devices) if devices.is_empty() => continue,
                Ok(devices) => return Some(Ok(v1::WatchDevicesResponse { devices })),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The home's devices that differ from what was sent (all of them if
    /// `all`), recorded as sent.
    async fn read_home(&mut self, all: bool) -> Result<Vec<v1::Device>, Status> {
        let devices = self.core.storage.list_devices(Some(&self.home)).await?;
        let mut changed = Vec::new();
        for d in &devices {
            let d = convert::device(d, self.core.directory.last_seen(d));
            let key = resync_key(&d);
            if all || self.sent.get(&d.id) != Some(&key) {
                self.sent.insert(d.id.clone(), key);
                changed.push(d);
            }
        }
        Ok(changed)
    }
}

/// A device as the resync compares it: without when it was last seen,
/// which moves with every message the device sends and is not news.
fn resync_key(d: &v1::Device) -> v1::Device {
    v1::Device {
        last_seen_unix_ms: 0,
        ..d.clone()
    }
}

pub struct DeviceApi {
    core: Arc<Core>,
}

impl DeviceApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn to_proto(&self, d: &Device) -> v1::Device {
        convert::device(d, self.core.directory.last_seen(d))
    }

    /// The device with its new MQTT credential: the one answer that shows it.
    /// The device `device_id` names, if `caller` is an admin of its home
    /// (NOT_FOUND otherwise, as for a device that does not exist).
    async fn administered_device(
        &self,
        caller: &Caller,
        device_id: &str,
    ) -> Result<Device, Status> {
        let id = DeviceId::parse(device_id, "device_id").map_err(invalid_id)?;
        scope::device(&self.core, caller, &id, Role::Admin, "device_id").await?;
        self.core
            .storage
            .get_device(&id)
            .await?
            .ok_or_else(|| Status::not_found(format!("device {id} not found")))
    }

    fn with_credential(&self, d: &Device, password: String) -> v1::Device {
        v1::Device {
            mqtt_credential: Some(v1::MqttCredential {
                username: d.id.to_string(),
                password,
                client_id: agent_client_id(d.id.as_str()),
            }),
            ..self.to_proto(d)
        }
    }
}

/// `name`, or `fallback` when empty; checked for length.
fn display_name(name: &str, fallback: &str, field: &str) -> Result<String, Status> {
    if name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!("is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(if name.trim().is_empty() {
        fallback.to_owned()
    } else {
        name.trim().to_owned()
    })
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn create_home(
        &self,
        request: Request<CreateHomeRequest>,
    ) -> Result<Response<v1::Home>, Status> {
        let auth = caller(&request)?;
        if let Caller::Token { .. } = auth.caller.as_ref() {
            return Err(Status::permission_denied(
                "an API token reaches the homes it was made for and cannot create homes",
            ));
        }
        let r = request.into_inner();
        let id = HomeId::parse(&r.id, "id").map_err(invalid_id)?;
        let home = Home {
            name: display_name(&r.name, id.as_str(), "name")?,
            id,
            created_at: self.core.clock.now(),
        };
        self.core.storage.create_home(&home).await?;
        // A new home is its creator's.
        if let Caller::User { name, .. } = auth.caller.as_ref() {
            let user = crate::domain::Username::parse(name, "username").map_err(invalid_id)?;
            self.core
                .access
                .set_membership(&user, &home.id, Some(Role::Admin))
                .await?;
        }
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "home.create",
                Some(&home.id),
                home.id.as_str(),
                true,
            )
            .await;
        Ok(Response::new(convert::home(&home)))
    }

    async fn list_homes(
        &self,
        request: Request<ListHomesRequest>,
    ) -> Result<Response<ListHomesResponse>, Status> {
        let auth = caller(&request)?;
        let homes = self.core.storage.list_homes().await?;
        Ok(Response::new(ListHomesResponse {
            homes: homes
                .iter()
                .filter(|h| auth.caller.sees(&h.id))
                .map(convert::home)
                .collect(),
        }))
    }

    async fn register_device(
        &self,
        request: Request<RegisterDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let home_id = HomeId::parse(&r.home_id, "home_id").map_err(invalid_id)?;
        scope::home(&self.core, &auth.caller, &home_id, Role::Admin, "home_id").await?;
        let id = DeviceId::parse(&r.id, "id").map_err(invalid_id)?;
        let kind = convert::kind_from_proto(r.kind, "kind")?;
        let device = Device {
            name: display_name(&r.name, id.as_str(), "name")?,
            id,
            home_id,
            kind,
            state: ActuatorState::default(),
            online: false,
            last_seen: None,
            last_command: None,
        };
        self.core.storage.register_device(&device).await?;
        self.core.directory.remember(&device);
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "device.register",
                Some(&device.home_id),
                device.id.as_str(),
                true,
            )
            .await;
        let secret = self.core.logins.issue(&device).await.map_err(|e| {
            warn!(device = %device.id, error = %e, "issuing a new device's MQTT credential");
            Status::unavailable(format!(
                "device {} is registered, but its MQTT credential could not be set ({e:#}); \
                 call RotateDeviceCredential to try again",
                device.id
            ))
        })?;
        Ok(Response::new(self.with_credential(&device, secret)))
    }

    async fn rotate_device_credential(
        &self,
        request: Request<v1::RotateDeviceCredentialRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let auth = caller(&request)?;
        let device = self
            .administered_device(&auth.caller, &request.into_inner().device_id)
            .await?;
        let id = &device.id;
        let issued = self.core.logins.issue(&device).await;
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "device.credential.rotate",
                Some(&device.home_id),
                device.id.as_str(),
                issued.is_ok(),
            )
            .await;
        let secret = issued.map_err(|e| {
            warn!(device = %id, error = %e, "rotating a device's MQTT credential");
            Status::unavailable(format!(
                "the broker did not take the new credential ({e:#}); try again"
            ))
        })?;
        Ok(Response::new(self.with_credential(&device, secret)))
    }

    async fn revoke_device_credential(
        &self,
        request: Request<v1::RevokeDeviceCredentialRequest>,
    ) -> Result<Response<v1::RevokeDeviceCredentialResponse>, Status> {
        let auth = caller(&request)?;
        let device = self
            .administered_device(&auth.caller, &request.into_inner().device_id)
            .await?;
        let id = &device.id;
        let revoked = self.core.logins.revoke(&device).await;
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "device.credential.revoke",
                Some(&device.home_id),
                device.id.as_str(),
                revoked.is_ok(),
            )
            .await;
        revoked.map_err(|e| {
            warn!(device = %id, error = %e, "revoking a device's MQTT credential");
            Status::unavailable(format!(
                "the credential is gone from the database, but the broker did not confirm ({e:#}); try again"
            ))
        })?;
        Ok(Response::new(v1::RevokeDeviceCredentialResponse {}))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let home = match r.home_id.as_str() {
            "" => None,
            id => Some(HomeId::parse(id, "home_id").map_err(invalid_id)?),
        };
        if let Some(home) = &home {
            scope::home(&self.core, &auth.caller, home, Role::Viewer, "home_id").await?;
        }
        let devices = self.core.storage.list_devices(home.as_ref()).await?;
        Ok(Response::new(ListDevicesResponse {
            devices: devices
                .iter()
                .filter(|d| auth.caller.sees(&d.home_id))
                .map(|d| self.to_proto(d))
                .collect(),
        }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let auth = caller(&request)?;
        let id = DeviceId::parse(&request.into_inner().id, "id").map_err(invalid_id)?;
        let device = self
            .core
            .storage
            .get_device(&id)
            .await?
            .filter(|d| auth.caller.sees(&d.home_id))
            .ok_or_else(|| Status::not_found(format!("device {id} not found")))?;
        Ok(Response::new(self.to_proto(&device)))
    }

    async fn set_mode(
        &self,
        request: Request<SetModeRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let id = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let mode = convert::mode_from_proto(r.mode, "mode")?;
        scope::device(&self.core, &auth.caller, &id, Role::Operator, "device_id").await?;
        // Who asks is who the token says, never what the request claims.
        let requested_by = auth.caller.name();
        let override_until = match (r.override_seconds, mode) {
            (0, _) => None,
            (_, Mode::Auto) => {
                return Err(invalid(
                    "override_seconds",
                    "applies to MODE_ON and MODE_OFF only",
                ))
            }
            (s, _) if s > MAX_DURATION_S => {
                return Err(invalid(
                    "override_seconds",
                    format!("is {s}, at most {MAX_DURATION_S}"),
                ))
            }
            (s, _) => Some(self.core.clock.now() + i64::from(s) * 1000),
        };
        let device = self
            .core
            .control
            .set_mode(&id, mode, override_until, &requested_by)
            .await?;
        if mode == Mode::Auto {
            self.core.automation.resume(&id).await?;
        }
        Ok(Response::new(self.to_proto(&device)))
    }

    async fn list_commands(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let id = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let limit = match r.limit {
            0 => DEFAULT_COMMANDS,
            n if n <= MAX_COMMANDS => n,
            n => return Err(invalid("limit", format!("is {n}, at most {MAX_COMMANDS}"))),
        };
        scope::device(&self.core, &auth.caller, &id, Role::Viewer, "device_id").await?;
        let commands = self.core.storage.list_commands(&id, limit).await?;
        Ok(Response::new(v1::ListCommandsResponse {
            commands: commands.iter().map(convert::command).collect(),
        }))
    }

    type WatchDevicesStream = WatchStream;

    async fn watch_devices(
        &self,
        request: Request<v1::WatchDevicesRequest>,
    ) -> Result<Response<Self::WatchDevicesStream>, Status> {
        let auth = caller(&request)?;
        let home = HomeId::parse(&request.into_inner().home_id, "home_id").map_err(invalid_id)?;
        if auth.caller.require(&home, Role::Viewer).is_err() {
            return Err(Status::not_found(format!("home {home} not found")));
        }
        // Subscribe before reading the snapshot, so no change falls between.
        let changes = BroadcastStream::new(self.core.control.subscribe_changes());
        let devices = self.core.storage.list_devices(Some(&home)).await?;
        if devices.is_empty()
            && !self
                .core
                .storage
                .list_homes()
                .await?
                .iter()
                .any(|h| h.id == home)
        {
            return Err(Status::not_found(format!("home {home} not found")));
        }
        let first: Vec<v1::Device> = devices.iter().map(|d| self.to_proto(d)).collect();
        let sent = first
            .iter()
            .map(|d| (d.id.clone(), resync_key(d)))
            .collect();
        let first = v1::WatchDevicesResponse { devices: first };
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watch = DeviceWatch {
            core: self.core.clone(),
            home,
            changes,
            resync,
            sent,
        };
        let updates = futures::stream::unfold(watch, |mut watch| async move {
            let next = watch.next().await?;
            Some((next, watch))
        });
        let closing = self.core.closing.clone();
        let stream = futures::stream::once(async move { Ok(first) })
            .chain(updates)
            .take_until(closing.cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}
