//! Sequence numbers of a sensor's reading batches. The backend stores a
//! reading once per `(device, metric, seq)`, so a number used twice loses the
//! second reading: the numbers must keep growing across restarts of the agent.
//!
//! They start at the Unix time in milliseconds (at most one batch per
//! millisecond, so a restart starts above every number used before) and, with
//! a state file, at least at the bound recorded there. Why the file: a Pi has
//! no real-time clock, and after a power cut it boots with the time
//! fake-hwclock saved, up to an hour behind, until NTP answers; the clock
//! alone would then reuse numbers. The file holds a bound below which every
//! number used lies; it is raised a block at a time (written to a temporary
//! file, fsynced and renamed), so an SD card sees one write per
//! [`BLOCK`] batches, and a restart skips what is left of the block.
//!
//! Beside it, `{device}.sent` says what the current run has numbered
//! (`run_start last`), rewritten in place with every number: the page cache
//! outlives a crash of the agent (not a power cut), so a restart after a
//! crash says what the crashed run sent ([`Sequence::previous_run`]), and
//! the backend counts its lost end as missing, as a clean stop's offline
//! status would have made it. It is fsynced only every
//! [`ACCOUNT_SYNC_EVERY`] ([`Sequence::sync_account`], which the sensor's
//! loop calls): an SD card would not take a flush per batch. What a power
//! cut loses is at most that long of the account, so the backend counts at
//! most that many batches too few missing, never a reading that arrived.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

/// Numbers reserved per write of the state file: with a reading every 2 s,
/// one write every 5.5 hours.
pub const BLOCK: u64 = 10_000;
/// How often the account file is flushed to disk while numbers are given:
/// the most of a run's account a power cut can lose.
pub const ACCOUNT_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The numbers one sensor gives its batches.
#[derive(Debug)]
pub struct Sequence {
    /// The last number given.
    last: u64,
    /// The first number of this run (this process's numbers): sent with
    /// every batch, so the backend tells the jump of a restart from loss.
    run_start: u64,
    /// Every number below this may be given without writing the file.
    reserved: u64,
    file: Option<PathBuf>,
    /// Whether the last write of the file failed (logged once until it works).
    failing: bool,
    /// `{device}.sent`, kept open: this run's account, rewritten in place.
    account: Option<File>,
    /// What the run before this one said it had numbered, when it ended
    /// without saying so itself.
    previous: Option<(u64, u64)>,
    /// Whether the account was written since it was last flushed.
    unsynced: bool,
}

impl Sequence {
    /// Numbers from the clock alone (`now_ms`, Unix ms).
    pub fn from_clock(now_ms: i64) -> Self {
        let last = now_ms.max(0) as u64;
        Self {
            last,
            run_start: last + 1,
            reserved: u64::MAX,
            file: None,
            failing: false,
            account: None,
            previous: None,
            unsynced: false,
        }
    }

    /// The path of `device`'s state file in `dir`.
    pub fn file_in(dir: &Path, device: &str) -> PathBuf {
        dir.join(format!("{device}.seq"))
    }

    /// Numbers above `now_ms` and above the bound in `file`, reserving the
    /// first block at once, so an unwritable state directory fails here,
    /// at start-up. A file that cannot be parsed is logged and replaced.
    pub fn with_file(now_ms: i64, file: PathBuf) -> io::Result<Self> {
        let recorded = match fs::read_to_string(&file) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(bound) => Some(bound),
                Err(_) => {
                    warn!(file = %file.display(), contents = text.trim(), "sequence state file is corrupt; starting from the clock");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let clock = now_ms.max(0) as u64;
        let last = recorded.map_or(clock, |bound| bound.max(clock));
        if recorded.is_some_and(|bound| bound > clock) {
            info!(file = %file.display(), bound = recorded, clock, "clock behind the recorded sequence; continuing from the file");
        }
        let account_file = file.with_extension("sent");
        let previous = fs::read_to_string(&account_file)
            .ok()
            .and_then(|text| parse_account(&text));
        let account = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&account_file)?;
        let mut sequence = Self {
            last,
            run_start: last + 1,
            reserved: last,
            file: Some(file),
            failing: false,
            account: Some(account),
            previous,
            unsynced: false,
        };
        sequence.reserve()?;
        Ok(sequence)
    }

