//! `hearth.v1.DeviceService`.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use hearth_proto::v1::{
    self, device_service_server::DeviceService, CreateHomeRequest, GetDeviceRequest,
    ListDevicesRequest, ListDevicesResponse, ListHomesRequest, ListHomesResponse,
    RegisterDeviceRequest, SetModeRequest,
};
use tonic::{Request, Response, Status};

use super::{
    convert,
    status::{invalid, invalid_id},
};
use crate::{
    core::Core,
    domain::{rule::MAX_DURATION_S, ActuatorState, Device, DeviceId, Home, HomeId, Mode},
};

/// Longest accepted display name or requester.
const MAX_NAME_LEN: usize = 255;
/// Most commands in one ListCommands answer, and the default.
const MAX_COMMANDS: u32 = 200;
const DEFAULT_COMMANDS: u32 = 20;

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchDevicesResponse, Status>> + Send>>;

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
        let r = request.into_inner();
        let id = HomeId::parse(&r.id, "id").map_err(invalid_id)?;
        let home = Home {
            name: display_name(&r.name, id.as_str(), "name")?,
            id,
            created_at: self.core.clock.now(),
        };
        self.core.storage.create_home(&home).await?;
        Ok(Response::new(convert::home(&home)))
    }

    async fn list_homes(
        &self,
        _: Request<ListHomesRequest>,
    ) -> Result<Response<ListHomesResponse>, Status> {
        let homes = self.core.storage.list_homes().await?;
        Ok(Response::new(ListHomesResponse {
            homes: homes.iter().map(convert::home).collect(),
        }))
    }

    async fn register_device(
        &self,
        request: Request<RegisterDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let r = request.into_inner();
        let home_id = HomeId::parse(&r.home_id, "home_id").map_err(invalid_id)?;
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
        Ok(Response::new(self.to_proto(&device)))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let r = request.into_inner();
        let home = match r.home_id.as_str() {
            "" => None,
            id => Some(HomeId::parse(id, "home_id").map_err(invalid_id)?),
        };
        let devices = self.core.storage.list_devices(home.as_ref()).await?;
        Ok(Response::new(ListDevicesResponse {
            devices: devices.iter().map(|d| self.to_proto(d)).collect(),
        }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let id = DeviceId::parse(&request.into_inner().id, "id").map_err(invalid_id)?;
        let device = self
            .core
            .storage
            .get_device(&id)
            .await?
            .ok_or_else(|| Status::not_found(format!("device {id} not found")))?;
        Ok(Response::new(self.to_proto(&device)))
    }

    async fn set_mode(
        &self,
        request: Request<SetModeRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        let r = request.into_inner();
        let id = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let mode = convert::mode_from_proto(r.mode, "mode")?;
        let requested_by = display_name(&r.requested_by, "api", "requested_by")?;
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
        let r = request.into_inner();
        let id = DeviceId::parse(&r.device_id, "device_id").map_err(invalid_id)?;
        let limit = match r.limit {
            0 => DEFAULT_COMMANDS,
            n if n <= MAX_COMMANDS => n,
            n => return Err(invalid("limit", format!("is {n}, at most {MAX_COMMANDS}"))),
        };
        if self.core.directory.lookup(&id).await?.is_none() {
            return Err(Status::not_found(format!("device {id} not found")));
        }
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
        let home = HomeId::parse(&request.into_inner().home_id, "home_id").map_err(invalid_id)?;
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
        let first = v1::WatchDevicesResponse {
            devices: devices.iter().map(|d| self.to_proto(d)).collect(),
        };
        let core = self.core.clone();
        let updates = changes.filter_map(move |change| {
            let core = core.clone();
            let home = home.clone();
            async move {
                match change {
                    Ok(d) if d.home_id == home => Some(Ok(v1::WatchDevicesResponse {
                        devices: vec![convert::device(&d, core.directory.last_seen(&d))],
                    })),
                    Ok(_) => None,
                    // Fell behind: send the whole home again.
                    Err(BroadcastStreamRecvError::Lagged(_)) => {
                        match core.storage.list_devices(Some(&home)).await {
                            Ok(all) => Some(Ok(v1::WatchDevicesResponse {
                                devices: all
                                    .iter()
                                    .map(|d| convert::device(d, core.directory.last_seen(d)))
                                    .collect(),
                            })),
                            Err(e) => Some(Err(Status::from(e))),
                        }
                    }
                }
            }
        });
        let closing = self.core.closing.clone();
        let stream = futures::stream::once(async move { Ok(first) })
            .chain(updates)
            .take_until(closing.cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}
