//! The sliding windows behind the trip rules. Every update is lock-free and O(1) in traffic;
//! memory is bounded by the window's size, never by the number of calls.

use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Calls, failures and slow calls seen by a window at one point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
    Consecutive(Consecutive),
}

impl Window {
    /// Records one counted (not ignored) call. Returns the counts after it, or `None` when the
    /// counts cannot have moved toward a trip (nothing changed, or the record was stale).
    #[inline]
    pub(crate) fn record(&self, failure: bool, slow: bool, now: Option<Instant>) -> Option<Counts> {
        match self {
            Window::Count(w) => w.record(failure, slow),
            Window::Time(w) => {
                let now = now.unwrap_or_else(crate::sync::now);
                w.record(failure, slow, now)
            }
            Window::Consecutive(w) => w.record(failure),
        }
    }

    /// The counts now (for time windows, the buckets still inside the window at `now`).
    pub(crate) fn counts(&self, now: Instant) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
            Window::Consecutive(w) => w.counts(),
        }
    }

    /// Empties the window (on a transition to closed, or a reset).
    pub(crate) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
            Window::Consecutive(w) => w.clear(),
        }
    }

    /// True when recording needs the current time.
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

// ---------------------------------------------------------------------------------------------
// Count window: a ring of the last N outcomes and one packed aggregate.
//
// Each slot holds one outcome (bit 0 = a call, bit 1 = failure, bit 2 = slow). A record takes a
// ticket, swaps its outcome into slot `ticket % N` and adds (new - old) to the aggregate. Since
// the aggregate only ever moves by what a swap put in minus what it took out, it equals the sum
// of the slots whenever no record is in flight: no outcome is lost or counted twice, whatever the
// interleaving. The aggregate packs three 21-bit fields, each offset by `BIAS`, so that a field
// that dips below zero for an instant (two records racing on one slot) cannot borrow from its
// neighbour; a reader clamps each field to `0..=N`.
//
// Orderings: the invariant rests on each swap and fetch_add being atomic read-modify-writes,
// which any ordering gives; no other memory is published through the window. The Acquire
// loads and AcqRel updates below only keep one thread's record, clear and read in program
// order with the others' (the loom models check the invariant with them). The ticket is
// Relaxed: it only spreads records over the slots.

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const BIAS: u64 = 1 << 19;
const FAILURE_SHIFT: u32 = FIELD_BITS;
const SLOW_SHIFT: u32 = 2 * FIELD_BITS;
const ZERO: u64 = BIAS | (BIAS << FAILURE_SHIFT) | (BIAS << SLOW_SHIFT);

/// The largest count window: the biased fields must hold `N` plus any transient excess.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1_000_000;

const SLOT_CALL: u8 = 1;
const SLOT_FAILURE: u8 = 2;
const SLOT_SLOW: u8 = 4;

#[inline]
fn slot_value(failure: bool, slow: bool) -> u8 {
    SLOT_CALL | (failure as u8 * SLOT_FAILURE) | (slow as u8 * SLOT_SLOW)
}

#[inline]
fn packed(slot: u8) -> u64 {
    let s = slot as u64;
    (s & 1) | (((s >> 1) & 1) << FAILURE_SHIFT) | (((s >> 2) & 1) << SLOW_SHIFT)
}

pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    size: u32,
    /// `u64::MAX / size + 1`, for a remainder by multiplication (Lemire's fastmod): a hardware
    /// division costs more than the rest of a record.
    magic: u64,
    /// The aggregate of a window holding `size` successes and nothing else.
    all_successes: u64,
    ticket: AtomicU32,
    aggregate: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.clamp(1, MAX_COUNT_WINDOW);
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            size,
            magic: (u64::MAX / size as u64).wrapping_add(1),
            all_successes: ZERO + size as u64,
            ticket: AtomicU32::new(0),
            aggregate: AtomicU64::new(ZERO),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) -> Option<Counts> {
        if !failure && !slow && self.aggregate.load(Ordering::Acquire) == self.all_successes {
            // Every slot holds a success: another success evicts one and takes its place, so
            // the window is the same whichever slot it would take. Skipping the ticket keeps
            // the steady state of a healthy upstream free of any write. (A failure racing
            // with this sees the same slots and counts as it would have.)
            return None;
        }
        let value = slot_value(failure, slow);
        let index = self.index(self.ticket.fetch_add(1, Ordering::Relaxed));
        // `index < size` (see `index`), so the slot exists.
        let slot = &self.slots[index as usize];
        // Same outcome in as out: the counts do not move, and writing the same value would
        // change nothing another writer could see (a racing writer accounts against what the
        // slot holds), so skip the write and keep the cache line clean.
        if slot.load(Ordering::Acquire) == value {
            return None;
        }
        let old = slot.swap(value, Ordering::AcqRel);
        if old == value {
            return None;
        }
        let delta = packed(value).wrapping_sub(packed(old));
        let before = self.aggregate.fetch_add(delta, Ordering::AcqRel);
        Some(self.decode(before.wrapping_add(delta)))
    }

    /// `ticket % size`, by multiplication: exact for every u32 ticket and size (Lemire,
    /// "Faster Remainder by Direct Computation", 2019).
    #[inline]
    fn index(&self, ticket: u32) -> u32 {
        let low = self.magic.wrapping_mul(ticket as u64);
        ((low as u128 * self.size as u128) >> 64) as u32
    }

    fn decode(&self, word: u64) -> Counts {
        let field = |shift: u32| {
            let biased = (word >> shift) & FIELD_MASK;
            biased.saturating_sub(BIAS).min(self.size as u64) as u32
        };
        Counts {
            calls: field(0),
            failures: field(FAILURE_SHIFT),
            slow: field(SLOW_SHIFT),
        }
    }

    fn counts(&self) -> Counts {
        self.decode(self.aggregate.load(Ordering::Acquire))
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            if old != 0 {
                self.aggregate
                    .fetch_add(packed(old).wrapping_neg(), Ordering::AcqRel);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time window: B buckets of `window / B` each, indexed by epoch (time since origin / bucket
// length). A bucket packs a 16-bit epoch tag and three 16-bit counts in one word, so a record is
// one CAS. When the epoch moves on, the thread that advances `last_epoch` rotates every bucket
// it passed over to the new tags, so each bucket's tag is always within the last B epochs of
// `last_epoch`; `rotate` reads tags relative to `last_epoch`, so a 16-bit tag is never mistaken
// for one 65,536 epochs old (a gap that long is only ambiguous for a bucket that another thread
// rotates at the same instant, which costs at most that one record). Readers count
// only buckets whose tag lies inside the window at their own `now`, so the window ages out even
// when no calls arrive. A bucket that reaches 65,535 calls stops counting for the rest of its
// epoch: the rates stay exact for the calls sampled.
//
// Orderings: `last_epoch` is advanced (AcqRel) before the buckets it passed over are swept,
// and every bucket update is a compare-and-swap of the whole word (tag and counts), so a
// record can never add to a bucket of another epoch whatever ordering it sees; Acquire on the
// loads of `last_epoch` gives `rotate` a sweep at least as recent as the one it reasons about.

const TAG_SHIFT: u32 = 48;
const COUNT_MASK: u64 = 0xFFFF;
const MAX_BUCKET_CALLS: u64 = 0xFFFF;

/// The most buckets a time window may have.
pub(crate) const MAX_BUCKETS: u32 = 64;

pub(crate) struct TimeWindow {
    origin: Instant,
    bucket_nanos: u64,
    buckets: Box<[AtomicU64]>,
    last_epoch: AtomicU64,
}

#[inline]
fn tag_of(epoch: u64) -> u64 {
    epoch & 0xFFFF
}

/// How many epochs `tag` lies behind `current` (mod 2^16), or `None` when it is ahead.
#[inline]
fn tag_age(current: u64, tag: u64) -> Option<u64> {
    let age = current.wrapping_sub(tag) & 0xFFFF;
    (age < 0x8000).then_some(age)
}

impl TimeWindow {
    pub(crate) fn new(origin: Instant, length: Duration, buckets: u32) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let nanos = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
        Self {
            origin,
            bucket_nanos: (nanos / buckets as u64).max(1),
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            last_epoch: AtomicU64::new(0),
        }
    }

    #[inline]
    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX) / self.bucket_nanos
    }

    #[inline]
    fn bucket(&self, epoch: u64) -> &AtomicU64 {
        // The modulo keeps the index below the number of buckets.
        &self.buckets[(epoch % self.buckets.len() as u64) as usize]
    }

    /// Moves `bucket` forward to `epoch`'s tag (emptied) unless it is already there or newer.
    /// Returns the bucket's word for `epoch`, or `None` when the bucket has moved past it.
    ///
    /// `last` is a value of `last_epoch` read before: every bucket was swept up to it, so a
    /// bucket whose tag lies in the window ending at `last` is older than any later epoch, even
    /// after a gap so long that the 16-bit tags have wrapped around.
    #[inline]
    fn rotate(&self, bucket: &AtomicU64, epoch: u64, last: u64, mut word: u64) -> Option<u64> {
        let tag = tag_of(epoch);
        let n = self.buckets.len() as u64;
        loop {
            let current = word >> TAG_SHIFT;
            // Checked before equality: after a gap of about 65,536 epochs an old bucket's tag
            // can equal this epoch's, and its counts must not come back.
            let swept_before =
                epoch > last && tag_age(tag_of(last), current).is_some_and(|a| a < n);
            if current == tag && !swept_before {
                return Some(word);
            }
            let older = swept_before || tag_age(tag, current).is_some_and(|a| a > 0);
            if !older {
                // The bucket already belongs to a later epoch.
                return None;
            }
            match bucket.compare_exchange_weak(
                word,
                tag << TAG_SHIFT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(tag << TAG_SHIFT),
                Err(actual) => word = actual,
            }
        }
    }

    /// Moves `last_epoch` to `epoch`; the thread that does sweeps the buckets it passed over.
    /// Returns the `last_epoch` read before.
    fn advance(&self, epoch: u64) -> u64 {
        let last = self.last_epoch.load(Ordering::Acquire);
        if last >= epoch {
            return last;
        }
        if self
            .last_epoch
            .compare_exchange(last, epoch, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread moved it; that thread sweeps.
            return last;
        }
        let n = self.buckets.len() as u64;
        let first = (last + 1).max(epoch.saturating_sub(n - 1));
        for e in first..=epoch {
            let bucket = self.bucket(e);
            let word = bucket.load(Ordering::Acquire);
            let _ = self.rotate(bucket, e, last, word);
        }
        last
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool, now: Instant) -> Option<Counts> {
        let epoch = self.epoch(now);
        let last = self.advance(epoch);
        let bucket = self.bucket(epoch);
        let add = 1 | ((failure as u64) << 16) | ((slow as u64) << 32);
        let mut word = bucket.load(Ordering::Acquire);
        loop {
            let Some(base) = self.rotate(bucket, epoch, last, word) else {
                // This call's epoch has already left the window.
                return None;
            };
            if base & COUNT_MASK >= MAX_BUCKET_CALLS {
                return None;
            }
            match bucket.compare_exchange_weak(
                base,
                base + add,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        Some(self.sum(epoch))
    }

    fn sum(&self, epoch: u64) -> Counts {
        let n = self.buckets.len() as u64;
        let last = self.last_epoch.load(Ordering::Acquire);
        if epoch >= last.saturating_add(n) {
            // Nothing was recorded for a whole window: every bucket is stale.
            return Counts::default();
        }
        let current = tag_of(epoch);
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let word = bucket.load(Ordering::Acquire);
            match tag_age(current, word >> TAG_SHIFT) {
                Some(age) if age < n => {
                    let field = |shift: u32| ((word >> shift) & COUNT_MASK) as u32;
                    counts.calls = counts.calls.saturating_add(field(0));
                    counts.failures = counts.failures.saturating_add(field(16));
                    counts.slow = counts.slow.saturating_add(field(32));
                }
                _ => {}
            }
        }
        counts
    }

    fn counts(&self, now: Instant) -> Counts {
        self.sum(self.epoch(now))
    }

    fn clear(&self) {
        for bucket in self.buckets.iter() {
            // Keep the tag, drop the counts: records racing with the clear land in the new
            // generation's window, which is what they are (see `Shared::record`).
            let mut word = bucket.load(Ordering::Acquire);
            loop {
                let cleared = word & !((1 << TAG_SHIFT) - 1);
                match bucket.compare_exchange_weak(
                    word,
                    cleared,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => word = actual,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consecutive failures: one counter, reset by any success. (Orderings: the counter publishes
// nothing else; a success's store racing a failure's increment loses one or the other, as two
// calls finishing together may in either order.)

pub(crate) struct Consecutive {
    failures: AtomicU64,
}

impl Consecutive {
    pub(crate) fn new() -> Self {
        Self {
            failures: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn record(&self, failure: bool) -> Option<Counts> {
        if failure {
            let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            Some(Counts {
                calls: n,
                failures: n,
                slow: 0,
            })
        } else {
            // Read before writing so that a run of successes does not bounce the cache line.
            if self.failures.load(Ordering::Acquire) != 0 {
                self.failures.store(0, Ordering::Release);
            }
            None
        }
    }

    fn counts(&self) -> Counts {
        let n = u32::try_from(self.failures.load(Ordering::Acquire)).unwrap_or(u32::MAX);
        Counts {
            calls: n,
            failures: n,
            slow: 0,
        }
    }

    pub(crate) fn clear(&self) {
        self.failures.store(0, Ordering::Release);
    }
}

#[cfg(all(test, tower_breaker_loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The aggregate equals the sum of the slots once every record has finished, for every
    /// interleaving: no outcome is lost or counted twice, even when writers race on one slot.
    #[test]
    fn count_aggregate_matches_its_slots() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(2));
            let w1 = window.clone();
            let w2 = window.clone();
            let t1 = thread::spawn(move || {
                w1.record(true, false);
                w1.record(false, true);
            });
            let t2 = thread::spawn(move || {
                w2.record(true, true);
            });
            t1.join().unwrap();
            t2.join().unwrap();
            let mut expected = Counts::default();
            for slot in window.slots.iter() {
                let v = slot.load(Ordering::Acquire);
                expected.calls += (v & SLOT_CALL != 0) as u32;
                expected.failures += (v & SLOT_FAILURE != 0) as u32;
                expected.slow += (v & SLOT_SLOW != 0) as u32;
            }
            assert_eq!(window.counts(), expected);
            assert_eq!(expected.calls, 2);
        });
    }

    /// The all-successes shortcut racing a failure: the failure is counted once and the
    /// aggregate still equals the slots.
    #[test]
    fn success_shortcut_racing_a_failure_stays_consistent() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(2));
            window.record(false, false);
            window.record(false, false);
            let w1 = window.clone();
            let t1 = thread::spawn(move || {
                w1.record(false, false);
            });
            window.record(true, false);
            t1.join().unwrap();
            let failures: u32 = window
                .slots
                .iter()
                .map(|s| ((s.load(Ordering::Acquire) >> 1) & 1) as u32)
                .sum();
            let c = window.counts();
            assert_eq!((c.calls, c.failures), (2, failures));
            assert_eq!(failures, 1);
        });
    }

    /// A clear racing with a record leaves the aggregate equal to the slots.
    #[test]
    fn clear_racing_a_record_stays_consistent() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(2));
            window.record(true, false);
            let w1 = window.clone();
            let t1 = thread::spawn(move || {
                w1.record(true, false);
            });
            window.clear();
            t1.join().unwrap();
            let calls: u32 = window
                .slots
                .iter()
                .map(|s| (s.load(Ordering::Acquire) & 1) as u32)
                .sum();
            let failures: u32 = window
                .slots
                .iter()
                .map(|s| ((s.load(Ordering::Acquire) >> 1) & 1) as u32)
                .sum();
            assert_eq!(window.counts().calls, calls);
            assert_eq!(window.counts().failures, failures);
        });
    }

    /// Two writers in one bucket: both calls are counted.
    #[test]
    fn time_bucket_counts_every_record() {
        loom::model(|| {
            let origin = Instant::now();
            let window = Arc::new(TimeWindow::new(origin, Duration::from_secs(3600), 2));
            let w1 = window.clone();
            let t1 = thread::spawn(move || {
                w1.record(true, false, origin);
            });
            window.record(false, false, origin);
            t1.join().unwrap();
            let c = window.counts(origin);
            assert_eq!((c.calls, c.failures), (2, 1));
        });
    }
}

#[cfg(all(test, not(tower_breaker_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fastmod_is_the_remainder() {
        for size in [1u32, 2, 3, 7, 10, 100, 999, 65_536, 1_000_000] {
            let w = CountWindow::new(size);
            for ticket in (0..5_000u32).chain([u32::MAX, u32::MAX - 1, 1 << 31, 123_456_789]) {
                assert_eq!(w.index(ticket), ticket % size, "{ticket} % {size}");
            }
        }
    }
}
