//! Admin endpoints: labs and their keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use neuralign_core::model::{parse_id, Lab};
use serde::{Deserialize, Serialize};

use super::{Auth, JsonBody};
use crate::error_map::ApiError;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLab {
    pub name: String,
    pub max_running_jobs: Option<i32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedLab {
    pub lab: Lab,
    /// Shown once; only its hash is stored.
    pub api_key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key_id: uuid::Uuid,
    pub api_key: String,
}

#[utoipa::path(post, path = "/v1/labs", request_body = CreateLab,
    responses((status = 201, body = CreatedLab), (status = 400), (status = 401), (status = 403), (status = 409)))]
pub async fn create_lab(
    State(s): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<CreateLab>,
) -> Result<(StatusCode, Json<CreatedLab>), ApiError> {
    let (lab, api_key) = s
        .service
        .create_lab(&caller, &req.name, req.max_running_jobs)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedLab { lab, api_key })))
}

#[utoipa::path(get, path = "/v1/labs", responses((status = 200, body = [Lab]), (status = 401), (status = 403)))]
pub async fn list_labs(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<Vec<Lab>>, ApiError> {
    Ok(Json(s.service.list_labs(&caller).await?))
}

#[utoipa::path(post, path = "/v1/labs/{id}/keys", params(("id" = String, Path)),
    responses((status = 201, body = CreatedKey), (status = 401), (status = 403), (status = 404)))]
pub async fn create_key(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let (key_id, api_key) = s
        .service
        .create_api_key(&caller, parse_id("id", &id)?)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key_id, api_key })))
}
