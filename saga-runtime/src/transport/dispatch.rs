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

use super::{Delivery, Disposition, Handler, Liveness, Subscription, SubscriptionControl};

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
pub(crate) trait Pending: Send + Sync + 'static {
    /// Acks, nacks or dead-letters the delivery.
    fn settle(self, disposition: Disposition) -> impl Future<Output = ()> + Send;

    /// How often the loop calls [`Pending::progress`] while the handler runs; `None` (the
    /// default) when the broker does not redeliver a delivery that is merely slow.
    fn progress_interval(&self) -> Option<Duration> {
        None
    }

    /// Tells the broker the delivery is still being worked on, so it does not redeliver it
    /// while the handler runs (NATS: `+WPI`, which restarts the ack wait).
    fn progress(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
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
    // Held by the loop: gone when it ends, is aborted or panics.
    let alive = Arc::new(());
    let liveness = Liveness::of(&alive);
    let pump = tokio::spawn(pump(
        source,
        handler,
        permits.clone(),
        stop_rx,
        Arc::from(topic),
        alive,
    ));
    Subscription::new(Box::new(Control {
        stop: stop_tx,
        pump,
        permits,
        concurrency,
        liveness,
    }))
}

async fn pump<S: Source>(
    mut source: S,
    handler: Arc<dyn Handler>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    topic: Arc<str>,
    _alive: Arc<()>,
) {
    let mut tasks = JoinSet::new();
    loop {
        let permit = match reaping(permits.clone().acquire_owned(), &mut stop, &mut tasks).await {
            Some(Ok(permit)) => permit,
            Some(Err(_)) | None => break,
        };
        let Some(Some((delivery, pending))) = reaping(source.next(), &mut stop, &mut tasks).await
        else {
            break;
        };
        // The handler is called here, its future spawned: the task then holds the future, not
        // the delivery beside it for as long as the handler runs.
        let work = call_handler(&*handler, delivery, &topic);
        let topic = topic.clone();
        tasks.spawn(async move {
            // The handler's future is awaited in place; the progress signals around it are
            // boxed, so the task of every delivery of a broker without them (memory,
            // RabbitMQ) is not sized for them.
            let disposition = match pending.progress_interval() {
                None => run_handler(work, &topic).await,
                Some(every) => {
                    let work = run_handler(work, &topic);
                    Box::pin(with_progress(work, &pending, every)).await
                }
            };
            // Boxed too: a broker's ack or nack (2 to 3.4 KB of future for NATS and RabbitMQ)
            // runs once the handler is done, and inline it would size the task for as long
            // as the handler runs.
            Box::pin(pending.settle(disposition)).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    source.close().await;
}

/// Awaits `work` unless the subscription stops first (`None`), joining meanwhile the delivery
/// tasks that ended: a finished task's memory is freed only once it is joined, and a topic
/// whose next delivery is long in coming would otherwise keep every finished one (its whole
/// task, half a kilobyte or more) until then. `work` is polled in place, never dropped and
/// made again, so it need not be cancel safe across the joins.
async fn reaping<T>(
    work: impl Future<Output = T>,
    stop: &mut watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return None,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            done = &mut work => return Some(done),
        }
    }
}

/// Drives `work` to completion, telling the broker every `every` that `pending` is still in
/// progress. A progress signal that takes longer than `every` is given up (the next tick
/// tries again); the handler is polled throughout.
async fn with_progress<P: Pending>(
    work: impl Future<Output = Disposition>,
    pending: &P,
    every: Duration,
) -> Disposition {
    let every = every.max(Duration::from_millis(10));
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            disposition = &mut work => return disposition,
            _ = ticks.tick() => {
                // Boxed: a broker's progress signal (about 1 KB of future on NATS) is sent once
                // per `every`, and inline it would size every delivery's progress loop.
                let signal = tokio::time::timeout(every, Box::pin(pending.progress()));
                tokio::pin!(signal);
                tokio::select! {
                    disposition = &mut work => return disposition,
                    _ = &mut signal => {}
                }
            }
        }
    }
}

/// The handler's future for `delivery`; a panic while the handler builds it counts as a nack.
fn call_handler(
    handler: &dyn Handler,
    delivery: Delivery,
    topic: &str,
) -> BoxFuture<'static, Disposition> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(delivery))) {
        Ok(future) => future,
        Err(_) => Box::pin(std::future::ready(panicked(topic))),
    }
}

/// Awaits the handler's future; a panic while it runs counts as a nack.
async fn run_handler(work: BoxFuture<'static, Disposition>, topic: &str) -> Disposition {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| panicked(topic))
}

/// The disposition of a delivery whose handler panicked: a nack, logged.
fn panicked(topic: &str) -> Disposition {
    tracing::warn!(
        topic,
        "message handler panicked; the delivery is nacked for redelivery"
    );
    Disposition::Nack {
        delay: Some(Duration::from_secs(1)),
    }
}

struct Control {
    stop: watch::Sender<bool>,
    pump: JoinHandle<()>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    liveness: Liveness,
}

impl SubscriptionControl for Control {
    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, usize> {
        Box::pin(async move {
            let Control {
                stop,
                mut pump,
                permits,
                concurrency,
                ..
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

    fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }
}
