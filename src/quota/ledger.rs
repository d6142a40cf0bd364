//! What a key's admitted calls were charged, in admission order: the baseline a provider's
//! report is measured from.
//!
//! A provider's `remaining` on the answer to call D counts D and every call it processed before
//! D; the calls admitted here after D it had not seen yet. So the level here is `remaining`
//! less the charges of the calls admitted after D ([`Ledger::since`]). A charge can change
//! after admission: a call cancelled while it waits gives its share back, a 429 costs no
//! tokens, the usage an answer reports replaces the estimate. Such a change moves the charges
//! that come after D only when the changed call itself came after D: a refund of a call
//! admitted *before* D must not shift D's baseline (the provider's report never counted that
//! call, and D's mark already did).
//!
//! So the admitted totals only grow, each call has a sequence number, and the changes are kept
//! with the number of the call they belong to, as long as a call admitted before them is alive
//! (only its report can need them).

use std::collections::VecDeque;

/// The most changes kept for calls still alive. A caller that holds a permit for very long
/// (or leaks it) only costs that permit's report some precision: the oldest changes go first.
const MAX_CHANGES: usize = 4_096;

/// The most calls tracked from the oldest alive on. Beyond it the oldest is forgotten (as if
/// released), so a permit held for very long (or leaked) does not grow the queue without bound.
const MAX_TRACKED: usize = 65_536;

/// Where the admitted totals stood just after a call was admitted, and its number.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Mark {
    pub(crate) seq: u64,
    pub(crate) requests: f64,
    pub(crate) tokens: f64,
}

/// A change to the charge of the call numbered `seq`, after its admission.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Change {
    seq: u64,
    requests: f64,
    tokens: f64,
}

/// One key's record of admitted calls.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    next_seq: u64,
    /// Requests and tokens charged at admission, summed; never lowered.
    requests: f64,
    tokens: f64,
    /// The calls from the oldest still alive (admitted, not yet dropped) on, in admission
    /// order: `(seq, alive)`. A queue, not a set: numbers come in order, so a call is found by
    /// binary search, and the memory is reused from call to call.
    live: VecDeque<(u64, bool)>,
    /// Changes that a live call admitted before them may still need.
    changes: VecDeque<Change>,
}

impl Ledger {
    /// Records a call admitted with these charges; it stays alive until
    /// [`release`](Self::release).
    pub(crate) fn admit(&mut self, requests: f64, tokens: f64) -> Mark {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.requests += requests;
        self.tokens += tokens;
        self.live.push_back((seq, true));
        if self.live.len() > MAX_TRACKED {
            self.live.pop_front();
            self.pop_released();
        }
        Mark {
            seq,
            requests: self.requests,
            tokens: self.tokens,
        }
    }

    /// A number for a change that belongs to no call of this governor (a correction made by
    /// hand): it counts for the calls admitted before it, as a call admitted now would.
    pub(crate) fn fresh_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The number of the last call admitted, if any.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// The charges of the calls admitted after `mark`, as they stand now.
    pub(crate) fn since(&self, mark: &Mark) -> (f64, f64) {
        self.changes.iter().filter(|c| c.seq > mark.seq).fold(
            (self.requests - mark.requests, self.tokens - mark.tokens),
            |(r, t), c| (r + c.requests, t + c.tokens),
        )
    }

    /// The call numbered `seq` is charged `requests` and `tokens` more (negative: less).
    pub(crate) fn change(&mut self, seq: u64, requests: f64, tokens: f64) {
        let needed = self.oldest_alive().is_some_and(|oldest| oldest < seq);
        if needed && (requests != 0.0 || tokens != 0.0) {
            self.changes.push_back(Change {
                seq,
                requests,
                tokens,
            });
            if self.changes.len() > MAX_CHANGES {
                self.prune();
                while self.changes.len() > MAX_CHANGES {
                    self.changes.pop_front();
                }
            }
        }
    }

    /// The call numbered `seq` is gone: no report of it will come.
    pub(crate) fn release(&mut self, seq: u64) {
        if let Ok(i) = self.live.binary_search_by_key(&seq, |&(s, _)| s) {
            self.live[i].1 = false;
        }
        self.pop_released();
        if self.changes.len() > 64 || self.live.is_empty() {
            self.prune();
        }
    }

    fn pop_released(&mut self) {
        while self.live.front().is_some_and(|&(_, alive)| !alive) {
            self.live.pop_front();
        }
    }

    /// The number of the oldest call still alive (the front is kept alive by `release`).
    fn oldest_alive(&self) -> Option<u64> {
        self.live.front().map(|&(seq, _)| seq)
    }

    fn prune(&mut self) {
        match self.oldest_alive() {
            None => self.changes.clear(),
            Some(oldest) => self.changes.retain(|c| c.seq > oldest),
        }
    }

    #[cfg(test)]
    pub(crate) fn changes_kept(&self) -> usize {
        self.changes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_before_the_mark_does_not_move_it() {
        let mut ledger = Ledger::default();
        let a = ledger.admit(1.0, 500.0);
        let b = ledger.admit(1.0, 500.0);
        ledger.change(a.seq, -1.0, -500.0);
        ledger.release(a.seq);
        assert_eq!(ledger.since(&b), (0.0, 0.0), "A came before B");
        let c = ledger.admit(1.0, 300.0);
        ledger.change(c.seq, 0.0, -100.0);
        assert_eq!(
            ledger.since(&b),
            (1.0, 200.0),
            "C came after B: its charge now"
        );
    }

    #[test]
    fn calls_released_out_of_order_leave_the_oldest_alive_in_front() {
        let mut ledger = Ledger::default();
        let marks: Vec<Mark> = (0..4).map(|_| ledger.admit(1.0, 1.0)).collect();
        ledger.release(marks[2].seq);
        ledger.release(marks[0].seq);
        assert_eq!(ledger.oldest_alive(), Some(marks[1].seq));
        ledger.change(marks[3].seq, 0.0, 2.0);
        assert_eq!(
            ledger.since(&marks[1]),
            (2.0, 4.0),
            "calls 2 and 3, 3 now charged 3"
        );
        ledger.release(marks[1].seq);
        assert_eq!(ledger.oldest_alive(), Some(marks[3].seq));
        ledger.release(marks[3].seq);
        assert_eq!((ledger.oldest_alive(), ledger.changes_kept()), (None, 0));
    }

    #[test]
    fn changes_are_dropped_once_no_earlier_call_is_alive() {
        let mut ledger = Ledger::default();
        let a = ledger.admit(1.0, 10.0);
        let b = ledger.admit(1.0, 10.0);
        ledger.change(b.seq, 0.0, 5.0);
        assert_eq!(ledger.changes_kept(), 1);
        ledger.change(a.seq, 0.0, 5.0);
        assert_eq!(ledger.changes_kept(), 1, "no call before A to need it");
        ledger.release(a.seq);
        ledger.release(b.seq);
        assert_eq!(ledger.changes_kept(), 0);
    }
}
