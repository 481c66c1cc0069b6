//! [`AdminService`]: the `SagaAdmin` gRPC service over an [`Admin`].

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::pb::saga_admin_server::{SagaAdmin, SagaAdminServer};
use super::status_from_admin_error as status;
use super::{BearerAuth, DEFAULT_OPERATOR, FILE_DESCRIPTOR_SET, OPERATOR_HEADER, convert, pb};
use crate::admin::{Admin, CompensationRequest};
use crate::grpc::GrpcServer;
use crate::store::{ListCursor, ListQuery, StatusKind};

/// The most dead letters one listing returns when the request sets no limit.
const DEFAULT_DEAD_LETTERS: usize = 100;
/// The longest operator name recorded; a longer one is cut.
const MAX_OPERATOR_LEN: usize = 128;

/// The tonic service [`AdminService::into_server`] builds.
pub type AdminServer = SagaAdminServer<AdminService>;

/// The `sagaflow.admin.v1.SagaAdmin` service over an [`Admin`]: every call is answered from
/// the admin's store and registered orchestrators; errors map by
/// [`status_from_admin_error`](super::status_from_admin_error). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminService {
    admin: Admin,
    auth: BearerAuth,
}

impl AdminService {
    /// The service over `admin`, open to every caller (serve it on loopback only, or set a
    /// token with [`AdminService::with_token`]).
    pub fn new(admin: Admin) -> Self {
        Self {
            admin,
            auth: BearerAuth::default(),
        }
    }

    /// Requires every call to carry `authorization: Bearer <token>` (`None`: open).
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.auth = BearerAuth::new(token);
        self
    }

    /// True when calls must bear a token.
    pub fn requires_token(&self) -> bool {
        self.auth.is_enabled()
    }

    /// The tonic service (every call checked against the token first), to add to any tonic
    /// server.
    pub fn into_server(self) -> AdminServer {
        SagaAdminServer::new(self)
    }

    /// A [`GrpcServer`] serving this service, with reflection (its descriptor set registered)
    /// and health; call [`GrpcServer::serve`] on it with the admin listen address.
    pub fn server(self) -> GrpcServer {
        GrpcServer::new()
            .register_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .add_service(self.into_server())
    }

    async fn current(&self, trace_id: &str) -> Result<Option<pb::SagaRecord>, Status> {
        let record = self
            .admin
            .store()
            .get(trace_id)
            .await
            .map_err(|e| status(&e.into()))?;
        Ok(record.as_ref().map(convert::record))
    }
}

/// The operator a request names in [`OPERATOR_HEADER`], or [`DEFAULT_OPERATOR`].
fn operator<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(OPERATOR_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| name.chars().take(MAX_OPERATOR_LEN).collect())
        .unwrap_or_else(|| DEFAULT_OPERATOR.to_string())
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("`{field}` is required")))
    } else {
        Ok(value)
    }
}

fn list_query(request: pb::ListSagasRequest) -> Result<ListQuery, Status> {
    let status = StatusKind::parse(&request.status).ok_or_else(|| {
        let known: Vec<&str> = StatusKind::ALL.iter().map(|k| k.as_str()).collect();
        Status::invalid_argument(format!(
            "unknown status `{}`: use one of {}",
            request.status,
            known.join(", ")
        ))
    })?;
    let after = match request.page_token.as_str() {
        "" => None,
        token => Some(ListCursor::decode(token).ok_or_else(|| {
            Status::invalid_argument(
                "`page_token` is not a token this API returned: pass `next_page_token` as is",
            )
        })?),
    };
    let mut query = ListQuery::new(status);
    query.older_than =
        (request.older_than_ms > 0).then(|| Duration::from_millis(request.older_than_ms));
    query.saga = request.saga.filter(|s| !s.is_empty());
    if request.limit > 0 {
        query.limit = request.limit as usize;
    }
    query.after = after;
    Ok(query)
}

#[tonic::async_trait]
impl SagaAdmin for AdminService {
    async fn get_saga(
        &self,
        request: Request<pb::GetSagaRequest>,
    ) -> Result<Response<pb::GetSagaResponse>, Status> {
        self.auth.check(request.metadata())?;
        let trace_id = request.into_inner().trace_id;
        let trace_id = required(&trace_id, "trace_id")?;
        let view = self
            .admin
            .get(trace_id)
            .await
            .map_err(|e| status(&e))?
            .ok_or_else(|| {
                status(&crate::admin::AdminError::NotFound {
                    trace_id: trace_id.to_string(),
                })
            })?;
        Ok(Response::new(pb::GetSagaResponse {
            saga: Some(convert::record(&view.record)),
            history: view.history.iter().map(convert::history).collect(),
            state_json: view.state.map(|state| state.to_string()),
            diagram: view.diagram,
        }))
    }

