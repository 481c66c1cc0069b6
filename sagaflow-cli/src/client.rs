//! The admin API client: one connection, the token and the operator on every call.

use std::time::Duration;

use saga_runtime::grpc::admin::pb::saga_admin_client::SagaAdminClient;
use saga_runtime::grpc::admin::{OPERATOR_HEADER, pb};
use saga_runtime::grpc::client_tls_config;
use saga_runtime::tls::ClientTls;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::exit::{Exit, Failure, unreachable};

/// How long connecting may take before the orchestrator is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take (a dead-letter replay waits for the broker).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A connected admin API client.
pub(crate) struct Client {
    inner: SagaAdminClient<Channel>,
    addr: String,
    authorization: Option<AsciiMetadataValue>,
    operator: Option<AsciiMetadataValue>,
}

/// `addr` as a URL: `http://` is assumed without a scheme.
fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The innermost cause of a connection failure ("Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

impl Client {
    /// Connects to the admin API at `addr`, over TLS with `tls` (then `addr` must be
    /// `https://`); [`Exit::Unavailable`] when nothing answers there or the TLS handshake
    /// fails.
    pub(crate) async fn connect(
        addr: &str,
        tls: &ClientTls,
        token: Option<&str>,
        operator: &str,
    ) -> Result<Self, Failure> {
        let addr = url(addr);
        let usage = |message: String| Failure::new(Exit::Usage, message);
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| usage(format!("invalid --addr `{addr}`: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let https = addr.starts_with("https://");
        let endpoint = match (https, tls.ca_file.is_some()) {
            (true, true) => {
                let config = client_tls_config(tls).map_err(|e| usage(e.to_string()))?;
                endpoint
                    .tls_config(config)
                    .map_err(|e| usage(format!("TLS settings refused: {e}")))?
            }
            (true, false) => {
                return Err(usage(format!(
                    "--addr `{addr}` is https: give --ca-file with the CA its certificate chains to"
                )));
            }
            (false, _) if tls.is_configured() => {
                return Err(usage(format!(
                    "TLS files are set but --addr `{addr}` is plaintext: use https://"
                )));
            }
            (false, _) => endpoint,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(&addr, &root_cause(&e)))?;
        let authorization = token
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| Failure::new(Exit::Usage, "the token must be printable ASCII"))
            })
            .transpose()?;
        Ok(Self {
            inner: SagaAdminClient::new(channel),
            addr,
            authorization,
            // A name that is not ASCII is left out: the server records its default.
            operator: MetadataValue::try_from(operator).ok(),
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = &self.operator {
            request
                .metadata_mut()
                .insert(OPERATOR_HEADER, value.clone());
        }
        request
    }

    fn answer<T>(&self, result: Result<Response<T>, Status>) -> Result<T, Failure> {
        result.map(Response::into_inner).map_err(|status| {
            // A call that never reached the API (the connection broke: a TLS server that
            // refused the client certificate after the handshake) is unreachable, not an
            // answer.
            match std::error::Error::source(&status) {
                Some(transport) if status.code() == tonic::Code::Unknown => {
                    unreachable(&self.addr, &root_cause(transport))
                }
                _ => Failure::from_status(&status, &self.addr),
            }
        })
    }

    pub(crate) async fn get(&mut self, trace_id: &str) -> Result<pb::GetSagaResponse, Failure> {
        let request = self.request(pb::GetSagaRequest {
            trace_id: trace_id.to_string(),
        });
        let result = self.inner.get_saga(request).await;
        self.answer(result)
    }

    pub(crate) async fn list(
        &mut self,
        message: pb::ListSagasRequest,
    ) -> Result<pb::ListSagasResponse, Failure> {
        let request = self.request(message);
        let result = self.inner.list_sagas(request).await;
        self.answer(result)
    }

    pub(crate) async fn resume(
        &mut self,
        trace_id: &str,
    ) -> Result<pb::ResumeSagaResponse, Failure> {
        let request = self.request(pb::ResumeSagaRequest {
            trace_id: trace_id.to_string(),
        });
        let result = self.inner.resume_saga(request).await;
        self.answer(result)
    }

    pub(crate) async fn compensate(
        &mut self,
        trace_id: &str,
    ) -> Result<pb::CompensateSagaResponse, Failure> {
        let request = self.request(pb::CompensateSagaRequest {
            trace_id: trace_id.to_string(),
        });
        let result = self.inner.compensate_saga(request).await;
        self.answer(result)
    }

    pub(crate) async fn diagram(
        &mut self,
        saga: &str,
        trace_id: Option<&str>,
    ) -> Result<pb::GetDiagramResponse, Failure> {
        let request = self.request(pb::GetDiagramRequest {
            saga: saga.to_string(),
            trace_id: trace_id.map(str::to_string),
        });
        let result = self.inner.get_diagram(request).await;
        self.answer(result)
    }

    pub(crate) async fn dead_letters(
        &mut self,
        saga: Option<&str>,
        limit: u32,
    ) -> Result<pb::ListDeadLettersResponse, Failure> {
        let request = self.request(pb::ListDeadLettersRequest {
            saga: saga.map(str::to_string),
            limit,
        });
        let result = self.inner.list_dead_letters(request).await;
        self.answer(result)
    }

    pub(crate) async fn replay(
        &mut self,
        saga: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<pb::ReplayDeadLettersResponse, Failure> {
        let request = self.request(pb::ReplayDeadLettersRequest {
            saga: saga.map(str::to_string),
            message_id: message_id.map(str::to_string),
        });
        let result = self.inner.replay_dead_letters(request).await;
        self.answer(result)
    }

    pub(crate) async fn sagas(&mut self) -> Result<pb::ListSagaDefinitionsResponse, Failure> {
        let request = self.request(pb::ListSagaDefinitionsRequest {});
        let result = self.inner.list_saga_definitions(request).await;
        self.answer(result)
    }
}
