//! Simulated hardware: the paper's "test stub that sends dummy data", made
//! scriptable so a demo or a test can drive a temperature across a threshold.

use std::{
    str::FromStr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use hearth_proto::v1::Metric;

use crate::hardware::{Output, Sensors};

/// A value as a function of time since the simulation started.
#[derive(Debug, Clone, PartialEq)]
pub enum Waveform {
    Steady(f64),
    /// From `from` to `to` over `period_ms`, then holds `to`.
    Ramp {
        from: f64,
        to: f64,
        period_ms: i64,
    },
    /// `mean ± amplitude`, one cycle per `period_ms`.
    Sine {
        mean: f64,
        amplitude: f64,
        period_ms: i64,
    },
}

impl Waveform {
    /// The value `elapsed_ms` after the start.
    pub fn at(&self, elapsed_ms: i64) -> f64 {
        match *self {
            Waveform::Steady(v) => v,
            Waveform::Ramp {
                from,
                to,
                period_ms,
            } => {
                let t = (elapsed_ms as f64 / period_ms.max(1) as f64).clamp(0.0, 1.0);
                from + (to - from) * t
            }
            Waveform::Sine {
                mean,
                amplitude,
                period_ms,
            } => {
                let phase = elapsed_ms as f64 / period_ms.max(1) as f64 * std::f64::consts::TAU;
                mean + amplitude * phase.sin()
            }
        }
    }
}

/// Parses `steady:21`, `ramp:20:30:120` (from, to, seconds) or
/// `sine:25:3:120` (mean, amplitude, seconds).
impl FromStr for Waveform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> Result<f64, String> {
            let v: f64 = parts
                .get(i)
                .ok_or_else(|| format!("{s:?} is missing a number"))?
                .parse()
                .map_err(|_| format!("{s:?}: {:?} is not a number", parts[i]))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("{s:?}: numbers must be finite"))
            }
        };
        let secs = |i: usize| -> Result<i64, String> {
            let v = num(i)?;
            if v > 0.0 {
                Ok((v * 1000.0) as i64)
            } else {
                Err(format!("{s:?}: the period must be positive"))
            }
        };
        match (parts[0], parts.len()) {
            ("steady", 2) => Ok(Waveform::Steady(num(1)?)),
            ("ramp", 4) => Ok(Waveform::Ramp {
                from: num(1)?,
                to: num(2)?,
                period_ms: secs(3)?,
            }),
            ("sine", 4) => Ok(Waveform::Sine {
                mean: num(1)?,
                amplitude: num(2)?,
                period_ms: secs(3)?,
            }),
            _ => Err(format!(
                "{s:?} is not steady:V, ramp:FROM:TO:SECONDS or sine:MEAN:AMPLITUDE:SECONDS"
            )),
        }
    }
}

/// A simulated SenseHat.
#[derive(Debug, Clone)]
pub struct SimulatedSensors {
    started_ms: i64,
    pub temperature: Waveform,
    pub humidity: Waveform,
    pub pressure: Waveform,
}

impl SimulatedSensors {
    pub fn new(started_ms: i64, temperature: Waveform) -> Self {
        Self {
            started_ms,
            temperature,
            humidity: Waveform::Sine {
                mean: 45.0,
                amplitude: 5.0,
                period_ms: 600_000,
            },
            pressure: Waveform::Sine {
                mean: 1013.0,
                amplitude: 2.0,
                period_ms: 900_000,
            },
        }
    }
}

impl Sensors for SimulatedSensors {
    fn sample(&mut self, now: i64) -> anyhow::Result<Vec<(Metric, f64)>> {
        let t = now - self.started_ms;
        let round = |v: f64| (v * 100.0).round() / 100.0;
        Ok(vec![
            (Metric::TemperatureCelsius, round(self.temperature.at(t))),
            (Metric::HumidityPercent, round(self.humidity.at(t))),
            (Metric::PressureHpa, round(self.pressure.at(t))),
        ])
    }
}

/// A simulated fan or light. Clones share the state, so whoever made it can
/// watch what the agent applied.
#[derive(Debug, Clone, Default)]
pub struct SimulatedOutput {
    on: Arc<AtomicBool>,
}

impl Output for SimulatedOutput {
    fn set(&mut self, on: bool) -> anyhow::Result<()> {
        self.on.store(on, Ordering::SeqCst);
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waveforms_follow_their_shape() {
        let ramp = Waveform::Ramp {
            from: 20.0,
            to: 30.0,
            period_ms: 1000,
        };
        assert_eq!(
            (ramp.at(0), ramp.at(500), ramp.at(1000), ramp.at(5000)),
            (20.0, 25.0, 30.0, 30.0)
        );
        let sine = Waveform::Sine {
            mean: 25.0,
            amplitude: 3.0,
            period_ms: 1000,
        };
        assert!((sine.at(250) - 28.0).abs() < 1e-9);
        assert!((sine.at(750) - 22.0).abs() < 1e-9);
        assert_eq!(Waveform::Steady(21.0).at(123), 21.0);
    }

    #[test]
    fn parses_scripts_and_rejects_bad_ones() {
        assert_eq!("steady:21".parse(), Ok(Waveform::Steady(21.0)));
        assert_eq!(
            "ramp:20:30:60".parse(),
            Ok(Waveform::Ramp {
                from: 20.0,
                to: 30.0,
                period_ms: 60_000
            })
        );
        assert_eq!(
            "sine:25:3:0.5".parse(),
            Ok(Waveform::Sine {
                mean: 25.0,
                amplitude: 3.0,
                period_ms: 500
            })
        );
        for bad in [
            "",
            "steady",
            "steady:x",
            "ramp:1:2",
            "sine:1:2:0",
            "sine:1:2:-1",
            "square:1:2:3",
            "steady:inf",
        ] {
            assert!(bad.parse::<Waveform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_simulated_sensehat_reports_three_metrics() {
        let mut s = SimulatedSensors::new(0, Waveform::Steady(26.0));
        let sample = s.sample(10).unwrap();
        assert_eq!(sample[0], (Metric::TemperatureCelsius, 26.0));
        assert_eq!(
            sample.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
            [
                Metric::TemperatureCelsius,
                Metric::HumidityPercent,
                Metric::PressureHpa
            ]
        );
    }

    #[test]
    fn clones_of_an_output_share_its_state() {
        let watcher = SimulatedOutput::default();
        let mut driven = watcher.clone();
        driven.set(true).unwrap();
        assert!(watcher.is_on());
    }
}
