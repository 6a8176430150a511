//! The invalid-transactions feed: every tx found invalid, once, with a monotonic sequence number,
//! so a poller that passes back the cursor it was given never misses nor repeats an entry.
//!
//! History is bounded: the oldest entries are dropped first. A cursor older than what is kept
//! (or one this process never issued, e.g. from before a restart) gets everything kept, with
//! `truncated: true` so the poller knows it may have missed entries. Sequence numbers start at
//! the process's start time in microseconds, so a cursor from an earlier run is always older
//! than anything this run issues and is recognised as such.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::B256;
use serde::Serialize;
use tokio::sync::watch;

/// One invalid tx.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedEntry {
    /// Sequence number (the cursor that returns this entry first).
    #[serde(skip)]
    pub seq: u64,
    /// Tx hash.
    pub hash: B256,
    /// The supervisor-style error code (or `-32602` for a malformed access list).
    pub code: i64,
    /// Why, in words.
    pub reason: String,
    /// When the revalidator found it (unix seconds).
    pub detected_at: u64,
    /// The failing message (chain, block, log index), when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// One answer to a poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedPage {
    /// Entries from the cursor on, oldest first.
    pub entries: Vec<FeedEntry>,
    /// The cursor to pass next time.
    #[serde(with = "alloy_serde::quantity")]
    pub cursor: u64,
    /// The oldest cursor still served.
    #[serde(with = "alloy_serde::quantity")]
    pub oldest_cursor: u64,
    /// True when entries the poller had not seen may have been dropped (its cursor was older
    /// than the history kept, or not issued by this process).
    pub truncated: bool,
    /// True when more entries are waiting (the page was full).
    pub more: bool,
}

/// The bounded feed.
#[derive(Debug)]
pub struct Feed {
    entries: VecDeque<FeedEntry>,
    base: u64,
    next: u64,
    capacity: usize,
    /// The next sequence number, sent on every publish: push subscribers wait on it instead of
    /// polling (see [`super::push`]).
    published: watch::Sender<u64>,
}

impl Feed {
    /// An empty feed keeping at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        let base =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(1);
        Self::with_base(capacity, base)
    }

    /// An empty feed whose first sequence number is `base` (tests).
    pub fn with_base(capacity: usize, base: u64) -> Self {
        Self {
            entries: VecDeque::with_capacity(capacity.min(1024)),
            base,
            next: base,
            capacity: capacity.max(1),
            published: watch::Sender::new(base),
        }
    }

    /// Appends an entry and returns its sequence number.
    pub fn publish(&mut self, mut entry: FeedEntry) -> u64 {
        entry.seq = self.next;
        self.next += 1;
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.published.send_replace(self.next);
        self.next - 1
    }

    /// A receiver that changes whenever an entry is published (its value: the next sequence
    /// number). Subscribe before reading from a cursor, so nothing published in between is missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The oldest sequence number still kept (the next one when empty).
    pub fn oldest(&self) -> u64 {
        self.entries.front().map_or(self.next, |e| e.seq)
    }

    /// The sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Entries from `cursor` (`None`: from the oldest kept), at most `limit`.
    pub fn read(&self, cursor: Option<u64>, limit: usize) -> FeedPage {
        let oldest = self.oldest();
        let (start, truncated) = match cursor {
            None => (oldest, oldest > self.base),
            Some(c) if c < oldest || c > self.next => (oldest, true),
            Some(c) => (c, false),
        };
        let skip = (start - oldest) as usize;
        let entries: Vec<FeedEntry> = self.entries.iter().skip(skip).take(limit).cloned().collect();
        let cursor = entries.last().map_or(start, |e| e.seq + 1);
        FeedPage { more: cursor < self.next, entries, cursor, oldest_cursor: oldest, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> FeedEntry {
        FeedEntry {
            seq: 0,
            hash: B256::with_last_byte(i),
            code: -320600,
            reason: "x".into(),
            detected_at: 1,
            data: None,
        }
    }

    #[test]
    fn cursor_walks_every_entry_once_and_reports_truncation() {
        let mut f = Feed::with_base(3, 100);
        let p = f.read(None, 10);
        assert_eq!((p.entries.len(), p.cursor, p.truncated, p.more), (0, 100, false, false));
        for i in 0..2 {
            f.publish(entry(i));
        }
        let p = f.read(Some(100), 1);
        assert_eq!((p.entries[0].hash, p.cursor, p.more), (B256::with_last_byte(0), 101, true));
        let p = f.read(Some(p.cursor), 10);
        assert_eq!((p.entries.len(), p.cursor, p.more), (1, 102, false));
        assert!(f.read(Some(102), 10).entries.is_empty());
        // Two more: capacity 3 drops seq 100.
        f.publish(entry(2));
        f.publish(entry(3));
        let p = f.read(Some(102), 10);
        assert_eq!(p.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![102, 103]);
        assert!(!p.truncated);
        let p = f.read(Some(100), 10);
        assert_eq!((p.entries.len(), p.oldest_cursor, p.truncated), (3, 101, true));
        // A cursor from another run (older base, or never issued) restarts from the oldest kept.
        assert!(f.read(Some(5), 10).truncated);
        assert!(f.read(Some(1_000), 10).truncated);
        assert!(f.read(None, 10).truncated);
    }
}
