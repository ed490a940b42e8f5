//! Replays refused: per device, the highest sequence number the gateway has
//! taken and which of the [`WINDOW`] numbers below it it has taken too (the
//! sliding window of IPsec and DTLS, RFC 4303 §3.4.3). A signed datagram is
//! taken only if its number is above the highest, or inside the window and
//! not yet taken; so an exact resend of a captured datagram is refused, while
//! datagrams a LAN delivers slightly out of order still arrive.
//!
//! Why this works across restarts of a sensor: its numbers keep growing
//! (`hearth_device::seq`: the Unix time in ms, or a bound kept on disk).
//!
//! Across restarts of the gateway the highest number of each device is kept
//! in `replay-marks` beside the queue ([`MARKS_FILE`]), written atomically
//! (at most every second, and on shutdown) by the gateway's tasks; the file
//! format and the window are here, free of I/O. After a restart everything
//! at or below the recorded highest counts as taken. A crash (not a SIGTERM)
//! can lose the marks of the last second: a datagram taken in that second
//! could then be taken once more, and the backend, which stores a reading
//! once per `(device, metric, seq)`, stores nothing new from it.

use std::collections::HashMap;

/// Numbers below the highest that are still taken if not seen (reordering).
pub const WINDOW: u64 = 64;
/// The file in the queue's directory that keeps the highest numbers.
pub const MARKS_FILE: &str = "replay-marks";

/// What one device has sent: its highest number and, bit `i` of `seen`,
/// whether `highest - i` was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    highest: u64,
    seen: u64,
}

impl Window {
    fn admits(&self, seq: u64) -> bool {
        if seq > self.highest {
            return true;
        }
        let behind = self.highest - seq;
        behind < WINDOW && self.seen & (1 << behind) == 0
    }

    fn record(&mut self, seq: u64) {
        if seq > self.highest {
            let ahead = seq - self.highest;
            self.seen = if ahead >= WINDOW {
                1
            } else {
                (self.seen << ahead) | 1
            };
            self.highest = seq;
        } else if self.highest - seq < WINDOW {
            self.seen |= 1 << (self.highest - seq);
        }
    }
}

/// The windows of every device that has sent a signed datagram (only devices
/// with a key get here, so it is bounded by the keys file).
#[derive(Debug, Default)]
pub struct ReplayGuard {
    windows: HashMap<String, Window>,
    /// Whether a highest number changed since [`Self::take_marks`].
    changed: bool,
}

impl ReplayGuard {
    /// From the highest numbers recorded before a restart: everything at or
    /// below them counts as taken.
    pub fn from_marks(marks: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self {
            windows: marks
                .into_iter()
                .map(|(device, highest)| {
                    (
                        device,
                        Window {
                            highest,
                            seen: u64::MAX,
                        },
                    )
                })
                .collect(),
            changed: false,
        }
    }

    /// Whether `device`'s datagram numbered `seq` is new.
    pub fn admits(&self, device: &str, seq: u64) -> bool {
        self.windows.get(device).is_none_or(|w| w.admits(seq))
    }

    /// Records that `device`'s datagram numbered `seq` was taken.
    pub fn record(&mut self, device: &str, seq: u64) {
        match self.windows.get_mut(device) {
            Some(window) => {
                let before = window.highest;
                window.record(seq);
                self.changed |= window.highest != before;
            }
            None => {
                self.windows.insert(
                    device.to_owned(),
                    Window {
                        highest: seq,
                        seen: 1,
                    },
                );
                self.changed = true;
            }
        }
    }

    /// The marks file's text if a highest number changed since the last call.
    pub fn take_marks(&mut self) -> Option<String> {
        std::mem::take(&mut self.changed).then(|| self.marks())
    }

    /// The marks file's text: a line `DEVICE_ID HIGHEST` per device, sorted.
    pub fn marks(&self) -> String {
        let mut lines: Vec<String> = self
            .windows
            .iter()
            .map(|(device, w)| format!("{device} {}\n", w.highest))
            .collect();
        lines.sort_unstable();
        lines.concat()
    }
}

