//! [`WalLogStore`]: the log as a segmented, checksummed write-ahead log.
//!
//! Why our own instead of a crate: a Raft log needs only append-at-the-end, cut the
//! tail, drop the head, and read a range by index — and a single append plus its fsync
//! is on the critical path of every write (the follower's fsync is between the leader's
//! two round trips). redb, a B-tree with copy-on-write commits, paid about twice the
//! latency of a plain file for one small append here (docs/NOTES.md, "the log store");
//! the embedded LSMs measured as fast bring compaction threads and far more code than
//! this file. Kept narrow, it is one file that fsyncs once per batch.
//!
//! Layout, in the directory the store owns:
//! - `LOCK`: held with `flock` while open, so two nodes cannot share the directory.
//! - `00000000000000000001.seg`, ...: segments, written in sequence order, each at most
//!   [`SEGMENT_BYTES`] unless a single batch is larger. A segment is a magic header then
//!   records: `crc32 | len | kind | index | payload`, the checksum covering everything
//!   after itself. Kinds: an entry (its log index), or the commit hint (`MetaKey::
//!   Committed`), which rides along with the next append instead of costing an fsync.
//! - `meta`: the durable cells (vote, last purged) and the purge point, rewritten
//!   atomically (temp file, fsync, rename, fsync the directory). They change at
//!   elections and snapshots, not per write.
//!
//! Opening replays every segment. A record that is torn or fails its checksum at the end
//! of the newest segment is what a crash during an append leaves (that append was never
//! acknowledged), so the segment is cut there; anywhere else it is corruption, and
//! opening fails naming the file.
//!
//! Mutations (append, truncate, purge, put_meta) must come from one thread at a time —
//! the log writer in `raft::log` is that thread. Reads may run alongside them: an
//! append writes and fsyncs beyond the end readers know without holding the state lock.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LogStore, MetaKey, RawEntry, StoreError};

/// A segment is closed and a new one started once it would grow past this.
pub const SEGMENT_BYTES: u64 = 64 << 20;

const SEGMENT_MAGIC: &[u8; 8] = b"BRFTWAL1";
const META_MAGIC: &[u8; 8] = b"BRFTMET1";
/// crc32 (4) + payload length (4) + kind (1) + index (8).
const HEADER: usize = 17;
const KIND_ENTRY: u8 = 1;
const KIND_COMMITTED: u8 = 2;

/// A [`LogStore`] in a directory of segment files.
pub struct WalLogStore {
    dir: PathBuf,
    /// Serializes mutations (held for the whole call); `state` is held only briefly.
    writer: Mutex<()>,
    state: Mutex<State>,
    /// Holds the directory's `flock` for as long as the store lives.
    _lock: File,
}

impl std::fmt::Debug for WalLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalLogStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

struct Segment {
    file: Arc<File>,
    /// Bytes of valid records (plus the header): where the next record goes.
    len: u64,
}

/// Where one entry's record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u64,
    offset: u64,
    /// The payload's length (the record is `HEADER` bytes longer).
    len: u32,
}

/// The durable cells, as the `meta` file holds them.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    #[serde(with = "serde_bytes")]
    vote: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    last_purged: Option<Vec<u8>>,
    /// Every entry up to here was purged: one that replay finds is dropped.
    purged_upto: Option<u64>,
}

struct State {
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to (the highest sequence number).
    active: u64,
    /// The index of `locs[0]`.
    first: u64,
    locs: VecDeque<Loc>,
    meta: Meta,
    committed: Option<Vec<u8>>,
    /// The commit hint changed since it was last written to a segment.
    committed_dirty: bool,
}

impl State {
    fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first + self.locs.len() as u64 - 1)
    }
}

