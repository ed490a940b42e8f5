//! The gRPC services. Handlers only convert messages, call the domain and
//! control layers, and map errors to statuses (in [`status`]).

pub mod auth;
pub mod automation;
pub mod convert;
pub mod devices;
pub mod scope;
pub mod status;
pub mod telemetry;

pub use auth::AuthApi;
pub use automation::AutomationApi;
pub use devices::DeviceApi;
pub use telemetry::TelemetryApi;
