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
    /// `from` until `at_ms`, then `to` (a door opened, a heater switched on).
    Step {
        from: f64,
        to: f64,
        at_ms: i64,
    },
    /// `base` with uniform noise of up to `± amplitude` added: the same at
    /// the same time, so a run can be replayed.
    Noisy {
        base: Box<Waveform>,
        amplitude: f64,
    },
}

/// A number in `[-1, 1)` that looks random but depends only on `t`
/// (splitmix64). Why not `rand`: the waveform stays a pure function of time.
fn noise(t: i64) -> f64 {
    let mut z = (t as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
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
            Waveform::Step { from, to, at_ms } => {
                if elapsed_ms < at_ms {
                    from
                } else {
                    to
                }
            }
            Waveform::Noisy {
                ref base,
                amplitude,
            } => base.at(elapsed_ms) + amplitude * noise(elapsed_ms),
        }
    }
}

/// The scripts [`Waveform`] parses, for error messages.
const SCRIPTS: &str = "steady:V, ramp:FROM:TO:SECONDS, sine:MEAN:AMPLITUDE:SECONDS, step:FROM:TO:SECONDS, noise:MEAN:AMPLITUDE, or one of these followed by +noise:AMPLITUDE";

/// Parses `steady:21`, `ramp:20:30:120` (from, to, seconds),
/// `sine:25:3:120` (mean, amplitude, seconds), `step:20:30:60` (from, to,
/// after seconds) or `noise:21:0.5` (mean, amplitude); any of the first four
/// may end in `+noise:AMPLITUDE`, e.g. `ramp:20:30:120+noise:0.2`.
impl FromStr for Waveform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((base, noise)) = s.split_once("+noise:") {
            let amplitude = amplitude(s, noise)?;
            if base.starts_with("noise:") {
                return Err(format!(
                    "{s:?} adds noise to noise; use noise:MEAN:AMPLITUDE"
                ));
            }
            return Ok(Waveform::Noisy {
                base: Box::new(base.parse()?),
                amplitude,
            });
        }
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
            ("step", 4) => Ok(Waveform::Step {
                from: num(1)?,
                to: num(2)?,
                at_ms: secs(3)?,
            }),
            ("noise", 3) => Ok(Waveform::Noisy {
                base: Box::new(Waveform::Steady(num(1)?)),
                amplitude: amplitude(s, parts[2])?,
            }),
            _ => Err(format!("{s:?} is not {SCRIPTS}")),
        }
    }
}

/// A noise amplitude: finite and not negative.
fn amplitude(script: &str, value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|a| a.is_finite() && *a >= 0.0)
        .ok_or_else(|| {
            format!("{script:?}: the noise amplitude {value:?} is not a number of 0 or more")
        })
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

    /// A SenseHat's, every metric there is, as [`Self::sample`] takes them.
    fn metrics(&self) -> &'static [Metric] {
        &Metric::MEASURED
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
    fn a_step_holds_then_jumps_once() {
        let step = Waveform::Step {
            from: 20.0,
            to: 30.0,
            at_ms: 1000,
        };
        assert_eq!(
            (step.at(0), step.at(999), step.at(1000), step.at(9000)),
            (20.0, 20.0, 30.0, 30.0)
        );
    }

    #[test]
    fn noise_stays_within_its_amplitude_varies_and_replays() {
        let noisy: Waveform = "noise:21:0.5".parse().unwrap();
        let values: Vec<f64> = (0..1000).map(|t| noisy.at(t * 1000)).collect();
        assert!(
            values.iter().all(|v| (20.5..21.5).contains(v)),
            "{values:?}"
        );
        let (low, high) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        assert!(
            low < 20.6 && high > 21.4,
            "spread over the range: {low}..{high}"
        );
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((mean - 21.0).abs() < 0.05, "centred on the mean: {mean}");
        assert_eq!(noisy.at(1234), noisy.at(1234), "the same at the same time");
    }

    #[test]
    fn noise_can_be_added_to_another_script() {
        let noisy: Waveform = "ramp:20:30:10+noise:0.2".parse().unwrap();
        let ramp: Waveform = "ramp:20:30:10".parse().unwrap();
        let deviations: Vec<f64> = (0..100)
            .map(|t| noisy.at(t * 100) - ramp.at(t * 100))
            .collect();
        assert!(deviations.iter().all(|d| d.abs() <= 0.2), "{deviations:?}");
        assert!(deviations.iter().any(|d| d.abs() > 0.05), "{deviations:?}");
        assert!((noisy.at(10_000) - 30.0).abs() <= 0.2, "follows the ramp");
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
        assert_eq!(
            "step:18:26:30".parse(),
            Ok(Waveform::Step {
                from: 18.0,
                to: 26.0,
                at_ms: 30_000
            })
        );
        assert_eq!(
            "noise:21:0.5".parse(),
            Ok(Waveform::Noisy {
                base: Box::new(Waveform::Steady(21.0)),
                amplitude: 0.5
            })
        );
        assert_eq!(
            "sine:24:3:120+noise:0.1".parse(),
            Ok(Waveform::Noisy {
                base: Box::new(Waveform::Sine {
                    mean: 24.0,
                    amplitude: 3.0,
                    period_ms: 120_000
                }),
                amplitude: 0.1
            })
        );
        for bad in [
            "",
            "step:1:2",
            "step:1:2:0",
            "noise:21",
            "noise:21:-1",
            "noise:21:nan",
            "steady:21+noise:x",
            "noise:21:1+noise:1",
            "square:1:2:3+noise:1",
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