fn io_err(what: &Path, e: std::io::Error) -> StoreError {
    if super::is_disk_full(&e) {
        StoreError::DiskFull(format!("{}: {e}", what.display()))
    } else {
        StoreError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", what.display())))
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// One record, ready to write.
fn encode_record(out: &mut Vec<u8>, kind: u8, index: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record read back: `(kind, index, payload range within buf)`, or `None` where the
/// bytes at `at` are not a whole, valid record.
fn decode_record(buf: &[u8], at: usize) -> Option<(u8, u64, std::ops::Range<usize>, usize)> {
    let head = buf.get(at..at + HEADER)?;
    let crc = u32::from_le_bytes(head[0..4].try_into().ok()?);
    let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let kind = head[8];
    let index = u64::from_le_bytes(head[9..17].try_into().ok()?);
    let end = at.checked_add(HEADER)?.checked_add(len)?;
    let body = buf.get(at + 4..end)?;
    if crc32fast::hash(body) != crc || !matches!(kind, KIND_ENTRY | KIND_COMMITTED) {
        return None;
    }
    Some((kind, index, at + HEADER..end, end))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))
}

impl WalLogStore {
    /// Opens the log in `dir`, creating the directory (and a first segment) if absent.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            // The new directory's own entry must survive a crash, or the log would.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Engine(format!(
                "{}: the log is already open in another process or node",
                dir.display()
            )));
        }
        let meta = read_meta(&dir.join("meta"))?;
        let mut seqs = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let name = e.map_err(|e| io_err(dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut st = State {
            segments: BTreeMap::new(),
            active: 0,
            first: 0,
            locs: VecDeque::new(),
            meta,
            committed: None,
            committed_dirty: false,
        };
        for (k, &seq) in seqs.iter().enumerate() {
            replay(dir, seq, k + 1 == seqs.len(), &mut st)?;
        }
        // Entries purged before the crash may still sit in a segment that was not
        // deleted yet.
        if let Some(upto) = st.meta.purged_upto {
            drop_upto(&mut st, upto);
        }
        let store = Self {
            dir: dir.to_path_buf(),
            writer: Mutex::new(()),
            state: Mutex::new(st),
            _lock: lock,
        };
        let mut st = store.lock();
        if st.segments.is_empty() {
            store.roll(&mut st)?;
        }
        drop(st);
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data that every method leaves consistent before it can
        // fail, so a panic elsewhere while holding the lock does not spoil it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serial(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new active segment: header, then the commit hint, fsynced, and the
    /// directory fsynced so that the file itself survives a crash.
    fn roll(&self, st: &mut State) -> Result<(), StoreError> {
        let seq = st.segments.keys().next_back().map_or(1, |s| s + 1);
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let mut head = SEGMENT_MAGIC.to_vec();
        if let Some(c) = &st.committed {
            encode_record(&mut head, KIND_COMMITTED, 0, c);
        }
        let written = file.write_all_at(&head, 0).and_then(|_| file.sync_data());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&path, e));
        }
        sync_dir(&self.dir)?;
        st.segments.insert(
            seq,
            Segment {
                file: Arc::new(file),
                len: head.len() as u64,
            },
        );
        st.active = seq;
        st.committed_dirty = false;
        Ok(())
    }

    /// Writes `buf` at the end of the active segment and fsyncs it, without holding
    /// the state lock. Returns the offset it was written at. On failure the segment is
    /// cut back, so that the same write can be tried again.
    fn write_tail(&self, buf: &[u8]) -> Result<(u64, u64), StoreError> {
        let mut st = self.lock();
        let active = &st.segments[&st.active];
        if active.len > SEGMENT_MAGIC.len() as u64 && active.len + buf.len() as u64 > SEGMENT_BYTES {
            self.roll(&mut st)?;
        }
        let seq = st.active;
        let seg = &st.segments[&seq];
        let (file, at) = (seg.file.clone(), seg.len);
        drop(st);
        if let Err(e) = file.write_all_at(buf, at).and_then(|_| file.sync_data()) {
            // Best effort: the next write goes to `at` again in any case.
            let _ = file.set_len(at);
            return Err(io_err(&self.dir.join(segment_name(seq)), e));
        }
        Ok((seq, at))
    }

    fn save_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        let body = rmp_serde::to_vec(meta).map_err(|e| StoreError::Engine(e.to_string()))?;
        let mut out = META_MAGIC.to_vec();
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        let tmp = self.dir.join("meta.tmp");
        let path = self.dir.join("meta");
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&out)?;
            f.sync_all()
        });
        written.map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(&self.dir)
    }

    /// Writes the commit hint into the active segment if it changed since.
    fn flush_committed(&self) -> Result<(), StoreError> {
        self.write_batch(&[])
    }

    /// Writes `entries` (contiguous after the last one; the caller checked) at the end of
    /// the log in one write and one fsync, preceded by the commit hint if it changed
    /// since it was last written. With no entries, only a changed hint is written.
    fn write_batch(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError> {
        let hint = {
            let st = self.lock();
            st.committed_dirty.then(|| st.committed.clone()).flatten()
        };
        if entries.is_empty() && hint.is_none() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|(_, b)| b.len() + HEADER).sum::<usize>() + 64);
        if let Some(c) = &hint {
            encode_record(&mut buf, KIND_COMMITTED, 0, c);
        }
        let mut offsets = Vec::with_capacity(entries.len());
        for (i, bytes) in entries {
            offsets.push((buf.len() as u64, bytes.len() as u32));
            encode_record(&mut buf, KIND_ENTRY, *i, bytes);
        }
        let (seq, at) = self.write_tail(&buf)?;
        let mut st = self.lock();
        if let (true, Some((first, _))) = (st.locs.is_empty(), entries.first()) {
            st.first = *first;
        }
        for (off, len) in offsets {
            st.locs.push_back(Loc {
                seg: seq,
                offset: at + off,
                len,
            });
        }
        if let Some(s) = st.segments.get_mut(&seq) {
            s.len = at + buf.len() as u64;
        }
        if hint.is_some() {
            st.committed_dirty = false;
        }
        Ok(())
    }

    /// Deletes the segments that hold no live entry, except the active one.
    fn drop_dead_segments(&self, st: &mut State) {
        let keep_from = st.locs.front().map_or(st.active, |l| l.seg);
        let dead: Vec<u64> = st.segments.range(..keep_from).map(|(s, _)| *s).collect();
        for seq in dead {
            st.segments.remove(&seq);
            // A segment that survives a crash here is harmless: the purge point in
            // `meta` (already durable) drops its entries at the next open.
            let _ = std::fs::remove_file(self.dir.join(segment_name(seq)));
        }
    }
}

