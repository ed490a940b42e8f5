//! The LPS25H pressure sensor (ST datasheet DocID023722).
//!
//! Pressure is a 24-bit two's-complement number in PRESS_OUT_H:L:XL at 4096
//! LSB/hPa; temperature a 16-bit one in TEMP_OUT_H:L, 42.5 °C at zero and
//! 480 LSB/°C. Both are calibrated in the chip.

use super::{Chip, I2cBus, SenseHatError, Watchdog, CTRL_REG1, POWER_DOWN, STATUS_REG};

const CHIP: Chip = Chip {
    name: "LPS25H (pressure)",
    address: 0x5C,
    who_am_i: 0xBD,
};

const RES_CONF: u8 = 0x10;
/// PRESS_OUT_XL; PRESS_OUT_L, PRESS_OUT_H, TEMP_OUT_L and TEMP_OUT_H follow.
const PRESS_OUT_XL: u8 = 0x28;

/// RES_CONF: 16 temperature and 32 pressure samples averaged per output, what
/// the Sense HAT library (RTIMULib) uses at 25 Hz.
const AVERAGING: u8 = 0x05;
/// CTRL_REG1: PD (active) | ODR = 25 Hz (0b100 in bits 6:4) | BDU (block data update).
const POWER_ON: u8 = 0x80 | 0x40 | 0x04;
/// STATUS_REG: P_DA | T_DA.
const DATA_READY: u8 = 0x03;

/// Air pressure, and the temperature the chip measured with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Air {
    pub hpa: f64,
    pub celsius: f64,
}

impl Air {
    /// Decodes PRESS_OUT_XL..=TEMP_OUT_H.
    fn decode(out: &[u8; 5]) -> Self {
        // Why the zero at the bottom: the arithmetic shift back down extends the 24-bit sign.
        let pressure = i32::from_le_bytes([0, out[0], out[1], out[2]]) >> 8;
        let temperature = i16::from_le_bytes([out[3], out[4]]);
        Self {
            hpa: f64::from(pressure) / 4096.0,
            celsius: 42.5 + f64::from(temperature) / 480.0,
        }
    }
}

/// An LPS25H that has been found and powered on.
#[derive(Debug, Default)]
pub(super) struct Lps25h {
    watchdog: Watchdog,
}

impl Lps25h {
    pub(super) fn open<B: I2cBus>(bus: &mut B) -> Result<Self, SenseHatError> {
        CHIP.check_identity(bus)?;
        power_on(bus)?;
        CHIP.await_first_measurement(bus, DATA_READY)?;
        Ok(Self::default())
    }

    /// The newest measurement, taken at `now` (Unix ms).
    pub(super) fn read<B: I2cBus>(&mut self, bus: &mut B, now: i64) -> Result<Air, SenseHatError> {
        let fresh = CHIP.read_u8(bus, STATUS_REG)? & DATA_READY != 0;
        if let Err(silent_ms) = self.watchdog.observe(fresh, now) {
            power_on(bus)?;
            return Err(SenseHatError::Stalled {
                chip: CHIP.name,
                silent_ms,
            });
        }
        let mut out = [0; 5];
        CHIP.read(bus, PRESS_OUT_XL, &mut out)?;
        Ok(Air::decode(&out))
    }

    pub(super) fn power_down<B: I2cBus>(&self, bus: &mut B) -> Result<(), SenseHatError> {
        CHIP.write(bus, CTRL_REG1, POWER_DOWN)
    }
}

/// Why power down first: the averaging then changes while the chip is idle,
/// never in the middle of a conversion.
fn power_on<B: I2cBus>(bus: &mut B) -> Result<(), SenseHatError> {
    CHIP.write(bus, CTRL_REG1, POWER_DOWN)?;
    CHIP.write(bus, RES_CONF, AVERAGING)?;
    CHIP.write(bus, CTRL_REG1, POWER_ON)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::sensehat) const ADDRESS: u8 = CHIP.address;

    /// PRESS_OUT_XL..=TEMP_OUT_H at 1013.25 hPa and 21.5 °C, worked out by hand:
    ///
    /// ```text
    /// pressure:    1013.25 hPa × 4096 = 4 150 272 = 0x3F5400 → XL = 0x00, L = 0x54, H = 0x3F
    /// temperature: (21.5 - 42.5) × 480 = -10 080  = 0xD8A0   → L = 0xA0, H = 0xD8
    /// ```
    pub(in crate::sensehat) const OUTPUT_REGISTERS: [u8; 5] = [0x00, 0x54, 0x3F, 0xA0, 0xD8];

    #[test]
    fn decodes_pressure_at_4096_lsb_per_hpa_and_temperature_from_42_5_degrees() {
        assert_eq!(
            Air::decode(&OUTPUT_REGISTERS),
            Air {
                hpa: 1013.25,
                celsius: 21.5
            }
        );
    }

    #[test]
    fn reads_the_outputs_as_twos_complement() {
        // PRESS_OUT = 0xFFF000 = -4096 → -1 hPa (possible only in differential mode);
        // TEMP_OUT = 0x7FFF = 32767 → 42.5 + 32767 / 480 = 110.7645… °C.
        let air = Air::decode(&[0x00, 0xF0, 0xFF, 0xFF, 0x7F]);
        assert_eq!(air.hpa, -1.0);
        assert!((air.celsius - 110.764_583).abs() < 1e-6);
    }
}
