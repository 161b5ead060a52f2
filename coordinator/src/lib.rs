//! `mer-coordinator`: experiment orchestration without libtorch.
//!
//! # Layout
//!
//! - [`spec`]: experiment specs (TOML), their checks and the DNS-label rule of names;
//! - [`plan`]: a spec expanded into a task graph (prior and target tasks, task keys, nested selection);
//! - [`store`]: the SQLite mirror of the scheduler's state, results and provenance;
//! - [`scheduler`]: the in-memory task state, leases, fair-share leasing, completion and failures;
//! - [`task_state`]: the one vocabulary a task's states are shown in;
//! - [`metrics`]: the Prometheus metrics of the coordinator;
//! - [`results`]: pooling fold results, nested selection, the leakage premium, and writing a run folder
//!   (`results.json`, `summary.md`, the report bundle);
//! - [`report`]: `mer report` (Markdown, HTML, plots) and the live dashboard, read from a run folder;
//! - [`k8s`] and [`slurm`]: the launchers that start workers on Kubernetes and Slurm;
//! - [`rpc`]: the gRPC services, the HTTP port, authentication, the server and the client calls;
//! - [`error`]: [`CoordError`], the crate's error type.
//!
//! Lower rooms never use higher ones: `spec` and `plan` stand on `mer-shared`; `store`, `scheduler`,
//! `results` and `report` on those; the launchers on the scheduler; `rpc` on everything.

pub mod error;
pub mod k8s;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod results;
pub mod rpc;
pub mod scheduler;
pub mod slurm;
pub mod spec;
pub mod store;
pub mod task_state;
#[cfg(test)]
mod test_support;

pub use error::CoordError;
