//! [`TraceParent`]: the W3C trace context (`traceparent`) a saga carries from its caller
//! through every broker message, so its spans on every replica share one trace id.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The W3C header (and saga metadata key) carrying the trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A W3C `traceparent`: `{version}-{trace id}-{parent id}-{flags}`, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
///
/// The trace id names the whole distributed trace (every span of the saga on every replica and
/// in every upstream service that propagates it); the parent id names the span that sent it.
/// Parsing is strict about the format and never panics: anything else is `None`, and a new
/// trace is started in its place, as the W3C recommendation says.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// A traceparent with these ids and flags; `None` if an id is zero (invalid in W3C).
    pub fn new(trace_id: u128, parent_id: u64, flags: u8) -> Option<Self> {
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace: random trace and parent ids, sampled.
    pub fn generate() -> Self {
        let high = random_u64();
        let low = random_u64();
        Self {
            trace_id: (u128::from(high) << 64 | u128::from(low)).max(1),
            parent_id: random_u64().max(1),
            flags: SAMPLED,
        }
    }

    /// The same trace with a fresh parent id: what a span of this process sends on.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_u64().max(1),
            ..*self
        }
    }

    /// Parses a `traceparent` value. Version `00` must be exactly 55 characters; a later
    /// version is read by its first four fields (forward compatibility); version `ff`, upper
    /// case hex, all-zero ids or any other shape is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 || !value.is_ascii() {
            return None;
        }
        let version = hex_u8(value.get(0..2)?)?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        if version != 0 && bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        let trace_id = u128::from_str_radix(lower_hex(value.get(3..35)?)?, 16).ok()?;
        let parent_id = u64::from_str_radix(lower_hex(value.get(36..52)?)?, 16).ok()?;
        let flags = hex_u8(value.get(53..55)?)?;
        Self::new(trace_id, parent_id, flags)
    }

    /// The trace id, as a number.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The trace id as W3C writes it: 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The id of the span that sent this context.
    pub fn parent_id(&self) -> u64 {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the sender sampled (recorded) the trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    /// `00-{trace id}-{parent id}-{flags}`, lower-case hex (written without the formatting
    /// machinery: it is on every saga's start).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        write_hex(&mut out[3..35], self.trace_id);
        write_hex(&mut out[36..52], u128::from(self.parent_id));
        write_hex(&mut out[53..55], u128::from(self.flags));
        // Only ASCII digits, letters and dashes were written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Writes the low `out.len()` hex digits of `value` into `out`, most significant first.
fn write_hex(out: &mut [u8], mut value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// Why a `traceparent` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (expected `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`)")]
pub struct InvalidTraceParent;

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value).ok_or(InvalidTraceParent)
    }
}

/// `text` if it is lower-case hex digits only (W3C forbids upper case).
fn lower_hex(text: &str) -> Option<&str> {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some(text)
}

fn hex_u8(text: &str) -> Option<u8> {
    u8::from_str_radix(lower_hex(text)?, 16).ok()
}

/// 64 random bits without a random-number crate: a per-thread SplitMix64 sequence seeded
/// once from std's randomly keyed hasher, the clock and a global counter. Not for secrets;
/// ample for trace ids.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let parsed = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id(), 0x00f0_67aa_0ba9_02b7);
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), EXAMPLE);
    }

    #[test]
    fn refuses_bad_input_without_panicking() {
        for bad in [
            "",
            "00",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later";
        assert!(TraceParent::parse(future).is_some());
    }

    #[test]
    fn small_ids_keep_their_leading_zeros() {
        let small = TraceParent::new(1, 2, 0).expect("valid");
        assert_eq!(
            small.to_string(),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
        assert_eq!(TraceParent::parse(&small.to_string()), Some(small));
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = TraceParent::generate();
        let b = TraceParent::generate();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(TraceParent::parse(&a.to_string()), Some(a));
        let child = a.child();
        assert_eq!(child.trace_id(), a.trace_id());
        assert_ne!(child.parent_id(), a.parent_id());
    }
}
