//! Segment compaction for the `driftkv` log-structured key-value store.
//!
//! The store appends every write to the active segment file. Once a segment
//! is sealed it is immutable; over time sealed segments accumulate stale
//! versions of keys and tombstones. This module picks candidate segments,
//! merges them into a fresh output segment keeping only the newest live
//! record for each key, rewrites the in-memory index (the "keydir") and
//! finally removes the inputs.
//!
//! On-disk record layout (little endian):
//!
//! ```text
//! +--------+--------+---------+----------+-----------+-------+---------+
//! | crc32  | seq u64| ts u64  | klen u32 | vlen u32  | key   | value   |
//! +--------+--------+---------+----------+-----------+-------+---------+
//! ```
//!
//! A `vlen` of `u32::MAX` marks a tombstone with no value bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HEADER_LEN: usize = 4 + 8 + 8 + 4 + 4;
const TOMBSTONE: u32 = u32::MAX;
const SEGMENT_EXT: &str = "seg";
const HINT_EXT: &str = "hint";
const MAX_KEY_LEN: usize = 64 * 1024;
const MAX_VALUE_LEN: usize = 64 * 1024 * 1024;

/// Identifies a segment by its monotonically increasing file number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

impl SegmentId {
    pub fn file_name(self) -> String {
        format!("{:010}.{}", self.0, SEGMENT_EXT)
    }

    pub fn hint_name(self) -> String {
        format!("{:010}.{}", self.0, HINT_EXT)
    }
}

/// Where the latest version of a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLocation {
    pub segment: SegmentId,
    pub offset: u64,
    pub len: u32,
    pub seq: u64,
}

/// Errors specific to compaction. I/O errors are wrapped rather than
/// flattened into strings so callers can retry on `Interrupted`.
#[derive(Debug)]
pub enum CompactError {
    Io(io::Error),
    Corrupt { segment: SegmentId, offset: u64, reason: &'static str },
    AlreadyRunning,
    Cancelled,
    NothingToDo,
}

impl From<io::Error> for CompactError {
    fn from(e: io::Error) -> Self {
        CompactError::Io(e)
    }
}

impl std::fmt::Display for CompactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompactError::Io(e) => write!(f, "io error: {e}"),
            CompactError::Corrupt { segment, offset, reason } => {
                write!(f, "corrupt record in segment {} at {}: {}", segment.0, offset, reason)
            }
            CompactError::AlreadyRunning => write!(f, "compaction already running"),
            CompactError::Cancelled => write!(f, "compaction cancelled"),
            CompactError::NothingToDo => write!(f, "no segments eligible for compaction"),
        }
    }
}

impl std::error::Error for CompactError {}

/// A decoded record. `value` is `None` for tombstones.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub timestamp: u64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl Record {
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.key.len() + self.value.as_ref().map_or(0, |v| v.len())
    }

    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.extend_from_slice(&[0u8; 4]); // crc placeholder
        buf.extend_from_slice(&self.seq.to_le_bytes());
        buf.extend_from_slice(&self.timestamp.to_le_bytes());
        buf.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        let vlen = match &self.value {
            Some(v) => v.len() as u32,
            None => TOMBSTONE,
        };
        buf.extend_from_slice(&vlen.to_le_bytes());
        buf.extend_from_slice(&self.key);
        if let Some(v) = &self.value {
            buf.extend_from_slice(v);
        }
        let crc = crc32(&buf[start + 4..]);
        buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Table-less CRC-32 (IEEE). Slow, but compaction is I/O bound anyway.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            let mask = (!(crc & 1)).wrapping_add(1);
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Sequential reader over one segment file.
pub struct SegmentReader {
    id: SegmentId,
    reader: BufReader<File>,
    offset: u64,
}

impl SegmentReader {
    pub fn open(dir: &Path, id: SegmentId) -> io::Result<Self> {
        let file = File::open(dir.join(id.file_name()))?;
        Ok(Self { id, reader: BufReader::with_capacity(256 * 1024, file), offset: 0 })
    }

