//! A durable FIFO of reading batches on disk, bounded in bytes.
//!
//! Records are appended to segment files (`{n:020}.seg`) as
//! `[len: u32 LE][crc32: u32 LE][payload]`. A record is *accepted* once
//! [`DiskQueue::sync`] has flushed and fsynced it; only accepted records are
//! handed to the forwarder. The position up to which the backend has
//! acknowledged is kept in `cursor` (written to a temporary file, fsynced and
//! renamed, so a crash leaves the old or the new cursor, never half of one).
//! Fully acknowledged segments are deleted.
//!
//! After a crash or power cut, [`DiskQueue::open`] truncates a torn record at
//! the end of the last segment (short, or failing its checksum) and resumes
//! from the cursor: accepted records are forwarded at least once, and the
//! backend's idempotency keys make that exactly once in effect.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// A segment is closed once it grows past this.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const HEADER: u64 = 8;

/// A place in the queue: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// The queue refused a record because it would exceed its byte bound.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

pub struct DiskQueue {
    dir: PathBuf,
    max_bytes: u64,
    head: BufWriter<File>,
    /// Where the next append goes.
    written: Position,
    /// Everything before this is fsynced: accepted.
    durable: Position,
    /// Everything before this is acknowledged by the backend.
    acked: Position,
    /// Bytes of every record not yet acknowledged.
    pending_bytes: u64,
    /// Records appended and not yet acknowledged.
    pending_records: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Reads the record at the current position of `file`; `None` at a clean
/// end or a torn tail.
fn read_record(file: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER as usize];
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > SEGMENT_BYTES as usize {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    match file.read_exact(&mut payload) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok((crc32fast::hash(&payload) == crc).then_some(payload))
}

/// Counts the valid records of a segment from `from`, returning
/// (records, end of the last valid one).
fn scan(path: &Path, from: u64) -> io::Result<(u64, u64)> {
    let mut file = io::BufReader::new(File::open(path)?);
    file.seek(SeekFrom::Start(from))?;
    let (mut records, mut end) = (0, from);
    while let Some(payload) = read_record(&mut file)? {
        records += 1;
        end += HEADER + payload.len() as u64;
    }
    Ok((records, end))
}

impl DiskQueue {
    /// Opens (or creates) the queue in `dir`, recovering from a crash.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut acked = read_cursor(dir)?.unwrap_or_default();
        let mut existing = segments(dir)?;
        if existing.is_empty() {
            File::create(segment_path(dir, acked.segment))?;
            existing.push(acked.segment);
        }
        if acked.segment < existing[0] {
            acked = Position {
                segment: existing[0],
                offset: 0,
            };
        }
        let (mut pending_bytes, mut pending_records) = (0, 0);
        let last = *existing.last().expect("at least one segment");
        let mut written = Position {
            segment: last,
            offset: 0,
        };
        for &segment in existing.iter().filter(|&&s| s >= acked.segment) {
            let from = if segment == acked.segment {
                acked.offset
            } else {
                0
            };
            let path = segment_path(dir, segment);
            let (records, end) = scan(&path, from)?;
            if segment == last {
                // Drop a torn tail so appends continue from a clean record boundary.
                let file = OpenOptions::new().write(true).open(&path)?;
                if file.metadata()?.len() != end {
                    file.set_len(end)?;
                    file.sync_all()?;
                }
                written.offset = end;
            }
            pending_records += records;
            pending_bytes += end - from;
        }
        let mut head = OpenOptions::new()
            .append(true)
            .open(segment_path(dir, last))?;
        head.seek(SeekFrom::End(0))?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            head: BufWriter::with_capacity(64 * 1024, head),
            written,
            durable: written,
            acked,
            pending_bytes,
            pending_records,
        })
    }

    /// Appends a record (not yet accepted: see [`sync`](Self::sync)).
    pub fn append(&mut self, payload: &[u8]) -> io::Result<Result<(), Full>> {
        let size = HEADER + payload.len() as u64;
        if self.pending_bytes + size > self.max_bytes {
            return Ok(Err(Full));
        }
        if self.written.offset >= SEGMENT_BYTES {
            self.roll()?;
        }
        self.head.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.head
            .write_all(&crc32fast::hash(payload).to_le_bytes())?;
        self.head.write_all(payload)?;
        self.written.offset += size;
        self.pending_bytes += size;
        self.pending_records += 1;
        Ok(Ok(()))
    }

    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let next = self.written.segment + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, next))?;
        sync_dir(&self.dir)?;
        self.head = BufWriter::with_capacity(64 * 1024, file);
        self.written = Position {
            segment: next,
            offset: 0,
        };
        self.durable = self.written;
        Ok(())
    }

    /// Flushes and fsyncs what was appended: from here on it survives a
    /// crash or power cut. Returns whether anything new became durable.
    pub fn sync(&mut self) -> io::Result<bool> {
        if self.durable == self.written {
            return Ok(false);
        }
        self.head.flush()?;
        self.head.get_ref().sync_data()?;
        self.durable = self.written;
        Ok(true)
    }

    /// Up to `max` accepted records after `from` (default: the acknowledged
    /// position), and the position after the last one.
    pub fn read(&self, from: Option<Position>, max: usize) -> io::Result<(Vec<Vec<u8>>, Position)> {
        let mut at = from.unwrap_or(self.acked);
        let mut out = Vec::new();
        while out.len() < max && at < self.durable {
            let path = segment_path(&self.dir, at.segment);
            let mut file = io::BufReader::new(File::open(&path)?);
            file.seek(SeekFrom::Start(at.offset))?;
            let end = if at.segment == self.durable.segment {
                self.durable.offset
            } else {
                u64::MAX
            };
            while out.len() < max && at.offset < end {
                match read_record(&mut file)? {
                    Some(payload) => {
                        at.offset += HEADER + payload.len() as u64;
                        out.push(payload);
                    }
                    None => break,
                }
            }
            if out.len() < max
                && at.segment < self.durable.segment
                && at.offset >= file.get_ref().metadata()?.len()
            {
                at = Position {
                    segment: at.segment + 1,
                    offset: 0,
                };
            } else {
                break;
            }
        }
        Ok((out, at))
    }

    /// The backend has stored everything before `upto` (`records` of them):
    /// persist the cursor and delete finished segments.
    pub fn acknowledge(&mut self, upto: Position, records: u64) -> io::Result<()> {
        let mut freed = 0;
        let mut at = self.acked;
        while at.segment < upto.segment {
            freed += fs::metadata(segment_path(&self.dir, at.segment)).map_or(0, |m| m.len())
                - at.offset;
            at = Position {
                segment: at.segment + 1,
                offset: 0,
            };
        }
        freed += upto.offset - at.offset;
        write_cursor(&self.dir, upto)?;
        for segment in self.acked.segment..upto.segment {
            let _ = fs::remove_file(segment_path(&self.dir, segment));
        }
        self.acked = upto;
        self.pending_bytes -= freed.min(self.pending_bytes);
        self.pending_records -= records.min(self.pending_records);
        Ok(())
    }

    /// Records and bytes accepted or appended but not yet acknowledged.
    pub fn depth(&self) -> (u64, u64) {
        (self.pending_records, self.pending_bytes)
    }
}

