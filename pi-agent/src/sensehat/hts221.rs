//! The HTS221 humidity and temperature sensor (ST datasheet DocID026333;
//! ST technical note TN1218 for the calibration).
//!
//! Each chip stores two calibration points per quantity: the raw output
//! (`H0_T0_OUT`, `H1_T0_OUT`, `T0_OUT`, `T1_OUT`) at two known values
//! (`H0_rH_x2`/2, `H1_rH_x2`/2 in %rH; `T0_degC_x8`/8, `T1_degC_x8`/8 in °C,
//! 10-bit numbers whose top two bits are in register 0x35). A reading is the
//! linear interpolation through those points.

use super::{Chip, I2cBus, SenseHatError, Watchdog, CTRL_REG1, POWER_DOWN, STATUS_REG};

const CHIP: Chip = Chip {
    name: "HTS221 (humidity)",
    address: 0x5F,
    who_am_i: 0xBC,
};

const AV_CONF: u8 = 0x10;
/// HUMIDITY_OUT_L; HUMIDITY_OUT_H, TEMP_OUT_L and TEMP_OUT_H follow.
const HUMIDITY_OUT_L: u8 = 0x28;
/// First of the 16 calibration registers, 0x30..=0x3F.
const CALIBRATION: u8 = 0x30;

/// AV_CONF: 16 temperature and 32 humidity samples averaged per output (the
/// reset value; written in case another program changed it).
const AVERAGING: u8 = 0x1B;
/// CTRL_REG1: PD (active) | BDU (block data update) | ODR = 12.5 Hz.
const POWER_ON: u8 = 0x80 | 0x04 | 0x03;
/// STATUS_REG: H_DA | T_DA.
const DATA_READY: u8 = 0x03;

/// Relative humidity and temperature at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Climate {
    pub humidity_percent: f64,
    pub celsius: f64,
}

/// The chip's factory calibration, decoded.
#[derive(Debug, Clone, PartialEq)]
struct Calibration {
    h0_rh: f64,
    h1_rh: f64,
    h0_out: i16,
    h1_out: i16,
    t0_degc: f64,
    t1_degc: f64,
    t0_out: i16,
    t1_out: i16,
}

impl Calibration {
    /// Decodes registers 0x30..=0x3F (index 0 is 0x30).
    fn decode(r: &[u8; 16]) -> Result<Self, SenseHatError> {
        let i16_at = |register: usize| i16::from_le_bytes([r[register - 0x30], r[register - 0x2F]]);
        let msb = r[0x35 - 0x30];
        let t0_x8 = u16::from(msb & 0x03) << 8 | u16::from(r[0x32 - 0x30]);
        let t1_x8 = u16::from(msb & 0x0C) << 6 | u16::from(r[0x33 - 0x30]);
        let calibration = Self {
            h0_rh: f64::from(r[0]) / 2.0,
            h1_rh: f64::from(r[1]) / 2.0,
            h0_out: i16_at(0x36),
            h1_out: i16_at(0x3A),
            t0_degc: f64::from(t0_x8) / 8.0,
            t1_degc: f64::from(t1_x8) / 8.0,
            t0_out: i16_at(0x3C),
            t1_out: i16_at(0x3E),
        };
        let bad = |reason| {
            Err(SenseHatError::BadCalibration {
                chip: CHIP.name,
                reason,
            })
        };
        if calibration.h0_out == calibration.h1_out {
            return bad("H0_T0_OUT equals H1_T0_OUT");
        }
        if calibration.t0_out == calibration.t1_out {
            return bad("T0_OUT equals T1_OUT");
        }
        Ok(calibration)
    }

    /// %rH from HUMIDITY_OUT, held to 0..=100 as TN1218 says: outside that
    /// range the line is extrapolated past what the chip can measure.
    fn humidity(&self, raw: i16) -> f64 {
        interpolate(raw, (self.h0_out, self.h0_rh), (self.h1_out, self.h1_rh)).clamp(0.0, 100.0)
    }

    /// °C from TEMP_OUT.
    fn temperature(&self, raw: i16) -> f64 {
        interpolate(
            raw,
            (self.t0_out, self.t0_degc),
            (self.t1_out, self.t1_degc),
        )
    }
}

/// The value at `raw` on the line through `(out0, v0)` and `(out1, v1)`.
fn interpolate(raw: i16, (out0, v0): (i16, f64), (out1, v1): (i16, f64)) -> f64 {
    v0 + (f64::from(raw) - f64::from(out0)) * (v1 - v0) / (f64::from(out1) - f64::from(out0))
}

/// An HTS221 that has been found, powered on and calibrated.
#[derive(Debug)]
pub(super) struct Hts221 {
    calibration: Calibration,
    watchdog: Watchdog,
}

impl Hts221 {
    pub(super) fn open<B: I2cBus>(bus: &mut B) -> Result<Self, SenseHatError> {
        CHIP.check_identity(bus)?;
        power_on(bus)?;
        let mut registers = [0; 16];
        CHIP.read(bus, CALIBRATION, &mut registers)?;
        let calibration = Calibration::decode(&registers)?;
        CHIP.await_first_measurement(bus, DATA_READY)?;
        Ok(Self {
            calibration,
            watchdog: Watchdog::default(),
        })
    }

