//! [`Ledger`]: the in-memory records of an upstream service (orders, payments), created
//! idempotently per idempotency key and cancelled by trace id.

use std::collections::{BTreeMap, HashMap, HashSet};

use tonic::Status;

/// A record a [`Ledger`] keeps: it has an id and can be cancelled.
pub trait Record: Clone {
    /// Its id (from 1).
    fn id(&self) -> i64;
    /// Marks it cancelled.
    fn cancel(&mut self);
}

/// Records by id, by trace id and by idempotency key. `Req` is the create request, kept per
/// key to tell a retry (same input) from a misuse (same key, other input).
#[derive(Debug)]
pub struct Ledger<Req, Rec> {
    /// "order", "payment": named in errors.
    what: &'static str,
    last_id: i64,
    by_id: BTreeMap<i64, Rec>,
    by_trace: HashMap<String, Vec<i64>>,
    by_key: HashMap<String, (Req, i64)>,
    cancelled_traces: HashSet<String>,
}

impl<Req: PartialEq, Rec: Record> Ledger<Req, Rec> {
    /// An empty ledger of `what`s.
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            last_id: 0,
            by_id: BTreeMap::new(),
            by_trace: HashMap::new(),
            by_key: HashMap::new(),
            cancelled_traces: HashSet::new(),
        }
    }

    /// Creates a record for `trace_id` with `make(new_id)`. Idempotent per `key`: the same
    /// key and input return the first record; the same key with another input is
    /// `AlreadyExists`. A trace id whose records were cancelled refuses new ones
    /// (`FailedPrecondition`: the compensation overtook its step).
    pub fn create(
        &mut self,
        trace_id: &str,
        key: Option<String>,
        input: Req,
        make: impl FnOnce(i64) -> Rec,
    ) -> Result<Rec, Status> {
        let what = self.what;
        if let Some(key) = &key
            && let Some((first, id)) = self.by_key.get(key)
        {
            if *first != input {
                return Err(Status::already_exists(format!(
                    "idempotency key {key} was used for another {what}; use a new key"
                )));
            }
            return self
                .by_id
                .get(id)
                .cloned()
                .ok_or_else(|| Status::internal(format!("{what} index out of sync")));
        }
        if self.cancelled_traces.contains(trace_id) {
            return Err(Status::failed_precondition(format!(
                "the {what}s of trace id {trace_id} were already cancelled; not creating a new one"
            )));
        }
        self.last_id += 1;
        let record = make(self.last_id);
        self.by_id.insert(record.id(), record.clone());
        self.by_trace
            .entry(trace_id.to_owned())
            .or_default()
            .push(record.id());
        if let Some(key) = key {
            self.by_key.insert(key, (input, record.id()));
        }
        Ok(record)
    }

    /// Cancels every record of `trace_id` and refuses later creates for it. Idempotent.
    /// Returns the records of the trace id.
    pub fn cancel(&mut self, trace_id: &str) -> Vec<Rec> {
        self.cancelled_traces.insert(trace_id.to_owned());
        let ids = self.by_trace.get(trace_id).cloned().unwrap_or_default();
        for id in &ids {
            if let Some(record) = self.by_id.get_mut(id) {
                record.cancel();
            }
        }
        self.of_trace(trace_id)
    }

    /// The record `id`, or `NotFound`.
    pub fn get(&self, id: i64) -> Result<Rec, Status> {
        let what = self.what;
        self.by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no {what} with id {id}")))
    }

    /// The records of `trace_id`, by id.
    pub fn of_trace(&self, trace_id: &str) -> Vec<Rec> {
        self.by_trace
            .get(trace_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id).cloned())
            .collect()
    }
}
