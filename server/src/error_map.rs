//! The one code table: service error codes to HTTP statuses and gRPC codes.
//! Exhaustive on purpose: a new code does not compile until it is mapped.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use neuralign_core::{Error, ErrorCode};

pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::AlreadyExists => StatusCode::CONFLICT,
        ErrorCode::FailedPrecondition => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
        ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
        ErrorCode::PayloadTooLarge => tonic::Code::ResourceExhausted,
        ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::Internal => tonic::Code::Internal,
    }
}

fn log_internal(e: &Error) {
    if let Error::Internal(cause) = e {
        tracing::error!(error = %cause, "internal error");
    }
}

/// An error on its way to an HTTP client: `{code, message}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        log_internal(&self.0);
        let body = serde_json::json!({ "code": self.0.code().as_str(), "message": self.0.client_message() });
        (http_status(self.0.code()), axum::Json(body)).into_response()
    }
}

/// The same error as a gRPC status; the stable code travels in the
/// `x-neuralign-code` metadata entry.
pub fn to_status(e: Error) -> tonic::Status {
    log_internal(&e);
    let mut s = tonic::Status::new(grpc_code(e.code()), e.client_message());
    if let Ok(v) = e.code().as_str().parse() {
        s.metadata_mut().insert("x-neuralign-code", v);
    }
    s
}
