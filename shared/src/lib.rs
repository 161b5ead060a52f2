//! `mer-shared`: everything the coordinator, the workers and the CLI agree on, with no libtorch and no
//! OpenCV: dataset and label-scheme names, pooled MEGC2019 scoring, the MEGC2019 prediction log, the
//! prepared-data file format, training settings and fold results, and the wire contract between the
//! coordinator and its workers and clients (the gRPC protocol, task payloads, the connection layer and the
//! content-addressed artifact store both sides keep).

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
