//! The coordinator's surface on the network: the gRPC services and the HTTP port, the server that runs
//! them, the token/protocol check in front of them, and the client calls that talk to them.
//!
//! - [`server`]: starting a coordinator (store, scheduler, reaper, results writer, services, TLS) and
//!   shutting it down;
//! - [`service`]: the `Worker`, `Artifacts` and `Client` gRPC services;
//! - [`auth`]: the bearer-token and protocol-version interceptor;
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` and the dashboard routes;
//! - [`client`]: the client-side calls (submit, status, results, watch, preview).
//!
//! This is the top room of the crate: it may use every other module (scheduler, store, plan, results,
//! report's dashboard, metrics, k8s and slurm launchers); no other module uses it, outside tests.

pub mod auth;
pub mod client;
pub mod http;
pub mod server;
pub mod service;
