//! The Raspberry Pi Sense HAT's environmental sensors on I2C: the HTS221
//! (relative humidity and temperature) and the LPS25H (pressure and
//! temperature).
//!
//! The chips are driven through [`I2cBus`], a register read/write trait, so
//! the datasheet maths (factory calibration, two's-complement outputs, scale
//! factors) is unit-tested against a fake bus; rppal's `I2c` implements the
//! trait on a Pi (`crate::rpi`).
//!
//! Both chips run continuously (HTS221 at 12.5 Hz, LPS25H at 25 Hz, the rates
//! the official Sense HAT library uses) with block data update on, and a
//! sample reads their newest output registers. Why: a sample then costs two
//! short bus transactions and never waits for a conversion, whatever the
//! agent's interval, and block data update keeps the bytes of one value from
//! coming from two conversions.
//!
//! The temperature reported is the HTS221's, as the Sense HAT library's
//! `get_temperature()` does; the LPS25H's is decoded and logged at debug level.
//! Both read a few degrees high on a HAT mounted over the Pi's CPU.

mod hts221;
mod lps25h;

#[cfg(test)]
mod fake;

use std::time::Duration;

use hearth_proto::v1::Metric;
use tracing::debug;

use crate::hardware::Sensors;

use self::{hts221::Hts221, lps25h::Lps25h};

/// The I2C bus the Sense HAT is on, on every Pi with a 40-pin header.
pub const BUS: u8 = 1;

