//! Fans and lights switched by a GPIO pin through a transistor: active-high
//! (pin high = on), and off whenever the agent is not driving them: off at
//! start, and driven off when the output is dropped, which the actuator loop
//! does on shutdown and an unwinding panic does too.
//!
//! The pin is a trait so the safe-state behaviour is tested without a Pi;
//! rppal's `OutputPin` implements it (`crate::rpi`).

use crate::hardware::Output;

/// A digital output pin.
pub trait DigitalPin: Send + 'static {
    fn drive(&mut self, high: bool);
}

/// A fan or light on a GPIO pin.
#[derive(Debug)]
pub struct GpioOutput<P: DigitalPin> {
    pin: P,
    on: bool,
}

impl<P: DigitalPin> GpioOutput<P> {
    /// Takes over `pin`, driving it low (off).
    pub fn new(mut pin: P) -> Self {
        pin.drive(false);
        Self { pin, on: false }
    }
}

impl<P: DigitalPin> Output for GpioOutput<P> {
    fn set(&mut self, on: bool) -> anyhow::Result<()> {
        self.pin.drive(on);
        self.on = on;
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on
    }
}

impl<P: DigitalPin> Drop for GpioOutput<P> {
    fn drop(&mut self) {
        self.pin.drive(false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A pin that records every level it was driven to.
    #[derive(Debug, Clone, Default)]
    struct RecordingPin(Arc<Mutex<Vec<bool>>>);

    impl DigitalPin for RecordingPin {
        fn drive(&mut self, high: bool) {
            self.0.lock().unwrap().push(high);
        }
    }

    #[test]
    fn an_output_starts_off_and_drives_its_pin_high_for_on() {
        let pin = RecordingPin::default();
        let mut output = GpioOutput::new(pin.clone());
        assert!(!output.is_on());
        output.set(true).unwrap();
        assert!(output.is_on());
        output.set(false).unwrap();
        assert_eq!(*pin.0.lock().unwrap(), [false, true, false]);
    }

    #[test]
    fn dropping_an_output_that_is_on_drives_its_pin_low() {
        let pin = RecordingPin::default();
        let mut output = GpioOutput::new(pin.clone());
        output.set(true).unwrap();
        drop(output);
        assert_eq!(pin.0.lock().unwrap().last(), Some(&false));
    }
}
