//! General training parts, apart from any one model (as `candle-nn` is apart from the models built on it).
//!
//! - [`fold`]: a fold's split of a prepared set (no tensors; every trainer splits by it).
//! - [`seeds`]: the seeded generators every random choice of a training comes from.
//! - [`device`], [`precision`]: device selection and thread settings; the bf16 fast path.
//! - [`optim`], [`dropout`]: the parameter set with SGD/Adam and the learning-rate schedule; seeded dropout.
//! - [`checkpoint`]: safetensors checkpoints and artifacts.
//! - [`collective`], [`nccl`], [`replicas`]: gradient sums over replicas (CPU, NCCL) and the weights of
//!   one or many replicas.
//! - [`epochs`]: the one epoch loop: a method supplies its step, the loop iterates, logs, evaluates,
//!   checkpoints and honours cancel.
//!
//! Room `train`: uses only [`crate::error`]. Everything but [`fold`] needs the `torch` feature.

#[cfg(feature = "torch")]
pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod collective;
#[cfg(feature = "torch")]
pub mod device;
#[cfg(feature = "torch")]
pub mod dropout;
#[cfg(feature = "torch")]
pub mod epochs;
pub mod fold;
#[cfg(feature = "cuda")]
pub mod nccl;
#[cfg(feature = "torch")]
pub mod optim;
#[cfg(feature = "torch")]
pub mod precision;
#[cfg(feature = "torch")]
pub mod replicas;
#[cfg(feature = "torch")]
pub mod seeds;