fn read_meta(path: &Path) -> Result<Meta, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(io_err(path, e)),
    };
    let corrupt = || StoreError::Engine(format!("{}: the log's metadata file is corrupt", path.display()));
    if bytes.len() < 12 || &bytes[..8] != META_MAGIC {
        return Err(corrupt());
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| corrupt())?);
    if crc32fast::hash(&bytes[12..]) != crc {
        return Err(corrupt());
    }
    rmp_serde::from_slice(&bytes[12..]).map_err(|_| corrupt())
}

/// Drops every entry up to and including `upto` from the in-memory index.
fn drop_upto(st: &mut State, upto: u64) {
    while !st.locs.is_empty() && st.first <= upto {
        st.locs.pop_front();
        st.first += 1;
    }
    if st.locs.is_empty() {
        st.first = st.first.max(upto.saturating_add(1));
    }
}

/// Whether the bad record at `at`, in the newest segment, is what a crash during an
/// append leaves: a record that runs past the end of the file, the last record of the
/// file failing its checksum, or a tail of zeros (the file grew but the data never
/// reached the disk). A bad record with whole records after it is corruption instead:
/// cutting there would drop entries that were acknowledged.
fn torn(buf: &[u8], at: usize) -> bool {
    let rest = &buf[at..];
    if rest.len() < HEADER || rest.iter().all(|b| *b == 0) {
        return true;
    }
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    HEADER.saturating_add(len) >= rest.len()
}

