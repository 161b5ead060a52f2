//! `mer-coordinator`: experiment orchestration without libtorch.

pub mod aggregate;
pub mod auth;
pub mod client;
pub mod error;
pub mod http;
pub mod k8s;
pub mod leakage;
pub mod lease;
#[cfg(test)]
mod loopback_get;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod scheduler;
pub mod selection;
pub mod server;
pub mod service;
pub mod slurm;
pub mod spec;
pub mod store;
pub mod task_state;

pub use error::CoordError;