/// An I2C bus as the Sense HAT's chips use it: 8-bit registers of devices at
/// 7-bit addresses.
pub trait I2cBus: Send + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Fills `buf` from the device at `address`, starting at `register`, in one
    /// transaction (register write, repeated start, read).
    fn read_registers(
        &mut self,
        address: u8,
        register: u8,
        buf: &mut [u8],
    ) -> Result<(), Self::Error>;

    /// Writes `value` to `register` of the device at `address`.
    fn write_register(&mut self, address: u8, register: u8, value: u8) -> Result<(), Self::Error>;

    /// Waits `duration` while a chip works.
    ///
    /// Why on the bus: the fake bus of the tests lets a conversion finish
    /// without real time passing.
    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Why the Sense HAT could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SenseHatError {
    /// The bus transaction failed: the chip did not answer, or the bus is not there.
    #[error("{chip} at I2C address {address:#04x}: {cause}")]
    Bus {
        chip: &'static str,
        address: u8,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something else answers at the chip's address.
    #[error("{chip} not found at I2C address {address:#04x}: WHO_AM_I reads {found:#04x}, not {expected:#04x}")]
    NotFound {
        chip: &'static str,
        address: u8,
        found: u8,
        expected: u8,
    },
    /// The calibration registers would divide by zero.
    #[error("{chip}: unusable factory calibration: {reason}")]
    BadCalibration {
        chip: &'static str,
        reason: &'static str,
    },
    /// No measurement came after power-on.
    #[error("{chip}: no measurement within {waited_ms} ms of power-on")]
    NoMeasurement { chip: &'static str, waited_ms: u64 },
    /// The chip stopped converting (e.g. reset by a brown-out); it has been powered on again.
    #[error("{chip}: no new measurement for {silent_ms} ms; powered it on again")]
    Stalled { chip: &'static str, silent_ms: i64 },
}

/// Registers at the same place in both chips (ST's common register map).
const WHO_AM_I: u8 = 0x0F;
const CTRL_REG1: u8 = 0x20;
const STATUS_REG: u8 = 0x27;
/// CTRL_REG1 value that powers a chip down.
const POWER_DOWN: u8 = 0x00;
/// Set in a register address to read consecutive registers in one
/// transaction (SUB(7) in both datasheets); without it a chip sends the same
/// register again for every byte.
const AUTO_INCREMENT: u8 = 0x80;

/// One chip on the bus: the name errors call it by, its address, and what it
/// answers to WHO_AM_I.
#[derive(Debug, Clone, Copy)]
struct Chip {
    name: &'static str,
    address: u8,
    who_am_i: u8,
}

impl Chip {
    fn bus_error(&self, cause: impl std::error::Error + Send + Sync + 'static) -> SenseHatError {
        SenseHatError::Bus {
            chip: self.name,
            address: self.address,
            cause: Box::new(cause),
        }
    }

    fn read<B: I2cBus>(
        &self,
        bus: &mut B,
        register: u8,
        buf: &mut [u8],
    ) -> Result<(), SenseHatError> {
        let register = if buf.len() > 1 {
            register | AUTO_INCREMENT
        } else {
            register
        };
        bus.read_registers(self.address, register, buf)
            .map_err(|e| self.bus_error(e))
    }

    fn read_u8<B: I2cBus>(&self, bus: &mut B, register: u8) -> Result<u8, SenseHatError> {
        let mut value = [0];
        self.read(bus, register, &mut value)?;
        Ok(value[0])
    }

    fn write<B: I2cBus>(&self, bus: &mut B, register: u8, value: u8) -> Result<(), SenseHatError> {
        bus.write_register(self.address, register, value)
            .map_err(|e| self.bus_error(e))
    }

    fn check_identity<B: I2cBus>(&self, bus: &mut B) -> Result<(), SenseHatError> {
        match self.read_u8(bus, WHO_AM_I)? {
            found if found == self.who_am_i => Ok(()),
            found => Err(SenseHatError::NotFound {
                chip: self.name,
                address: self.address,
                found,
                expected: self.who_am_i,
            }),
        }
    }

    /// Waits until STATUS_REG shows a measurement in `ready` (a chip's first
    /// conversion after power-on takes one output period: 80 ms at most here).
    fn await_first_measurement<B: I2cBus>(
        &self,
        bus: &mut B,
        ready: u8,
    ) -> Result<(), SenseHatError> {
        const POLL: Duration = Duration::from_millis(10);
        const POLLS: u64 = 50;
        for _ in 0..POLLS {
            if self.read_u8(bus, STATUS_REG)? & ready == ready {
                return Ok(());
            }
            bus.pause(POLL);
        }
        Err(SenseHatError::NoMeasurement {
            chip: self.name,
            waited_ms: POLLS * POLL.as_millis() as u64,
        })
    }
}

/// Notices a chip that stopped converting, so stale output registers are not
/// published as fresh readings.
#[derive(Debug, Default)]
struct Watchdog {
    fresh_at: Option<i64>,
}

impl Watchdog {
    /// Why 5 s: both chips convert several times a second, so five seconds
    /// without a new measurement means the chip was reset or powered down.
    const SILENCE_MS: i64 = 5_000;

    /// Records whether the chip had a new measurement at `now`; fails with
    /// how long it has been silent once that passes [`Self::SILENCE_MS`], and
    /// starts counting afresh.
    fn observe(&mut self, fresh: bool, now: i64) -> Result<(), i64> {
        let fresh_at = self.fresh_at.get_or_insert(now);
        if fresh {
            *fresh_at = now;
            return Ok(());
        }
        let silent_ms = now - *fresh_at;
        if silent_ms > Self::SILENCE_MS {
            *fresh_at = now;
            return Err(silent_ms);
        }
        Ok(())
    }
}

/// A Sense HAT's humidity, temperature and pressure sensors.
pub struct SenseHat<B: I2cBus> {
    bus: B,
    hts221: Hts221,
    lps25h: Lps25h,
}

impl<B: I2cBus> SenseHat<B> {
    /// Checks that both chips are there, powers them on, reads the HTS221's
    /// calibration and waits for the first measurements.
    pub fn open(mut bus: B) -> Result<Self, SenseHatError> {
        let hts221 = Hts221::open(&mut bus)?;
        let lps25h = Lps25h::open(&mut bus)?;
        Ok(Self {
            bus,
            hts221,
            lps25h,
        })
    }
}

impl<B: I2cBus> Sensors for SenseHat<B> {
    /// Reads the newest measurements; a few hundred microseconds on the bus,
    /// so it runs inline in the agent's loop.
    fn sample(&mut self, now: i64) -> anyhow::Result<Vec<(Metric, f64)>> {
        let climate = self.hts221.read(&mut self.bus, now)?;
        let air = self.lps25h.read(&mut self.bus, now)?;
        debug!(
            hts221_celsius = climate.celsius,
            lps25h_celsius = air.celsius,
            "Sense HAT temperatures"
        );
        let round = |v: f64| (v * 100.0).round() / 100.0;
        Ok(vec![
            (Metric::TemperatureCelsius, round(climate.celsius)),
            (Metric::HumidityPercent, round(climate.humidity_percent)),
            (Metric::PressureHpa, round(air.hpa)),
        ])
    }

    /// Every metric there is: the HTS221's two and the LPS25H's pressure.
    fn metrics(&self) -> &'static [Metric] {
        &Metric::MEASURED
    }
}

impl<B: I2cBus> Drop for SenseHat<B> {
    /// Powers both chips down. Why: nothing is left converting for no one;
    /// the next `open` powers them on again.
    fn drop(&mut self) {
        let _ = self.hts221.power_down(&mut self.bus);
        let _ = self.lps25h.power_down(&mut self.bus);
    }
}

#[cfg(test)]
mod tests {
    use super::{fake::FakeBus, *};

    #[test]
    fn a_sensehat_reports_temperature_humidity_and_pressure_from_its_chips() {
        // The registers of the worked examples in hts221.rs and lps25h.rs.
        let mut hat = SenseHat::open(FakeBus::sensehat()).unwrap();
        assert_eq!(
            hat.sample(1_000).unwrap(),
            [
                (Metric::TemperatureCelsius, 25.63),
                (Metric::HumidityPercent, 63.0),
                (Metric::PressureHpa, 1013.25)
            ]
        );
    }

    #[test]
    fn opening_powers_both_chips_on_in_continuous_mode_and_dropping_powers_them_down() {
        let bus = FakeBus::sensehat();
        let registers = bus.registers.clone();
        let hat = SenseHat::open(bus).unwrap();
        // HTS221: PD | BDU | 12.5 Hz; LPS25H: PD | 25 Hz | BDU.
        assert_eq!(registers.get(fake::HTS221, CTRL_REG1), 0x87);
        assert_eq!(registers.get(fake::LPS25H, CTRL_REG1), 0xC4);
        drop(hat);
        assert_eq!(registers.get(fake::HTS221, CTRL_REG1), POWER_DOWN);
        assert_eq!(registers.get(fake::LPS25H, CTRL_REG1), POWER_DOWN);
    }

    #[test]
    fn opening_waits_for_the_first_measurement() {
        let mut bus = FakeBus::sensehat();
        bus.pauses_until_ready = 3;
        let pauses = bus.pauses.clone();
        SenseHat::open(bus).unwrap();
        assert_eq!(pauses.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_chip_that_never_measures_fails_the_open_naming_it() {
        let mut bus = FakeBus::sensehat();
        bus.pauses_until_ready = usize::MAX;
        let error = SenseHat::open(bus).err().unwrap();
        assert_eq!(
            error.to_string(),
            "HTS221 (humidity): no measurement within 500 ms of power-on"
        );
    }

    #[test]
    fn a_missing_chip_is_named_with_its_address() {
        let bus = FakeBus::sensehat();
        bus.registers.remove(fake::LPS25H);
        let error = SenseHat::open(bus).err().unwrap();
        assert_eq!(
            error.to_string(),
            "LPS25H (pressure) at I2C address 0x5c: no device acknowledged address 0x5c"
        );
    }

    #[test]
    fn another_chip_at_the_address_is_refused_with_what_it_answered() {
        let bus = FakeBus::sensehat();
        bus.registers.set(fake::HTS221, WHO_AM_I, 0x33);
        let error = SenseHat::open(bus).err().unwrap();
        assert_eq!(
            error.to_string(),
            "HTS221 (humidity) not found at I2C address 0x5f: WHO_AM_I reads 0x33, not 0xbc"
        );
    }

    #[test]
    fn a_chip_that_stops_measuring_is_reported_and_powered_on_again() {
        let bus = FakeBus::sensehat();
        let registers = bus.registers.clone();
        let mut hat = SenseHat::open(bus).unwrap();
        hat.sample(0).unwrap();
        // A brown-out: the LPS25H is back in power-down and measures nothing.
        registers.set(fake::LPS25H, CTRL_REG1, POWER_DOWN);
        registers.set(fake::LPS25H, STATUS_REG, 0);
        hat.sample(5_000).unwrap();
        let error = hat.sample(5_001).unwrap_err();
        assert_eq!(
            error.to_string(),
            "LPS25H (pressure): no new measurement for 5001 ms; powered it on again"
        );
        assert_eq!(registers.get(fake::LPS25H, CTRL_REG1), 0xC4);
    }

    #[test]
    fn the_watchdog_tolerates_silence_shorter_than_its_limit() {
        let mut watchdog = Watchdog::default();
        assert_eq!(watchdog.observe(true, 0), Ok(()));
        assert_eq!(watchdog.observe(false, 5_000), Ok(()));
        assert_eq!(watchdog.observe(true, 5_001), Ok(()));
        assert_eq!(watchdog.observe(false, 10_002), Err(5_001));
        assert_eq!(
            watchdog.observe(false, 10_003),
            Ok(()),
            "counts afresh after reporting"
        );
    }
}
