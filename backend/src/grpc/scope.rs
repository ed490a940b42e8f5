//! The things a request names, resolved for its caller: a thing of a home
//! the caller has no role in is answered exactly like a missing one
//! (`NOT_FOUND`), and one it has too small a role in with
//! `PERMISSION_DENIED` naming the field.

use tonic::Status;

use crate::{
    access::require,
    core::Core,
    directory::Known,
    domain::{Caller, DeviceId, HomeId, Role},
};

/// The device `id`, if the caller has at least `need` in its home.
pub async fn device(
    core: &Core,
    caller: &Caller,
    id: &DeviceId,
    need: Role,
    field: &str,
) -> Result<Known, Status> {
    let what = format!("device {id}");
    let known = core
        .directory
        .lookup(id)
        .await?
        .ok_or_else(|| Status::not_found(format!("{what} not found")))?;
    if !caller.covers(id) {
        return Err(Status::not_found(format!("{what} not found")));
    }
    require(caller, &known.home_id, need, &what, field)?;
    Ok(known)
}

/// Ok if the home exists and the caller has at least `need` in it.
pub async fn home(
    core: &Core,
    caller: &Caller,
    id: &HomeId,
    need: Role,
    field: &str,
) -> Result<(), Status> {
    let what = format!("home {id}");
    require(caller, id, need, &what, field)?;
    if !core.storage.list_homes().await?.iter().any(|h| &h.id == id) {
        return Err(Status::not_found(format!("{what} not found")));
    }
    Ok(())
}
