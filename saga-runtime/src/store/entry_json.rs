//! History entries as JSON for a store that keeps them as text (the Redis store).
//!
//! Every saga writes one `transition` entry per step and compensation, so their encoding is on
//! the hot path of every saga: they are written here by hand, byte for byte what `serde_json`
//! writes for them (a test holds the two equal), at a fraction of its cost (`serde_json` escapes
//! strings byte by byte and goes through a map serializer for the flattened event). The others
//! go through `serde_json`: the operator entries are rare, and the Redis store keeps no
//! `started` entry as text (it reads it back from the record's fields).

use super::{HistoryEntry, HistoryEvent};

impl HistoryEntry {
    /// The entry as JSON, the same bytes as `serde_json::to_vec(self)`.
    pub(crate) fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = match &self.event {
            HistoryEvent::Transition {
                step,
                compensation,
                attempt,
                elapsed_ms,
                error,
                retried,
            } => {
                let mut out = self.open_json(step.len() + error.as_ref().map_or(0, String::len))?;
                out.extend_from_slice(b",\"event\":\"transition\",\"step\":");
                push_str(&mut out, step)?;
                if *compensation {
                    out.extend_from_slice(b",\"compensation\":true");
                }
                out.extend_from_slice(b",\"attempt\":");
                push_u64(&mut out, u64::from(*attempt));
                out.extend_from_slice(b",\"elapsed_ms\":");
                push_u64(&mut out, *elapsed_ms);
                if let Some(error) = error {
                    out.extend_from_slice(b",\"error\":");
                    push_str(&mut out, error)?;
                }
                if *retried {
                    out.extend_from_slice(b",\"retried\":true");
                }
                out
            }
            _ => return serde_json::to_vec(self),
        };
        out.push(b'}');
        Ok(out)
    }

    /// The fields every entry starts with (`{"at_ms":..,"run":".."`), in a buffer with room for
    /// `extra` bytes of the event's strings.
    fn open_json(&self, extra: usize) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(120 + self.run.len() + extra);
        out.extend_from_slice(b"{\"at_ms\":");
        push_u64(&mut out, self.at_ms);
        out.extend_from_slice(b",\"run\":");
        push_str(&mut out, &self.run)?;
        Ok(out)
    }
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `text` as a JSON string: copied as is when nothing in it needs escaping (the usual case:
/// names and owner tokens), through `serde_json` otherwise.
fn push_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    // No early exit: the fold compiles to a vector loop.
    let needs_escape = text.bytes().fold(false, |needs, byte| {
        needs | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if needs_escape {
        return serde_json::to_writer(&mut *out, text);
    }
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::store::Mode;

    const AWKWARD: &[&str] = &[
        "",
        "plain",
        "pod-7/3/41",
        "quote \" and backslash \\",
        "new\nline\ttab\r",
        "control \u{1} \u{1f} and del \u{7f}",
        "unicode é ü 漢字 🦀",
        "</script>",
    ];

    fn entries() -> Vec<HistoryEntry> {
        let mut entries = Vec::new();
        for (i, text) in AWKWARD.iter().enumerate() {
            let at_ms = [0, 1, u64::MAX, 1_733_300_000_000][i % 4];
            for mode in [Mode::Sync, Mode::Async, Mode::Throttled] {
                entries.push(HistoryEntry {
                    at_ms,
                    run: (*text).into(),
                    event: HistoryEvent::Started { mode },
                });
            }
            for (compensation, retried, error) in [
                (false, false, None),
                (true, false, None),
                (false, true, Some(text.to_string())),
                (true, true, Some(String::new())),
            ] {
                entries.push(HistoryEntry {
                    at_ms,
                    run: "replica/1/2".into(),
                    event: HistoryEvent::Transition {
                        step: Cow::Owned(text.to_string()),
                        compensation,
                        attempt: [0, 1, u32::MAX][i % 3],
                        elapsed_ms: [0, 7, u64::MAX][i % 3],
                        error,
                        retried,
                    },
                });
            }
            entries.push(HistoryEntry::now(
                *text,
                HistoryEvent::Resumed {
                    by: text.to_string(),
                },
            ));
            entries.push(HistoryEntry::now(
                "op",
                HistoryEvent::CompensationStarted {
                    step: Cow::Borrowed("reserve"),
                },
            ));
        }
        entries
    }

    #[test]
    fn hand_written_json_is_what_serde_writes() {
        for entry in entries() {
            let by_hand = entry.to_json().expect("encodes");
            let by_serde = serde_json::to_vec(&entry).expect("encodes");
            assert_eq!(
                String::from_utf8_lossy(&by_hand),
                String::from_utf8_lossy(&by_serde),
                "{entry:?}"
            );
            let back: HistoryEntry = serde_json::from_slice(&by_hand).expect("decodes");
            assert_eq!(back, entry);
        }
    }
}
