//! neuralign's readers for brain data: every format a lab keeps, turned into
//! one normalized `.npy` file plus metadata, in bounded memory, with an
//! error naming the field, shape, value or entry when the file is wrong.
//! No database and no libtorch here, so the readers can be fuzzed alone.

pub mod align;
pub mod archive;
pub mod error;
pub mod format;
pub mod h5;
pub mod images;
pub mod limits;
pub mod npy;
pub mod recording;
pub mod reliability;
pub mod stimuli;

pub use error::{IngestError, Problem, Result};
pub use format::Format;
pub use limits::Limits;
