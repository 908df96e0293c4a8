//! The slot table: stable slot addresses for a pool whose size can change.
//!
//! Slots live in segments that double in size and are never freed before the
//! table, so a `&Slot` stays valid for the table's lifetime and lock-free
//! readers need no hazard pointers. Segment 0 exists from the start; later
//! segments are created on first use through `OnceLock` (no `unsafe`).

use std::sync::OnceLock;

use crate::slot::{Slot, SlotId};
use crate::sync::{AtomicUsize, Ordering};

const BASE_BITS: u32 = 5;
pub(crate) const BASE: usize = 1 << BASE_BITS;
pub(crate) const SEGMENTS: usize = 24;

#[derive(Debug)]
pub struct SlotTable<T> {
    segments: [OnceLock<Box<[Slot<T>]>>; SEGMENTS],
    /// One past the highest slot index ever handed out.
    high_water: AtomicUsize,
}

/// (segment, offset) of a slot index.
#[inline]
pub(crate) fn locate(index: usize) -> (usize, usize) {
    let j = index + BASE;
    let seg = (usize::BITS - 1 - j.leading_zeros() - BASE_BITS) as usize;
    (seg, j - (BASE << seg))
}

impl<T> Default for SlotTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SlotTable<T> {
    pub fn new() -> Self {
        let table = Self {
            segments: std::array::from_fn(|_| OnceLock::new()),
            high_water: AtomicUsize::new(0),
        };
        table.segment(0);
        table
    }

    fn segment(&self, seg: usize) -> &[Slot<T>] {
        self.segments[seg].get_or_init(|| (0..(BASE << seg)).map(|_| Slot::new()).collect())
    }

    /// Slots that may be in use: `0..len()`.
    #[inline]
    pub fn len(&self) -> usize {
        self.high_water.load(Ordering::Acquire)
    }

    #[inline]
    pub fn get(&self, id: SlotId) -> Option<&Slot<T>> {
        let (seg, off) = locate(id as usize);
        self.segments.get(seg)?.get().and_then(|s| s.get(off))
    }

    /// A new slot index past the high-water mark (its slot starts `Free`).
    pub fn extend(&self) -> Option<(SlotId, &Slot<T>)> {
        let index = self.high_water.fetch_add(1, Ordering::AcqRel);
        let (seg, off) = locate(index);
        if seg >= SEGMENTS {
            self.high_water.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let id = SlotId::try_from(index).ok()?;
        Some((id, &self.segment(seg)[off]))
    }

    /// Slots `0..len()` with their ids, lowest first.
    #[inline]
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (SlotId, &Slot<T>)> + '_ {
        (0..self.len()).filter_map(move |i| {
            let id = i as SlotId;
            self.get(id).map(|s| (id, s))
        })
    }

    /// Every slot once, starting at `start` and wrapping around (from 0 if
    /// `start` is past the end): where a checkout looks for an idle slot.
    #[inline]
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (SlotId, &Slot<T>)> + '_ {
        let len = self.len();
        let start = if start < len { start } else { 0 };
        (0..len).filter_map(move |i| {
            let j = i + start;
            let id = (if j >= len { j - len } else { j }) as SlotId;
            self.get(id).map(|s| (id, s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_indexes_without_gaps() {
        let mut expected = (0usize, 0usize);
        for i in 0..5000 {
            let got = locate(i);
            assert_eq!(got, expected, "index {i}");
            expected.1 += 1;
            if expected.1 == BASE << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn extend_grows_across_segments() {
        let t: SlotTable<u8> = SlotTable::new();
        for i in 0..100u32 {
            let (id, _) = t.extend().unwrap();
            assert_eq!(id, i);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.iter().count(), 100);
    }

    #[test]
    fn iter_from_visits_every_slot_once_from_start() {
        let t: SlotTable<u8> = SlotTable::new();
        for _ in 0..5 {
            t.extend().unwrap();
        }
        let ids = |start| t.iter_from(start).map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(0), vec![0, 1, 2, 3, 4]);
        assert_eq!(ids(3), vec![3, 4, 0, 1, 2]);
        assert_eq!(ids(5), vec![0, 1, 2, 3, 4], "past the end: from 0");
        assert_eq!(ids(99), vec![0, 1, 2, 3, 4]);
    }
}
