//! `mer-worker`: what runs on a worker machine.
//!
//! # Layout
//! One folder per concern, from the bottom up; a room may use the rooms above it in this list, never one
//! below it (`scripts/module_cycles.py --layers` checks it; tests may reach anywhere):
//!
//! - [`error`]: the crate's one error enum.
//! - [`agent`]: the agent that leases tasks from a coordinator, the [`agent::trainer::Trainer`] contract it
//!   drives, the dataset cache and the deterministic simulated trainer. No feature needed.
//! - [`prep`]: from a dataset on disk to a prepared file: the readers, face crop, key-frames,
//!   interpolation, Farneback flow, figures, optical strain and the baselines' input planes (`mer prep`).
//! - [`synth`]: synthetic datasets in the real on-disk layouts (`mer synth`).
//! - [`train`]: general training parts, apart from any one model: devices, precision, optimisers,
//!   dropout, checkpoints, collectives (NCCL), a fold's split, seeds, and the one epoch loop.
//! - [`mersiamc3d`]: the method: SinC3D, the siamese head, pairs, focal loss, augmentation, layer
//!   statistics, data-parallel steps, and the engine (prior learning, target learning).
//! - [`baselines`]: STSTNet, OFF-ApexNet and LBP-TOP + SVM on the same folds.
//! - [`engine_trainer`], [`user_method`]: the trainers the agent runs (libtorch methods; a user's own
//!   command), and [`bench`] with [`fixtures`] for benchmarks and tests.
//!
//! Features: everything that touches tensors needs `torch`, everything that touches pixels (readers'
//! frames, face crop, optical flow, synthetic clips, `mer prep`) `opencv` as well, so a build without
//! features links neither libtorch nor OpenCV; `cuda` adds the NCCL collective.

pub mod error;

pub mod agent;
#[cfg(feature = "torch")]
pub mod baselines;
#[cfg(feature = "torch")]
pub mod mersiamc3d;
pub mod prep;
#[cfg(feature = "opencv")]
pub mod synth;
pub mod train;

#[cfg(feature = "torch")]
pub mod bench;
#[cfg(feature = "torch")]
pub mod engine_trainer;
#[cfg(feature = "torch")]
pub mod fixtures;
pub mod user_method;