/// Reads segment `seq` into the index. `newest`: a bad tail is a torn append, cut off.
fn replay(dir: &Path, seq: u64, newest: bool, st: &mut State) -> Result<(), StoreError> {
    let path = dir.join(segment_name(seq));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(|e| io_err(&path, e))?;
    let corrupt = |at: usize| {
        StoreError::Engine(format!(
            "{}: the log is corrupt at byte {at} (a record fails its checksum)",
            path.display()
        ))
    };
    if buf.len() < SEGMENT_MAGIC.len() || &buf[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        // A crash between creating a segment and writing its header leaves it short.
        if newest && buf.len() < SEGMENT_MAGIC.len() && SEGMENT_MAGIC.starts_with(&buf) {
            file.write_all_at(SEGMENT_MAGIC, 0)
                .and_then(|_| file.set_len(SEGMENT_MAGIC.len() as u64))
                .and_then(|_| file.sync_all())
                .map_err(|e| io_err(&path, e))?;
            buf = SEGMENT_MAGIC.to_vec();
        } else {
            return Err(corrupt(0));
        }
    }
    let mut at = SEGMENT_MAGIC.len();
    while at < buf.len() {
        let Some((kind, index, payload, next)) = decode_record(&buf, at) else {
            if newest && torn(&buf, at) {
                tracing::warn!(file = %path.display(), at, dropped = buf.len() - at, "cutting a torn append off the log's tail");
                file.set_len(at as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| io_err(&path, e))?;
                break;
            }
            return Err(corrupt(at));
        };
        match kind {
            KIND_COMMITTED => st.committed = Some(buf[payload].to_vec()),
            _ => {
                let loc = Loc {
                    seg: seq,
                    offset: at as u64,
                    len: (payload.end - payload.start) as u32,
                };
                match st.last_index() {
                    None => {
                        st.first = index;
                        st.locs.push_back(loc);
                    }
                    Some(last) if index == last + 1 => st.locs.push_back(loc),
                    // Rewritten after a truncation that this replay has not seen cut.
                    Some(_) if index >= st.first && index <= st.last_index().unwrap_or(0) => {
                        st.locs.truncate((index - st.first) as usize);
                        st.locs.push_back(loc);
                    }
                    // After a purge past the end, the log went on further up.
                    Some(last) if st.meta.purged_upto.is_some_and(|p| p >= last) || index < st.first => {
                        st.locs.clear();
                        st.first = index;
                        st.locs.push_back(loc);
                    }
                    Some(last) => {
                        return Err(StoreError::Engine(format!(
                            "{}: the log skips from index {last} to {index}",
                            path.display()
                        )))
                    }
                }
            }
        }
        at = next;
    }
    let len = at.min(buf.len()) as u64;
    st.segments.insert(
        seq,
        Segment {
            file: Arc::new(file),
            len,
        },
    );
    st.active = seq;
    Ok(())
}

impl LogStore for WalLogStore {
    fn append(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let _w = self.serial();
        if let Some(last) = self.lock().last_index() {
            if entries[0].0 != last + 1 {
                return Err(StoreError::Invalid(format!(
                    "append at {} after last entry {last}",
                    entries[0].0
                )));
            }
        }
        self.write_batch(entries)
    }

