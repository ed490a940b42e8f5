//! The gRPC services. Handlers only convert messages, call the domain and
//! control layers, and map errors to statuses (in [`status`]).

pub mod automation;
pub mod convert;
pub mod devices;
pub mod status;
pub mod telemetry;

pub use automation::AutomationApi;
pub use devices::DeviceApi;
pub use telemetry::TelemetryApi;
