//! A Mosquitto plugin (v5 plugin API, Mosquitto 2.0) that refuses a
//! retained publish from every login but Hearth's.
//!
//! Why: Mosquitto's dynamic security says which topics a login may publish
//! on, but not whether it may retain there, so a device could retain on its
//! own `readings`, `reported` and `status`. Load this plugin *before*
//! dynamic security: Mosquitto asks the plugins in the order they are
//! loaded and the first answer that is not a deferral decides, so this one
//! denies a retained publish and defers everything else to dynamic security.
//!
//! ```text
//! plugin /usr/lib/hearth/libhearth_mosquitto.so
//! plugin_opt_retainers hearth-admin
//! plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so
//! plugin_opt_config_file /var/lib/mosquitto/dynamic-security.json
//! ```
//!
//! The decision is [`policy`]; the broker's ABI is the module `abi`, left out
//! of test builds, since its symbols exist only inside the broker.

pub mod policy;

#[cfg(not(test))]
mod abi;
