//! [`ServiceHandler`]: a `tower::Service` of deliveries as a [`Handler`].

use std::fmt;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either};

use super::{Delivery, Disposition, Handler};

/// A [`Handler`] made of a `tower::Service` of deliveries, so a consumer can be wrapped in tower
/// layers (timeouts, concurrency limits, tracing, metrics). The service is cloned per delivery
/// and polled ready before each call. An error of the service (a layer's timeout, say) is
/// logged with the topic and trace id and the delivery is nacked for redelivery after
/// `retry_after`.
#[derive(Clone, Debug)]
pub struct ServiceHandler<T> {
    service: T,
    retry_after: Duration,
}

impl<T> ServiceHandler<T> {
    /// Wraps `service`; its errors nack the delivery with `retry_after` as the delay.
    pub fn new(service: T, retry_after: Duration) -> Self {
        Self {
            service,
            retry_after,
        }
    }
}

impl<T> Handler for ServiceHandler<T>
where
    T: tower::Service<Delivery, Response = Disposition> + Clone + Send + Sync + 'static,
    T::Error: fmt::Display + Send,
    T::Future: Send,
{
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        let retry_after = self.retry_after;
        // The topic and trace id, kept for the log line of a failing service: one allocation.
        let topic_len = delivery.topic.len();
        let origin = [delivery.topic.as_str(), delivery.trace_id()]
            .concat()
            .into_boxed_str();
        let failed = move |error: T::Error| {
            let (topic, trace_id) = origin.split_at(topic_len);
            tracing::warn!(topic, trace_id, %error, "the consumer service failed; redelivering later");
            Disposition::Nack {
                delay: Some(retry_after),
            }
        };
        let mut service = self.service.clone();
        // A service ready at once (the engine's consumers always are) is called here: the
        // returned future then holds the call's future alone for as long as it runs, not the
        // service and the delivery beside it. One not ready yet is polled until it is.
        let call = match service.poll_ready(&mut std::task::Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Either::Left(service.call(delivery)),
            Poll::Ready(Err(error)) => return Box::pin(std::future::ready(failed(error))),
            Poll::Pending => Either::Right(Box::pin(async move {
                futures_util::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(delivery).await
            })),
        };
        Box::pin(call.map(move |result| result.unwrap_or_else(failed)))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;
    use std::task::Context;

    use super::*;

    /// A service that is ready after `not_ready` polls (waking its caller each time) and
    /// answers `Err(())` to deliveries whose payload is `fail`, or fails to get ready if
    /// `refuse` is set.
    #[derive(Clone)]
    struct Service {
        not_ready: usize,
        refuse: bool,
    }

    impl tower::Service<Delivery> for Service {
        type Response = Disposition;
        type Error = &'static str;
        type Future = Ready<Result<Disposition, &'static str>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.refuse {
                return Poll::Ready(Err("cannot get ready"));
            }
            if self.not_ready > 0 {
                self.not_ready -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, delivery: Delivery) -> Self::Future {
            std::future::ready(if &delivery.payload[..] == b"fail" {
                Err("the call failed")
            } else {
                Ok(Disposition::Ack)
            })
        }
    }

    fn delivery(payload: &'static str) -> Delivery {
        Delivery {
            topic: "orders".to_owned(),
            headers: Default::default(),
            payload: payload.into(),
            delivery_count: 1,
        }
    }

    const RETRY: Duration = Duration::from_millis(250);
    const NACK: Disposition = Disposition::Nack { delay: Some(RETRY) };

    async fn handled(service: Service, payload: &'static str) -> Disposition {
        ServiceHandler::new(service, RETRY)
            .handle(delivery(payload))
            .await
    }

    /// What a service ready after `not_ready` polls answers to a good and to a failing delivery.
    async fn answers(not_ready: usize) -> (Disposition, Disposition) {
        let service = Service {
            not_ready,
            refuse: false,
        };
        (
            handled(service.clone(), "ok").await,
            handled(service, "fail").await,
        )
    }

    #[tokio::test]
    async fn a_ready_service_is_called_and_its_errors_nack() {
        assert_eq!(answers(0).await, (Disposition::Ack, NACK));
    }

    #[tokio::test]
    async fn a_service_not_ready_yet_is_polled_until_it_is() {
        assert_eq!(answers(3).await, (Disposition::Ack, NACK));
    }

    #[tokio::test]
    async fn a_service_that_cannot_get_ready_nacks() {
        let refusing = Service {
            not_ready: 0,
            refuse: true,
        };
        assert_eq!(handled(refusing, "ok").await, NACK);
    }

    /// The engine's consumers never fail: an `Infallible` error type works as well.
    #[tokio::test]
    async fn an_infallible_service_is_a_handler() {
        #[derive(Clone)]
        struct Acks;
        impl tower::Service<Delivery> for Acks {
            type Response = Disposition;
            type Error = Infallible;
            type Future = Ready<Result<Disposition, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Delivery) -> Self::Future {
                std::future::ready(Ok(Disposition::Ack))
            }
        }
        let handler = ServiceHandler::new(Acks, RETRY);
        assert_eq!(handler.handle(delivery("ok")).await, Disposition::Ack);
    }
}