    /// The next number. Past the reserved block it first records a new
    /// bound; if that write fails the number is still given (a reading now
    /// is worth more than a guard against a clock that may not go back), the
    /// failure is logged and the write retried with the next number.
    pub fn next_seq(&mut self) -> u64 {
        self.last += 1;
        if self.last >= self.reserved {
            match self.reserve() {
                Ok(()) if self.failing => {
                    self.failing = false;
                    info!("sequence state file written again");
                }
                Ok(()) => {}
                Err(e) if !self.failing => {
                    self.failing = true;
                    let file = self
                        .file
                        .as_ref()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default();
                    warn!(file, error = %e, "cannot record the sequence bound; a restart with the clock behind may reuse numbers");
                }
                Err(_) => {}
            }
        }
        if let Some(account) = &self.account {
            // Fixed width, so each write covers the one before whole.
            let text = format!("{:020} {:020}\n", self.run_start, self.last);
            match account.write_all_at(text.as_bytes(), 0) {
                Ok(()) => self.unsynced = true,
                Err(e) => {
                    warn!(error = %e, "cannot record what this run sent; a crash would leave its end uncounted")
                }
            }
        }
        self.last
    }

    /// Flushes the account file to disk if it was written since the last
    /// flush (every [`ACCOUNT_SYNC_EVERY`]); whether it did.
    pub fn sync_account(&mut self) -> bool {
        let Some(account) = self.account.as_ref().filter(|_| self.unsynced) else {
            return false;
        };
        if let Err(e) = account.sync_data() {
            warn!(error = %e, "cannot flush what this run sent; a power cut would leave its end uncounted");
            return false;
        }
        self.unsynced = false;
        true
    }

    /// What the previous run numbered, `(run_start, last)`, as its account
    /// file said at start (once this run numbers something, the file is
    /// this run's). Said again even when that run's offline status said it:
    /// the backend keeps the highest, so a repeat changes nothing.
    pub fn previous_run(&self) -> Option<(u64, u64)> {
        self.previous
    }

    /// The previous run's account is on its way: nothing left to say for it.
    pub fn previous_run_said(&mut self) {
        self.previous = None;
    }

    /// The first number of this run: every number from it up to the last
    /// one given was given by this process, one per batch.
    pub fn run_start(&self) -> u64 {
        self.run_start
    }

    /// What this run has numbered, `(run_start, last)`, for a status
    /// message to say (so the backend counts a lost last batch as missing);
    /// `None` before the first number.
    pub fn sent(&self) -> Option<(u64, u64)> {
        (self.last >= self.run_start).then_some((self.run_start, self.last))
    }

    fn reserve(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let bound = self.last + BLOCK;
        write_atomically(file, &format!("{bound}\n"))?;
        self.reserved = bound;
        Ok(())
    }
}

/// `(run_start, last)` of an account file's `run_start last`; `None` for
/// anything else (a torn write after a power cut, say).
fn parse_account(text: &str) -> Option<(u64, u64)> {
    let (start, last) = text.trim().split_once(' ')?;
    let (start, last) = (start.parse().ok()?, last.parse().ok()?);
    (start <= last).then_some((start, last))
}

