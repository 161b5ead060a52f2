//! One module per group of subcommands.

pub mod bench;
pub mod cluster;
#[cfg(feature = "worker")]
pub mod data;
#[cfg(feature = "worker")]
pub mod engine_trainer;
pub mod report;
pub mod score;
#[cfg(feature = "worker")]
pub mod train;
