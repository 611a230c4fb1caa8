//! Jobs: submit, read, list, cancel, events (JSON or live server-sent
//! events), result; and the metric catalogue.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use neuralign_core::catalog::MetricInfo;
use neuralign_core::model::{parse_id, Job, JobEvent, JobFilter, JobSpec, JobState, NewJob};
use neuralign_core::{Error, ErrorCode};
use serde::{Deserialize, Serialize};

use super::{Auth, JsonBody};
use crate::error_map::ApiError;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// `{"kind": "compare", "a": ..., "b": ..., "metrics": [...]}` or `{"kind": "noop", ...}`.
    #[schema(value_type = JobSpec)]
    pub spec: serde_json::Value,
    #[serde(default)]
    pub priority: i32,
    pub max_attempts: Option<u32>,
    /// Same as the `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
}

#[utoipa::path(post, path = "/v1/jobs", request_body = SubmitJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "returns the existing job for a repeated key")),
    responses((status = 201, body = Job, description = "created"), (status = 200, body = Job, description = "existing job for this idempotency key"),
        (status = 400), (status = 401), (status = 404), (status = 409)))]
pub async fn submit(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SubmitJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let header_key = headers.get("idempotency-key").map(|v| {
        v.to_str()
            .map(str::to_string)
            .map_err(|_| Error::invalid("idempotency-key: header is not valid text"))
    });
    let header_key = header_key.transpose()?;
    if let (Some(h), Some(b)) = (&header_key, &req.idempotency_key) {
        if h != b {
            return Err(Error::invalid(
                "idempotency_key: the header and the body name different keys",
            )
            .into());
        }
    }
    let job = NewJob {
        spec: JobSpec::from_json(req.spec)?,
        priority: req.priority,
        max_attempts: req.max_attempts,
        idempotency_key: header_key.or(req.idempotency_key),
    };
    let (job, created) = s.service.submit_job(&caller, job).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(job),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/jobs", params(ListParams), responses((status = 200, body = JobPage), (status = 400), (status = 401)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let filter = JobFilter {
        state: p.state.as_deref().map(JobState::parse).transpose()?,
        kind: p.kind,
        limit: p.limit,
        page_token: p.page_token,
    };
    let page = s.service.list_jobs(&caller, &filter).await?;
    Ok(Json(JobPage {
        jobs: page.items,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path)), responses((status = 200, body = Job), (status = 404)))]
pub async fn get_one(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(
        s.service.get_job(&caller, parse_id("id", &id)?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404), (status = 409)))]
pub async fn cancel(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(
        s.service.cancel_job(&caller, parse_id("id", &id)?).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only events with a larger id.
    pub after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/jobs/{id}/events", params(("id" = String, Path), EventParams),
    responses((status = 200, body = [JobEvent], description = "JSON list; with `Accept: text/event-stream`, a live stream that ends after the final state"),
        (status = 404)))]
pub async fn events(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(p): Query<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id("id", &id)?;
    let after = p.after.unwrap_or(0);
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_sse {
        return Ok(Json(s.service.job_events(&caller, id, after).await?).into_response());
    }
    // Fail before streaming if the job is not the caller's.
    s.service.get_job(&caller, id).await?;
    let stream = s
        .service
        .watch_job(&caller, id, after)
        .map(|r| -> Result<Event, Infallible> {
            Ok(match r {
                Ok(e) => Event::default()
                    .id(e.id.to_string())
                    .event(e.kind.clone())
                    .data(serde_json::to_string(&e).unwrap_or_default()),
                Err(e) => Event::default().event("error").data(
                    serde_json::json!({"code": e.code().as_str(), "message": e.client_message()})
                        .to_string(),
                ),
            })
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{id}/result", params(("id" = String, Path)),
    responses((status = 200, description = "the job's result JSON"), (status = 404), (status = 409, description = "the job has not succeeded")))]
pub async fn result(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = s.service.get_job(&caller, parse_id("id", &id)?).await?;
    match (job.state, job.result) {
        (JobState::Succeeded, Some(r)) => Ok(Json(r)),
        (state, _) => Err(Error::new(
            ErrorCode::FailedPrecondition,
            format!(
                "job {} is {}; a result exists only once it succeeded{}",
                job.id,
                state.as_str(),
                job.error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ),
        )
        .into()),
    }
}

#[utoipa::path(get, path = "/v1/metrics", responses((status = 200, body = [MetricInfo])))]
pub async fn metrics(State(s): State<AppState>, Auth(_caller): Auth) -> Json<Vec<MetricInfo>> {
    Json(s.service.metrics())
}