fn read_cursor(dir: &Path) -> io::Result<Option<Position>> {
    match fs::read_to_string(dir.join("cursor")) {
        Ok(text) => {
            let mut parts = text.split_whitespace().map(str::parse::<u64>);
            match (parts.next(), parts.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Ok(Some(Position { segment, offset })),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is corrupt: {text:?}", dir.join("cursor").display()),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_cursor(dir: &Path, at: Position) -> io::Result<()> {
    write_atomically(
        dir,
        "cursor",
        format!("{} {}\n", at.segment, at.offset).as_bytes(),
    )
}

/// Writes `contents` to `dir/name` so that a crash leaves the old or the new
/// file, never half of one: a temporary file, fsynced, renamed over it.
pub fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("hearth-queue-{:016x}", rand_u64()));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn rand_u64() -> u64 {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::time::SystemTime::now())
    }

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("reading {i}").into_bytes())
            .collect()
    }

    #[test]
    fn only_synced_records_are_read_and_in_order() {
        let dir = TempDir::new();
        let mut q = DiskQueue::open(&dir.0, 1 << 20).unwrap();
        for r in records(3) {
            q.append(&r).unwrap().unwrap();
        }
        assert!(
            q.read(None, 10).unwrap().0.is_empty(),
            "not accepted before sync"
        );
        q.sync().unwrap();
        let (got, _) = q.read(None, 10).unwrap();
        assert_eq!(got, records(3));
        let (two, after) = q.read(None, 2).unwrap();
        assert_eq!(two, records(3)[..2]);
        assert_eq!(q.read(Some(after), 10).unwrap().0, records(3)[2..]);
    }

    #[test]
    fn acknowledged_records_are_not_read_again_after_a_restart() {
        let dir = TempDir::new();
        {
            let mut q = DiskQueue::open(&dir.0, 1 << 20).unwrap();
            for r in records(5) {
                q.append(&r).unwrap().unwrap();
            }
            q.sync().unwrap();
            let (_, after_two) = q.read(None, 2).unwrap();
            q.acknowledge(after_two, 2).unwrap();
            assert_eq!(q.depth().0, 3);
        }
        let q = DiskQueue::open(&dir.0, 1 << 20).unwrap();
        assert_eq!(q.read(None, 10).unwrap().0, records(5)[2..]);
        assert_eq!(q.depth().0, 3);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue_cleanly() {
        let dir = TempDir::new();
        {
            let mut q = DiskQueue::open(&dir.0, 1 << 20).unwrap();
            for r in records(2) {
                q.append(&r).unwrap().unwrap();
            }
            q.sync().unwrap();
        }
        // A power cut in the middle of writing a third record.
        let seg = segment_path(&dir.0, 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[50, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        drop(f);
        let mut q = DiskQueue::open(&dir.0, 1 << 20).unwrap();
        assert_eq!(q.read(None, 10).unwrap().0, records(2));
        q.append(b"after").unwrap().unwrap();
        q.sync().unwrap();
        let mut want = records(2);
        want.push(b"after".to_vec());
        assert_eq!(q.read(None, 10).unwrap().0, want);
    }

    #[test]
    fn refuses_records_past_its_byte_bound_until_acknowledged() {
        let dir = TempDir::new();
        let mut q = DiskQueue::open(&dir.0, 2 * (HEADER + 9)).unwrap();
        q.append(b"reading 0").unwrap().unwrap();
        q.append(b"reading 1").unwrap().unwrap();
        assert_eq!(q.append(b"reading 2").unwrap(), Err(Full));
        q.sync().unwrap();
        let (_, after) = q.read(None, 1).unwrap();
        q.acknowledge(after, 1).unwrap();
        assert_eq!(q.append(b"reading 2").unwrap(), Ok(()));
    }

    #[test]
    fn reads_across_segments_and_deletes_finished_ones() {
        let dir = TempDir::new();
        let mut q = DiskQueue::open(&dir.0, u64::MAX).unwrap();
        let big = vec![7u8; 1024 * 1024];
        for _ in 0..10 {
            q.append(&big).unwrap().unwrap();
        }
        q.sync().unwrap();
        assert!(segments(&dir.0).unwrap().len() >= 2);
        let (got, end) = q.read(None, 100).unwrap();
        assert_eq!(got.len(), 10);
        q.acknowledge(end, 10).unwrap();
        assert_eq!(
            segments(&dir.0).unwrap().len(),
            1,
            "only the head segment is left"
        );
        assert_eq!(q.depth(), (0, 0));
    }
}
