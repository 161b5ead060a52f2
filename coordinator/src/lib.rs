//! `mer-coordinator`: experiment orchestration without libtorch.

pub mod aggregate;
pub mod error;
pub mod plan;
pub mod spec;

pub use error::CoordError;
