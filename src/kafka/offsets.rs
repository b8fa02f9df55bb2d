//! In-order offset tracking. Messages of one partition finish out of order (lanes run
//! concurrently), but an offset may be stored only once it and every offset before it are
//! done, or a crash would skip unfinished work.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct Offsets {
    parts: Mutex<HashMap<(String, i32), BTreeMap<i64, bool>>>,
}

impl Offsets {
    pub fn track(&self, topic: &str, partition: i32, offset: i64) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts
            .entry((topic.to_owned(), partition))
            .or_default()
            .insert(offset, false);
    }

    /// Marks `offset` done. Returns the highest offset below which everything is done, if
    /// that moved: the offset to store.
    pub fn complete(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let pending = parts.get_mut(&(topic.to_owned(), partition))?;
        *pending.get_mut(&offset)? = true;
        let mut last = None;
        while let Some(entry) = pending.first_entry() {
            if !*entry.get() {
                break;
            }
            last = Some(*entry.key());
            entry.remove();
        }
        last
    }

    /// Drops a partition's state (revoked): late completions for it are ignored.
    pub fn forget(&self, topic: &str, partition: i32) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.remove(&(topic.to_owned(), partition));
    }

    pub fn in_flight(&self) -> usize {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_contiguous_completions() {
        let o = Offsets::default();
        for off in 10..15 {
            o.track("t", 0, off);
        }
        assert_eq!(o.complete("t", 0, 12), None);
        assert_eq!(o.complete("t", 0, 11), None);
        assert_eq!(o.complete("t", 0, 10), Some(12));
        assert_eq!(o.complete("t", 0, 14), None);
        assert_eq!(o.complete("t", 0, 13), Some(14));
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn forgotten_partitions_ignore_late_completions() {
        let o = Offsets::default();
        o.track("t", 1, 5);
        o.forget("t", 1);
        assert_eq!(o.complete("t", 1, 5), None);
        o.track("t", 1, 5);
        assert_eq!(o.complete("t", 1, 5), Some(5));
    }
}
