//! A saga store in front of another, for tests that change what one write does.

/// Implements `sagaflow::store::SagaStore` for `$store`, a type with a field
/// `inner: Arc<dyn SagaStore>`: every method goes to `inner` except `advance`, which runs
/// `$body` with `$this` (`&$store`) and `$advance` (the `Advance`) in scope and returns its
/// `BoxFuture`.
#[allow(unused_macros)]
macro_rules! store_with_advance {
    ($store:ty, |$this:ident, $advance:ident| $body:expr) => {
        impl sagaflow::store::SagaStore for $store {
            fn begin(
                &self,
                record: sagaflow::store::SagaRecord,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<sagaflow::store::Begin, sagaflow::store::StoreError>,
            > {
                self.inner.begin(record)
            }

            fn claim<'a>(
                &'a self,
                claim: sagaflow::store::Claim<'a>,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::Claimed, sagaflow::store::StoreError>,
            > {
                self.inner.claim(claim)
            }

            fn advance<'a>(
                &'a self,
                $advance: sagaflow::store::Advance<'a>,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::Written, sagaflow::store::StoreError>,
            > {
                let $this = self;
                $body
            }

            fn hold<'a>(
                &'a self,
                hold: sagaflow::store::Hold<'a>,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::Written, sagaflow::store::StoreError>,
            > {
                self.inner.hold(hold)
            }

            fn expired<'a>(
                &'a self,
                saga: &'a str,
                limit: usize,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<Vec<String>, sagaflow::store::StoreError>,
            > {
                self.inner.expired(saga, limit)
            }

            fn get<'a>(
                &'a self,
                trace_id: &'a str,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<Option<sagaflow::store::SagaRecord>, sagaflow::store::StoreError>,
            > {
                self.inner.get(trace_id)
            }

            fn watch<'a>(
                &'a self,
                trace_id: &'a str,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::Outcome, sagaflow::store::StoreError>,
            > {
                self.inner.watch(trace_id)
            }

            fn remove<'a>(
                &'a self,
                trace_id: &'a str,
            ) -> futures_util::future::BoxFuture<'a, Result<(), sagaflow::store::StoreError>>
            {
                self.inner.remove(trace_id)
            }

            fn history<'a>(
                &'a self,
                trace_id: &'a str,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<Vec<sagaflow::store::HistoryEntry>, sagaflow::store::StoreError>,
            > {
                self.inner.history(trace_id)
            }

            fn list<'a>(
                &'a self,
                query: &'a sagaflow::store::ListQuery,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::SagaPage, sagaflow::store::StoreError>,
            > {
                self.inner.list(query)
            }

            fn reopen<'a>(
                &'a self,
                reopen: sagaflow::store::Reopen<'a>,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::Written, sagaflow::store::StoreError>,
            > {
                self.inner.reopen(reopen)
            }

            fn request_compensation<'a>(
                &'a self,
                trace_id: &'a str,
                entry: sagaflow::store::HistoryEntry,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<sagaflow::store::Written, sagaflow::store::StoreError>,
            > {
                self.inner.request_compensation(trace_id, entry)
            }

            fn ping(
                &self,
            ) -> futures_util::future::BoxFuture<'_, Result<(), sagaflow::store::StoreError>>
            {
                self.inner.ping()
            }
        }
    };
}
