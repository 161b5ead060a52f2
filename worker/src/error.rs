//! The error type of `mer-worker` (one enum for the whole crate; each team adds its own variants).

use std::path::PathBuf;

/// Everything that can go wrong in the worker. Input errors name the file, row/line, sample or field.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// An error of the shared layer (prepared file, subject names, labels...).
    #[error(transparent)]
    Shared(#[from] mer_shared::SharedError),
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An annotation file (workbook or CSV) is malformed; `row` is 1-based as a spreadsheet shows it.
    #[error("{file}: row {row}: {field}: {message}")]
    Annotation {
        /// The annotation file.
        file: PathBuf,
        /// 1-based row (spreadsheet numbering) or line.
        row: usize,
        /// Column name or `header`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A dataset folder does not have the expected layout.
    #[error("{path}: {message}")]
    Layout {
        /// The folder or file concerned.
        path: PathBuf,
        /// What is wrong or missing.
        message: String,
    },
    /// One clip cannot be prepared (missing frames, apex outside onset..offset, unreadable image, no face).
    #[error("sample {sample}: {message}")]
    BadSample {
        /// The sample id `dataset/subject/filename`.
        sample: String,
        /// What is wrong.
        message: String,
    },
    /// An OpenCV call failed.
    #[error("opencv: {context}: {message}")]
    OpenCv {
        /// What was being done.
        context: String,
        /// OpenCV's message.
        message: String,
    },
    /// A libtorch call failed.
    #[error("torch: {context}: {message}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's message.
        message: String,
    },
    /// Invalid options or arguments (names the option).
    #[error("invalid option {option}: {message}")]
    InvalidOption {
        /// The option concerned.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// A corrections file is malformed or refers to nothing.
    #[error("corrections {file}: {message}")]
    Corrections {
        /// The corrections file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The synthetic dataset generator failed.
    #[error("synth: {0}")]
    Synth(String),
    /// A test subject (`dataset/subject`) that has no labelled sample in the prepared data.
    #[error(
        "test subject '{subject}' is not in the data under scheme {scheme} (folds: {available})"
    )]
    UnknownTestSubject {
        /// The subject asked for.
        subject: String,
        /// The label scheme.
        scheme: String,
        /// The fold keys that exist (abbreviated).
        available: String,
    },
    /// Training cannot run on this data/config (no training samples, a class-free fold, shape mismatch...).
    #[error("training: {0}")]
    Training(String),
    /// A checkpoint or prior-learning artifact is unreadable or does not match the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The worker agent could not go on (a slot's task panicked or was lost).
    #[error("worker agent: {0}")]
    Agent(String),
    /// The training was cancelled through its cancel flag.
    #[error("cancelled")]
    Cancelled,
}

impl WorkerError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WorkerError::Io {
            path: path.into(),
            source,
        }
    }

    /// A per-sample error.
    pub fn sample(sample: impl Into<String>, message: impl Into<String>) -> Self {
        WorkerError::BadSample {
            sample: sample.into(),
            message: message.into(),
        }
    }

    /// A layout error.
    pub fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        WorkerError::Layout {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Wraps an OpenCV error with what was being done.
    #[cfg(feature = "opencv")]
    pub fn cv(context: impl Into<String>, e: opencv::Error) -> Self {
        WorkerError::OpenCv {
            context: context.into(),
            message: e.to_string(),
        }
    }

    /// Wraps a libtorch error with what was being done.
    #[cfg(feature = "torch")]
    pub fn torch(context: impl Into<String>, e: tch::TchError) -> Self {
        WorkerError::Torch {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

/// Result alias for the worker.
pub type Result<T> = std::result::Result<T, WorkerError>;