    /// Returns the next record and its starting offset, or `None` at EOF.
    /// A truncated trailing record (torn write) is treated as EOF.
    pub fn next_record(&mut self) -> Result<Option<(u64, Record)>, CompactError> {
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut self.reader, &mut header)? {
            0 => return Ok(None),
            n if n < HEADER_LEN => return Ok(None),
            _ => {}
        }
        let crc = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let seq = u64::from_le_bytes(header[4..12].try_into().unwrap());
        let timestamp = u64::from_le_bytes(header[12..20].try_into().unwrap());
        let klen = u32::from_le_bytes(header[20..24].try_into().unwrap()) as usize;
        let vlen_raw = u32::from_le_bytes(header[24..28].try_into().unwrap());

        if klen > MAX_KEY_LEN {
            return Err(self.corrupt("key length too large"));
        }
        let vlen = if vlen_raw == TOMBSTONE { 0 } else { vlen_raw as usize };
        if vlen > MAX_VALUE_LEN {
            return Err(self.corrupt("value length too large"));
        }

        let mut body = vec![0u8; klen + vlen];
        if read_full(&mut self.reader, &mut body)? < body.len() {
            return Ok(None);
        }

        let mut check = Vec::with_capacity(HEADER_LEN - 4 + body.len());
        check.extend_from_slice(&header[4..]);
        check.extend_from_slice(&body);
        if crc32(&check) != crc {
            return Err(self.corrupt("checksum mismatch"));
        }

        let start = self.offset;
        self.offset += (HEADER_LEN + body.len()) as u64;
        let value = if vlen_raw == TOMBSTONE { None } else { Some(body.split_off(klen)) };
        body.truncate(klen);
        Ok(Some((start, Record { seq, timestamp, key: body, value })))
    }

    fn corrupt(&self, reason: &'static str) -> CompactError {
        CompactError::Corrupt { segment: self.id, offset: self.offset, reason }
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Appends records to a new segment and produces a hint file alongside it.
pub struct SegmentWriter {
    id: SegmentId,
    path: PathBuf,
    out: BufWriter<File>,
    hints: Vec<(Vec<u8>, KeyLocation)>,
    offset: u64,
    scratch: Vec<u8>,
}

impl SegmentWriter {
    pub fn create(dir: &Path, id: SegmentId) -> io::Result<Self> {
        let path = dir.join(format!("{}.tmp", id.file_name()));
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(Self {
            id,
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hints: Vec::new(),
            offset: 0,
            scratch: Vec::with_capacity(4096),
        })
    }

    pub fn append(&mut self, record: &Record) -> io::Result<KeyLocation> {
        self.scratch.clear();
        record.encode_into(&mut self.scratch);
        self.out.write_all(&self.scratch)?;
        let loc = KeyLocation {
            segment: self.id,
            offset: self.offset,
            len: self.scratch.len() as u32,
            seq: record.seq,
        };
        self.offset += self.scratch.len() as u64;
        self.hints.push((record.key.clone(), loc));
        Ok(loc)
    }

    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Flushes, fsyncs and atomically renames the temp file into place.
    pub fn finish(mut self, dir: &Path) -> io::Result<(SegmentId, Vec<(Vec<u8>, KeyLocation)>)> {
        self.out.flush()?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let final_path = dir.join(self.id.file_name());
        fs::rename(&self.path, &final_path)?;
        write_hint_file(dir, self.id, &self.hints)?;
        Ok((self.id, self.hints))
    }

    pub fn abort(self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn write_hint_file(dir: &Path, id: SegmentId, hints: &[(Vec<u8>, KeyLocation)]) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(dir.join(id.hint_name()))?);
    for (key, loc) in hints {
        w.write_all(&(key.len() as u32).to_le_bytes())?;
        w.write_all(&loc.offset.to_le_bytes())?;
        w.write_all(&loc.len.to_le_bytes())?;
        w.write_all(&loc.seq.to_le_bytes())?;
        w.write_all(key)?;
    }
    w.flush()
}

/// Per-segment statistics maintained by the write path, used to rank
/// compaction candidates.
#[derive(Debug, Clone, Default)]
pub struct SegmentStats {
    pub total_bytes: u64,
    pub dead_bytes: u64,
    pub tombstones: u64,
    pub sealed_at: Option<SystemTime>,
}

impl SegmentStats {
    pub fn garbage_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.dead_bytes as f64 / self.total_bytes as f64
    }
}

