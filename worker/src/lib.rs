//! `mer-worker`: everything that touches pixels and tensors.

pub mod error;

// Data pipeline (dataset readers, face crop, key-frames, optical flow, synthetic data, preparation).
pub mod datasets;
#[cfg(feature = "opencv")]
pub mod face;
#[cfg(feature = "opencv")]
pub mod figures;
#[cfg(feature = "opencv")]
pub mod flow;
pub mod interp;
pub mod keyframes;
#[cfg(feature = "opencv")]
pub mod prep;
#[cfg(feature = "opencv")]
pub mod synth;

// Training engine (SinC3D, prior + target learning).
pub mod augment;
pub mod baselines;
pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod engine;
pub mod fastpath;
pub mod focal_loss;
pub mod layer_stats;
pub mod model;
pub mod optim;
pub mod pairs;
pub mod siamese;
