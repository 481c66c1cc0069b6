//! [`Completion`] and [`CompletionHook`]: how an async or throttled saga's end reaches user
//! code.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::{Saga, SagaError};

/// How a saga ended, handed to the completion hook.
#[derive(Debug)]
pub struct Completion<S: Saga> {
    /// The trace id (saga id).
    pub trace_id: String,
    /// The output, or how the saga failed.
    pub result: Result<S::Output, SagaError>,
}

/// A user async fn called once per saga that ends on this replica (async and throttled
/// modes), after its outcome is in the store. At-least-once: after a crash it may be called
/// again for the same saga. A panic in it is caught and logged; it never affects the saga.
pub type CompletionHook<S> = Arc<dyn Fn(Completion<S>) -> BoxFuture<'static, ()> + Send + Sync>;
