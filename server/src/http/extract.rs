//! Extractors: the authenticated caller, and JSON bodies whose rejections
//! become `{code, message}` errors naming the problem.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use neuralign_core::{Caller, Error, ErrorCode};
use serde::de::DeserializeOwned;

use crate::error_map::ApiError;
use crate::AppState;

/// The caller behind `Authorization: Bearer <key>`.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token =
            match header {
                None => None,
                Some(h) => Some(h.strip_prefix("Bearer ").ok_or_else(|| {
                    Error::unauthenticated("authorization: expected `Bearer <key>`")
                })?),
            };
        Ok(Auth(state.service.authenticate(token).await?))
    }
}

/// `axum::Json` with errors in the service's format.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(ApiError(json_error(rejection))),
        }
    }
}

fn json_error(r: JsonRejection) -> Error {
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            Error::invalid("content-type: expected `application/json`")
        }
        JsonRejection::BytesRejection(b)
            if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Error::new(
                ErrorCode::PayloadTooLarge,
                "body: JSON body exceeds the size limit",
            )
        }
        other => Error::invalid(format!("body: {}", other.body_text())),
    }
}

/// `axum::extract::Query` with errors in the service's format.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(r) => Err(ApiError(Error::invalid(format!(
                "query: {}",
                r.body_text()
            )))),
        }
    }
}
