//! Reading state the views keep between network calls: the latest value of
//! each sensor metric (fed by the live stream) and the cursor position in a
//! paged history. No I/O here, so both are tested natively.

use hearth_proto::v1::{Metric, StoredReading};

/// One metric's newest value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latest {
    pub value: f64,
    pub time_unix_ms: i64,
}

/// The newest value of each (device, metric) seen so far.
// Why a list, not a map: a home has a few dozen at most, and a hash map
// would add its own code to the wasm module for no gain at that size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestReadings(Vec<(String, Metric, Latest)>);

impl LatestReadings {
    /// Takes in `readings`, keeping per metric whichever is newest: a page of
    /// history loaded late must not overwrite a value the stream brought.
    pub fn apply<'a>(&mut self, readings: impl IntoIterator<Item = &'a StoredReading>) {
        for r in readings {
            let latest = Latest {
                value: r.value,
                time_unix_ms: r.time_unix_ms,
            };
            match self.find(&r.device_id, r.metric()) {
                Some(i) if latest.time_unix_ms >= self.0[i].2.time_unix_ms => self.0[i].2 = latest,
                Some(_) => {}
                None => self.0.push((r.device_id.clone(), r.metric(), latest)),
            }
        }
    }

    /// The newest value of `metric` from `device_id`, if any arrived.
    pub fn get(&self, device_id: &str, metric: Metric) -> Option<Latest> {
        self.find(device_id, metric).map(|i| self.0[i].2)
    }

    fn find(&self, device_id: &str, metric: Metric) -> Option<usize> {
        self.0
            .iter()
            .position(|(d, m, _)| d == device_id && *m == metric)
    }
}

/// Where a reader is in history paged newest first: the token of the page on
/// screen and the tokens of the newer pages, so "Newer" can go back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pager {
    newer: Vec<String>,
    current: String,
}

impl Pager {
    /// The `page_token` to ask for the page on screen ("" for the newest).
    pub fn token(&self) -> &str {
        &self.current
    }

    /// 1 for the newest page.
    pub fn page_number(&self) -> usize {
        self.newer.len() + 1
    }

    /// Whether a newer page exists to go back to.
    pub fn has_newer(&self) -> bool {
        !self.newer.is_empty()
    }

    /// Moves to the older page that `next_page_token` names.
    pub fn older(&mut self, next_page_token: String) {
        self.newer
            .push(std::mem::replace(&mut self.current, next_page_token));
    }

    /// Moves back one page towards the newest; stays on the newest.
    pub fn newer(&mut self) {
        if let Some(token) = self.newer.pop() {
            self.current = token;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device: &str, metric: Metric, value: f64, time_unix_ms: i64) -> StoredReading {
        StoredReading {
            device_id: device.into(),
            metric: metric as i32,
            value,
            time_unix_ms,
            seq: 0,
        }
    }

    #[test]
    fn keeps_the_newest_value_per_device_and_metric() {
        let mut latest = LatestReadings::default();
        latest.apply(&[
            reading("s1", Metric::TemperatureCelsius, 21.0, 1_000),
            reading("s1", Metric::HumidityPercent, 40.0, 1_000),
            reading("s2", Metric::TemperatureCelsius, 30.0, 1_000),
        ]);
        latest.apply(&[reading("s1", Metric::TemperatureCelsius, 22.0, 2_000)]);

        assert_eq!(
            latest.get("s1", Metric::TemperatureCelsius),
            Some(Latest {
                value: 22.0,
                time_unix_ms: 2_000
            })
        );
        assert_eq!(
            latest.get("s1", Metric::HumidityPercent).map(|l| l.value),
            Some(40.0)
        );
        assert_eq!(
            latest
                .get("s2", Metric::TemperatureCelsius)
                .map(|l| l.value),
            Some(30.0)
        );
        assert_eq!(latest.get("s2", Metric::PressureHpa), None);
    }

    #[test]
    fn an_older_reading_arriving_late_is_ignored() {
        let mut latest = LatestReadings::default();
        latest.apply(&[reading("s1", Metric::PressureHpa, 1010.0, 5_000)]);
        latest.apply(&[reading("s1", Metric::PressureHpa, 990.0, 4_000)]);
        assert_eq!(
            latest.get("s1", Metric::PressureHpa).map(|l| l.value),
            Some(1010.0)
        );
    }

    #[test]
    fn pager_walks_older_and_back_to_the_newest_page() {
        let mut pager = Pager::default();
        assert_eq!(
            (pager.token(), pager.page_number(), pager.has_newer()),
            ("", 1, false)
        );

        pager.older("t2".into());
        pager.older("t3".into());
        assert_eq!(
            (pager.token(), pager.page_number(), pager.has_newer()),
            ("t3", 3, true)
        );

        pager.newer();
        assert_eq!((pager.token(), pager.page_number()), ("t2", 2));
        pager.newer();
        pager.newer();
        assert_eq!(
            (pager.token(), pager.page_number(), pager.has_newer()),
            ("", 1, false)
        );
    }
}
