//! The consumer loop every transport shares: take a delivery only when a concurrency permit
//! is free, run the handler in its own task, settle by the returned [`Disposition`]; stop,
//! drain or abort on request.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{Delivery, Disposition, Handler, Subscription, SubscriptionControl};

/// Where deliveries come from (a broker consumer, an in-memory queue).
pub(crate) trait Source: Send + 'static {
    /// What settles one delivery with the broker.
    type Pending: Pending;
    /// The next delivery, or `None` once the source is closed for good. Must be cancel safe.
    fn next(&mut self) -> impl Future<Output = Option<(Delivery, Self::Pending)>> + Send;
    /// Called after a graceful stop, once every in-flight delivery was settled.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Settles one delivery. Dropping it unsettled must leave the delivery to be redelivered.
pub(crate) trait Pending: Send + 'static {
    /// Acks, nacks or dead-letters the delivery.
    fn settle(self, disposition: Disposition) -> impl Future<Output = ()> + Send;
}

/// Starts the loop and returns its [`Subscription`].
pub(crate) fn spawn<S: Source>(
    source: S,
    handler: Arc<dyn Handler>,
    concurrency: usize,
    topic: &str,
) -> Subscription {
    let concurrency = concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let pump = tokio::spawn(pump(
        source,
        handler,
        permits.clone(),
        stop_rx,
        Arc::from(topic),
    ));
    Subscription::new(Box::new(Control {
        stop: stop_tx,
        pump,
        permits,
        concurrency,
    }))
}

async fn pump<S: Source>(
    mut source: S,
    handler: Arc<dyn Handler>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    topic: Arc<str>,
) {
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        while tasks.try_join_next().is_some() {}
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            next = source.next() => next,
        };
        let Some((delivery, pending)) = next else {
            break;
        };
        let handler = handler.clone();
        let topic = topic.clone();
        tasks.spawn(async move {
            let disposition = run_handler(&*handler, delivery, &topic).await;
            pending.settle(disposition).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    source.close().await;
}

/// Runs the handler; a panic (while building or polling its future) counts as a nack.
async fn run_handler(handler: &dyn Handler, delivery: Delivery, topic: &str) -> Disposition {
    let panicked = || {
        tracing::warn!(
            topic,
            "message handler panicked; the delivery is nacked for redelivery"
        );
        Disposition::Nack {
            delay: Some(Duration::from_secs(1)),
        }
    };
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(delivery))) {
        Ok(future) => future,
        Err(_) => return panicked(),
    };
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(disposition) => disposition,
        Err(_) => panicked(),
    }
}

struct Control {
    stop: watch::Sender<bool>,
    pump: JoinHandle<()>,
    permits: Arc<Semaphore>,
    concurrency: usize,
}

impl SubscriptionControl for Control {
    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, usize> {
        Box::pin(async move {
            let Control {
                stop,
                mut pump,
                permits,
                concurrency,
            } = *self;
            let _ = stop.send(true);
            match tokio::time::timeout(grace, &mut pump).await {
                Ok(_) => 0,
                Err(_) => {
                    let left = concurrency.saturating_sub(permits.available_permits());
                    // Dropping the loop drops the unsettled deliveries: they are redelivered.
                    pump.abort();
                    left
                }
            }
        })
    }

    fn abort(self: Box<Self>) {
        let _ = self.stop.send(true);
        self.pump.abort();
    }
}
