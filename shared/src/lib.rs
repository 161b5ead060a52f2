//! `mer-shared`: everything the coordinator, the workers and the CLI agree on, with no libtorch and no
//! OpenCV.
//!
//! # Layout
//! - Names: [`dataset`] (the datasets and their conventions), [`labels`] (label schemes), [`fold_id`] and
//!   [`loso`] (what a fold leaves out; the one enumeration of LOSO folds), [`composite`] (the official
//!   MEGC2019 list).
//! - Data: [`prepared`] (the prepared-flow file), [`fixtures`] (prepared data made in memory for tests,
//!   benchmarks and the simulated trainer).
//! - Training contract: [`train_config`] (a fold's training settings), [`device`], [`method`] (the methods an
//!   experiment runs), [`user_method`] (a researcher's own command), [`task`] (what a task is and carries),
//!   [`fold`] (what a fold's training returns).
//! - Scores: [`metrics`] (pooled UF1/UAR), [`predictions`], [`megc_log`], [`prediction_file`].
//! - Wire: [`proto`] (the gRPC protocol), [`client`] (connecting to a coordinator), [`artifact_store`] and
//!   [`digest`] (content-addressed files).
//! - [`fs`] (atomic writes), [`error`] (the crate's error type).

pub mod artifact_store;
pub mod client;
pub mod composite;
pub mod dataset;
pub mod device;
pub mod digest;
pub mod error;
pub mod fixtures;
pub mod fold;
pub mod fold_id;
pub mod fs;
pub mod labels;
pub mod loso;
pub mod megc_log;
pub mod method;
pub mod metrics;
pub mod prediction_file;
pub mod predictions;
pub mod prepared;
pub mod proto;
pub mod task;
pub mod train_config;
pub mod user_method;

pub use dataset::Dataset;
pub use error::SharedError;
pub use labels::LabelScheme;
pub use metrics::{Confusion, Scores};
