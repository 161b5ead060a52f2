//! The error type of `mer-shared`.

use std::path::PathBuf;

/// Everything that can go wrong in the shared layer. Input errors always name the file, the line (1-based)
/// and the field that was wrong, so that a user can fix their input without guessing.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// A line of an input file could not be parsed.
    #[error("{file}:{line}: {field}: {message}")]
    Parse {
        /// The file being read (or `<stdin>`/`<memory>`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// Which field was wrong (column name or `header`, `line`).
        field: String,
        /// What was wrong with it.
        message: String,
    },
    /// A whole input was unusable (empty, no samples...).
    #[error("{file}: {message}")]
    Input {
        /// The file being read.
        file: String,
        /// What was wrong with it.
        message: String,
    },
    /// An unknown dataset name.
    #[error("unknown dataset '{0}' (expected smic, casme2, samm, casme3a, casme3c, 4dme or mmew)")]
    UnknownDataset(String),
    /// A subject name that does not follow the dataset's convention.
    #[error("'{raw}' is not a {dataset} subject name")]
    BadSubject {
        /// The dataset's display name.
        dataset: &'static str,
        /// The name as given.
        raw: String,
    },
    /// An unknown label scheme name.
    #[error("unknown label scheme '{0}' (expected megc3, objective5 or emotion5)")]
    UnknownScheme(String),
    /// A label index outside the scheme.
    #[error("label {label} is outside scheme {scheme} (classes 0..{classes})")]
    LabelOutOfRange {
        /// The offending label.
        label: i64,
        /// The scheme's name.
        scheme: String,
        /// Number of classes of the scheme.
        classes: usize,
    },
    /// Two confusion matrices over different numbers of classes were merged.
    #[error("cannot merge a {a}-class confusion matrix with a {b}-class one")]
    ClassMismatch {
        /// Classes of the left side.
        a: usize,
        /// Classes of the right side.
        b: usize,
    },
    /// A prepared-data file is malformed.
    #[error("prepared file {path}: {message}")]
    Prepared {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A TOML/JSON configuration error (message carries line and column where known).
    #[error("{file}: {message}")]
    Config {
        /// The file being read.
        file: String,
        /// The error, with position.
        message: String,
    },
    /// A request, a reply or an argument is invalid (names what and why).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        why: String,
    },
    /// A coordinator could not be reached.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A gRPC call returned an error status.
    #[error("{call}: {message} ({code:?})")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// An artifact's bytes do not match its content hash.
    #[error("artifact {expected}: bytes do not match the hash (got sha256 {actual})")]
    HashMismatch {
        /// The declared hash.
        expected: String,
        /// The hash of the bytes received.
        actual: String,
    },
}

impl SharedError {
    /// An invalid-input error.
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        SharedError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    /// Converts a gRPC status of `call` into an error.
    pub fn rpc(call: &'static str, status: tonic::Status) -> Self {
        SharedError::Rpc {
            call,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Whether the coordinator could not be reached (nobody listening, connection refused or lost): the
    /// lazily opened connection shows that as an `Unavailable` status of the first call.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SharedError::Rpc {
                code: tonic::Code::Unavailable,
                ..
            }
        )
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SharedError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the shared layer.
pub type Result<T> = std::result::Result<T, SharedError>;
