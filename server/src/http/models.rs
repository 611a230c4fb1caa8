//! Models (TorchScript upload, built-in spec), score cards, region→layer
//! maps and leaderboards.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use neuralign_core::model::parse_id;
use neuralign_core::resources::{LeaderboardEntry, Model, NewBuiltinModel, RegionMap, ScoreCard};
use neuralign_core::service::TorchScriptParams;
use serde::{Deserialize, Serialize};

use super::arrays::upload_stream;
use super::data::PageParams;
use super::{Auth, JsonBody, QueryParams};
use crate::error_map::ApiError;
use crate::AppState;

fn created(m: Model) -> (StatusCode, Json<Model>) {
    let status = if m.state == "ready" {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(m))
}

#[utoipa::path(post, path = "/v1/models/torchscript", params(TorchScriptParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a TorchScript file (torch.jit.save)"),
    responses((status = 201, body = Model, description = "probed and ready"), (status = 202, body = Model, description = "still probing (wait=false)"),
        (status = 400, description = "cannot load, no named layers, or rejects the declared input")))]
pub async fn register_torchscript(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<TorchScriptParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Model>), ApiError> {
    let wait = p.wait.unwrap_or(true);
    let up = p.into_upload()?;
    let stream = upload_stream(&s, &headers, body)?;
    let m = s.service.register_torchscript(&caller, up, stream).await?;
    let m = if wait {
        s.service
            .await_probe(&caller, m, neuralign_core::service::PROBE_WAIT)
            .await?
    } else {
        m
    };
    Ok(created(m))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Wait for the probe (default true); false answers 202 at once.
    pub wait: Option<bool>,
}

#[utoipa::path(post, path = "/v1/models/builtin", params(WaitParams), request_body = NewBuiltinModel,
    responses((status = 201, body = Model), (status = 202, body = Model), (status = 400)))]
pub async fn register_builtin(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<WaitParams>,
    JsonBody(req): JsonBody<NewBuiltinModel>,
) -> Result<(StatusCode, Json<Model>), ApiError> {
    let m = s.service.register_builtin(&caller, req).await?;
    let m = if p.wait.unwrap_or(true) {
        s.service
            .await_probe(&caller, m, neuralign_core::service::PROBE_WAIT)
            .await?
    } else {
        m
    };
    Ok(created(m))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelPage {
    pub models: Vec<Model>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/models", params(PageParams), responses((status = 200, body = ModelPage)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<ModelPage>, ApiError> {
    let page = s
        .service
        .list_models(&caller, p.limit, p.page_token.as_deref())
        .await?;
    Ok(Json(ModelPage {
        models: page.items,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(get, path = "/v1/models/{id}", params(("id" = String, Path)), responses((status = 200, body = Model), (status = 404)))]
pub async fn get_one(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    Ok(Json(
        s.service.get_model(&caller, parse_id("id", &id)?).await?,
    ))
}

#[utoipa::path(get, path = "/v1/models/{id}/scores", params(("id" = String, Path)), responses((status = 200, body = ScoreCard), (status = 404)))]
pub async fn score_card(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<ScoreCard>, ApiError> {
    Ok(Json(
        s.service.score_card(&caller, parse_id("id", &id)?).await?,
    ))
}

#[utoipa::path(get, path = "/v1/models/{id}/region-map", params(("id" = String, Path)), responses((status = 200, body = RegionMap), (status = 404)))]
pub async fn region_map(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<RegionMap>, ApiError> {
    let id = parse_id("id", &id)?;
    Ok(Json(s.service.region_layer_map(&caller, id).await?))
}

#[utoipa::path(get, path = "/v1/region-maps/{id}", params(("id" = String, Path)), responses((status = 200, body = RegionMap), (status = 404)))]
pub async fn region_map_artifact(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<RegionMap>, ApiError> {
    let id = parse_id("id", &id)?;
    Ok(Json(s.service.get_region_map(&caller, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Leaderboard {
    pub benchmarks: Vec<String>,
    pub entries: Vec<LeaderboardEntry>,
}

#[utoipa::path(get, path = "/v1/benchmarks/{reference}/leaderboard", params(("reference" = String, Path)),
    responses((status = 200, body = Leaderboard), (status = 404)))]
pub async fn leaderboard(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(reference): Path<String>,
) -> Result<Json<Leaderboard>, ApiError> {
    let entries = s.service.leaderboard(&caller, &reference).await?;
    Ok(Json(Leaderboard {
        benchmarks: vec![reference],
        entries,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AggregateParams {
    /// Comma-separated benchmark references; models scored on all of them are ranked by their mean.
    pub benchmarks: String,
}

#[utoipa::path(get, path = "/v1/leaderboard", params(AggregateParams), responses((status = 200, body = Leaderboard)))]
pub async fn aggregate(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<AggregateParams>,
) -> Result<Json<Leaderboard>, ApiError> {
    let refs: Vec<String> = p
        .benchmarks
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let entries = s.service.aggregate_leaderboard(&caller, &refs).await?;
    Ok(Json(Leaderboard {
        benchmarks: refs,
        entries,
    }))
}
