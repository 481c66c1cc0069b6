//! Key and channel names under the configured prefix, and the index bucket of a trace id.
//!
//! # Two layouts
//! - **Plain** (a standalone Redis with one index bucket, the default): `{prefix}:saga:{id}`,
//!   `{prefix}:leases:{saga}`, `{prefix}:status`, `{prefix}:done:{id}`, as before buckets
//!   existed, so an existing deployment reads its records unchanged.
//! - **Tagged** (Redis Cluster, or more than one bucket): every key of bucket `b` starts with
//!   the hash tag `{prefix:b}` (`{sagaflow:3}:saga:{id}`, `{sagaflow:3}:leases:booking`,
//!   `{sagaflow:3}:status`, `{sagaflow:3}:done:{id}`). Redis Cluster hashes only the tag, so
//!   every key one script touches (a saga's record, the lease index of its saga name in its
//!   bucket, its bucket's status index) lies in one slot, and the buckets spread over the
//!   masters. The prefix then may not hold braces itself (they would end the tag early).
//!
//! A trace id's bucket is a stable hash of the id (FNV-1a 64, the same in every process and
//! release) modulo the number of buckets: every replica finds a saga's keys without a lookup.
//! Changing the number of buckets (or the layout) moves every saga to other keys: it is fixed
//! for the life of a deployment, like the prefix.

/// The names of one bucket.
#[derive(Debug)]
struct Bucket {
    record_prefix: String,
    channel_prefix: String,
    leases_prefix: String,
    status_index: String,
}

impl Bucket {
    fn new(base: &str) -> Self {
        Self {
            record_prefix: format!("{base}:saga:"),
            channel_prefix: format!("{base}:done:"),
            leases_prefix: format!("{base}:leases:"),
            status_index: format!("{base}:status"),
        }
    }
}

/// Key and channel names of every bucket.
#[derive(Debug)]
pub(super) struct Keys {
    buckets: Vec<Bucket>,
}

impl Keys {
    /// The names under `prefix` with `buckets` index buckets (at least one), tagged per bucket
    /// when `tagged` (see the module docs).
    pub(super) fn new(prefix: &str, buckets: u16, tagged: bool) -> Self {
        let buckets = (0..buckets.max(1))
            .map(|b| match tagged {
                true => Bucket::new(&format!("{{{prefix}:{b}}}")),
                false => Bucket::new(prefix),
            })
            .collect();
        Self { buckets }
    }

    /// How many index buckets there are.
    pub(super) fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// The bucket of `trace_id`: FNV-1a 64 of its bytes modulo the number of buckets.
    pub(super) fn bucket(&self, trace_id: &str) -> usize {
        if self.buckets.len() == 1 {
            return 0;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in trace_id.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % self.buckets.len() as u64) as usize
    }

    /// The record hash of `trace_id`.
    pub(super) fn record(&self, trace_id: &str) -> String {
        format!(
            "{}{trace_id}",
            self.buckets[self.bucket(trace_id)].record_prefix
        )
    }

    /// The prefix of the record keys of `bucket` (the list script appends trace ids).
    pub(super) fn record_prefix(&self, bucket: usize) -> &str {
        &self.buckets[bucket].record_prefix
    }

    /// The lease index of the running sagas named `saga` whose ids fall in `bucket`.
    pub(super) fn leases(&self, bucket: usize, saga: &str) -> String {
        format!("{}{saga}", self.buckets[bucket].leases_prefix)
    }

    /// The lease index of saga `saga` in the bucket of `trace_id`.
    pub(super) fn leases_of(&self, trace_id: &str, saga: &str) -> String {
        self.leases(self.bucket(trace_id), saga)
    }

    /// The prefix of the lease indexes of the bucket of `trace_id` (the remove script appends
    /// the saga name it reads from the record).
    pub(super) fn leases_prefix_of(&self, trace_id: &str) -> &str {
        &self.buckets[self.bucket(trace_id)].leases_prefix
    }

    /// The status index of `bucket`.
    pub(super) fn status_index(&self, bucket: usize) -> &str {
        &self.buckets[bucket].status_index
    }

    /// The status index of the bucket of `trace_id`.
    pub(super) fn status_index_of(&self, trace_id: &str) -> &str {
        self.status_index(self.bucket(trace_id))
    }

    /// The completion channel of `trace_id`.
    pub(super) fn channel(&self, trace_id: &str) -> String {
        format!(
            "{}{trace_id}",
            self.buckets[self.bucket(trace_id)].channel_prefix
        )
    }

    /// The trace id whose completion channel is `channel`, if it is one of these.
    pub(super) fn trace_id_of_channel<'c>(&self, channel: &'c str) -> Option<&'c str> {
        let trace_id = self
            .buckets
            .iter()
            .find_map(|bucket| channel.strip_prefix(bucket.channel_prefix.as_str()))?;
        // Tagged: a channel of another bucket with a longer tag could share a prefix.
        (self.channel(trace_id) == channel).then_some(trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_the_names_of_before_buckets() {
        let keys = Keys::new("p", 1, false);
        assert_eq!(keys.record("t1"), "p:saga:t1");
        assert_eq!(keys.leases_of("t1", "booking"), "p:leases:booking");
        assert_eq!(keys.status_index_of("t1"), "p:status");
        assert_eq!(keys.channel("t1"), "p:done:t1");
        assert_eq!(keys.trace_id_of_channel(&keys.channel("a:b")), Some("a:b"));
        assert_eq!(keys.trace_id_of_channel("other:done:x"), None);
    }

    #[test]
    fn tagged_names_share_the_tag_of_their_bucket() {
        let keys = Keys::new("p", 16, true);
        let mut seen = std::collections::HashSet::new();
        for n in 0..200 {
            let id = format!("trace-{n}");
            let b = keys.bucket(&id);
            seen.insert(b);
            let tag = format!("{{p:{b}}}");
            assert_eq!(keys.record(&id), format!("{tag}:saga:{id}"));
            assert_eq!(keys.leases_of(&id, "s"), format!("{tag}:leases:s"));
            assert_eq!(keys.status_index_of(&id), format!("{tag}:status"));
            assert_eq!(keys.channel(&id), format!("{tag}:done:{id}"));
            assert_eq!(
                keys.trace_id_of_channel(&keys.channel(&id)),
                Some(id.as_str())
            );
        }
        assert_eq!(seen.len(), 16, "200 ids spread over every bucket");
        // Stable across processes and releases (FNV-1a 64 mod 16, computed independently): a
        // changed hash would strand every stored saga.
        assert_eq!(keys.bucket("booking-42"), 1);
        assert_eq!(
            keys.trace_id_of_channel("{p:1}:done:x").is_some(),
            keys.bucket("x") == 1
        );
    }
}