/// Tunables for candidate selection.
#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    /// Segments with at least this fraction of dead bytes are eligible.
    pub min_garbage_ratio: f64,
    /// Upper bound on total input bytes per run.
    pub max_input_bytes: u64,
    /// Output segments roll over at this size.
    pub target_segment_bytes: u64,
    /// Tombstones older than this may be dropped if no older segment
    /// could still hold a shadowed value.
    pub tombstone_grace: Duration,
    /// Minimum number of segments to bother merging.
    pub min_inputs: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            min_garbage_ratio: 0.4,
            max_input_bytes: 2 * 1024 * 1024 * 1024,
            target_segment_bytes: 256 * 1024 * 1024,
            tombstone_grace: Duration::from_secs(24 * 3600),
            min_inputs: 2,
        }
    }
}

/// Shared handle to the store's in-memory index.
pub type KeyDir = Arc<RwLock<HashMap<Vec<u8>, KeyLocation>>>;

/// Summary returned after a successful run.
#[derive(Debug, Default, Clone)]
pub struct CompactionReport {
    pub inputs: Vec<SegmentId>,
    pub outputs: Vec<SegmentId>,
    pub records_read: u64,
    pub records_written: u64,
    pub tombstones_dropped: u64,
    pub bytes_reclaimed: i64,
    pub elapsed: Duration,
}

pub struct Compactor {
    dir: PathBuf,
    keydir: KeyDir,
    stats: Arc<Mutex<BTreeMap<SegmentId, SegmentStats>>>,
    next_segment: Arc<AtomicU64>,
    active_segment: Arc<AtomicU64>,
    policy: CompactionPolicy,
    running: AtomicBool,
    cancel: Arc<AtomicBool>,
}

impl Compactor {
    pub fn new(
        dir: impl Into<PathBuf>,
        keydir: KeyDir,
        stats: Arc<Mutex<BTreeMap<SegmentId, SegmentStats>>>,
        next_segment: Arc<AtomicU64>,
        active_segment: Arc<AtomicU64>,
        policy: CompactionPolicy,
    ) -> Self {
        Self {
            dir: dir.into(),
            keydir,
            stats,
            next_segment,
            active_segment,
            policy,
            running: AtomicBool::new(false),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Chooses sealed segments to merge, highest garbage ratio first.
    pub fn select_candidates(&self) -> Vec<SegmentId> {
        let active = SegmentId(self.active_segment.load(Ordering::Acquire));
        let stats = self.stats.lock().unwrap();
        let mut eligible: Vec<(SegmentId, &SegmentStats)> = stats
            .iter()
            .filter(|(id, s)| **id != active && s.sealed_at.is_some())
            .filter(|(_, s)| s.garbage_ratio() >= self.policy.min_garbage_ratio)
            .map(|(id, s)| (*id, s))
            .collect();

        eligible.sort_by(|a, b| b.1.garbage_ratio().partial_cmp(&a.1.garbage_ratio()).unwrap());

        let mut picked = Vec::new();
        let mut budget = 0u64;
        for (id, s) in eligible {
            if budget + s.total_bytes > self.policy.max_input_bytes {
                break;
            }
            budget += s.total_bytes;
            picked.push(id);
        }
        picked.sort();
        picked
    }

    /// Runs one compaction pass. Only one pass may run at a time.
    pub fn run_once(&self) -> Result<CompactionReport, CompactError> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(CompactError::AlreadyRunning);
        }
        let result = self.run_inner();
        self.running.store(false, Ordering::Release);
        result
    }

