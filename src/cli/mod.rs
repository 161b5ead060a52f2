//! One module per group of subcommands.

pub mod bench;
pub mod cluster;
#[cfg(feature = "worker")]
pub mod data;
pub mod report;
pub mod score;
#[cfg(feature = "worker")]
pub mod train;