/// Parses a marks file (as [`ReplayGuard::marks`] writes it). Why an error
/// and not an empty start: forgetting the marks would let every captured
/// datagram of the queue's lifetime be replayed once; the caller stops and
/// names the file instead.
pub fn parse_marks(text: &str) -> Result<Vec<(String, u64)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            line.split_once(' ')
                .and_then(|(device, seq)| Some((device.to_owned(), seq.trim().parse().ok()?)))
                .ok_or_else(|| format!("line {} is not `DEVICE_ID HIGHEST_SEQ`", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_taken_once() {
        let mut guard = ReplayGuard::default();
        assert!(guard.admits("s1", 100));
        guard.record("s1", 100);
        assert!(!guard.admits("s1", 100), "an exact resend");
        assert!(guard.admits("s1", 101));
        assert!(guard.admits("s2", 100), "each device has its own numbers");
    }

    #[test]
    fn numbers_slightly_out_of_order_are_taken_once_each() {
        let mut guard = ReplayGuard::default();
        for seq in [10, 13, 11] {
            assert!(guard.admits("s1", seq), "{seq}");
            guard.record("s1", seq);
        }
        assert!(guard.admits("s1", 12), "late, inside the window, not seen");
        guard.record("s1", 12);
        for seq in [10, 11, 12, 13] {
            assert!(!guard.admits("s1", seq), "{seq} again");
        }
    }

    #[test]
    fn numbers_too_far_behind_are_refused() {
        let mut guard = ReplayGuard::default();
        guard.record("s1", 1_000);
        assert!(guard.admits("s1", 1_000 - WINDOW + 1));
        assert!(!guard.admits("s1", 1_000 - WINDOW));
        assert!(!guard.admits("s1", 0));
        // A jump past the window forgets what was seen below it.
        guard.record("s1", 1_000 + 5 * WINDOW);
        assert!(!guard.admits("s1", 1_000));
        assert!(guard.admits("s1", 1_000 + 5 * WINDOW - 1));
    }

    #[test]
    fn the_window_slides_with_the_highest_number() {
        let mut guard = ReplayGuard::default();
        guard.record("s1", 1);
        guard.record("s1", 3);
        guard.record("s1", 3 + WINDOW - 1);
        assert!(!guard.admits("s1", 3), "still in the window, seen");
        assert!(!guard.admits("s1", 1), "fell out of the window");
        assert!(guard.admits("s1", 4), "in the window, not seen");
    }

    #[test]
    fn after_a_restart_nothing_at_or_below_the_marks_is_taken() {
        let mut before = ReplayGuard::default();
        for seq in [5, 7, 9] {
            before.record("s1", seq);
        }
        before.record("s2", 42);
        let text = before.take_marks().expect("changed");
        assert_eq!(text, "s1 9\ns2 42\n");
        assert_eq!(before.take_marks(), None, "nothing changed since");
        before.record("s1", 8);
        assert_eq!(
            before.take_marks(),
            None,
            "a late number moves no mark: nothing to write"
        );

        let after = ReplayGuard::from_marks(parse_marks(&text).unwrap());
        for seq in [5, 6, 8, 9] {
            assert!(!after.admits("s1", seq), "{seq}");
        }
        assert!(after.admits("s1", 10));
        assert!(!after.admits("s2", 42));
        assert!(after.admits("s3", 1));
    }

    #[test]
    fn a_marks_file_that_is_not_one_is_refused_naming_the_line() {
        assert_eq!(parse_marks("").unwrap(), vec![]);
        assert_eq!(
            parse_marks("s1 9\n\ns2 42\n").unwrap(),
            vec![("s1".to_owned(), 9), ("s2".to_owned(), 42)]
        );
        assert_eq!(
            parse_marks("s1 9\ns2 lots\n").unwrap_err(),
            "line 2 is not `DEVICE_ID HIGHEST_SEQ`"
        );
        assert!(parse_marks("s1\n").is_err());
    }
}
