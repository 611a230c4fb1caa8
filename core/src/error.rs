//! The one error type of the service layer. Every failure a client can see
//! has a code from a small closed set; the server maps codes to HTTP statuses
//! and gRPC codes in one place (`server/src/error_map.rs`).

use std::fmt;

/// Stable, machine-readable error codes. Clients match on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    PayloadTooLarge,
    ResourceExhausted,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service-layer error: a code plus a message that names the offending
/// field, shape or value. Internal errors keep their cause for the log and
/// show clients only a generic message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Client {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(what: &str, id: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} {id} not found"))
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Internal(Box::new(e))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// What a client may see. Internal causes are logged, never sent.
    pub fn client_message(&self) -> String {
        match self {
            Error::Client { message, .. } => message.clone(),
            Error::Internal(_) => "internal error".to_string(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                let what = db.constraint().unwrap_or("unique constraint");
                return Error::new(ErrorCode::AlreadyExists, format!("already exists ({what})"));
            }
        }
        Error::internal(e)
    }
}

impl From<neuralign_ingest::IngestError> for Error {
    fn from(e: neuralign_ingest::IngestError) -> Self {
        let code = match e.problem {
            neuralign_ingest::Problem::Invalid => ErrorCode::InvalidArgument,
            neuralign_ingest::Problem::TooLarge => ErrorCode::PayloadTooLarge,
        };
        Error::new(code, e.message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(e)
    }
}
