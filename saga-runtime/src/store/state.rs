//! [`StoredState`]: a saga's serialized state, shared rather than copied.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A saga's serialized state (the engine's message envelope, JSON text) in a shared buffer:
/// the message that carries it, an in-memory store's record that keeps it and the copies made
/// of the record share one allocation (a clone counts a reference). Reads as a `str`
/// (`Deref`); serializes as a string.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct StoredState(
    /// Always UTF-8: made from strings only.
    Bytes,
);

impl StoredState {
    /// The state as text.
    pub fn as_str(&self) -> &str {
        // Made from strings only, so the check never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The state's bytes, shared (a message's payload, say).
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl From<String> for StoredState {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for StoredState {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl Deref for StoredState {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StoredState {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for StoredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for StoredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StoredState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StoredState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::StoredState;

    #[test]
    fn shares_its_buffer_and_reads_as_the_text() {
        let state = StoredState::from(String::from(r#"{"seq":1,"state":"ünïcode"}"#));
        let copy = state.clone();
        assert_eq!(copy.as_str(), r#"{"seq":1,"state":"ünïcode"}"#);
        assert_eq!(state.bytes().as_ptr(), copy.bytes().as_ptr(), "one buffer");
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, r#""{\"seq\":1,\"state\":\"ünïcode\"}""#);
        let back: StoredState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }
}
