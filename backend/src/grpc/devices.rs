//! `hearth.v1.DeviceService`.

use std::sync::Arc;

use hearth_proto::v1::{
    self, device_service_server::DeviceService, CreateHomeRequest, GetDeviceRequest,
    ListDevicesRequest, ListDevicesResponse, ListHomesRequest, ListHomesResponse,
    RegisterDeviceRequest, SetModeRequest,
};
use tonic::{Request, Response, Status};

use super::{convert, status::invalid};
use crate::{
    app::Core,
    domain::{ActuatorState, Device, DeviceId, Home, HomeId},
};

/// Longest accepted display name or requester.
const MAX_NAME_LEN: usize = 255;

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
        let id = HomeId::parse(&r.id, "id")?;
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
        let home_id = HomeId::parse(&r.home_id, "home_id")?;
        let id = DeviceId::parse(&r.id, "id")?;
        let kind = convert::kind_from_proto(r.kind, "kind")?;
        let device = Device {
            name: display_name(&r.name, id.as_str(), "name")?,
            id,
            home_id,
            kind,
            state: ActuatorState::default(),
            online: false,
            last_seen: None,
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
            id => Some(HomeId::parse(id, "home_id")?),
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
        let id = DeviceId::parse(&request.into_inner().id, "id")?;
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
        let id = DeviceId::parse(&r.device_id, "device_id")?;
        let mode = convert::mode_from_proto(r.mode, "mode")?;
        let requested_by = display_name(&r.requested_by, "api", "requested_by")?;
        let device = self.core.control.set_mode(&id, mode, &requested_by).await?;
        Ok(Response::new(self.to_proto(&device)))
    }
}
