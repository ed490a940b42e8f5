//! What the agent needs from the hardware, so the same loops drive a real Pi
//! (SenseHat over I2C, GPIO pins) or a simulation.

use hearth_proto::v1::Metric;

/// A set of sensors read together, e.g. a SenseHat.
pub trait Sensors: Send + 'static {
    /// Takes one sample of every metric, at `now` (Unix ms).
    fn sample(&mut self, now: i64) -> anyhow::Result<Vec<(Metric, f64)>>;
    /// The metrics every sample carries. Why: a sensor's status says them,
    /// so Hearth can count a run of which nothing arrived at all.
    fn metrics(&self) -> &'static [Metric];
}

/// A switched output, e.g. a GPIO pin driving a fan through a transistor.
pub trait Output: Send + 'static {
    fn set(&mut self, on: bool) -> anyhow::Result<()>;
    fn is_on(&self) -> bool;
}
