//! [`ObservedHandler`]: the `saga` span, the in-flight gauge and the redelivery and dead-letter
//! counters around every delivery a consumer of a saga handles.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::Instrument;

use super::{Observer, delivery_span};
use crate::transport::{Delivery, Disposition, Handler};

/// Wraps a saga topic's handler (the consumer with the user's layers).
pub(crate) struct ObservedHandler<H> {
    inner: H,
    observer: Arc<Observer>,
    saga: &'static str,
}

impl<H> ObservedHandler<H> {
    /// `inner`, observed by `observer` as a consumer of `saga`.
    pub(crate) fn new(inner: H, observer: Arc<Observer>, saga: &'static str) -> Self {
        Self {
            inner,
            observer,
            saga,
        }
    }
}

impl<H: Handler> Handler for ObservedHandler<H> {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        let span = delivery_span(&delivery, self.saga, self.observer.replica());
        let redelivered = delivery.delivery_count > 1;
        let observer = Arc::clone(&self.observer);
        // In the span: the inner handler may call its service (and log) right away.
        let mut work = span
            .in_scope(|| self.inner.handle(delivery))
            .instrument(span);
        Box::pin(async move {
            let metrics = &observer.metrics;
            if redelivered {
                metrics.redeliveries.increment(1);
            }
            let _in_flight = observer.in_flight();
            // Awaited through a reference (it is `Unpin`): moved into the await, it would be
            // held twice for as long as the delivery runs.
            let disposition = (&mut work).await;
            if matches!(disposition, Disposition::DeadLetter { .. }) {
                metrics.dead_letters.increment(1);
            }
            disposition
        })
    }
}
