//! The state word: a tag, a generation and a payload packed in 64 bits (see the layout in
//! the parent module's docs), the half-open round's probe tallies packed in its payload, and
//! the ticket a call carries from admission to its outcome.

use crate::circuit_breaker::CircuitState;
use std::time::Duration;

const TAG_MASK: u64 = 0b111;

/// The state a word is in: its low 3 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
    Disabled = 4,
    MetricsOnly = 5,
    /// Payload: the time the cool-down ends (same generation as the closed state).
    RateLimited = 6,
}

const PAYLOAD_SHIFT: u32 = 3;
const PAYLOAD_MASK: u64 = (1 << 40) - 1;
const GEN_SHIFT: u32 = 43;
const GEN_MASK: u64 = (1 << 21) - 1;
const PROBE_BITS: u32 = 10;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;
pub(super) const DEADLINE_GEN_SHIFT: u32 = 43;
pub(super) const DEADLINE_MS_MASK: u64 = (1 << DEADLINE_GEN_SHIFT) - 1;
/// A permit admitted this many generations ago or more is stale, whatever the 21-bit
/// generation in the state word says (it may have wrapped around to the permit's). See
/// `Shared::is_stale` for why this makes the check exact.
pub(super) const MAX_TICKET_AGE: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Word(pub(super) u64);

impl Word {
    #[inline]
    pub(super) fn new(tag: Tag, generation: u32, payload: u64) -> Self {
        Word(
            ((generation as u64 & GEN_MASK) << GEN_SHIFT)
                | ((payload & PAYLOAD_MASK) << PAYLOAD_SHIFT)
                | tag as u64,
        )
    }

    #[inline]
    pub(super) fn tag(self) -> Tag {
        // Only `new` writes a word, from a `Tag`: the bits are 0 to 6.
        match self.0 & TAG_MASK {
            0 => Tag::Closed,
            1 => Tag::Open,
            2 => Tag::HalfOpen,
            3 => Tag::ForcedOpen,
            4 => Tag::Disabled,
            5 => Tag::MetricsOnly,
            _ => Tag::RateLimited,
        }
    }

    #[inline]
    pub(super) fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }

    #[inline]
    pub(super) fn payload(self) -> u64 {
        (self.0 >> PAYLOAD_SHIFT) & PAYLOAD_MASK
    }

    #[inline]
    pub(super) fn next_generation(self) -> u32 {
        ((self.generation() as u64 + 1) & GEN_MASK) as u32
    }

    pub(super) fn probes(self) -> Probes {
        let p = self.payload();
        let field = |i: u32| ((p >> (i * PROBE_BITS)) & PROBE_MASK) as u32;
        Probes {
            admitted: field(0),
            settled: field(1),
            failures: field(2),
            slow: field(3),
        }
    }

    pub(super) fn state(self) -> CircuitState {
        match self.tag() {
            Tag::Closed => CircuitState::Closed,
            Tag::Open => CircuitState::Open,
            Tag::HalfOpen => CircuitState::HalfOpen,
            Tag::ForcedOpen => CircuitState::ForcedOpen,
            Tag::Disabled => CircuitState::Disabled,
            Tag::MetricsOnly => CircuitState::MetricsOnly,
            Tag::RateLimited => CircuitState::RateLimited,
        }
    }
}

/// The tallies of one half-open round. Each is at most `MAX_PERMITTED_IN_HALF_OPEN` (< 1024).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Probes {
    pub(super) admitted: u32,
    pub(super) settled: u32,
    pub(super) failures: u32,
    pub(super) slow: u32,
}

impl Probes {
    pub(super) fn pack(self) -> u64 {
        let f = |v: u32, i: u32| (v as u64 & PROBE_MASK) << (i * PROBE_BITS);
        f(self.admitted, 0) | f(self.settled, 1) | f(self.failures, 2) | f(self.slow, 3)
    }
}

/// What an admitted call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Closed or metrics-only: recorded into the window.
    Normal,
    /// Half-open: holds one probe slot of its round.
    Probe,
    /// Disabled: records nothing.
    Passthrough,
}

/// What the upstream said beyond the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    None,
    /// A rate limit (429): start a cool-down of this long (or the default).
    RateLimited(Option<Duration>),
    /// The server's own wait (503 + Retry-After): if this outcome opens the breaker, stay
    /// open at least this long.
    ServerWait(Duration),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) generation: u32,
    pub(crate) kind: Kind,
    /// The count of generations (`Core::generations`, 64 bits) when admitted.
    pub(crate) epoch: u64,
}
