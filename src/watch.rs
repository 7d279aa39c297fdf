//! Watch: the KV service's puts and deletes (and any service's events) as an ordered,
//! resumable stream, keyed by the log index of their entry (`version`).
//!
//! Every node keeps the most recent events of its *own* applied log in a bounded
//! in-memory history ([`WatchHub`]), fed by the state machine under the state lock, so
//! a reader that saw version `V` and watches from `V + 1` misses nothing. Watchers pull
//! from that history with a cursor: there is no per-watcher queue, so a slow watcher
//! costs no memory; once the history has moved past its cursor it gets
//! [`WatchError::Compacted`] (with the oldest version still available) and can resume
//! from there or re-read. A snapshot installed from the leader replaces the state
//! wholesale, so it compacts the history to the snapshot's index: the events it skipped
//! are unknown here, and a watcher is told rather than silently skipping them.
//!
//! The guarantees, as etcd's: ordered by version; within the retained history no gaps
//! and no duplicates; all events of one entry delivered together; resumable from any
//! retained version.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The KV map (braft's `?map=`); `""` is the one `/v1/kv` uses. Other services may
    /// use their own name here.
    pub map: String,
    pub key: String,
    /// The new value of a put; `None` for a delete.
    pub value: Option<Bytes>,
    /// The log index of the entry that made the change.
    pub version: u64,
}

impl WatchEvent {
    fn bytes(&self) -> usize {
        // A fixed overhead per event, so that many empty values still count.
        64 + self.map.len() + self.key.len() + self.value.as_ref().map_or(0, |v| v.len())
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The events from the requested version are no longer held (the history moved on,
    /// or a snapshot replaced the state). Resume from `oldest`, or re-read and watch
    /// from the version read.
    #[error("compacted: events before version {oldest} are no longer available")]
    Compacted { oldest: u64 },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
}

/// How long a served watch (SSE, gRPC) goes idle before a progress message: under the
/// promised 5 s.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(4);

/// What a served watch sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// The events of one or more whole entries.
    Events(Vec<WatchEvent>),
    /// Nothing matched: every change through this version has been delivered.
    Progress(u64),
}

/// A stream of events, for applications that embed a node ([`crate::Node::watch`]).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, WatchError>> + Send>>;

/// How much history a node keeps (`BRAFT_WATCH_HISTORY`, `BRAFT_WATCH_HISTORY_BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let c = crate::config::Config::default();
        Self {
            events: c.watch_history,
            bytes: c.watch_history_bytes,
        }
    }
}

/// The retained events and the bounds on them.
struct History {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    /// Every event of every version from here through `applied` is retained.
    oldest: u64,
    /// The last applied log index.
    applied: u64,
}

/// One node's event history.
pub(crate) struct WatchHub {
    history: Mutex<History>,
    /// Bumped whenever events arrive or the history is reset; watchers wait on it.
    changed: watch::Sender<u64>,
    max_events: usize,
    max_bytes: usize,
    /// Watchers alive now (for `braft_watchers`).
    watchers: std::sync::atomic::AtomicU64,
}

/// At most this many events are copied out of the history per pull.
const BATCH: usize = 1024;