    fn run_inner(&self) -> Result<CompactionReport, CompactError> {
        let started = Instant::now();
        let inputs = self.select_candidates();
        if inputs.len() < self.policy.min_inputs {
            return Err(CompactError::NothingToDo);
        }
        let oldest_input = *inputs.first().unwrap();
        let input_set: HashSet<SegmentId> = inputs.iter().copied().collect();

        // Tombstones can only be dropped if no segment older than the
        // oldest input exists that might still contain the shadowed key.
        let has_older_segments = {
            let stats = self.stats.lock().unwrap();
            stats.keys().any(|id| *id < oldest_input)
        };

        let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let grace = self.policy.tombstone_grace.as_secs();

        let mut report = CompactionReport { inputs: inputs.clone(), ..Default::default() };
        let mut writer: Option<SegmentWriter> = None;
        let mut finished: Vec<(SegmentId, Vec<(Vec<u8>, KeyLocation)>)> = Vec::new();
        let mut input_bytes = 0u64;

        for seg in &inputs {
            if self.cancel.load(Ordering::Relaxed) {
                if let Some(w) = writer.take() {
                    w.abort();
                }
                return Err(CompactError::Cancelled);
            }

            let mut reader = SegmentReader::open(&self.dir, *seg)?;
            while let Some((offset, record)) = reader.next_record()? {
                report.records_read += 1;
                input_bytes += record.encoded_len() as u64;

                // Is this record still the live version according to the keydir?
                let live = {
                    let kd = self.keydir.read().unwrap();
                    match kd.get(&record.key) {
                        Some(loc) => loc.segment == *seg && loc.offset == offset,
                        None => record.value.is_none(),
                    }
                };
                if !live {
                    continue;
                }

                if record.value.is_none() {
                    let old_enough = now_secs.saturating_sub(record.timestamp) > grace;
                    if old_enough && !has_older_segments {
                        report.tombstones_dropped += 1;
                        continue;
                    }
                }

                if writer.as_ref().map_or(true, |w| w.bytes_written() >= self.policy.target_segment_bytes) {
                    if let Some(w) = writer.take() {
                        finished.push(w.finish(&self.dir)?);
                    }
                    let id = SegmentId(self.next_segment.fetch_add(1, Ordering::SeqCst));
                    writer = Some(SegmentWriter::create(&self.dir, id)?);
                }
                writer.as_mut().unwrap().append(&record)?;
                report.records_written += 1;
            }
        }

        if let Some(w) = writer.take() {
            finished.push(w.finish(&self.dir)?);
        }

        // Swap the keydir entries over. A concurrent writer may have
        // overwritten a key since we read it; only replace entries that
        // still point into one of the input segments with the same seq.
        let mut output_bytes = 0u64;
        {
            let mut kd = self.keydir.write().unwrap();
            for (out_id, hints) in &finished {
                report.outputs.push(*out_id);
                for (key, new_loc) in hints {
                    output_bytes += new_loc.len as u64;
                    if let Some(cur) = kd.get_mut(key) {
                        if input_set.contains(&cur.segment) && cur.seq == new_loc.seq {
                            *cur = *new_loc;
                        }
                    }
                }
            }
        }

        {
            let mut stats = self.stats.lock().unwrap();
            for (out_id, hints) in &finished {
                let total: u64 = hints.iter().map(|(_, l)| l.len as u64).sum();
                stats.insert(
                    *out_id,
                    SegmentStats { total_bytes: total, dead_bytes: 0, tombstones: 0, sealed_at: Some(SystemTime::now()) },
                );
            }
            for id in &inputs {
                stats.remove(id);
            }
        }

        for id in &inputs {
            remove_segment_files(&self.dir, *id)?;
        }

        report.bytes_reclaimed = input_bytes as i64 - output_bytes as i64;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

fn remove_segment_files(dir: &Path, id: SegmentId) -> io::Result<()> {
    fs::remove_file(dir.join(id.file_name()))?;
    match fs::remove_file(dir.join(id.hint_name())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Rebuilds a keydir from hint files (fast path) or full segment scans.
/// Segments are visited in ascending order so later writes win.
pub fn rebuild_keydir(dir: &Path) -> Result<HashMap<Vec<u8>, KeyLocation>, CompactError> {
    let mut ids: Vec<SegmentId> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(&format!(".{}", SEGMENT_EXT))?;
            stem.parse::<u64>().ok().map(SegmentId)
        })
        .collect();
    ids.sort();

    let mut keydir = HashMap::new();
    for id in ids {
        let hint_path = dir.join(id.hint_name());
        if hint_path.exists() {
            load_hints(&hint_path, id, &mut keydir)?;
            continue;
        }
        let mut reader = SegmentReader::open(dir, id)?;
        while let Some((offset, rec)) = reader.next_record()? {
            let loc = KeyLocation { segment: id, offset, len: rec.encoded_len() as u32, seq: rec.seq };
            match rec.value {
                Some(_) => {
                    keydir.insert(rec.key, loc);
                }
                None => {
                    keydir.remove(&rec.key);
                }
            }
        }
    }
    Ok(keydir)
}

fn load_hints(path: &Path, id: SegmentId, keydir: &mut HashMap<Vec<u8>, KeyLocation>) -> io::Result<()> {
    let mut r = BufReader::new(File::open(path)?);
    let mut fixed = [0u8; 4 + 8 + 4 + 8];
    loop {
        if read_full(&mut r, &mut fixed)? < fixed.len() {
            break;
        }
        let klen = u32::from_le_bytes(fixed[0..4].try_into().unwrap()) as usize;
        let offset = u64::from_le_bytes(fixed[4..12].try_into().unwrap());
        let len = u32::from_le_bytes(fixed[12..16].try_into().unwrap());
        let seq = u64::from_le_bytes(fixed[16..24].try_into().unwrap());
        let mut key = vec![0u8; klen];
        r.read_exact(&mut key)?;
        let loc = KeyLocation { segment: id, offset, len, seq };
        match keydir.get(&key) {
            Some(existing) if existing.seq > seq => {}
            _ => {
                keydir.insert(key, loc);
            }
        }
    }
    Ok(())
}

/// Reads a single value given its location; used by the read path and by
/// verification after compaction.
pub fn read_at(dir: &Path, loc: &KeyLocation) -> Result<Record, CompactError> {
    let mut f = File::open(dir.join(loc.segment.file_name()))?;
    f.seek(SeekFrom::Start(loc.offset))?;
    let mut buf = vec![0u8; loc.len as usize];
    f.read_exact(&mut buf)?;
    let mut reader = SegmentReader {
        id: loc.segment,
        reader: BufReader::new(File::open(dir.join(loc.segment.file_name()))?),
        offset: loc.offset,
    };
    reader.reader.seek(SeekFrom::Start(loc.offset))?;
    match reader.next_record()? {
        Some((_, rec)) => Ok(rec),
        None => Err(CompactError::Corrupt { segment: loc.segment, offset: loc.offset, reason: "truncated" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("driftkv-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn put(key: &str, val: &str, seq: u64) -> Record {
        Record { seq, timestamp: 0, key: key.as_bytes().to_vec(), value: Some(val.as_bytes().to_vec()) }
    }

    #[test]
    fn crc_known_vector() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn roundtrip_record() {
        let dir = tmpdir("roundtrip");
        let mut w = SegmentWriter::create(&dir, SegmentId(1)).unwrap();
        w.append(&put("alpha", "one", 1)).unwrap();
        w.append(&Record { seq: 2, timestamp: 5, key: b"beta".to_vec(), value: None }).unwrap();
        w.finish(&dir).unwrap();

        let mut r = SegmentReader::open(&dir, SegmentId(1)).unwrap();
        let (_, a) = r.next_record().unwrap().unwrap();
        assert_eq!(a.value.as_deref(), Some(&b"one"[..]));
        let (_, b) = r.next_record().unwrap().unwrap();
        assert!(b.value.is_none());
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn compaction_keeps_latest() {
        let dir = tmpdir("latest");
        for (id, recs) in [(1u64, vec![put("k", "v1", 1), put("x", "a", 2)]), (2, vec![put("k", "v2", 3)])] {
            let mut w = SegmentWriter::create(&dir, SegmentId(id)).unwrap();
            for r in &recs {
                w.append(r).unwrap();
            }
            w.finish(&dir).unwrap();
        }
        let keydir: KeyDir = Arc::new(RwLock::new(rebuild_keydir(&dir).unwrap()));
        let mut st = BTreeMap::new();
        for id in [1, 2] {
            st.insert(SegmentId(id), SegmentStats { total_bytes: 100, dead_bytes: 60, tombstones: 0, sealed_at: Some(SystemTime::now()) });
        }
        let c = Compactor::new(
            &dir,
            Arc::clone(&keydir),
            Arc::new(Mutex::new(st)),
            Arc::new(AtomicU64::new(10)),
            Arc::new(AtomicU64::new(99)),
            CompactionPolicy::default(),
        );
        let report = c.run_once().unwrap();
        assert_eq!(report.records_written, 2);
        let kd = keydir.read().unwrap();
        let rec = read_at(&dir, kd.get(&b"k".to_vec()).unwrap()).unwrap();
        assert_eq!(rec.value.unwrap(), b"v2");
    }
}
