//! [`Metadata`]: the request metadata a saga carries to its steps.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Request metadata forwarded to a saga's steps (the allowlisted headers of the request that
/// started it, its W3C `traceparent`): names and values, sorted by name, each name at most
/// once.
///
/// A flat vector rather than a map: a saga carries a handful of entries, which a vector holds
/// in one allocation of their size (a `BTreeMap` allocates a node of eleven entries, about
/// half a kilobyte, for the first one), and every in-flight saga holds its metadata. Lookups
/// are a binary search. It reads like a map (`get`, `contains_key`, `keys`, `iter` in name
/// order) and is serialized as a JSON object, exactly as a `BTreeMap<String, String>` is, so
/// messages written with either read the same.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Sorted by name; names unique.
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// No metadata (allocates nothing).
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(entry, _)| entry.as_str().cmp(name))
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&String> {
        let index = self.position(name).ok()?;
        Some(&self.entries[index].1)
    }

    /// True if `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`; returns the value it replaces, if any.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let (name, value) = (name.into(), value.into());
        match self.position(&name) {
            Ok(index) => Some(std::mem::replace(&mut self.entries[index].1, value)),
            Err(index) => {
                self.entries.insert(index, (name, value));
                None
            }
        }
    }

    /// Removes `name`; returns its value, if it was present.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.position(name).ok()?;
        Some(self.entries.remove(index).1)
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &String)> + ExactSizeIterator {
        self.into_iter()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.entries.iter().map(|(name, _)| name)
    }

    /// The values, in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.entries.iter().map(|(_, value)| value)
    }

    /// The same entries in an allocation of exactly their number (entries added one by one
    /// leave room for more).
    pub(crate) fn compact(mut self) -> Self {
        self.entries.shrink_to_fit();
        self
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Later entries replace earlier ones of the same name, as in a map.
impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut metadata = Metadata::new();
        for (name, value) in iter {
            metadata.insert(name, value);
        }
        metadata.compact()
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Self {
            entries: map.into_iter().collect(),
        }
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Metadata {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(metadata: Metadata) -> Self {
        metadata.entries.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(name, value)| (name, value))
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;

        impl<'de> Visitor<'de> for Entries {
            type Value = Metadata;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut metadata = Metadata::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    metadata.insert(name, value);
                }
                Ok(metadata.compact())
            }
        }

        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_sorted_map() {
        let mut metadata = Metadata::from([("tenant", "acme"), ("b", "1"), ("tenant", "other")]);
        assert_eq!(metadata.get("tenant").map(String::as_str), Some("other"));
        assert_eq!(metadata.len(), 2);
        assert_eq!(metadata.insert("a", "0"), None);
        assert_eq!(metadata.insert("b", "2").as_deref(), Some("1"));
        let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b", "tenant"]);
        assert_eq!(metadata.remove("a").as_deref(), Some("0"));
        assert!(!metadata.contains_key("a"));
        assert_eq!(format!("{metadata:?}"), r#"{"b": "2", "tenant": "other"}"#);
    }

    #[test]
    fn serializes_as_the_map_it_replaces() {
        let map = BTreeMap::from([
            ("x-request-id".to_string(), "req-1".to_string()),
            ("traceparent".to_string(), "00-ab-cd-01".to_string()),
        ]);
        let metadata = Metadata::from(map.clone());
        let json = serde_json::to_string(&metadata).unwrap();
        assert_eq!(json, serde_json::to_string(&map).unwrap());
        let back: Metadata =
            serde_json::from_str(r#"{"x-request-id":"req-1","traceparent":"00-ab-cd-01"}"#)
                .unwrap();
        assert_eq!(back, metadata);
        assert_eq!(BTreeMap::from(back), map);
        assert!(serde_json::from_str::<Metadata>(r#"{"a":1}"#).is_err());
    }
}
