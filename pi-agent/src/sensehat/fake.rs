//! A fake I2C bus for the Sense HAT tests: a register map per device address,
//! behaving as ST's chips do where the drivers depend on it. A multi-byte
//! read advances through registers only when the register address has its top
//! bit set, so a driver that forgets it reads garbage here as on a real chip.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use super::{hts221, lps25h, I2cBus, AUTO_INCREMENT, STATUS_REG, WHO_AM_I};

pub const HTS221: u8 = hts221::tests::ADDRESS;
pub const LPS25H: u8 = lps25h::tests::ADDRESS;

/// The registers of every device on the bus; clones share them, so a test
/// can look at and change them while a driver owns the bus.
#[derive(Debug, Clone, Default)]
pub struct Registers(Arc<Mutex<HashMap<u8, [u8; 128]>>>);

impl Registers {
    pub fn get(&self, address: u8, register: u8) -> u8 {
        self.0.lock().unwrap()[&address][usize::from(register)]
    }

    pub fn set(&self, address: u8, register: u8, value: u8) {
        self.set_all(address, register, &[value]);
    }

    fn set_all(&self, address: u8, first: u8, values: &[u8]) {
        let mut devices = self.0.lock().unwrap();
        let registers = devices.entry(address).or_insert([0; 128]);
        registers[usize::from(first)..][..values.len()].copy_from_slice(values);
    }

    /// Takes the device off the bus: it no longer acknowledges its address.
    pub fn remove(&self, address: u8) {
        self.0.lock().unwrap().remove(&address);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no device acknowledged address {0:#04x}")]
pub struct Nack(u8);

#[derive(Debug, Default)]
pub struct FakeBus {
    pub registers: Registers,
    /// STATUS_REG reads 0 until the driver has paused this many times, like a
    /// chip still converting its first measurement.
    pub pauses_until_ready: usize,
    pub pauses: Arc<AtomicUsize>,
}

impl FakeBus {
    /// A Sense HAT whose chips hold the worked examples of `hts221` and `lps25h`.
    pub fn sensehat() -> Self {
        let bus = Self::default();
        bus.registers.set(HTS221, WHO_AM_I, 0xBC);
        bus.registers
            .set_all(HTS221, 0x30, &hts221::tests::CALIBRATION_REGISTERS);
        bus.registers
            .set_all(HTS221, 0x28, &hts221::tests::OUTPUT_REGISTERS);
        bus.registers.set(HTS221, STATUS_REG, 0x03);
        bus.registers.set(LPS25H, WHO_AM_I, 0xBD);
        bus.registers
            .set_all(LPS25H, 0x28, &lps25h::tests::OUTPUT_REGISTERS);
        bus.registers.set(LPS25H, STATUS_REG, 0x03);
        bus
    }
}

impl I2cBus for FakeBus {
    type Error = Nack;

    fn read_registers(&mut self, address: u8, register: u8, buf: &mut [u8]) -> Result<(), Nack> {
        let devices = self.registers.0.lock().unwrap();
        let registers = devices.get(&address).ok_or(Nack(address))?;
        let first = usize::from(register & !AUTO_INCREMENT);
        let step = usize::from(register & AUTO_INCREMENT != 0);
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = first + i * step;
            let converting = at == usize::from(STATUS_REG)
                && self.pauses.load(Ordering::SeqCst) < self.pauses_until_ready;
            *byte = if converting { 0 } else { registers[at] };
        }
        Ok(())
    }

    fn write_register(&mut self, address: u8, register: u8, value: u8) -> Result<(), Nack> {
        let mut devices = self.registers.0.lock().unwrap();
        let registers = devices.get_mut(&address).ok_or(Nack(address))?;
        registers[usize::from(register)] = value;
        Ok(())
    }

    fn pause(&mut self, _: Duration) {
        self.pauses.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn multi_byte_reads_advance_only_with_the_auto_increment_bit() {
    let mut bus = FakeBus::sensehat();
    let mut buf = [0; 2];
    bus.read_registers(HTS221, 0x30, &mut buf).unwrap();
    assert_eq!(buf, [0x42, 0x42]);
    bus.read_registers(HTS221, 0x30 | AUTO_INCREMENT, &mut buf)
        .unwrap();
    assert_eq!(buf, [0x42, 0x96]);
}
