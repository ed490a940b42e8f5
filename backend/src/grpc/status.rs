//! The one place errors become gRPC statuses. Internal causes are logged in
//! full and reach clients as a plain `internal`.

use tonic::Status;
use tracing::error;

use crate::{control::ControlError, domain::InvalidId, storage::StorageError};

impl From<StorageError> for Status {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(what) => Status::not_found(format!("{what} not found")),
            StorageError::Conflict(what) => {
                Status::already_exists(format!("{what} already exists"))
            }
            StorageError::Stale(what) => {
                Status::aborted(format!("{what} changed concurrently; retry"))
            }
            StorageError::Unavailable(e) => {
                error!(error = %e, "database unavailable");
                Status::unavailable("database unavailable; retry later")
            }
            StorageError::Internal(e) => {
                error!(error = %e, "database error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(_) => Status::not_found(e.to_string()),
            ControlError::NotAnActuator(_) => Status::invalid_argument(format!("device_id: {e}")),
            ControlError::Contended(_) => Status::aborted(e.to_string()),
            ControlError::Storage(e) => e.into(),
        }
    }
}

/// `INVALID_ARGUMENT` for an id that does not parse (it names its field).
pub fn invalid_id(e: InvalidId) -> Status {
    Status::invalid_argument(e.to_string())
}

/// `INVALID_ARGUMENT` naming `field`.
pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field} {problem}"))
}