    fn truncate_after(&self, after: Option<u64>) -> Result<(), StoreError> {
        let _w = self.serial();
        let mut st = self.lock();
        let keep = match after {
            None => 0,
            Some(a) if a < st.first => 0,
            Some(a) => (a - st.first + 1) as usize,
        };
        if keep >= st.locs.len() {
            return Ok(());
        }
        let cut = st.locs[keep];
        // Later segments go first, newest first, so that a crash part way leaves a
        // log that is a prefix of the old one; then the cut segment is shortened.
        let later: Vec<u64> = st.segments.range(cut.seg + 1..).map(|(s, _)| *s).rev().collect();
        for seq in &later {
            let path = self.dir.join(segment_name(*seq));
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            st.segments.remove(seq);
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        let path = self.dir.join(segment_name(cut.seg));
        let seg = st.segments.get_mut(&cut.seg).expect("an entry's segment is open");
        seg.file
            .set_len(cut.offset)
            .and_then(|_| seg.file.sync_all())
            .map_err(|e| io_err(&path, e))?;
        seg.len = cut.offset;
        st.active = cut.seg;
        st.locs.truncate(keep);
        // The hint written after the cut is gone with it; write it again next time.
        st.committed_dirty = st.committed.is_some();
        Ok(())
    }

    fn purge_upto(&self, upto: u64) -> Result<(), StoreError> {
        let _w = self.serial();
        let mut st = self.lock();
        if st.meta.purged_upto.is_some_and(|p| p >= upto) {
            return Ok(());
        }
        let mut meta = st.meta.clone();
        meta.purged_upto = Some(upto);
        // Durable first: once the purge point is on disk, the entries up to it are
        // gone whatever happens to the segment files below.
        self.save_meta(&meta)?;
        st.meta = meta;
        drop_upto(&mut st, upto);
        self.drop_dead_segments(&mut st);
        Ok(())
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, StoreError> {
        let st = self.lock();
        let Some(last) = st.last_index() else {
            return Ok(Vec::new());
        };
        let (lo, hi) = (start.max(st.first), end.min(last + 1));
        let mut out = Vec::with_capacity(hi.saturating_sub(lo) as usize);
        let mut i = lo;
        while i < hi {
            // One read for the run of entries that sit back to back in one segment.
            let first = st.locs[(i - st.first) as usize];
            let mut j = i + 1;
            let mut span_end = first.offset + HEADER as u64 + first.len as u64;
            while j < hi {
                let l = st.locs[(j - st.first) as usize];
                if l.seg != first.seg || l.offset != span_end || span_end - first.offset > (4 << 20) {
                    break;
                }
                span_end = l.offset + HEADER as u64 + l.len as u64;
                j += 1;
            }
            let path = || self.dir.join(segment_name(first.seg));
            let mut buf = vec![0; (span_end - first.offset) as usize];
            st.segments[&first.seg]
                .file
                .read_exact_at(&mut buf, first.offset)
                .map_err(|e| io_err(&path(), e))?;
            let mut at = 0;
            for index in i..j {
                match decode_record(&buf, at) {
                    Some((KIND_ENTRY, got, payload, next)) if got == index => {
                        out.push((index, buf[payload].to_vec()));
                        at = next;
                    }
                    _ => {
                        return Err(StoreError::Engine(format!(
                            "{}: entry {index} fails its checksum",
                            path().display()
                        )))
                    }
                }
            }
            i = j;
        }
        Ok(out)
    }

    fn last_entry(&self) -> Result<Option<RawEntry>, StoreError> {
        let last = self.lock().last_index();
        match last {
            None => Ok(None),
            Some(l) => Ok(self.read_range(l, l + 1)?.pop()),
        }
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        let _w = self.serial();
        if key == MetaKey::Committed {
            // A restart hint: it rides along with the next write instead of costing an
            // fsync of its own (see `LogStore::put_meta`).
            let mut st = self.lock();
            st.committed = Some(value.to_vec());
            st.committed_dirty = true;
            return Ok(());
        }
        let mut meta = self.lock().meta.clone();
        match key {
            MetaKey::Vote => meta.vote = Some(value.to_vec()),
            MetaKey::LastPurged => meta.last_purged = Some(value.to_vec()),
            MetaKey::Committed => unreachable!("handled above"),
        }
        // A durable write carries the pending commit hint with it, as the contract says.
        self.flush_committed()?;
        self.save_meta(&meta)?;
        self.lock().meta = meta;
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        let st = self.lock();
        Ok(match key {
            MetaKey::Vote => st.meta.vote.clone(),
            MetaKey::LastPurged => st.meta.last_purged.clone(),
            MetaKey::Committed => st.committed.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, format!("entry-{i}").into_bytes())).collect()
    }

    fn append(s: &WalLogStore, v: &[(u64, Vec<u8>)]) {
        let b: Vec<(u64, &[u8])> = v.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        s.append(&b).unwrap();
    }

    /// The WAL keeps the `LogStore` contract.
    #[test]
    fn wal_store_passes_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        crate::store::conformance::run_all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::new(WalLogStore::open(&dir.path().join(format!("wal-{i}"))).unwrap())
        });
    }

    /// Everything durable is there after the store is closed and opened again: entries
    /// across several segments, a truncation, a purge, the vote, and the commit hint
    /// that rode along with a later append.
    #[test]
    fn wal_store_survives_reopen_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 9 << 20];
        {
            let s = WalLogStore::open(dir.path()).unwrap();
            // 10 entries of 9 MiB: two segments at least.
            for i in 1..=10u64 {
                s.append(&[(i, &big[..])]).unwrap();
            }
            s.put_meta(MetaKey::Vote, b"vote-1").unwrap();
            s.truncate_after(Some(8)).unwrap();
            append(&s, &entries(9..=12));
            s.purge_upto(3).unwrap();
            s.put_meta(MetaKey::Committed, b"c-11").unwrap();
            append(&s, &entries(13..=13));
            assert!(s.lock().segments.len() >= 2);
        }
        let s = WalLogStore::open(dir.path()).unwrap();
        let got = s.read_range(0, 100).unwrap();
        assert_eq!(
            got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (4..=13).collect::<Vec<_>>()
        );
        assert_eq!(got[0].1, big);
        assert_eq!(got[5].1, b"entry-9");
        assert_eq!(s.get_meta(MetaKey::Vote).unwrap(), Some(b"vote-1".to_vec()));
        assert_eq!(s.get_meta(MetaKey::Committed).unwrap(), Some(b"c-11".to_vec()));
        assert_eq!(s.last_entry().unwrap(), Some((13, b"entry-13".to_vec())));
    }

    /// A crash in the middle of an append leaves a torn record at the tail: the next
    /// open cuts it off and keeps everything before it. A damaged record anywhere else
    /// is corruption, and opening fails with the file's name.
    #[test]
    fn a_torn_tail_is_cut_and_corruption_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = WalLogStore::open(dir.path()).unwrap();
            append(&s, &entries(1..=5));
        }
        let seg = dir.path().join(segment_name(1));
        let full = std::fs::metadata(&seg).unwrap().len();
        // Tear the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        {
            let s = WalLogStore::open(dir.path()).unwrap();
            assert_eq!(s.last_entry().unwrap().map(|e| e.0), Some(4));
            append(&s, &entries(5..=6));
            assert_eq!(s.read_range(1, 7).unwrap().len(), 6);
        }
        // Flip a byte in the second record's payload, then add a segment after it.
        let f = OpenOptions::new().read(true).write(true).open(&seg).unwrap();
        let at = (SEGMENT_MAGIC.len() + HEADER + b"entry-1".len() + HEADER + 2) as u64;
        f.write_all_at(b"X", at).unwrap();
        let err = WalLogStore::open(dir.path()).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("corrupt") || err.contains("skips"), "{err}");
        let mut next = SEGMENT_MAGIC.to_vec();
        encode_record(&mut next, KIND_ENTRY, 7, b"entry-7");
        std::fs::write(dir.path().join(segment_name(2)), next).unwrap();
        let err = WalLogStore::open(dir.path()).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(&segment_name(1)) && err.contains("corrupt"), "{err}");
    }

    /// One directory, one open store: a second open fails while the first lives.
    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = WalLogStore::open(dir.path()).unwrap();
        let err = WalLogStore::open(dir.path()).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("already open"), "{err}");
        drop(s);
        WalLogStore::open(dir.path()).unwrap();
    }
}
