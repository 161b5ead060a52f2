//! The method: MERSiamC3D (Zhao et al., Neurocomputing 2021).
//!
//! - [`model`]: SinC3D, the 3D CNN tower and its classifier head.
//! - [`siamese`], [`pairs`]: prior learning's siamese head (eq. 8) and its same/different pairs (eq. 7).
//! - [`focal_loss`]: target learning's loss.
//! - [`augment`]: the training set on the device and the paper's augmentation.
//! - [`layer_stats`]: per-layer gradient and activation statistics (a diagnostic).
//! - [`data_parallel`]: the method's steps split over replicas.
//! - [`engine`]: prior learning and target learning of one LOSO fold, on [`crate::train::epochs`].
//!
//! Room `mersiamc3d`: uses [`crate::train`], [`crate::prep`] and [`crate::error`]; needs `torch`.

pub mod augment;
pub mod data_parallel;
pub mod engine;
pub mod focal_loss;
pub mod layer_stats;
pub mod model;
pub mod pairs;
pub mod siamese;
