//! Stimulus sets and recordings: streamed uploads in any supported format
//! (options in the query string, the file as the body), metadata, stimuli,
//! thumbnails and per-neuron reliability.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use neuralign_core::model::parse_id;
use neuralign_core::resources::{Neuron, Recording, Stimulus, StimulusSet};
use neuralign_core::service::{RecordingParams, StimulusSetParams};
use serde::{Deserialize, Serialize};

use super::arrays::upload_stream;
use super::{Auth, QueryParams};
use crate::error_map::ApiError;
use crate::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub page_token: Option<String>,
}

#[utoipa::path(post, path = "/v1/stimulus-sets", params(StimulusSetParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = ".npy/.npz array, zip of PNG/JPEG with manifest.csv (stimulus_id,filename[,label,...]), or HDF5"),
    responses((status = 201, body = StimulusSet), (status = 400), (status = 401), (status = 413)))]
pub async fn upload_stimulus_set(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<StimulusSetParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<StimulusSet>), ApiError> {
    let up = p.into_upload()?;
    let stream = upload_stream(&s, &headers, body)?;
    let set = s.service.upload_stimulus_set(&caller, up, stream).await?;
    Ok((StatusCode::CREATED, Json(set)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StimulusSetPage {
    pub stimulus_sets: Vec<StimulusSet>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/stimulus-sets", params(PageParams), responses((status = 200, body = StimulusSetPage)))]
pub async fn list_stimulus_sets(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<StimulusSetPage>, ApiError> {
    let page = s
        .service
        .list_stimulus_sets(&caller, p.limit, p.page_token.as_deref())
        .await?;
    Ok(Json(StimulusSetPage {
        stimulus_sets: page.items,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(get, path = "/v1/stimulus-sets/{id}", params(("id" = String, Path)), responses((status = 200, body = StimulusSet), (status = 404)))]
pub async fn get_stimulus_set(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<StimulusSet>, ApiError> {
    Ok(Json(
        s.service
            .get_stimulus_set(&caller, parse_id("id", &id)?)
            .await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StimulusPage {
    pub stimuli: Vec<Stimulus>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/stimulus-sets/{id}/stimuli", params(("id" = String, Path), PageParams),
    responses((status = 200, body = StimulusPage), (status = 404)))]
pub async fn list_stimuli(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<StimulusPage>, ApiError> {
    let page = s
        .service
        .list_stimuli(
            &caller,
            parse_id("id", &id)?,
            p.limit,
            p.page_token.as_deref(),
        )
        .await?;
    Ok(Json(StimulusPage {
        stimuli: page.items,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(get, path = "/v1/stimulus-sets/{id}/stimuli/{stimulus_id}/thumbnail",
    params(("id" = String, Path), ("stimulus_id" = String, Path)),
    responses((status = 200, content_type = "image/png", description = "a PNG at most 64 px on a side"), (status = 404)))]
pub async fn thumbnail(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path((id, stimulus_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let png = s
        .service
        .stimulus_thumbnail(&caller, parse_id("id", &id)?, &stimulus_id)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        png,
    ))
}

#[utoipa::path(post, path = "/v1/recordings", params(RecordingParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = ".npy/.npz, HDF5, long CSV (stimulus_id,neuron_id,repetition,value[,time_bin]) or NWB"),
    responses((status = 201, body = Recording), (status = 400), (status = 401), (status = 413)))]
pub async fn upload_recording(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<RecordingParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Recording>), ApiError> {
    let up = p.into_upload()?;
    let stream = upload_stream(&s, &headers, body)?;
    let rec = s.service.upload_recording(&caller, up, stream).await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordingPage {
    pub recordings: Vec<Recording>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/recordings", params(PageParams), responses((status = 200, body = RecordingPage)))]
pub async fn list_recordings(
    State(s): State<AppState>,
    Auth(caller): Auth,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<RecordingPage>, ApiError> {
    let page = s
        .service
        .list_recordings(&caller, p.limit, p.page_token.as_deref())
        .await?;
    Ok(Json(RecordingPage {
        recordings: page.items,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(get, path = "/v1/recordings/{id}", params(("id" = String, Path)), responses((status = 200, body = Recording), (status = 404)))]
pub async fn get_recording(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Recording>, ApiError> {
    Ok(Json(
        s.service
            .get_recording(&caller, parse_id("id", &id)?)
            .await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NeuronList {
    pub reliability_method: &'static str,
    pub neurons: Vec<Neuron>,
}

#[utoipa::path(get, path = "/v1/recordings/{id}/neurons", params(("id" = String, Path)), responses((status = 200, body = NeuronList), (status = 404)))]
pub async fn recording_neurons(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<NeuronList>, ApiError> {
    Ok(Json(NeuronList {
        reliability_method: neuralign_core::service::RELIABILITY_METHOD,
        neurons: s
            .service
            .recording_neurons(&caller, parse_id("id", &id)?)
            .await?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StimulusIdList {
    pub stimulus_ids: Vec<String>,
}

#[utoipa::path(get, path = "/v1/recordings/{id}/stimuli", params(("id" = String, Path)),
    responses((status = 200, body = StimulusIdList, description = "the stimulus id of each index on the recording's stimulus axis"), (status = 404)))]
pub async fn recording_stimuli(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<StimulusIdList>, ApiError> {
    Ok(Json(StimulusIdList {
        stimulus_ids: s
            .service
            .recording_stimulus_ids(&caller, parse_id("id", &id)?)
            .await?,
    }))
}
