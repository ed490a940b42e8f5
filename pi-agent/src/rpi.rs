//! The Raspberry Pi's hardware through rppal (feature `rpi`): the Sense HAT on
//! I2C bus 1 and GPIO output pins. Only the thin adapters live here; the
//! register maths is in [`crate::sensehat`] and the safe-state logic in
//! [`crate::gpio`], both tested without a Pi.

use anyhow::Context as _;
use rppal::{
    gpio::{Gpio, Level, OutputPin},
    i2c::I2c,
};

use crate::{
    gpio::{DigitalPin, GpioOutput},
    sensehat::{I2cBus, SenseHat, BUS},
};

/// Why an I2C transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum PiI2cError {
    /// Linux refuses user-space access to an address a kernel driver is bound to.
    #[error(
        "a kernel driver has claimed this address (see /sys/bus/i2c/devices/{BUS}-{address:04x}/driver); \
         some Raspberry Pi kernels of early 2025 bind one to the Sense HAT's sensors: update the kernel or unload the driver"
    )]
    Claimed { address: u8 },
    #[error(transparent)]
    I2c(#[from] rppal::i2c::Error),
}

fn select(bus: &mut I2c, address: u8) -> Result<(), PiI2cError> {
    bus.set_slave_address(address.into()).map_err(|e| match e {
        rppal::i2c::Error::Io(io) if io.kind() == std::io::ErrorKind::ResourceBusy => {
            PiI2cError::Claimed { address }
        }
        other => other.into(),
    })
}

impl I2cBus for I2c {
    type Error = PiI2cError;

    fn read_registers(
        &mut self,
        address: u8,
        register: u8,
        buf: &mut [u8],
    ) -> Result<(), PiI2cError> {
        select(self, address)?;
        Ok(self.write_read(&[register], buf)?)
    }

    fn write_register(&mut self, address: u8, register: u8, value: u8) -> Result<(), PiI2cError> {
        select(self, address)?;
        I2c::write(self, &[register, value])?;
        Ok(())
    }
}

/// Opens the Sense HAT on I2C bus 1.
pub fn open_sensehat() -> anyhow::Result<SenseHat<I2c>> {
    let bus = I2c::with_bus(BUS).with_context(|| {
        format!("opening /dev/i2c-{BUS} (enable I2C with `raspi-config nonint do_i2c 0`; the agent's user needs the i2c group)")
    })?;
    SenseHat::open(bus).context("the Sense HAT (is it fitted?)")
}

impl DigitalPin for OutputPin {
    fn drive(&mut self, high: bool) {
        self.write(Level::from(high));
    }
}

/// The output on GPIO `bcm_pin` (BCM numbering), off until told otherwise.
pub fn gpio_output(bcm_pin: u8) -> anyhow::Result<GpioOutput<OutputPin>> {
    let gpio = Gpio::new()
        .context("opening the GPIO (/dev/gpiomem; the agent's user needs the gpio group)")?;
    let mut pin = gpio
        .get(bcm_pin)
        .with_context(|| format!("GPIO {bcm_pin}"))?
        .into_output_low();
    // Why: by default rppal puts the pin back in its earlier mode when dropped,
    // usually an input, which leaves the transistor's base floating; a pin left
    // driven low keeps the fan or light off after the agent has stopped.
    pin.set_reset_on_drop(false);
    Ok(GpioOutput::new(pin))
}
