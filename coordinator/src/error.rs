//! The error type of `mer-coordinator` (shared by the spec/plan/aggregation layer and the scheduler,
//! store and services). Input errors name the file and, where known, the line and column.

use std::path::PathBuf;

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// An experiment spec is malformed or contradictory. `line`/`col` are 1-based (0 when unknown).
    #[error("{file}{}: {message}", loc(*line, *col))]
    Spec {
        /// The spec file (or `<memory>`).
        file: String,
        /// 1-based line of the offending key/value, 0 when unknown.
        line: usize,
        /// 1-based column, 0 when unknown.
        col: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A prepared dataset is missing, unreadable, or does not fit the spec.
    #[error("dataset {path}: {message}")]
    Dataset {
        /// The prepared file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The spec cannot be expanded into tasks (e.g. no fold left).
    #[error("plan: {0}")]
    Plan(String),
    /// An error of the shared layer (scoring, prepared files, label schemes).
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
    /// The SQLite state database failed.
    #[error("state database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A JSON document (task payload, fold result, plan) could not be encoded or decoded.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// What was being encoded or decoded.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A peer speaks another protocol version.
    #[error("protocol version mismatch: this side speaks {ours}, the other side {theirs}")]
    Protocol {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// Something the caller asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A request or a result is invalid (names what and why).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        why: String,
    },
    /// A worker process, a trainer or the coordinator server failed.
    #[error("{0}")]
    Runtime(String),
}

impl CoordError {
    /// An invalid-input error.
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        CoordError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    /// A JSON error while handling `what`.
    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        CoordError::Json {
            what: what.into(),
            source,
        }
    }

    /// Converts a gRPC status of `call` into an error (the shared layer's one RPC error).
    pub fn rpc(call: &'static str, status: tonic::Status) -> Self {
        CoordError::Shared(mer_shared::SharedError::rpc(call, status))
    }

    /// Whether the coordinator could not be reached (see [`mer_shared::SharedError::is_unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CoordError::Shared(e) if e.is_unreachable())
    }

    /// A database error on `path`.
    pub fn db(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        CoordError::Db {
            path: path.into(),
            source,
        }
    }
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoordError::Io {
            path: path.into(),
            source,
        }
    }
}

fn loc(line: usize, col: usize) -> String {
    match (line, col) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}