/// Writes `contents` to a temporary file, fsyncs it and renames it over
/// `path`, so a crash leaves the old or the new contents, never a mix.
fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("seq.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("hearth-seq-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn without_a_file_numbers_start_at_the_clock_and_grow_by_one() {
        let mut seq = Sequence::from_clock(1_000);
        assert_eq!((seq.next_seq(), seq.next_seq()), (1_001, 1_002));
        assert_eq!(seq.run_start(), 1_001);
    }

    #[test]
    fn a_run_says_what_it_numbered_once_it_numbered_something() {
        let mut seq = Sequence::from_clock(1_000);
        assert_eq!(seq.sent(), None);
        seq.next_seq();
        seq.next_seq();
        assert_eq!(seq.sent(), Some((1_001, 1_002)));
    }

    #[test]
    fn a_restart_with_the_clock_gone_back_continues_above_every_number_used() {
        let dir = TempDir::new("restart");
        let file = Sequence::file_in(&dir.0, "s1");
        let mut first = Sequence::with_file(1_000_000, file.clone()).unwrap();
        let used: Vec<u64> = (0..25_000).map(|_| first.next_seq()).collect();
        drop(first);
        // A power cut: the Pi boots with the clock an hour behind.
        let mut second = Sequence::with_file(1_000_000 - 3_600_000, file).unwrap();
        let after = second.next_seq();
        assert_eq!(second.run_start(), after, "a restart starts a new run");
        assert!(
            after > *used.last().unwrap(),
            "{after} after {}",
            used.last().unwrap()
        );
    }

    #[test]
    fn a_restart_with_the_clock_ahead_follows_the_clock() {
        let dir = TempDir::new("ahead");
        let file = Sequence::file_in(&dir.0, "s1");
        let mut first = Sequence::with_file(1_000, file.clone()).unwrap();
        first.next_seq();
        let mut second = Sequence::with_file(5_000_000, file).unwrap();
        assert_eq!(second.next_seq(), 5_000_001);
    }

    #[test]
    fn the_file_is_written_once_per_block() {
        let dir = TempDir::new("block");
        let file = Sequence::file_in(&dir.0, "s1");
        let mut seq = Sequence::with_file(0, file.clone()).unwrap();
        let bound = || {
            fs::read_to_string(&file)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(bound(), BLOCK, "the first block is reserved at start");
        for _ in 0..BLOCK - 1 {
            seq.next_seq();
        }
        assert_eq!(bound(), BLOCK);
        assert_eq!(seq.next_seq(), BLOCK);
        assert_eq!(bound(), 2 * BLOCK, "the next block before its first number");
    }

    #[test]
    fn a_corrupt_file_is_replaced_and_the_clock_used() {
        let dir = TempDir::new("corrupt");
        let file = Sequence::file_in(&dir.0, "s1");
        fs::write(&file, "not a number").unwrap();
        let mut seq = Sequence::with_file(7_000, file.clone()).unwrap();
        assert_eq!(seq.next_seq(), 7_001);
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!("{}\n", 7_000 + BLOCK)
        );
    }

    #[test]
    fn a_restart_after_a_crash_knows_what_the_crashed_run_sent() {
        let dir = TempDir::new("crash");
        let file = Sequence::file_in(&dir.0, "s1");
        let mut first = Sequence::with_file(1_000, file.clone()).unwrap();
        assert_eq!(first.previous_run(), None, "no run before the first");
        for _ in 0..42 {
            first.next_seq();
        }
        let said = first.sent();
        // A crash: the process ends without a word.
        drop(first);
        let mut second = Sequence::with_file(2_000, file.clone()).unwrap();
        assert_eq!(second.previous_run(), said);
        assert_eq!(said, Some((1_001, 1_042)));
        second.next_seq();
        assert_eq!(second.previous_run(), said, "kept until said");
        second.previous_run_said();
        assert_eq!(second.previous_run(), None);
        // The account file is the second run's now.
        let third = Sequence::with_file(3_000, file).unwrap();
        assert_eq!(third.previous_run(), second.sent());
        // Flushed only when written since the last flush.
        assert!(second.sync_account(), "numbered since it started");
        assert!(!second.sync_account(), "nothing new");
        second.next_seq();
        assert!(second.sync_account());
        assert!(!Sequence::from_clock(1).sync_account(), "no file, no flush");
    }

    #[test]
    fn an_unreadable_account_says_nothing() {
        for torn in ["", "00000000000000001001 0000000", "5 3", "x y"] {
            assert_eq!(parse_account(torn), None, "{torn:?}");
        }
        assert_eq!(
            parse_account("00000000000000001001 00000000000000001042\n"),
            Some((1_001, 1_042))
        );
    }

    #[test]
    fn an_unwritable_state_directory_fails_at_start() {
        let file = PathBuf::from("/nonexistent/hearth/s1.seq");
        assert!(Sequence::with_file(0, file).is_err());
    }
}
