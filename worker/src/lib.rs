//! `mer-worker`: what runs on a worker machine. The agent that leases tasks from a coordinator
//! ([`agent`]) and the [`trainer::Trainer`] contract it drives are always built, with the deterministic
//! simulated trainer ([`sim`]) that the orchestration tests and benchmarks use. Everything that touches
//! tensors (the training engine, the baselines, the libtorch trainer) needs the `torch` feature, and
//! everything that touches pixels (readers' frames, face crop, optical flow, synthetic clips, `mer prep`)
//! the `opencv` feature as well, so a build without features links neither libtorch nor OpenCV.

pub mod error;

// The worker process: the agent loop, the trainer contract, the simulated trainer.
pub mod agent;
pub mod dataset_cache;
pub mod fold_split;
pub mod sim;
pub mod trainer;
pub mod user_method;

// Data pipeline (dataset readers, face crop, key-frames, optical flow, synthetic data, preparation).
#[cfg(feature = "torch")]
pub mod datasets;
#[cfg(feature = "opencv")]
pub mod face;
#[cfg(feature = "opencv")]
pub mod figures;
#[cfg(feature = "opencv")]
pub mod flow;
#[cfg(feature = "torch")]
pub mod interp;
#[cfg(feature = "torch")]
pub mod keyframes;
#[cfg(feature = "opencv")]
pub mod prep;
#[cfg(feature = "opencv")]
pub mod synth;

// Training engine (SinC3D, prior + target learning), the baselines, and their trainer for the agent.
#[cfg(feature = "torch")]
pub mod augment;
#[cfg(feature = "torch")]
pub mod baselines;
#[cfg(feature = "torch")]
pub mod bench;
#[cfg(feature = "torch")]
pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod collective;
#[cfg(feature = "torch")]
pub mod data_parallel;
#[cfg(feature = "torch")]
pub mod device;
#[cfg(feature = "torch")]
pub mod dropout;
#[cfg(feature = "torch")]
pub mod engine;
#[cfg(feature = "torch")]
pub mod engine_trainer;
#[cfg(feature = "torch")]
pub mod fastpath;
#[cfg(feature = "torch")]
pub mod focal_loss;
#[cfg(feature = "torch")]
pub mod layer_stats;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "cuda")]
pub mod nccl;
#[cfg(feature = "torch")]
pub mod optim;
#[cfg(feature = "torch")]
pub mod pairs;
#[cfg(feature = "torch")]
pub mod siamese;
