//! What a reader reports when a file cannot be taken in: a message naming the
//! field, shape, value or entry at fault, and whether the file was merely
//! wrong (400) or over a configured limit (413). The service layer maps the
//! two onto its own error codes.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Invalid,
    TooLarge,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    pub problem: Problem,
    pub message: String,
}

impl IngestError {
    pub fn invalid(message: impl Into<String>) -> Self {
        IngestError {
            problem: Problem::Invalid,
            message: message.into(),
        }
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        IngestError {
            problem: Problem::TooLarge,
            message: message.into(),
        }
    }
    /// Disk errors while spooling are not the client's fault, but they are
    /// rare enough on the temp dir that a message is more useful than a code.
    pub fn io(context: &str, e: std::io::Error) -> Self {
        IngestError::invalid(format!("{context}: {e}"))
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Lists at most `max` items and says how many more there were, so an error
/// about 40,000 missing ids stays readable.
pub fn list_some<T: std::fmt::Display>(items: &[T], max: usize) -> String {
    let shown: Vec<String> = items.iter().take(max).map(|i| format!("{i}")).collect();
    if items.len() > max {
        format!("{} and {} more", shown.join(", "), items.len() - max)
    } else {
        shown.join(", ")
    }
}