impl WatchHub {
    /// An empty history whose state starts at `applied` (a restored snapshot's index).
    pub fn new(applied: u64, limits: Limits) -> Self {
        Self {
            history: Mutex::new(History {
                events: VecDeque::new(),
                bytes: 0,
                oldest: applied + 1,
                applied,
            }),
            changed: watch::channel(applied).0,
            max_events: limits.events.max(1),
            max_bytes: limits.bytes,
            watchers: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the entry at `version` and its events (none for most non-KV entries).
    pub fn publish(&self, version: u64, events: Vec<WatchEvent>) {
        let mut h = self.lock();
        h.applied = h.applied.max(version);
        if events.is_empty() {
            return;
        }
        for e in events {
            h.bytes += e.bytes();
            h.events.push_back(e);
        }
        // Evict whole entries from the front: a watcher gets all of an entry or is told
        // it is compacted, never half.
        while h.events.len() > self.max_events || h.bytes > self.max_bytes {
            let Some(v) = h.events.front().map(|e| e.version) else {
                break;
            };
            while h.events.front().is_some_and(|e| e.version == v) {
                let e = h.events.pop_front().expect("front exists");
                h.bytes -= e.bytes();
            }
            h.oldest = v + 1;
        }
        drop(h);
        self.changed.send_replace(version);
    }

    /// The state was replaced by a snapshot at `applied`: the events before it are
    /// unknown here.
    pub fn reset(&self, applied: u64) {
        let mut h = self.lock();
        h.events.clear();
        h.bytes = 0;
        h.oldest = applied + 1;
        h.applied = applied;
        drop(h);
        self.changed.send_replace(applied);
    }

    /// The last applied index.
    pub fn applied(&self) -> u64 {
        self.lock().applied
    }

    /// How many watchers are open.
    pub fn watchers(&self) -> u64 {
        self.watchers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The oldest version a watch may start from.
    pub fn oldest(&self) -> u64 {
        self.lock().oldest
    }

    /// Copies the events from `from` that pass `filter`, up to about [`BATCH`] (never
    /// splitting an entry), and the version through which they were scanned.
    fn read(&self, from: u64, filter: &Filter) -> Result<(Vec<WatchEvent>, u64), WatchError> {
        let h = self.lock();
        if from < h.oldest {
            return Err(WatchError::Compacted { oldest: h.oldest });
        }
        let start = h.events.partition_point(|e| e.version < from);
        let mut out: Vec<WatchEvent> = Vec::new();
        for e in h.events.range(start..) {
            if out.len() >= BATCH && out.last().is_some_and(|l| l.version != e.version) {
                let through = out.last().map_or(from, |l| l.version);
                return Ok((out, through));
            }
            if filter.matches(e) {
                out.push(e.clone());
            }
        }
        Ok((out, h.applied.max(from.saturating_sub(1))))
    }

    /// A watcher from `from` (`None`: the next version to be applied).
    pub fn watcher(
        self: &std::sync::Arc<Self>,
        map: &str,
        prefix: &str,
        from: Option<u64>,
        shutdown: watch::Receiver<bool>,
    ) -> Watcher {
        let mut changed = self.changed.subscribe();
        changed.mark_changed();
        self.watchers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Watcher {
            hub: self.clone(),
            filter: Filter {
                map: map.to_string(),
                prefix: prefix.to_string(),
            },
            next: from.unwrap_or_else(|| self.applied() + 1).max(1),
            changed,
            shutdown,
        }
    }
}

struct Filter {
    map: String,
    prefix: String,
}

impl Filter {
    fn matches(&self, e: &WatchEvent) -> bool {
        e.map == self.map && e.key.starts_with(&self.prefix)
    }
}

/// A cursor into a node's event history.
pub struct Watcher {
    hub: std::sync::Arc<WatchHub>,
    filter: Filter,
    /// The next version to deliver.
    next: u64,
    changed: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.hub.watchers.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Watcher {
    /// Events available now (possibly none), advancing the cursor past them.
    pub fn poll_now(&mut self) -> Result<Vec<WatchEvent>, WatchError> {
        let (events, through) = self.hub.read(self.next, &self.filter)?;
        self.next = through + 1;
        Ok(events)
    }

    /// Waits for the next events (one or more whole entries).
    pub async fn next_batch(&mut self) -> Result<Vec<WatchEvent>, WatchError> {
        loop {
            if *self.shutdown.borrow() {
                return Err(WatchError::Closed);
            }
            // Mark the newest change seen *before* reading, so a publish right after
            // the read still wakes us.
            self.changed.borrow_and_update();
            let events = self.poll_now()?;
            if !events.is_empty() {
                return Ok(events);
            }
            tokio::select! {
                r = self.changed.changed() => if r.is_err() { return Err(WatchError::Closed) },
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// What is there now: events, or progress naming the version the watch stands at.
    /// Entries without events never wake a watcher, so this also catches its cursor up.
    pub fn now(&mut self) -> Result<WatchItem, WatchError> {
        let events = self.poll_now()?;
        Ok(if events.is_empty() {
            WatchItem::Progress(self.progress())
        } else {
            WatchItem::Events(events)
        })
    }

    /// The next events, or progress once `idle` passes without any: what a served
    /// watch sends.
    pub async fn next_or_progress(&mut self, idle: std::time::Duration) -> Result<WatchItem, WatchError> {
        match tokio::time::timeout(idle, self.next_batch()).await {
            Ok(batch) => batch.map(WatchItem::Events),
            Err(_) => self.now(),
        }
    }

    /// Every event through this version has been delivered.
    pub fn progress(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// This watcher as a stream of single events; ends after an error.
    pub fn into_stream(self) -> WatchStream {
        let state = (self, VecDeque::<WatchEvent>::new(), false);
        Box::pin(futures::stream::unfold(state, |(mut w, mut queue, done)| async move {
            if let Some(e) = queue.pop_front() {
                return Some((Ok(e), (w, queue, done)));
            }
            if done {
                return None;
            }
            match w.next_batch().await {
                Ok(batch) => {
                    queue.extend(batch);
                    let e = queue.pop_front().expect("a batch is never empty");
                    Some((Ok(e), (w, queue, false)))
                }
                Err(e) => Some((Err(e), (w, queue, true))),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn put(version: u64, key: &str) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            map: String::new(),
            key: key.into(),
            value: Some(Bytes::from_static(b"v")),
            version,
        }
    }

    fn keys(events: &[WatchEvent]) -> Vec<(u64, &str)> {
        events.iter().map(|e| (e.version, e.key.as_str())).collect()
    }

    /// A watcher sees its prefix's events in version order, resumes from any retained
    /// version, and is told `Compacted` (with the oldest retained version) once the
    /// history has moved past it: never a silent gap.
    #[test]
    fn ordered_resumable_and_compaction_is_explicit() {
        let hub = Arc::new(WatchHub::new(
            0,
            Limits {
                events: 4,
                bytes: 1 << 20,
            },
        ));
        let (_tx, rx) = watch::channel(false);
        hub.publish(1, vec![put(1, "a/1")]);
        hub.publish(2, vec![]); // a blank entry
        hub.publish(3, vec![put(3, "b/1"), put(3, "a/2")]);
        let mut w = hub.watcher("", "a/", Some(1), rx.clone());
        assert_eq!(keys(&w.poll_now().unwrap()), vec![(1, "a/1"), (3, "a/2")]);
        assert_eq!(w.progress(), 3);
        assert!(w.poll_now().unwrap().is_empty());
        let mut late = hub.watcher("", "", Some(3), rx.clone());
        assert_eq!(keys(&late.poll_now().unwrap()), vec![(3, "b/1"), (3, "a/2")]);

        // Two more entries push version 1 and then all of version 3 out (4 events max,
        // whole entries evicted).
        hub.publish(4, vec![put(4, "a/3")]);
        hub.publish(5, vec![put(5, "a/4"), put(5, "a/5")]);
        assert_eq!(hub.oldest(), 4);
        let mut stale = hub.watcher("", "a/", Some(3), rx.clone());
        assert_eq!(stale.poll_now(), Err(WatchError::Compacted { oldest: 4 }));
        assert_eq!(keys(&w.poll_now().unwrap()), vec![(4, "a/3"), (5, "a/4"), (5, "a/5")]);

        // A snapshot install compacts everything before it.
        hub.reset(9);
        assert_eq!(w.poll_now(), Err(WatchError::Compacted { oldest: 10 }));
        let mut fresh = hub.watcher("", "", None, rx);
        hub.publish(10, vec![put(10, "z")]);
        assert_eq!(keys(&fresh.poll_now().unwrap()), vec![(10, "z")]);
    }

    /// The byte bound holds too, and a waiting watcher wakes on a publish.
    #[tokio::test]
    async fn bytes_are_bounded_and_waiters_wake() {
        let hub = Arc::new(WatchHub::new(
            0,
            Limits {
                events: 1_000_000,
                bytes: 1_000,
            },
        ));
        for v in 1..=100 {
            hub.publish(v, vec![put(v, "k")]);
        }
        assert!(hub.lock().bytes <= 1_000);
        assert!(hub.oldest() > 1);
        let (_tx, rx) = watch::channel(false);
        let mut w = hub.watcher("", "", None, rx);
        let waiter = tokio::spawn(async move { w.next_batch().await });
        tokio::task::yield_now().await;
        hub.publish(101, vec![put(101, "late")]);
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(keys(&got), vec![(101, "late")]);
    }
}
