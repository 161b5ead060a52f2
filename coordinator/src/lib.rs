//! `mer-coordinator`: experiment orchestration without libtorch.

pub mod aggregate;
pub mod error;
pub mod http;
pub mod k8s;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod spec;
pub mod artifacts;
pub mod auth;
pub mod lease;
pub mod scheduler;
pub mod store;
pub mod agent;
pub mod client;
pub mod server;
pub mod service;
pub mod sim;
pub mod local;
pub mod simbench;

pub use error::CoordError;
