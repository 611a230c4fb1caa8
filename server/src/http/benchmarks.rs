//! Benchmarks: create (a new version of a name), get by id or
//! `lab/name[@version]`, list, publish, deprecate.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use neuralign_core::resources::{Benchmark, NewBenchmark};
use neuralign_core::service::{BenchmarkFilter, BenchmarkScope};
use serde::{Deserialize, Serialize};

use super::{Auth, JsonBody, QueryParams};
use crate::error_map::ApiError;
use crate::AppState;

#[utoipa::path(post, path = "/v1/benchmarks", request_body = NewBenchmark,
    responses((status = 201, body = Benchmark), (status = 400), (status = 401)))]
pub async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<NewBenchmark>,
) -> Result<(StatusCode, Json<Benchmark>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_benchmark(&caller, req).await?),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// visible (own and public; default) | lab | public
    pub scope: Option<BenchmarkScope>,
    pub name: Option<String>,
    #[serde(default)]
    pub include_deprecated: bool,
    pub limit: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BenchmarkPage {
    pub benchmarks: Vec<Benchmark>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/benchmarks", params(ListParams), responses((status = 200, body = BenchmarkPage)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<ListParams>,
) -> Result<Json<BenchmarkPage>, ApiError> {
    let f = BenchmarkFilter {
        scope: p.scope.unwrap_or_default(),
        name: p.name,
        include_deprecated: p.include_deprecated,
        limit: p.limit,
        page_token: p.page_token,
    };
    let page = s.service.list_benchmarks(&caller, &f).await?;
    Ok(Json(BenchmarkPage {
        benchmarks: page.items,
        next_page_token: page.next_page_token,
    }))
}

/// `{reference}` is an id or `lab/name[@version]` (URL-encode the slash as %2F).
#[utoipa::path(get, path = "/v1/benchmarks/{reference}", params(("reference" = String, Path)),
    responses((status = 200, body = Benchmark), (status = 404)))]
pub async fn get_one(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(reference): Path<String>,
) -> Result<Json<Benchmark>, ApiError> {
    Ok(Json(s.service.get_benchmark(&caller, &reference).await?))
}

#[utoipa::path(post, path = "/v1/benchmarks/{reference}/publish", params(("reference" = String, Path)),
    responses((status = 200, body = Benchmark), (status = 403), (status = 404), (status = 409)))]
pub async fn publish(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(reference): Path<String>,
) -> Result<Json<Benchmark>, ApiError> {
    Ok(Json(
        s.service.publish_benchmark(&caller, &reference).await?,
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecateBody {
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/benchmarks/{reference}/deprecate", params(("reference" = String, Path)),
    request_body = DeprecateBody, responses((status = 200, body = Benchmark), (status = 403), (status = 404)))]
pub async fn deprecate(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(reference): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Benchmark>, ApiError> {
    // The body is optional: empty means no reason.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<DeprecateBody>(&body)
            .map_err(|e| neuralign_core::Error::invalid(format!("body: {e}")))?
            .reason
    };
    Ok(Json(
        s.service
            .deprecate_benchmark(&caller, &reference, reason.as_deref())
            .await?,
    ))
}