    /// The newest measurement, taken at `now` (Unix ms).
    pub(super) fn read<B: I2cBus>(
        &mut self,
        bus: &mut B,
        now: i64,
    ) -> Result<Climate, SenseHatError> {
        let fresh = CHIP.read_u8(bus, STATUS_REG)? & DATA_READY != 0;
        if let Err(silent_ms) = self.watchdog.observe(fresh, now) {
            power_on(bus)?;
            return Err(SenseHatError::Stalled {
                chip: CHIP.name,
                silent_ms,
            });
        }
        let mut out = [0; 4];
        CHIP.read(bus, HUMIDITY_OUT_L, &mut out)?;
        Ok(Climate {
            humidity_percent: self
                .calibration
                .humidity(i16::from_le_bytes([out[0], out[1]])),
            celsius: self
                .calibration
                .temperature(i16::from_le_bytes([out[2], out[3]])),
        })
    }

    pub(super) fn power_down<B: I2cBus>(&self, bus: &mut B) -> Result<(), SenseHatError> {
        CHIP.write(bus, CTRL_REG1, POWER_DOWN)
    }
}

fn power_on<B: I2cBus>(bus: &mut B) -> Result<(), SenseHatError> {
    CHIP.write(bus, AV_CONF, AVERAGING)?;
    CHIP.write(bus, CTRL_REG1, POWER_ON)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::sensehat) const ADDRESS: u8 = CHIP.address;

    /// Calibration registers 0x30..=0x3F of a plausible chip, worked out by hand:
    ///
    /// ```text
    /// 0x30 H0_rH_x2   = 0x42 =  66         → H0_rH = 33.0 %rH
    /// 0x31 H1_rH_x2   = 0x96 = 150         → H1_rH = 75.0 %rH
    /// 0x32 T0_degC_x8 = 0x9D (low 8 bits)
    /// 0x33 T1_degC_x8 = 0x18 (low 8 bits)
    /// 0x34 reserved
    /// 0x35 T1/T0 msb  = 0xC4: bits 1:0 = 00 (T0 bits 9:8), bits 3:2 = 01 (T1 bits 9:8),
    ///                   bits 7:4 reserved and set here, to show they are ignored
    ///                   T0_degC_x8 = 0x09D = 157 → T0 = 19.625 °C
    ///                   T1_degC_x8 = 0x118 = 280 → T1 = 35.0 °C
    /// 0x36 H0_T0_OUT  = 0xF830 = -2000 (little-endian: 0x30, 0xF8)
    /// 0x38 reserved   = 0xFFFF, to show H1_T0_OUT is read from 0x3A
    /// 0x3A H1_T0_OUT  = 0x1388 =  5000
    /// 0x3C T0_OUT     = 0xFB82 = -1150
    /// 0x3E T1_OUT     = 0x1388 =  5000
    /// ```
    pub(in crate::sensehat) const CALIBRATION_REGISTERS: [u8; 16] = [
        0x42, 0x96, 0x9D, 0x18, 0x00, 0xC4, 0x30, 0xF8, 0xFF, 0xFF, 0x88, 0x13, 0x82, 0xFB, 0x88,
        0x13,
    ];

    /// HUMIDITY_OUT = 0x0BB8 = 3000, TEMP_OUT = 0x04E2 = 1250 (0x28..=0x2B, little-endian):
    ///
    /// ```text
    /// H = 33 + (3000 - -2000) × (75 - 33) / (5000 - -2000)       = 33 + 5000 × 0.006      = 63.0 %rH
    /// T = 19.625 + (1250 - -1150) × (35 - 19.625) / (5000 - -1150) = 19.625 + 2400 × 0.0025 = 25.625 °C
    /// ```
    pub(in crate::sensehat) const OUTPUT_REGISTERS: [u8; 4] = [0xB8, 0x0B, 0xE2, 0x04];

    fn calibration() -> Calibration {
        Calibration::decode(&CALIBRATION_REGISTERS).unwrap()
    }

    #[test]
    fn decodes_the_factory_calibration_with_the_temperature_msbs_from_0x35() {
        assert_eq!(
            calibration(),
            Calibration {
                h0_rh: 33.0,
                h1_rh: 75.0,
                h0_out: -2000,
                h1_out: 5000,
                t0_degc: 19.625,
                t1_degc: 35.0,
                t0_out: -1150,
                t1_out: 5000,
            }
        );
    }

    #[test]
    fn interpolates_humidity_and_temperature_between_the_calibration_points() {
        assert!((calibration().humidity(3000) - 63.0).abs() < 1e-9);
        assert!((calibration().temperature(1250) - 25.625).abs() < 1e-9);
        // At the calibration points themselves: exactly the stored values.
        assert_eq!(
            (calibration().humidity(-2000), calibration().humidity(5000)),
            (33.0, 75.0)
        );
        assert_eq!(
            (
                calibration().temperature(-1150),
                calibration().temperature(5000)
            ),
            (19.625, 35.0)
        );
    }

    #[test]
    fn holds_humidity_within_0_to_100_percent() {
        // 33 + (20000 + 2000) × 0.006 = 165 %rH and 33 + (-10000 + 2000) × 0.006 = -15 %rH.
        assert_eq!(calibration().humidity(20_000), 100.0);
        assert_eq!(calibration().humidity(-10_000), 0.0);
    }

    #[test]
    fn refuses_a_calibration_that_would_divide_by_zero() {
        let mut registers = CALIBRATION_REGISTERS;
        registers[0x3E - 0x30..].copy_from_slice(&[0x82, 0xFB]);
        let error = Calibration::decode(&registers).unwrap_err();
        assert_eq!(
            error.to_string(),
            "HTS221 (humidity): unusable factory calibration: T0_OUT equals T1_OUT"
        );
    }
}
