//! The registry of watchers waiting for sagas to end, shared by every backend.
//!
//! Many watchers may wait for one trace id. Each registration is a [`Waiter`]; dropping it
//! (the caller's timeout fired, the request was cancelled) removes its entry at once, so a
//! registry never keeps entries for callers that went away. When the last waiter of a trace
//! id leaves, or the id is notified, the registry calls its `on_idle` hook with the id (the
//! Redis watcher unsubscribes the id's channel there).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::{Outcome, StoreError, StoreErrorKind};

/// What a waiter receives: the outcome, or why the store cannot tell it.
pub(crate) type WaitResult = Result<Outcome, StoreError>;

type IdleHook = Box<dyn Fn(&str) + Send + Sync>;

/// Trace id -> waiters, behind one mutex (held only for map operations, never across awaits).
pub(crate) struct Waiters {
    inner: Mutex<Inner>,
    on_idle: Option<IdleHook>,
}

#[derive(Default)]
struct Inner {
    next_key: u64,
    by_trace_id: HashMap<String, HashMap<u64, oneshot::Sender<WaitResult>>>,
}

impl fmt::Debug for Waiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Waiters")
            .field("trace_ids", &inner.by_trace_id.len())
            .finish_non_exhaustive()
    }
}

impl Waiters {
    /// A registry that calls `on_idle(trace_id)` when a trace id loses its last waiter.
    pub(crate) fn new(on_idle: Option<IdleHook>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            on_idle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (every operation
        // is a single insert/remove), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a waiter for `trace_id`.
    pub(crate) fn register(self: &Arc<Self>, trace_id: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let key = inner.next_key;
        inner.next_key += 1;
        inner
            .by_trace_id
            .entry(trace_id.to_string())
            .or_default()
            .insert(key, tx);
        drop(inner);
        Waiter {
            rx,
            registry: Arc::clone(self),
            trace_id: trace_id.to_string(),
            key,
        }
    }

    /// Wakes every waiter of `trace_id` with `result`; returns how many were woken.
    pub(crate) fn notify(&self, trace_id: &str, result: &WaitResult) -> usize {
        let slot = self.lock().by_trace_id.remove(trace_id);
        let Some(slot) = slot else { return 0 };
        let woken = slot.len();
        for (_, tx) in slot {
            // The receiver may be gone (its Waiter is being dropped): nothing to do then.
            let _ = tx.send(result.clone());
        }
        self.idle(trace_id);
        woken
    }

    /// True while `trace_id` has at least one waiter.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn is_watched(&self, trace_id: &str) -> bool {
        self.lock().by_trace_id.contains_key(trace_id)
    }

    /// Every trace id with at least one waiter.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn watched_ids(&self) -> Vec<String> {
        self.lock().by_trace_id.keys().cloned().collect()
    }

    /// Total number of registered waiters (all trace ids).
    pub(crate) fn count(&self) -> usize {
        self.lock().by_trace_id.values().map(HashMap::len).sum()
    }

    fn remove(&self, trace_id: &str, key: u64) {
        let mut inner = self.lock();
        let Some(slot) = inner.by_trace_id.get_mut(trace_id) else {
            return;
        };
        slot.remove(&key);
        if !slot.is_empty() {
            return;
        }
        inner.by_trace_id.remove(trace_id);
        drop(inner);
        self.idle(trace_id);
    }

    fn idle(&self, trace_id: &str) {
        if let Some(hook) = &self.on_idle {
            hook(trace_id);
        }
    }
}

/// One registered watcher. Await [`Waiter::wait`]; dropping it unregisters it.
pub(crate) struct Waiter {
    rx: oneshot::Receiver<WaitResult>,
    registry: Arc<Waiters>,
    trace_id: String,
    key: u64,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("trace_id", &self.trace_id)
            .finish_non_exhaustive()
    }
}

impl Waiter {
    /// Resolves when the trace id is notified. `backend` names the store in the error returned
    /// if the store is dropped first.
    pub(crate) async fn wait(mut self, backend: &'static str) -> WaitResult {
        match (&mut self.rx).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(
                backend,
                StoreErrorKind::Closed,
                format!(
                    "the store was shut down while waiting for trace id {}",
                    self.trace_id
                ),
            )),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.registry.remove(&self.trace_id, self.key);
    }
}
