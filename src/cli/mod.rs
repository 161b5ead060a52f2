//! One module per group of subcommands.

pub mod bench;
#[cfg(feature = "worker")]
pub mod data;
#[cfg(feature = "worker")]
pub mod engine_trainer;
pub mod score;
