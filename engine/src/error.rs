//! Engine errors: bad input (the caller's fault, named precisely), a libtorch
//! failure (wrapped, never exposed raw), or cancellation.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    pub fn invalid(m: impl Into<String>) -> Self {
        EngineError::Invalid(m.into())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