    async fn list_sagas(
        &self,
        request: Request<pb::ListSagasRequest>,
    ) -> Result<Response<pb::ListSagasResponse>, Status> {
        self.auth.check(request.metadata())?;
        let query = list_query(request.into_inner())?;
        let page = self.admin.list(&query).await.map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListSagasResponse {
            sagas: page.sagas.iter().map(convert::record).collect(),
            next_page_token: page.next.map(|c| c.encode()).unwrap_or_default(),
        }))
    }

    async fn resume_saga(
        &self,
        request: Request<pb::ResumeSagaRequest>,
    ) -> Result<Response<pb::ResumeSagaResponse>, Status> {
        self.auth.check(request.metadata())?;
        let by = operator(&request);
        let trace_id = request.into_inner().trace_id;
        let trace_id = required(&trace_id, "trace_id")?;
        self.admin
            .resume(trace_id, &by)
            .await
            .map_err(|e| status(&e))?;
        tracing::info!(%trace_id, %by, "saga resumed through the admin API");
        Ok(Response::new(pb::ResumeSagaResponse {
            saga: self.current(trace_id).await?,
        }))
    }

    async fn compensate_saga(
        &self,
        request: Request<pb::CompensateSagaRequest>,
    ) -> Result<Response<pb::CompensateSagaResponse>, Status> {
        self.auth.check(request.metadata())?;
        let by = operator(&request);
        let trace_id = request.into_inner().trace_id;
        let trace_id = required(&trace_id, "trace_id")?;
        let result = self
            .admin
            .compensate(trace_id, &by)
            .await
            .map_err(|e| status(&e))?;
        tracing::info!(%trace_id, %by, ?result, "saga compensation requested through the admin API");
        let result = match result {
            CompensationRequest::Requested => "requested",
            CompensationRequest::AlreadyCompensating => "already_compensating",
            CompensationRequest::Reopened => "reopened",
        };
        Ok(Response::new(pb::CompensateSagaResponse {
            result: result.to_string(),
            saga: self.current(trace_id).await?,
        }))
    }

    async fn get_diagram(
        &self,
        request: Request<pb::GetDiagramRequest>,
    ) -> Result<Response<pb::GetDiagramResponse>, Status> {
        self.auth.check(request.metadata())?;
        let request = request.into_inner();
        let saga = required(&request.saga, "saga")?;
        let plain = self.admin.diagram(saga).map_err(|e| status(&e))?;
        let Some(trace_id) = request.trace_id.filter(|id| !id.is_empty()) else {
            return Ok(Response::new(pb::GetDiagramResponse { mermaid: plain }));
        };
        let view = self
            .admin
            .get(&trace_id)
            .await
            .map_err(|e| status(&e))?
            .ok_or_else(|| {
                status(&crate::admin::AdminError::NotFound {
                    trace_id: trace_id.clone(),
                })
            })?;
        if view.record.saga != saga {
            return Err(Status::invalid_argument(format!(
                "saga `{trace_id}` is a `{}`, not a `{saga}`",
                view.record.saga
            )));
        }
        Ok(Response::new(pb::GetDiagramResponse {
            mermaid: view.diagram.unwrap_or(plain),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        self.auth.check(request.metadata())?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_DEAD_LETTERS,
            n => n as usize,
        };
        let saga = request.saga.filter(|s| !s.is_empty());
        let letters = self
            .admin
            .dead_letters(saga.as_deref(), limit)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: letters.iter().map(convert::dead_letter).collect(),
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Result<Response<pb::ReplayDeadLettersResponse>, Status> {
        self.auth.check(request.metadata())?;
        let by = operator(&request);
        let request = request.into_inner();
        let saga = request.saga.filter(|s| !s.is_empty());
        let message_id = request.message_id.filter(|s| !s.is_empty());
        let replayed = self
            .admin
            .replay(saga.as_deref(), message_id.as_deref())
            .await
            .map_err(|e| status(&e))?;
        tracing::info!(
            %by, saga = ?saga, message_id = ?message_id,
            replayed = replayed.replayed.len(), failed = replayed.failed.len(),
            "dead letters replayed through the admin API"
        );
        Ok(Response::new(convert::replayed(&replayed)))
    }

    async fn list_saga_definitions(
        &self,
        request: Request<pb::ListSagaDefinitionsRequest>,
    ) -> Result<Response<pb::ListSagaDefinitionsResponse>, Status> {
        self.auth.check(request.metadata())?;
        Ok(Response::new(pb::ListSagaDefinitionsResponse {
            sagas: self
                .admin
                .sagas()
                .map(|d| convert::definition(&d))
                .collect(),
        }))
    }
}
