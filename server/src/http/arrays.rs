//! Array upload (streamed `.npy` bodies), metadata and download.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use neuralign_core::model::{parse_id, ArrayMeta};
use neuralign_core::service::ByteStream;
use neuralign_core::{Error, ErrorCode};
use serde::{Deserialize, Serialize};

use super::Auth;
use crate::error_map::ApiError;
use crate::AppState;

/// The request body as a byte stream, refused early when its declared
/// length is over the upload limit (the service enforces it again on the
/// bytes themselves).
pub(super) fn upload_stream(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<ByteStream, ApiError> {
    let limit = s.service.config().max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("body: upload exceeds the limit of {limit} bytes"),
        )
        .into());
    }
    Ok(Box::pin(body.into_data_stream().map(|r| {
        r.map_err(|e| Error::invalid(format!("body: upload interrupted: {e}")))
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// A name for the array.
    pub name: Option<String>,
}

#[utoipa::path(post, path = "/v1/arrays", params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a .npy file (float32/float64)"),
    responses((status = 201, body = ArrayMeta), (status = 400), (status = 401), (status = 413)))]
pub async fn upload(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ArrayMeta>), ApiError> {
    let stream = upload_stream(&s, &headers, body)?;
    let meta = s
        .service
        .upload_array(&caller, p.name.as_deref().unwrap_or(""), stream)
        .await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ArrayPage {
    pub arrays: Vec<ArrayMeta>,
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/v1/arrays", params(ListParams), responses((status = 200, body = ArrayPage), (status = 401)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ListParams>,
) -> Result<Json<ArrayPage>, ApiError> {
    let page = s
        .service
        .list_arrays(&caller, p.limit, p.page_token.as_deref())
        .await?;
    Ok(Json(ArrayPage {
        arrays: page.items,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(get, path = "/v1/arrays/{id}", params(("id" = String, Path)), responses((status = 200, body = ArrayMeta), (status = 404)))]
pub async fn get_one(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<ArrayMeta>, ApiError> {
    Ok(Json(
        s.service.get_array(&caller, parse_id("id", &id)?).await?,
    ))
}

#[utoipa::path(get, path = "/v1/arrays/{id}/data", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", description = "the stored .npy file"), (status = 404)))]
pub async fn download(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (meta, stream) = s
        .service
        .download_array(&caller, parse_id("id", &id)?)
        .await?;
    let body =
        Body::from_stream(stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, meta.size_bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.npy\"", meta.id),
            ),
        ],
        body,
    )
        .into_response())
}
